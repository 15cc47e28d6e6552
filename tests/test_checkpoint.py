"""Checkpoints are trusted no more than a stranger's file: checksum, every field, shapes, the output boundary.

The checkpoint is a real one, written by a two-step training run (tiny photos, random VGG weights);
each test damages a copy of it in one way and expects one line naming the file.
"""

from __future__ import annotations

import copy
import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from helpers import run_limited
from painterly import checkpoint
from painterly.checkpoint import check_state, load_checkpoint, save_checkpoint
from painterly.config import TrainConfig
from painterly.errors import PainterlyError
from painterly.training import train
from painterly.transformer import TransformerNet


def _config(data: Path, **changes) -> TrainConfig:
    base = {"data": str(data), "size": 32, "batch_size": 2, "steps": 2, "lr": 1e-3, "vgg_weights": "random",
            "arch": "light", "device": "cpu", "content_layers": ("relu2_2",), "style_layers": ("relu1_2",),
            "checkpoint_every": 2, "log_every": 1, "workers": 0}
    return TrainConfig(**{**base, **changes})


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> tuple[Path, Path]:
    """A finished two-step run: (its style image, its checkpoint)."""
    root = tmp_path_factory.mktemp("run")
    rng = np.random.default_rng(0)
    (root / "photos").mkdir()
    for index in range(4):
        Image.fromarray((rng.random((36, 40, 3)) * 255).astype(np.uint8)).save(root / "photos" / f"p{index}.png")
    Image.fromarray((rng.random((32, 32, 3)) * 255).astype(np.uint8)).save(root / "style.png")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        train(root / "style.png", _config(root / "photos"), root / "model.safetensors")
    finally:
        torch.set_num_threads(threads)
    return root / "style.png", root / "model.safetensors.ckpt"


@pytest.fixture
def saved(run) -> dict:
    """A fresh copy of the real checkpoint's contents, to damage."""
    return torch.load(run[1], map_location="cpu", weights_only=True)


def one_line(excinfo: pytest.ExceptionInfo, path: Path, *words: str) -> str:
    message = str(excinfo.value)
    assert "\n" not in message and message.startswith(f"{path}: "), message
    for word in words:
        assert word in message, message
    return message


def _model() -> TransformerNet:
    return TransformerNet("light")


def _optimizer(model: TransformerNet) -> torch.optim.Adam:
    return torch.optim.Adam(model.parameters(), lr=1e-3)


# --- the real checkpoint -------------------------------------------------------------------------------


def test_a_real_checkpoint_carries_a_checksum_and_passes_every_check(run):
    state = load_checkpoint(run[1])
    assert state["step"] == 2 and len(state[checkpoint.CHECKSUM_FIELD]) == 64
    model = _model()
    check_state(state, model, run[1], _optimizer(model))


def test_save_then_load_keeps_every_value(tmp_path, saved):
    path = tmp_path / "again.ckpt"
    save_checkpoint(path, saved)
    again = load_checkpoint(path)
    assert again[checkpoint.CHECKSUM_FIELD] == saved[checkpoint.CHECKSUM_FIELD]  # the same tensors, the same sum
    assert again["rng"]["python"] == saved["rng"]["python"] and again["config"] == saved["config"]
    assert all(torch.equal(again["model"][key], value) for key, value in saved["model"].items())


def test_a_checkpoint_from_before_checksums_still_loads(tmp_path, saved):
    del saved[checkpoint.CHECKSUM_FIELD]
    torch.save(saved, tmp_path / "old.ckpt")
    assert load_checkpoint(tmp_path / "old.ckpt")["step"] == 2


