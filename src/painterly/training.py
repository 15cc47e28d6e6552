"""Train a feed-forward network: a Johnson et al. (2016) TransformerNet to paint one style, or a Huang &
Belongie (2017) AdaIN decoder to paint any painting, from a folder of photos (and, for AdaIN, a folder
of paintings).

One loop (`_Run`) and one step (`Trainer`) serve both kinds; what differs is a task object each
(`_JohnsonTask`, `_AdaINTask`): the network and the parameters the optimiser trains, the loss of a
step on (photos, paintings), the preview. `train()` runs unchanged on a CPU, a GPU, or N processes under torchrun. Its
promise: a run killed at any moment (even kill -9) and resumed ends with
exactly the weights of an uninterrupted run with the same seed. That holds
because
* the batch of step s, photos and paintings, depends only on (seed, s) (see dataset.py);
* everything else a step changes (model, optimiser, learning-rate scale, step,
  every RNG state) is captured by `Trainer.state()` and written atomically;
* a NaN rollback returns to the last checkpoint that `checkpoint_every` placed:
  checkpoints placed by the clock (`checkpoint_minutes`) or by an interrupt are
  written to disk but do not move the rollback point, so the weights never
  depend on the machine's speed. (A run resumed from such a checkpoint rolls
  back to it until its next scheduled one: the only way it can differ, and only
  when a loss goes non-finite.)

Training never loses work. Ctrl-C or SIGTERM lets the step in progress finish,
then writes a checkpoint and the model so far and raises, noting what it wrote
(`_Interrupts`). One run at a time per model: `train()` holds an exclusive lock
on `OUTPUT.lock` for the whole run, so a second run with the same output is
refused instead of mixing its files with the first one's; and the files beside
a model belong to one run: a new run into an output that has them is refused
unless it resumes that run or is told to overwrite it (`_claim`). `Trainer` is
the step on its own, for measuring it (benchmarks/gpu.py).

Departures from Johnson et al.: an optional cosine learning-rate schedule; [0, 1]
pixels with the "target" loss normalisation (losses.py); upsampling+conv
instead of fractionally strided convs (transformer.py). From Huang & Belongie:
torchvision's VGG-19 (ImageNet, or random offline) instead of their normalised
Caffe VGG; random flips of the crops; [0, 1] pixels; the same paper recipe
otherwise (config.TRAIN_DEFAULTS).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import signal
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import FrameType, TracebackType
from typing import IO, Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset, Sampler

from . import images, optimizers, pixels
from . import weights as vgg_weights
from .adain import ADAIN_ARCHITECTURES, AdaINNet, adaptive_instance_norm, encoder_state_from_vgg
from .atomic import atomic_path, cannot_write
from .checkpoint import (
    check_resumable,
    check_state,
    cpu_copy,
    load_checkpoint,
    rng_states,
    save_checkpoint,
    seed_everything,
    set_rng_states,
)
from .config import ADAIN_SIZE_MULTIPLES, INVERSE_LR_DECAY, TrainConfig
from .dataset import (
    PAINTINGS,
    PairedBatches,
    Pairs,
    PhotoCrops,
    Skipped,
    StepBatches,
    collate,
    collate_pairs,
    find_images,
    find_photos,
    first_readable,
    folder_sha256,
    steps_per_epoch,
)
from .devices import autocast_dtype, out_of_memory_guard, precision_name, resolve_device
from .errors import OutputError, PainterlyError, UsageError
from .events import Callback, CheckpointEvent, DoneEvent, MessageEvent, StopRequested, TrainStepEvent, ignore
from .features import VGGFeatures, build_perceptual_loss
from .locks import LockBusy, exclusive
from .losses import AdaINLoss, LossTerms
from .modelfile import save_model
from .provenance import describe_file
from .temporal_loss import CameraMotion, TemporalTerms, styled_pair
from .transformer import ARCHITECTURES, SIZE_MULTIPLE, TransformerNet

# Settings a resumed run may change. Steps and epochs reshape a cosine schedule, but nothing else.
MAX_ROLLBACKS = 5  # non-finite losses in a row before giving up
PREVIEW_PHOTOS, PREVIEW_SIDE = 4, 256
PREVIEW_STYLE_SIDE = 256  # an AdaIN preview's painting, on its long side: the preview photos' scale
LOSS_NAMES = ("total", "content", "style", "tv")


def train(style: Path | str, config: TrainConfig, output: Path | str, *, callback: Callback = ignore,
          resume: bool = False, overwrite: bool = False, clock: Callable[[], float] = time.monotonic) -> Path:
    """Train a TransformerNet to paint `style` (an image) on the photos in `config.data`, or, for
    `config.arch` "adain"/"adain-light", an AdaIN decoder on those photos and the paintings in the
    folder `style` (searched recursively); returns the model path. The wrong kind of `style` for the
    arch is refused (UsageError) before anything is built.

    Beside `output` (NAME.safetensors) go `NAME.safetensors.ckpt` (every `checkpoint_every` steps,
    every `checkpoint_minutes`, on an interrupt and at the end), `.metrics.jsonl`, `.previews/` and,
    while the run lasts, `.lock`: all of one run. `resume=True` continues from the checkpoint, or
    starts from step 0 (and says so) when the run before stopped ahead of its first checkpoint.
    Without it an output that holds an earlier run's files is refused (OutputError) unless
    `overwrite=True`, which deletes them first. Under torchrun every process trains on its share of
    each batch; only rank 0 writes files, holds the lock and reports events. A callback may raise
    `StopRequested` to end early with a model and a checkpoint; Ctrl-C and SIGTERM do the same after
    the step in progress, then raise their KeyboardInterrupt with a note (`__notes__`) of what was
    written. `clock` is the wall clock `checkpoint_minutes` is measured on (tests pass their own).
    Like any training script, it seeds the global torch/numpy/random generators (a resume restores them).
    """
    if resume and overwrite:
        raise UsageError("--resume continues the run already at the output and --overwrite deletes it: "
                         "give one of them")
    paths = _Paths(_checked_output(Path(output)))
    inputs = _Inputs.read(Path(style), config)
    with _processes(config.device) as procs, _locked(paths, procs.is_main):
        _claim(paths, procs, resume=resume, overwrite=overwrite)
        what = f"training at --size {config.size} with --batch-size {config.batch_size}"
        run = _Run(config, inputs, paths, procs, callback if procs.is_main else ignore, clock)
        try:
            with out_of_memory_guard(what, procs.device):
                return run.run(resume)
        except KeyboardInterrupt as interrupt:
            interrupt.add_note(run.after_interrupt())
            raise


# --- processes ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _Processes:
    """This process's place in a torchrun job; rank 0 of 1 when run alone."""

    device: torch.device
    rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def mean(self, values: torch.Tensor) -> torch.Tensor:
        if self.world_size > 1:
            values = values.clone()
            dist.all_reduce(values)
            values /= self.world_size
        return values

    def any(self, flag: bool) -> bool:
        """Whether `flag` is set on any process, so that all of them take the same branch."""
        return self.any_of(flag)[0]

    def any_of(self, *flags: bool) -> list[bool]:
        """`any` of each flag, in one exchange between the processes."""
        if self.world_size == 1:
            return list(flags)
        means = self.mean(torch.tensor([float(flag) for flag in flags], device=self.device))
        return [bool(mean > 0) for mean in means.tolist()]

    def barrier(self) -> None:
        if self.world_size > 1:
            dist.barrier()


