"""Training-step jobs: ReferenceTrainer.step on a fixed batch, and painterly's `train()` on a folder.

Both use TrainConfig's defaults (Johnson's VGG-16 layers and weights, Adam at 1e-3, fp32 on a
CPU) and the same random VGG-16 (seed 0). painterly's step time includes loading and cropping
its batch (no loader workers by default); the reference is handed a ready tensor.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import torch

from painterly.config import TrainConfig
from painterly.events import Event, TrainStepEvent
from painterly.pixels import to_tensor
from painterly.training import train
from painterly.weights import random_state_dict

from .inputs import SEED, style_image, training_photos, write_training_data
from .measure import ConvFlops, StepClock, time_calls
from .reference import ReferenceTrainer

PHOTOS = 8  # enough for two distinct batches of 4
WARMUP_STEPS = 2  # painterly's first steps build Adam's state and start the data loader: not timed


def reference_steps(size: int, batch: int, steps: int) -> dict:
    """`steps` ReferenceTrainer steps on one batch of size×size crops; the first is a warm-up."""
    settings = TrainConfig(size=size, batch_size=batch)
    if settings.style_layers != ReferenceTrainer.LAYERS or settings.content_layers != ("relu2_2",):
        raise RuntimeError("TrainConfig's default layers changed: ReferenceTrainer no longer does the same work")
    trainer = ReferenceTrainer(random_state_dict("vgg16", seed=SEED), to_tensor(style_image(size)),
                               content_weight=settings.content_weight, style_weight=settings.style_weight,
                               tv_weight=settings.tv_weight, lr=settings.lr)
    photos = torch.cat([to_tensor(photo[:size, :size]) for photo in training_photos(batch, size)])
    with ConvFlops() as counter:
        timing = time_calls(lambda: trainer.step(photos), steps - 1, counter)
    return _with_rate(timing.summary(), batch)


def painterly_steps(size: int, batch: int, steps: int, precision: str = "auto") -> dict:
    """`train()` for `steps` steps on generated photos; per-step times from TrainStepEvent.elapsed
    after the first WARMUP_STEPS."""
    with tempfile.TemporaryDirectory() as folder:
        photos, style = write_training_data(Path(folder), PHOTOS, size)
        settings = TrainConfig(data=str(photos), size=size, batch_size=batch, steps=steps,
                               vgg_weights="random", seed=SEED, device="cpu", precision=precision)
        with ConvFlops() as counter:
            clock = StepClock(counter, skip=WARMUP_STEPS)

            def on_step(event: Event) -> None:
                if isinstance(event, TrainStepEvent):
                    clock.tick(event.elapsed)

            train(style, settings, Path(folder) / "model.safetensors", callback=on_step)
    return _with_rate(clock.timing.summary(), batch)


def _with_rate(summary: dict, batch: int) -> dict:
    """Add training throughput: images per second at the median step time."""
    seconds = summary["seconds"]
    return {**summary, "images_per_s": batch / seconds if seconds else None}