def test_a_checkpoint_from_before_a_setting_existed_resumes_at_its_default(tmp_path, run, saved):
    """Settings added later (channels_last, compile, checkpoint_minutes) were their defaults in the older
    run: not a change."""
    style, _ = run
    for name in ("channels_last", "compile", "checkpoint_minutes"):
        del saved["config"][name]
    del saved[checkpoint.CHECKSUM_FIELD]  # as a checkpoint of that time had none
    torch.save(saved, tmp_path / "model.safetensors.ckpt")
    output = tmp_path / "model.safetensors"
    train(style, _config(style.parent / "photos", steps=3), output, resume=True)
    assert load_checkpoint(tmp_path / "model.safetensors.ckpt")["step"] == 3
    with pytest.raises(PainterlyError, match="different channels_last"):
        checkpoint.check_resumable(saved, _config(style.parent / "photos", channels_last=True),
                                   saved["style_sha256"], tmp_path / "model.safetensors.ckpt")


def test_bookkeeping_settings_may_change_on_resume_and_nothing_else(run, saved):
    """How often checkpoints come (by steps or by minutes) changes nothing a step computes."""
    path = run[1]
    config = _config(run[0].parent / "photos")
    checkpoint.check_resumable(saved, config.replace(checkpoint_every=7, checkpoint_minutes=0.5, steps=9),
                               saved["style_sha256"], path)
    with pytest.raises(PainterlyError, match="different seed; resume with the same settings"):
        checkpoint.check_resumable(saved, config.replace(seed=1), saved["style_sha256"], path)


# --- damage --------------------------------------------------------------------------------------------


def _flip_a_weight_byte(source: Path, target: Path, saved: dict) -> None:
    """Flip one bit inside the stored bytes of conv1's weights; torch.load reads the file as before."""
    data = bytearray(source.read_bytes())
    needle = saved["model"]["conv1.conv2d.weight"].contiguous().view(torch.uint8).numpy().tobytes()[:64]
    at = data.find(needle)
    assert at > 0 and data.find(needle, at + 1) == -1
    data[at + 10] ^= 0x10
    target.write_bytes(bytes(data))


def test_flipped_tensor_bytes_are_refused(tmp_path, run, saved):
    damaged = tmp_path / "damaged.ckpt"
    _flip_a_weight_byte(run[1], damaged, saved)
    silently = torch.load(damaged, map_location="cpu", weights_only=True)  # what resuming used to read
    assert not torch.equal(silently["model"]["conv1.conv2d.weight"], saved["model"]["conv1.conv2d.weight"])
    with pytest.raises(PainterlyError) as excinfo:
        load_checkpoint(damaged)
    one_line(excinfo, damaged, "do not match its checksum")


def test_resuming_from_flipped_bytes_stops_with_one_line(tmp_path, run, saved):
    """The issue's case: `train --resume` from damaged weights used to continue silently."""
    style, ckpt = run
    output = tmp_path / "model.safetensors"
    _flip_a_weight_byte(ckpt, tmp_path / "model.safetensors.ckpt", saved)
    with pytest.raises(PainterlyError) as excinfo:
        train(style, _config(style.parent / "photos", steps=4), output, resume=True)
    one_line(excinfo, tmp_path / "model.safetensors.ckpt", "do not match its checksum")
    assert not output.exists()


@pytest.mark.parametrize("content, words", [
    (b"step: 2\nthis is a text file\n", "not a PyTorch training checkpoint file"),
    (b"", "empty file"),
    (b"PK\x03\x04 a zip header and nothing else", "truncated or corrupt"),
])
def test_a_file_that_is_not_a_checkpoint_is_one_line(tmp_path, content, words):
    path = tmp_path / "x.ckpt"
    path.write_bytes(content)
    with pytest.raises(PainterlyError) as excinfo:
        load_checkpoint(path)
    one_line(excinfo, path, words)


def test_other_pickles_are_one_line(tmp_path):
    for name, content in [("list.ckpt", [1, 2]), ("other.ckpt", {"format": "something-else"})]:
        torch.save(content, tmp_path / name)
        with pytest.raises(PainterlyError) as excinfo:
            load_checkpoint(tmp_path / name)
        one_line(excinfo, tmp_path / name, "not a painterly training checkpoint")