@contextmanager
def _processes(device_name: str) -> Iterator[_Processes]:
    """Join the torchrun job that WORLD_SIZE/RANK/LOCAL_RANK describe, if any, and leave it at the end."""
    device = resolve_device(device_name)
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        yield _Processes(device)
        return
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    joined = not dist.is_initialized()
    if joined:
        cuda = device.type == "cuda"
        dist.init_process_group("nccl" if cuda else "gloo", device_id=device if cuda else None)
    try:
        yield _Processes(device, dist.get_rank(), dist.get_world_size())
    finally:
        if joined:
            dist.destroy_process_group()


# --- what each kind of network trains -------------------------------------------------------


class _JohnsonTask:
    """A TransformerNet learning one painting (Johnson et al.): the perceptual loss against the style
    targets of that painting, computed once."""

    kind = "johnson"

    def __init__(self, config: TrainConfig, style_image: torch.Tensor | None, device: torch.device, *,
                 autocast: torch.dtype | None, channels_last: bool, callback: Callback) -> None:
        if style_image is None:
            raise UsageError(f"--arch {config.arch} learns one painting: give its image")
        self.model = TransformerNet(replace(ARCHITECTURES[config.arch], antialias=config.antialias)).to(device)
        if channels_last:
            self.model.to(memory_format=torch.channels_last)
        self.trained: nn.Module = self.model  # the module the step differentiates through (DDP wraps it)
        self.loss = build_perceptual_loss(config, device, autocast=autocast, channels_last=channels_last,
                                          callback=callback)
        encoder = self.loss.encoder
        assert isinstance(encoder, VGGFeatures)
        self.encoder = encoder
        self.loss.set_style([style_image.to(device)])  # once: the style target never changes
        self.temporal_weight = config.temporal_weight

    def parameters(self) -> Iterator[nn.Parameter]:
        return self.model.parameters()

    def terms(self, net: Callable[..., torch.Tensor], photos: torch.Tensor,
              paintings: torch.Tensor | None, *, temporal: bool = True) -> LossTerms:
        """The perceptual loss; with a temporal weight also the temporal loss (temporal_loss.py) of a
        random camera motion per photo, drawn from torch's global CPU generator (checkpointed), at the
        cost of the moved photos going through the network too. `temporal` False (the warm-up): the
        term is logged as 0 and neither computed nor drawn."""
        if not (self.temporal_weight and temporal):
            terms = self.loss(net(photos), self.loss.content_features(photos))
            if not self.temporal_weight:
                return terms
            return TemporalTerms(terms.total, terms.content, terms.style, terms.tv, torch.zeros_like(terms.total))
        motion = CameraMotion.random(photos)
        styled, moved = styled_pair(net, photos, motion)
        terms = self.loss(styled, self.loss.content_features(photos))
        steadiness = self.temporal_weight * motion.loss(styled, moved)
        return TemporalTerms(terms.total + steadiness, terms.content, terms.style, terms.tv, steadiness)

    def preview(self, photo: torch.Tensor, painting: torch.Tensor | None) -> torch.Tensor:
        return self.model(photo)


class _Decoding(nn.Module):
    """An AdaINNet's decoder as the module a step differentiates through: DistributedDataParallel
    averages the gradients of what its wrapped module's forward computes."""

    def __init__(self, net: AdaINNet) -> None:
        super().__init__()
        self.net = net

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.net.decode(features)


class _AdaINTask:
    """An AdaIN decoder learning to paint any painting (Huang & Belongie 2017): each step pairs photo i
    with painting i, makes t = AdaIN(f(photo), f(painting)) with the frozen encoder, and trains the
    decoder g on ‖f(g(t)) − t‖² plus the painting's feature statistics (losses.AdaINLoss).

    The loss encoder is VGG-19 through the style layers (relu4_1 even for the light decoder, whose
    bottleneck is relu3_1); the network's own encoder is its prefix up to the bottleneck, with the
    same weights (copied from it), and travels in the model file.
    """

    kind = "adain"

    def __init__(self, config: TrainConfig, device: torch.device, *, autocast: torch.dtype | None,
                 channels_last: bool, callback: Callback) -> None:
        architecture = ADAIN_ARCHITECTURES[_ADAIN_SIZES[config.arch]]
        assert config.bottleneck == architecture.bottleneck, "config.ADAIN_BOTTLENECKS disagrees with adain.py"
        self.bottleneck = architecture.bottleneck
        encoder = VGGFeatures(list(dict.fromkeys(config.content_layers + config.style_layers)), arch="vgg19",
                              weights=config.vgg_weights, pooling=config.pooling, seed=config.seed).to(device)
        encoder.set_speed(autocast=autocast, channels_last=channels_last)
        warning = vgg_weights.random_weights_warning(config.vgg_weights)
        if warning is not None:
            callback(MessageEvent(warning, "warning"))
        self.encoder = encoder
        vgg = {f"features.{key}": value.cpu() for key, value in encoder.features.state_dict().items()}
        self.model = AdaINNet(architecture, encoder_state=encoder_state_from_vgg(vgg, architecture)).to(device)
        if channels_last:
            self.model.to(memory_format=torch.channels_last)
            self.model.encoder.set_speed(channels_last=True)
        self.trained = _Decoding(self.model)
        self.loss = AdaINLoss(encoder, self.bottleneck, config.layer_weights(), content_weight=config.content_weight,
                              style_weight=config.style_weight, tv_weight=config.tv_weight,
                              normalisation=config.loss_normalisation)

    def parameters(self) -> Iterator[nn.Parameter]:
        return self.model.decoder.parameters()

    def terms(self, net: Callable[..., torch.Tensor], photos: torch.Tensor,
              paintings: torch.Tensor | None, *, temporal: bool = False) -> LossTerms:
        if paintings is None:
            raise UsageError("an AdaIN training step needs a batch of paintings beside the photos")
        style = self.loss.style_statistics(paintings)
        with torch.no_grad():
            target = adaptive_instance_norm(self.model.encode(photos), *style[self.bottleneck])
        return self.loss(net(target), target, style)

    def preview(self, photo: torch.Tensor, painting: torch.Tensor | None) -> torch.Tensor:
        assert painting is not None, "AdaIN previews pair each photo with a painting"
        return self.model.stylize(photo, *self.model.statistics(painting))


_ADAIN_SIZES = {"adain": "standard", "adain-light": "light"}  # TrainConfig.arch -> adain.ADAIN_ARCHITECTURES


# --- the model and its optimiser ------------------------------------------------------------