def test_missing_keys_are_named(tmp_path, saved):
    del saved["step"], saved["rng"]
    save_checkpoint(tmp_path / "partial.ckpt", saved)
    with pytest.raises(PainterlyError) as excinfo:
        load_checkpoint(tmp_path / "partial.ckpt")
    one_line(excinfo, tmp_path / "partial.ckpt", "incomplete training checkpoint: no step, rng")


BAD_FIELDS = {  # each written with a valid checksum, so the field check is what refuses it
    "step as text": (lambda s: s.update(step="2"), "'step' must be a whole number"),
    "negative step": (lambda s: s.update(step=-1), "'step' must be a whole number"),
    "boolean step": (lambda s: s.update(step=True), "'step' must be a whole number"),
    "NaN lr_scale": (lambda s: s.update(lr_scale=math.nan), "'lr_scale' must be a finite positive number"),
    "model a list": (lambda s: s.update(model=[torch.zeros(1)]), "'model' must be a state dict of tensors"),
    "model with a number": (lambda s: s["model"].update(extra=1.0), "'model' must be a state dict"),
    "optimizer without state": (lambda s: s["optimizer"].pop("state"), "'optimizer' must be an optimiser state"),
    "optimizer group params text": (lambda s: s["optimizer"]["param_groups"][0].update(params="all"),
                                    "'optimizer' must be"),
    "optimizer moment for no parameter": (lambda s: s["optimizer"]["state"].update({999: {}}), "'optimizer' must"),
    "scaler text": (lambda s: s.update(scaler="fp16"), "'scaler' must be None or"),
    "config a list": (lambda s: s.update(config=[1]), "'config' must be the training settings"),
    "style hash a number": (lambda s: s.update(style_sha256=5), "'style_sha256' must be a SHA-256"),
    "world size 0": (lambda s: s.update(world_size=0), "'world_size' must be a whole number, 1 or more"),
    "elapsed infinite": (lambda s: s.update(elapsed=math.inf), "'elapsed' must be a finite number"),
    "skipped a list": (lambda s: s.update(skipped=["a.png"]), "'skipped' must be a record"),
    "rng without numpy": (lambda s: s["rng"].pop("numpy"), "'rng' must be the random generators"),
}


@pytest.mark.parametrize("case", BAD_FIELDS)
def test_every_field_is_checked_before_use(tmp_path, saved, case):
    damage, words = BAD_FIELDS[case]
    damage(saved)
    path = tmp_path / "bad.ckpt"
    save_checkpoint(path, saved)
    with pytest.raises(PainterlyError) as excinfo:
        load_checkpoint(path)
    one_line(excinfo, path, words)


BAD_RNG = {
    "torch state too short": (lambda r: r.update(torch=r["torch"][:100]), "torch: 100 bytes, expected"),
    "torch state of floats": (lambda r: r.update(torch=r["torch"].float()), "torch: not a byte tensor"),
    "python state of another version": (lambda r: r.update(python=(2, *r["python"][1:])), "python: not a version-3"),
    "python state cut short": (lambda r: r.update(python=(3, r["python"][1][:10], None)), "python: not a version-3"),
    "python gauss text": (lambda r: r.update(python=(3, r["python"][1], "x")), "python: not a version-3"),
    "numpy keys cut short": (lambda r: r["numpy"].update(keys=r["numpy"]["keys"][:5]), "numpy: keys must be 624"),
    "numpy keys negative": (lambda r: r["numpy"]["keys"].__setitem__(0, -1), "numpy: keys out of the 32-bit"),
    "numpy position past the end": (lambda r: r["numpy"].update(position=9999), "numpy: position"),
    "cuda state text": (lambda r: r.update(cuda="state"), "cuda: not a byte tensor"),
}