class Trainer:
    """The network, its optimiser and its loss, and one training step on a batch.

    What `train()` runs between its checkpoints, usable on its own to measure a step (benchmarks/gpu.py
    times `train_step` on photos already on the device). `state()`/`restore()` capture all that a step
    changes. What differs between a Johnson network (`style_image`: the one painting it learns) and an
    AdaIN decoder (no style image: each step brings its paintings) is in its task object (`task`); the
    step, the precision, DDP, compile and the state are the same code. `config.channels_last` and
    `config.compile` apply here; the random-weights warning goes to `callback`. `processes` is the
    torchrun job `train()` joined; None: this process alone, on `config.device`.
    """

    def __init__(self, config: TrainConfig, style_image: torch.Tensor | None = None, *, callback: Callback = ignore,
                 processes: _Processes | None = None) -> None:
        procs = processes or _Processes(resolve_device(config.device))
        self.procs, self.device, self.lr = procs, procs.device, config.lr
        if config.compile and self.device.type != "cuda":
            raise UsageError(f"--compile needs a CUDA GPU: torch.compile on {self.device.type} compiles for minutes "
                             "and needs a C++ toolchain; train without --compile there")
        # "auto" is bf16 on CUDA only: on CPUs a bf16 run's loss left fp32's by more than fp32's own
        # spread when its learning rate moves by 1e-6 (docs/benchmarks.md), so there it is asked for.
        self.autocast = autocast_dtype(config.precision, self.device, auto_bf16=self.device.type == "cuda",
                                      callback=callback)
        seed_everything(config.seed)  # a resume then restores the generators' later states
        self.channels_last = config.channels_last
        self.task: _JohnsonTask | _AdaINTask
        if config.kind == "adain":
            if style_image is not None:
                raise UsageError(f"--arch {config.arch} learns from the paintings of each batch, not one style image")
            self.task = _AdaINTask(config, self.device, autocast=self.autocast, channels_last=self.channels_last,
                                   callback=callback)
        else:
            self.task = _JohnsonTask(config, style_image, self.device, autocast=self.autocast,
                                     channels_last=self.channels_last, callback=callback)
        self.model = self.task.model
        self.net: Callable[..., torch.Tensor] = self.task.trained
        if procs.world_size > 1:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.net = DistributedDataParallel(self.task.trained, device_ids=ids)
        self.optimizer = optimizers.Adam(self.task.parameters(), lr=config.lr)  # torch's, without dynamo's import
        # fp16 needs loss scaling against underflowing gradients; bf16 has fp32's range.
        self.scaler = torch.amp.GradScaler("cuda") if self.autocast == torch.float16 else None
        self.loss = self.task.loss
        self.encoder = self.task.encoder
        if config.compile:
            # Static shapes: a run keeps one batch size and crop size. The loss calls `loss.encoder`.
            self.net = torch.compile(self.net, dynamic=False)
            self.loss.encoder = torch.compile(self.encoder, dynamic=False)  # type: ignore[assignment]
        self.step = 0
        self.lr_scale = 1.0  # halved by each NaN rollback
        self.temporal_from = 0  # the first step with the temporal term (train() sets its warm-up)

    def train_step(self, photos: torch.Tensor, lr: float | None = None,
                   paintings: torch.Tensor | None = None) -> dict[str, float] | None:
        """One Adam step on a batch at `lr` (None: `config.lr`), counted in `step`; its losses, or None,
        and no step, when the loss is not finite on some process. An AdaIN step takes `paintings`,
        one per photo."""
        lr = self.lr if lr is None else lr
        photos = self._on_device(photos)
        paintings = None if paintings is None else self._on_device(paintings)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.optimizer.zero_grad(set_to_none=True)
        with torch.autocast(self.device.type, dtype=self.autocast, enabled=self.autocast is not None):
            terms = self.task.terms(self.net, photos, paintings, temporal=self.step >= self.temporal_from)
        names = LOSS_NAMES + (("temporal",) if isinstance(terms, TemporalTerms) else ())
        losses = self.procs.mean(torch.stack([getattr(terms, name) for name in names]).detach())
        if not torch.isfinite(losses).all():  # decided on the mean, so every process skips together
            return None
        if self.scaler is None:
            terms.total.backward()
            self.optimizer.step()
        else:
            self.scaler.scale(terms.total).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
        self.step += 1
        return dict(zip(names, losses.tolist()))

    def _on_device(self, images: torch.Tensor) -> torch.Tensor:
        images = images.to(self.device, non_blocking=True)
        return images.contiguous(memory_format=torch.channels_last) if self.channels_last else images

    @torch.no_grad()
    def preview(self, photo: torch.Tensor, painting: torch.Tensor | None = None) -> torch.Tensor:
        """The network's output for one photo (1, 3, H, W) now, clamped to [0, 1] (for AdaIN: painted
        like `painting`)."""
        device = self.device
        out = self.task.preview(photo.to(device), None if painting is None else painting.to(device))
        return out.float().clamp(0, 1)

    def weights_finite(self) -> bool:
        return bool(torch.stack([p.isfinite().all() for p in self.task.parameters()]).all())

    def state(self) -> dict[str, Any]:
        """Everything a step changes, copied to the CPU: a checkpoint, and the rollback point."""
        return {
            "step": self.step,
            "lr_scale": self.lr_scale,
            "model": cpu_copy(self.model.state_dict()),
            "optimizer": cpu_copy(self.optimizer.state_dict()),
            "scaler": None if self.scaler is None else self.scaler.state_dict(),
            "rng": rng_states(self.device),
        }

    def restore(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        # The optimiser keeps the tensors it is given and updates them in place: give it a copy.
        self.optimizer.load_state_dict(cpu_copy(state["optimizer"]))
        if self.scaler is not None:
            self.scaler.load_state_dict(state["scaler"])
        self.step, self.lr_scale = state["step"], state["lr_scale"]
        set_rng_states(state["rng"], self.device)


# --- files -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Paths:
    """The model file and the files named after it."""

    model: Path

    def _beside(self, suffix: str) -> Path:
        return self.model.with_name(self.model.name + suffix)

    @property
    def checkpoint(self) -> Path:
        return self._beside(".ckpt")

    @property
    def metrics(self) -> Path:
        return self._beside(".metrics.jsonl")

    @property
    def previews(self) -> Path:
        return self._beside(".previews")

    @property
    def tensorboard(self) -> Path:
        return self._beside(".tensorboard")

    @property
    def lock(self) -> Path:
        return self._beside(".lock")

    def earlier_run(self) -> dict[str, Path]:
        """The files an earlier run left here that hold its work, by what they are (an empty log holds none)."""
        files = {"model": self.model, "checkpoint": self.checkpoint, "metrics log": self.metrics,
                 "previews": self.previews, "TensorBoard log": self.tensorboard}
        return {name: path for name, path in files.items() if _holds_something(path)}


def _holds_something(path: Path) -> bool:
    try:
        return any(path.iterdir()) if path.is_dir() else path.stat().st_size > 0
    except OSError:  # not there (or unreadable: then removing it will say so)
        return path.is_symlink()


def _claim(paths: _Paths, procs: _Processes, *, resume: bool, overwrite: bool) -> None:
    """Make the output this run's. Called holding the lock: rank 0 decides, every process follows."""
    refusal: PainterlyError | None = None
    if procs.is_main:
        try:
            _claim_files(paths, resume=resume, overwrite=overwrite)
        except PainterlyError as error:
            refusal = error
    if procs.any(refusal is not None):
        raise refusal or OutputError(f"{paths.model}: process 0 refused this output; its message says why")


def _claim_files(paths: _Paths, *, resume: bool, overwrite: bool) -> None:
    """Refuse an earlier run's files, unless resuming that run or told to overwrite it (then delete them).

    A fresh run used to truncate the metrics log, replace the checkpoint and the model, and write its
    previews among the old ones. One run's previews are `OUTPUT.previews/`: a resume adds to them,
    an overwrite starts them again.
    """
    if resume:
        if paths.model.exists() and not paths.checkpoint.exists():
            raise OutputError(f"{paths.model}: has no checkpoint {paths.checkpoint.name} to resume from; "
                              "--overwrite trains it again from step 0, or train into another --output")
        return
    earlier = paths.earlier_run()
    if not earlier:
        return
    if not overwrite:
        names = list(earlier)
        listed = names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"
        raise OutputError(f"{paths.model}: an earlier run's {listed} {'is' if len(names) == 1 else 'are'} here; "
                          "--resume continues that run, --overwrite deletes them and starts again")
    for path in earlier.values():
        try:
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()
        except OSError as error:
            raise cannot_write(path, error) from None


def _checked_output(output: Path) -> Path:
    """Refuse a model path that cannot be written now rather than after hours of training."""
    if output.suffix != ".safetensors":
        raise UsageError(f"{output}: name the model NAME.safetensors, the format it is written in")
    if output.is_dir():
        raise OutputError(f"{output}: is a folder; give a file name for the model")
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=output.parent):
            pass
    except OSError as error:
        raise OutputError(f"{output}: cannot write in {output.parent} ({error.strerror or error})") from None
    return output


@contextmanager
def _locked(paths: _Paths, take: bool) -> Iterator[None]:
    """Hold an exclusive lock on `OUTPUT.lock` for the run (when `take`: rank 0), refusing a second run.

    Two runs into one output would interleave their metrics logs and checkpoints and leave a model
    from one beside the log of the other. `locks.exclusive`: the lock dies with its process, so one
    left by a `kill -9` never blocks the resume; the file is removed at the end.
    """
    if not take:
        yield
        return
    with contextlib.ExitStack() as held:
        try:
            held.enter_context(exclusive(paths.lock, wait=False))
        except LockBusy as busy:
            by = f" (process {busy.holder})" if busy.holder else ""
            raise OutputError(f"{paths.lock}: another training run{by} holds this lock on {paths.model}; "
                              "wait for it to end, or train into another --output") from None
        yield


@dataclass
class _Inputs:
    """What a run reads before it starts, so that bad input fails at once, not hours in."""

    photos: PhotoCrops
    previews: list[torch.Tensor]
    skipped: Skipped  # unreadable photos (and paintings) met while looking for the previews
    style_image: torch.Tensor | None  # a Johnson network's one painting
    style_info: dict[str, Any]  # what the model file records of the style: the painting, or the paintings
    paintings: PhotoCrops | None = None  # an AdaIN decoder's paintings, cropped like the photos
    preview_paintings: list[torch.Tensor] = field(default_factory=list)  # one for each preview photo

    @classmethod
    def read(cls, style: Path, config: TrainConfig) -> _Inputs:
        files = find_photos(config.data)
        previews, skipped = first_readable(files, PREVIEW_PHOTOS, config.data)
        multiple = _size_multiple(config)
        photos = PhotoCrops(files, config.size, config.seed, resize=config.resize)
        preview_photos = [_preview_tensor(photo, PREVIEW_SIDE, multiple) for photo in previews]
        if config.kind == "adain":
            return cls._with_paintings(style, config, photos, preview_photos, skipped)
        if style.is_dir():
            raise UsageError(f"{style}: is a folder; --arch {config.arch} learns one painting: give its image file, "
                             "or --arch adain to learn any painting from a folder of them")
        image = images.load_image(style)
        if config.style_size is not None:
            image = pixels.resize_long_side(image, config.style_size)
        info = {**describe_file(style), "file": style.name}
        return cls(photos, preview_photos, skipped, image, info)

    @classmethod
    def _with_paintings(cls, folder: Path, config: TrainConfig, photos: PhotoCrops, previews: list[torch.Tensor],
                        skipped: Skipped) -> _Inputs:
        """An AdaIN run's inputs: the folder of paintings (searched recursively), hashed as a whole."""
        if folder.is_file():
            raise UsageError(f"{folder}: is a file; --arch {config.arch} learns any painting from a folder of "
                             "paintings (searched recursively): give the folder")
        files = find_images(folder)
        readable, unreadable = first_readable(files, len(previews), str(folder))
        preview_paintings = [_preview_tensor(painting, PREVIEW_STYLE_SIDE, 1) for painting in readable]
        info = {"paintings": str(folder), "count": len(files), "sha256": folder_sha256(folder, files)}
        paintings = PhotoCrops(files, config.size, config.seed, resize=config.resize, stream=PAINTINGS)
        return cls(photos, previews, {**skipped, **unreadable}, None, info, paintings,
                   [preview_paintings[index % len(preview_paintings)] for index in range(len(previews))])


def _size_multiple(config: TrainConfig) -> int:
    """What the network's image sides must be a multiple of."""
    return ADAIN_SIZE_MULTIPLES.get(config.arch, SIZE_MULTIPLE)


def _preview_tensor(image: np.ndarray, side: int, multiple: int) -> torch.Tensor:
    """A preview photo (or painting) at `side` on its long side, cropped to the multiple the network needs."""
    small = pixels.resize_long_side(image, side)
    height, width = (length - length % multiple for length in small.shape[:2])
    return pixels.to_tensor(small[:height, :width])