@pytest.mark.parametrize("case", BAD_RNG)
def test_a_bad_rng_state_is_one_line(tmp_path, saved, case):
    damage, words = BAD_RNG[case]
    damage(saved["rng"])
    path = tmp_path / "rng.ckpt"
    save_checkpoint(path, saved)
    with pytest.raises(PainterlyError) as excinfo:
        load_checkpoint(path)
    one_line(excinfo, path, "random generator state is damaged", words)


# --- shapes, where the checkpoint is restored ----------------------------------------------------------


def test_a_wrong_weight_shape_is_caught_before_restoring(tmp_path, run, saved):
    saved["model"]["conv1.conv2d.weight"] = torch.zeros(16, 3, 9, 9)
    path = tmp_path / "model.safetensors.ckpt"
    save_checkpoint(path, saved)
    state = load_checkpoint(path)  # the fields are all well formed
    model = _model()
    with pytest.raises(PainterlyError) as excinfo:
        check_state(state, model, path, _optimizer(model))
    one_line(excinfo, path, "conv1.conv2d.weight has shape (16, 3, 9, 9), this network's (16, 3, 5, 5)")

    style = run[0]  # and through `train --resume`, where H-train's restore calls check_state
    with pytest.raises(PainterlyError) as excinfo:
        train(style, _config(style.parent / "photos", steps=4), tmp_path / "model.safetensors", resume=True)
    one_line(excinfo, path, "conv1.conv2d.weight has shape")


def test_missing_and_foreign_weights_are_named(tmp_path, saved):
    standard = copy.deepcopy(saved)
    standard["model"] = dict(TransformerNet("standard").state_dict())
    model = _model()
    with pytest.raises(PainterlyError) as excinfo:
        check_state(standard, model, tmp_path / "x.ckpt")
    one_line(excinfo, tmp_path / "x.ckpt", "not this network", "'res3.")

    del saved["model"]["in1.bias"]
    with pytest.raises(PainterlyError) as excinfo:
        check_state(saved, model, tmp_path / "x.ckpt")
    one_line(excinfo, tmp_path / "x.ckpt", "no 'in1.bias'")


def test_optimiser_moments_of_the_wrong_shape_are_caught(tmp_path, saved):
    saved["optimizer"]["state"][0]["exp_avg"] = torch.zeros(3)
    model = _model()
    with pytest.raises(PainterlyError) as excinfo:
        check_state(saved, model, tmp_path / "x.ckpt", _optimizer(model))
    one_line(excinfo, tmp_path / "x.ckpt", "optimiser exp_avg of parameter 0 has shape (3,)")


def test_optimiser_settings_of_the_wrong_kind_are_caught(tmp_path, saved):
    saved["optimizer"]["param_groups"][0]["betas"] = "fast"
    model = _model()
    with pytest.raises(PainterlyError) as excinfo:
        check_state(saved, model, tmp_path / "x.ckpt", _optimizer(model))
    one_line(excinfo, tmp_path / "x.ckpt", "optimiser setting 'betas'")


# --- the output boundary -------------------------------------------------------------------------------


@pytest.mark.skipif(os.name != "posix", reason="RLIMIT_FSIZE")
def test_a_full_disk_keeps_the_previous_checkpoint(tmp_path, run):
    """torch.save reported a full disk as RuntimeError("unexpected pos …"); now it is one OutputError line."""
    path = tmp_path / "model.safetensors.ckpt"
    path.write_bytes(run[1].read_bytes())
    before = path.read_bytes()
    result = run_limited(f"""
        from pathlib import Path
        from painterly.checkpoint import load_checkpoint, save_checkpoint
        from painterly.errors import OutputError
        state = load_checkpoint(Path({str(path)!r}))
        state["step"] = 4
        try:
            save_checkpoint(Path({str(path)!r}), state)
        except OutputError as error:
            print(error)
    """, limit=len(before) // 2)
    assert result.stdout == f"{path}: cannot write (File too large)\n", result.stderr
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == [path.name]