def _tensorboard(folder: Path, start_step: int) -> Any:
    """A SummaryWriter that drops what it logged after `start_step`, when `tensorboard` is installed."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    return SummaryWriter(str(folder), purge_step=start_step + 1)


def _metrics_lines(path: Path, step: int) -> list[str]:
    """The metrics-log lines of steps up to `step`."""
    if not (step and path.is_file()):
        return []
    kept = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            if json.loads(line)["step"] <= step:
                kept.append(line)
        except (ValueError, KeyError, TypeError):
            continue  # a line torn by a kill
    return kept


class _Outputs:
    """What rank 0 writes besides the model: checkpoints, the metrics log, TensorBoard, previews."""

    def __init__(self, paths: _Paths, start_step: int, previews: list[torch.Tensor],
                 paintings: list[torch.Tensor] | None = None) -> None:
        self.paths, self.previews, self.paintings = paths, previews, paintings or []
        self.metrics: IO[str] | None = None
        self.tensorboard: Any = None
        self.rewind(start_step)

    def rewind(self, step: int) -> None:
        """Forget what was logged after `step` (all of it for a fresh run): a resume or rollback redoes it."""
        self.close()
        path = self.paths.metrics
        kept = "".join(f"{line}\n" for line in _metrics_lines(path, step))
        with atomic_path(path) as temporary:
            temporary.write_text(kept)
        try:
            self.metrics = open(path, "a", encoding="utf-8")  # noqa: SIM115 - open for the whole run
        except OSError as error:
            raise cannot_write(path, error) from None
        self.tensorboard = _tensorboard(self.paths.tensorboard, step)

    def checkpoint(self, state: dict[str, Any]) -> None:
        save_checkpoint(self.paths.checkpoint, state)

    def log(self, record: dict[str, Any]) -> None:
        assert self.metrics is not None, "rewind() opens the log"
        try:
            self.metrics.write(json.dumps(record) + "\n")
            self.metrics.flush()
        except OSError as error:  # a full disk: the run stops here, its last checkpoint intact
            metrics, self.metrics = self.metrics, None
            with contextlib.suppress(OSError):
                metrics.close()  # its unwritten buffer would fail again
            raise cannot_write(self.paths.metrics, error) from None
        if self.tensorboard is not None:
            for name, value in record["losses"].items():
                self.tensorboard.add_scalar(f"loss/{name}", value, record["step"])
            self.tensorboard.add_scalar("lr", record["lr"], record["step"])
            self.tensorboard.add_scalar("images_per_s", record["images_per_s"], record["step"])

    def write_previews(self, trainer: Trainer, step: int) -> None:
        for index, photo in enumerate(self.previews):
            painting = self.paintings[index] if self.paintings else None
            images.save_image(trainer.preview(photo, painting), self.paths.previews / f"step{step:06d}_{index}.png",
                              settings={"step": step})

    def close(self) -> None:
        metrics, self.metrics = self.metrics, None
        if metrics is not None:
            try:
                metrics.close()
            except OSError as error:
                raise cannot_write(self.paths.metrics, error) from None
        tensorboard, self.tensorboard = self.tensorboard, None
        if tensorboard is not None:
            tensorboard.close()


# --- the loop --------------------------------------------------------------------------------


class _Interrupts:
    """Ctrl-C and SIGTERM held back while the steps run, so that a run stops at a step boundary.

    A signal is held only where its handler is Python code that would raise in the middle of a step
    (Python's Ctrl-C handler, the CLI's SIGTERM one); a default SIGTERM still ends the process at once,
    as before. `deliver()` hands the held signal to that handler once the checkpoint is written, so the
    caller sees the exception it always saw. A second Ctrl-C is not held: whoever presses it twice
    wants out now, and the checkpoint on disk is whole (written atomically). Signals reach only the
    main thread: elsewhere nothing is held. Forked loader workers fall back to Ctrl-C's exception,
    which makes them end quietly, as PyTorch expects.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self, report: Callback) -> None:
        self.report = report
        self.held: int | None = None  # the signal waiting for the step to end
        self.handlers: dict[int, Callable[[int, FrameType | None], Any]] = {}
        self.installed = False
        self.pid = os.getpid()

    def __enter__(self) -> _Interrupts:
        if threading.current_thread() is threading.main_thread():
            for signum in self.SIGNALS:
                handler = signal.getsignal(signum)
                if callable(handler):
                    self.handlers[signum] = handler
                    signal.signal(signum, self._hold)
            self.installed = True
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self._restore()

    def _restore(self) -> None:
        if self.installed:
            self.installed = False
            for signum, handler in self.handlers.items():
                signal.signal(signum, handler)

    def _hold(self, signum: int, frame: FrameType | None) -> None:
        if os.getpid() != self.pid:  # a forked loader worker
            raise KeyboardInterrupt
        if self.held is not None:
            if signum == signal.SIGINT:
                self._restore()
                self.handlers[signum](signum, frame)  # raises: stop at once
            return
        self.held = signum
        again = " (Ctrl-C again stops at once)" if signum == signal.SIGINT else ""
        with contextlib.suppress(Exception):  # whatever a callback raises must not land inside the step
            self.report(MessageEvent(f"{signal.Signals(signum).name} received: stopping after this step, with a "
                                     f"checkpoint and the model so far{again}"))

    def deliver(self, *, agreed: bool) -> None:
        """Raise what the held signal's handler raises; KeyboardInterrupt if it raises nothing or, under
        torchrun, this process holds none but another did (`agreed`)."""
        self._restore()
        if self.held is not None:
            self.handlers[self.held](self.held, None)
        if agreed or self.held is not None:
            raise KeyboardInterrupt


class _Run:
    """One call of `train`: the loop, with its checkpoints, rollbacks, logs and events."""

    def __init__(self, config: TrainConfig, inputs: _Inputs, paths: _Paths, procs: _Processes,
                 report: Callback, clock: Callable[[], float] = time.monotonic) -> None:
        self.config, self.inputs, self.paths, self.procs, self.report = config, inputs, paths, procs, report
        self.clock = clock
        self.dataset = inputs.photos
        self.per_epoch = steps_per_epoch(len(self.dataset), config.batch_size, procs.world_size, config.data)
        self.total = config.steps or config.epochs * self.per_epoch
        self.skipped: Skipped = {}
        self.rollbacks = 0  # in a row, since the last good state
        self.elapsed_before = 0.0  # training time of the runs this one resumes
        self.started = time.perf_counter()
        self.losses: dict[str, float] = {}
        self.outputs: _Outputs | None = None
        # What is on disk, for the note an interrupt carries: the checkpoint's step (this run's or the
        # one it resumed), and whether this run wrote the model.
        self.saved_step: int | None = None
        self.wrote_model = False
        self.saved_at = clock()  # when the last checkpoint was written, for checkpoint_minutes
        # An AdaIN run's painting files, to tell an unreadable painting from an unreadable photo.
        self.painting_files = {str(path) for path in inputs.paintings.files} if inputs.paintings else set()

    def run(self, resume: bool) -> Path:
        self.trainer = Trainer(self.config, self.inputs.style_image, callback=self.report, processes=self.procs)
        self.trainer.temporal_from = round(self.config.temporal_warmup * self.total)
        if resume:
            self._resume()
        self._announce()
        self._note_skipped(self.inputs.skipped)
        main = self.procs.is_main
        self.outputs = (_Outputs(self.paths, self.trainer.step, self.inputs.previews, self.inputs.preview_paintings)
                        if main else None)
        try:
            self.last_good = self._state()
            with _Interrupts(self.report) as interrupts:
                self.interrupts = interrupts
                outcome = self._loop()
                if outcome == "interrupted" and self.trainer.step == 0:  # no step got through: nothing to keep
                    interrupts.deliver(agreed=True)
                path = self._finish(outcome != "done")
                interrupts.deliver(agreed=outcome == "interrupted")  # raises if a signal came
            return path
        finally:
            if self.outputs is not None:
                self.outputs.close()

    def _loop(self) -> str:
        """Train up to the last step: "done", or "stopped" when a callback asked to, or "interrupted"
        by a signal; every process agrees on which after each step."""
        batches = self._batches()
        tick = time.perf_counter()
        self.saved_at = self.clock()
        while self.trainer.step < self.total:
            photos, paintings, skipped = next(batches)
            self._note_skipped(skipped)
            lr = self._lr()
            failing = self.trainer.step + 1
            losses = self.trainer.train_step(photos, lr, paintings)
            stop = rolled_back = False
            if losses is None or not self.trainer.weights_finite():
                self._roll_back(failing)
                batches, tick, rolled_back = self._batches(), time.perf_counter(), True
            else:
                self.losses = losses
                now = time.perf_counter()
                stop = self._after_step(lr, now - tick)
                tick = now
            minutes = self.config.checkpoint_minutes
            due = bool(minutes) and not rolled_back and self.clock() - self.saved_at >= 60 * minutes
            stop, interrupted, due = self.procs.any_of(stop, self.interrupts.held is not None, due)
            if interrupted:
                return "interrupted"
            if stop:
                return "stopped"
            if due and self.saved_step != self.trainer.step:
                self._checkpoint(rollback_point=False)
        return "done"

    def _batches(self) -> Iterator[tuple[torch.Tensor, torch.Tensor | None, Skipped]]:
        """Batches from the current step on, (photos, paintings or None, files skipped); rebuilt after a rollback."""
        config, procs = self.config, self.procs
        where = {"start": self.trainer.step, "stop": self.total, "rank": procs.rank, "world_size": procs.world_size}
        dataset: Dataset
        sampler: Sampler
        join: Callable[[list[Any]], Any]
        if self.inputs.paintings is None:
            dataset, join = self.dataset, collate
            sampler = StepBatches(len(self.dataset), config.batch_size, config.seed, **where)
        else:
            dataset, join = Pairs(self.dataset, self.inputs.paintings), collate_pairs
            sampler = PairedBatches(len(self.dataset), len(self.inputs.paintings), config.batch_size, config.seed,
                                    **where)
        # A generator of its own keeps the loader from drawing on (and changing) the global torch RNG.
        loader = DataLoader(dataset, batch_sampler=sampler, num_workers=config.workers, collate_fn=join,
                            pin_memory=procs.device.type == "cuda",
                            generator=torch.Generator().manual_seed(config.seed))
        if self.inputs.paintings is not None:
            return iter(loader)
        return ((photos, None, skipped) for photos, skipped in loader)

    def _lr(self) -> float:
        """Adam's rate for the next step: lr × rollback scale × schedule (cosine ends at 1 %; inverse is the
        AdaIN paper's 1/(1 + 5e-5·step), step counted from 0 as pytorch-AdaIN's iteration)."""
        factor = 1.0
        if self.config.lr_schedule == "cosine":
            progress = min(1.0, self.trainer.step / max(1, self.total - 1))
            factor = 0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * progress))
        elif self.config.lr_schedule == "inverse":
            factor = 1.0 / (1.0 + INVERSE_LR_DECAY * self.trainer.step)
        return self.config.lr * self.trainer.lr_scale * factor

    def _after_step(self, lr: float, seconds: float) -> bool:
        """Log, preview, report and checkpoint the step just taken; True when asked to stop."""
        config, step = self.config, self.trainer.step
        epoch = (step - 1) // self.per_epoch + 1
        images_per_s, elapsed = config.batch_size * self.procs.world_size / max(seconds, 1e-9), self._elapsed()
        record = {"step": step, "epoch": epoch, "losses": self.losses, "lr": lr, "images_per_s": images_per_s,
                  "elapsed": elapsed}
        if self.outputs is not None:
            if step % config.log_every == 0:
                self.outputs.log(record)
            if config.preview_every and step % config.preview_every == 0:
                self.outputs.write_previews(self.trainer, step)
        try:
            self.report(TrainStepEvent(step, self.total, epoch, math.ceil(self.total / self.per_epoch),
                                       self.losses, lr, images_per_s, elapsed))
            stop = False
        except StopRequested:
            stop = True
        if step % config.checkpoint_every == 0:
            self._checkpoint()
        return stop

    def _elapsed(self) -> float:
        return self.elapsed_before + time.perf_counter() - self.started

    def _state(self) -> dict[str, Any]:
        step = self.trainer.step
        return {
            **self.trainer.state(),
            "config": self.config.to_dict(),
            "style_sha256": self.inputs.style_info["sha256"],
            "epoch": step // self.per_epoch,  # 0-based; `position` is the next batch within it
            "position": step % self.per_epoch,
            "world_size": self.procs.world_size,
            "elapsed": self._elapsed(),
            "skipped": dict(self.skipped),
        }

    def _checkpoint(self, *, rollback_point: bool = True) -> None:
        """On rank 0, write this state to `<output>.ckpt`; keep it as the rollback point when the
        step schedule placed it (not the clock or an interrupt: see the module's docstring)."""
        state = self._state()
        if rollback_point:
            self.last_good = state
            self.rollbacks = 0
        if self.outputs is not None:
            self.outputs.checkpoint(state)
            self.report(CheckpointEvent(self.trainer.step, self.paths.checkpoint))
        self.saved_step, self.saved_at = self.trainer.step, self.clock()
        self.procs.barrier()  # no process runs ahead of a checkpoint being written

    def _roll_back(self, failed: int) -> None:
        """Step `failed` went wrong: return to the last good state and retry its steps at half the learning rate."""
        self.rollbacks += 1
        if self.rollbacks > MAX_ROLLBACKS:
            raise PainterlyError(f"the loss was not finite at step {failed} even after {MAX_ROLLBACKS} rollbacks "
                                 "that each halved the learning rate; try a lower --lr or smaller loss weights")
        self.trainer.restore(self.last_good)
        self.trainer.lr_scale = self.last_good["lr_scale"] * 0.5**self.rollbacks
        if self.saved_step != self.trainer.step:
            self.saved_step = None  # a checkpoint the clock placed after the rollback point: of the road not taken
        if self.outputs is not None:
            self.outputs.rewind(self.trainer.step)
        self.report(MessageEvent(f"the loss was not finite at step {failed}: rolled back to step "
                                 f"{self.trainer.step} and lowered the learning rate to {self._lr():.3g}", "warning"))

    def _resume(self) -> None:
        path = self.paths.checkpoint
        if not path.exists():  # a restart loop passes --resume whether or not the run got that far
            self.report(MessageEvent(f"{path}: no checkpoint yet (the run before stopped ahead of its first "
                                     "one); starting from step 0", "warning"))
            return
        saved = load_checkpoint(path)
        check_resumable(saved, self.config, self.inputs.style_info["sha256"], path)
        check_state(saved, self.trainer.model, path, self.trainer.optimizer)
        self.trainer.restore(saved)
        self.saved_step = saved["step"]
        self.skipped.update(saved["skipped"])
        self.elapsed_before = saved["elapsed"]
        self.report(MessageEvent(f"resuming {path} at step {saved['step']}"))
        if saved["world_size"] != self.procs.world_size:
            self.report(MessageEvent(f"{path} was made by {saved['world_size']} processes, this run has "
                                     f"{self.procs.world_size}: the photo order differs from then on", "warning"))

    def after_interrupt(self) -> str:
        """What an interrupted run leaves, said in a few words for the CLI's one line; an empty
        metrics log it began is removed, so that nothing claims the output."""
        checkpoint, metrics = self.paths.checkpoint, self.paths.metrics
        if self.wrote_model:
            return (f"wrote a checkpoint at step {self.saved_step} to {checkpoint} and the model so far to "
                    f"{self.paths.model}; --resume continues from it")
        if self.saved_step is not None:
            return f"the checkpoint at step {self.saved_step} is in {checkpoint}; --resume continues from it"
        if checkpoint.exists():
            return f"{checkpoint} is as it was; --resume continues from it"
        if _holds_something(metrics):
            return f"no checkpoint was written, only the metrics log {metrics}; --resume starts again from step 0"
        if self.procs.is_main:
            with contextlib.suppress(OSError):
                metrics.unlink()
        return "no step had finished: nothing was written"

    def _announce(self) -> None:
        config, procs = self.config, self.procs
        share = f"{config.batch_size}×{procs.world_size} processes" if procs.world_size > 1 else config.batch_size
        paintings = self.inputs.paintings
        also = "" if paintings is None else (
            f" and {len(paintings)} paintings from {self.inputs.style_info['paintings']}")
        self.report(MessageEvent(f"training on {len(self.dataset)} photos from {config.data}{also}: {self.total} "
                                 f"steps of batch {share}, {self.per_epoch} steps per epoch, on {procs.device}"))

    def _is_painting(self, path: str) -> bool:
        return path in self.painting_files

    def _note_skipped(self, skipped: Skipped) -> None:
        for path, reason in skipped.items():
            if path not in self.skipped:
                self.skipped[path] = reason
                what = "painting" if self._is_painting(path) else "photo"
                self.report(MessageEvent(f"skipping an unreadable {what}: {reason}", "warning"))

    def _finish(self, stopped: bool) -> Path:
        """The final checkpoint and the model file; only weights that passed the NaN checks get here.

        An interrupted run ends here too: its model so far is usable (`apply` shows how far it got),
        and `--resume` replaces it with the finished one."""
        if self.saved_step != self.trainer.step:
            self._checkpoint()
        if self.outputs is not None:
            save_model(self.trainer.model, self.paths.model, style=self.inputs.style_info,
                       training={**self.config.to_dict(), "precision_used": precision_name(self.trainer.autocast)},
                       steps=self.trainer.step)
        self.wrote_model = True
        if self.outputs is not None:
            paintings = sum(self._is_painting(path) for path in self.skipped)
            if len(self.skipped) > paintings:
                self.report(MessageEvent(f"skipped {len(self.skipped) - paintings} unreadable photos in "
                                         f"{self.config.data}", "warning"))
            if paintings:
                self.report(MessageEvent(f"skipped {paintings} unreadable paintings in "
                                         f"{self.inputs.style_info['paintings']}", "warning"))
            self.report(DoneEvent(self.trainer.step, self._elapsed(), self.losses,
                                  self.trainer.encoder.weights_description, stopped,
                                  precision_name(self.trainer.autocast)))
        self.procs.barrier()
        return self.paths.model
