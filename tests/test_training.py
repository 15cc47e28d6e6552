"""Fast-model training on tiny photos with random VGG weights: loss, resume, rollback, torchrun, bad data,
an earlier run's files, interrupts and checkpoints by the clock."""

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

import cli_processes
from painterly import modelfile
from painterly.cli import app
from painterly.config import TrainConfig
from painterly.errors import OutputError, PainterlyError, UsageError
from painterly.events import CheckpointEvent, DoneEvent, MessageEvent, StopRequested, TrainStepEvent
from painterly.losses import PerceptualLoss
from painterly.training import Trainer, train
from painterly.weights import RANDOM_WARNING

# Sizes include photos smaller than the 32 px crop; the smallest side stays above images.MIN_SIDE.
PHOTO_SIZES = [(40, 56), (24, 30), (64, 48), (36, 36), (50, 70), (28, 40), (20, 44), (48, 32)]

# Runs in a subprocess (plain or under torchrun): train(style, output, config JSON, resume?).
CHILD = """
import json, os, sys, time
import torch
from painterly.config import TrainConfig
from painterly.training import train

torch.set_num_threads(1)
style, output, config, resume = sys.argv[1:5]
delay = float(os.environ.get("SLOW_STEP", "0"))
hold = os.environ.get("HOLD_AFTER_STEP_1")  # a path: after step 1, create PATH.holding and wait for PATH
rank = os.environ.get("RANK", "0")
if os.environ.get("PID_DIR"):  # for a test that signals one process of a torchrun job
    with open(os.path.join(os.environ["PID_DIR"], f"rank{rank}.pid"), "w") as pid:
        pid.write(str(os.getpid()))

if os.environ.get("NAN_ON_RANK") == rank:  # this process's first loss is NaN
    from painterly.losses import PerceptualLoss
    original, calls = PerceptualLoss.from_features, []

    def first_call_nan(self, *args):
        terms = original(self, *args)
        calls.append(1)
        if len(calls) == 1:
            terms.total = terms.total * float("nan")
        return terms

    PerceptualLoss.from_features = first_call_nan

def callback(event):
    with open(f"{output}.events-rank{rank}", "a") as log:
        log.write(f"{type(event).__name__} {getattr(event, 'text', '')}\\n")
    if type(event).__name__ == "TrainStepEvent":
        time.sleep(delay)
        if hold and event.step == 1:
            open(hold + ".holding", "w").close()
            deadline = time.monotonic() + 300
            while not os.path.exists(hold) and time.monotonic() < deadline:
                time.sleep(0.02)

train(style, TrainConfig(**json.loads(config)), output, callback=callback, resume=resume == "resume")
"""


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py: one torch thread for every test here


def _smooth_image(rng, height, width):
    coarse = (rng.random((4, 4, 3)) * 255).astype(np.uint8)
    return Image.fromarray(coarse).resize((width, height), Image.Resampling.BICUBIC)


def _write_photos(parent):
    rng = np.random.default_rng(0)
    data = parent / "photos"
    (data / "sub").mkdir(parents=True)
    for index, (height, width) in enumerate(PHOTO_SIZES):
        folder = data / "sub" if index % 3 == 0 else data
        _smooth_image(rng, height, width).save(folder / f"photo{index}.png")
    _smooth_image(rng, 48, 48).save(parent / "style.png")
    return data


@pytest.fixture
def photos(tmp_path):
    """A folder of small photos, some in a subfolder, and a style image beside it."""
    return _write_photos(tmp_path)


def _config(data, **changes):
    base = {"data": str(data), "size": 32, "batch_size": 2, "steps": 8, "lr": 1e-3, "vgg_weights": "random",
            "arch": "light", "device": "cpu", "content_layers": ("relu2_2",), "style_layers": ("relu1_2", "relu2_2"),
            "checkpoint_every": 4, "log_every": 1, "checkpoint_minutes": 0}  # no checkpoint by the clock
    return TrainConfig(**{**base, **changes})


def _train(data, output, resume=False, **changes):
    events = []
    train(data.parent / "style.png", _config(data, **changes), output, callback=events.append, resume=resume)
    return events


def _metrics(output):
    return [json.loads(line) for line in output.with_name(output.name + ".metrics.jsonl").read_text().splitlines()]


def _assert_same_weights(a, b):
    model_a, _ = modelfile.load_model(a)
    model_b, _ = modelfile.load_model(b)
    state_a, state_b = model_a.state_dict(), model_b.state_dict()
    assert state_a.keys() == state_b.keys()
    for key in state_a:
        assert torch.equal(state_a[key], state_b[key]), key


def _child(tmp_path):
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    return script


def _env(**extra):
    return {**os.environ, "OMP_NUM_THREADS": "1", **extra}


def _child_args(script, data, output, config, resume=False):
    return [str(script), str(data.parent / "style.png"), str(output), json.dumps(config.to_dict()),
            "resume" if resume else "fresh"]


def test_a_short_run_lowers_the_loss_and_writes_a_model_with_its_settings(photos, tmp_path, unchosen_random_weights):
    output = tmp_path / "out" / "starry.safetensors"
    config = _config(photos, steps=24, checkpoint_every=12, preview_every=12, vgg_weights=None)
    events = []
    assert train(tmp_path / "style.png", config, output, callback=events.append) == output

    losses = [record["losses"]["total"] for record in _metrics(output)]
    assert [record["step"] for record in _metrics(output)] == list(range(1, 25))
    assert np.mean(losses[-3:]) < 0.5 * np.mean(losses[:3])
    steps = [e for e in events if isinstance(e, TrainStepEvent)]
    assert [e.step for e in steps] == list(range(1, 25)) and steps[-1].total_steps == 24
    assert steps[-1].epochs == 6 and steps[-1].epoch == 6 and steps[-1].images_per_s > 0
    assert [e.step for e in events if isinstance(e, CheckpointEvent)] == [12, 24]
    assert any(isinstance(e, MessageEvent) and e.level == "warning" and "random" in e.text for e in events)
    assert isinstance(events[-1], DoneEvent) and events[-1].steps == 24

    model, metadata = modelfile.load_model(output)
    assert metadata["steps"] == 24
    used = "fp32"  # what precision "auto" resolves to for training on a CPU
    assert metadata["training"] == {**json.loads(json.dumps(config.to_dict())), "precision_used": used}
    assert events[-1].precision == used
    assert metadata["style"]["sha256"] == hashlib.sha256((tmp_path / "style.png").read_bytes()).hexdigest()
    assert all(torch.isfinite(p).all() for p in model.parameters())
    previews = sorted(p.name for p in (output.parent / "starry.safetensors.previews").iterdir())
    assert previews == [f"step{step:06d}_{i}.png" for step in (12, 24) for i in range(4)]
    assert max(Image.open(output.parent / "starry.safetensors.previews" / previews[0]).size) <= 256
    assert (output.parent / "starry.safetensors.ckpt").is_file()


def test_resuming_gives_the_weights_of_an_uninterrupted_run(photos, tmp_path):
    _train(photos, tmp_path / "straight.safetensors", steps=8, checkpoint_every=2)
    _train(photos, tmp_path / "resumed.safetensors", steps=4, checkpoint_every=2)
    # Loader workers decode in other processes: the batches must not change.
    events = _train(photos, tmp_path / "resumed.safetensors", resume=True, steps=8, checkpoint_every=2, workers=1)

    _assert_same_weights(tmp_path / "straight.safetensors", tmp_path / "resumed.safetensors")
    assert any(isinstance(e, MessageEvent) and "at step 4" in e.text for e in events)
    assert [e.step for e in events if isinstance(e, TrainStepEvent)] == [5, 6, 7, 8]
    assert [r["step"] for r in _metrics(tmp_path / "resumed.safetensors")] == list(range(1, 9))


def test_a_run_killed_with_sigkill_resumes_to_identical_weights(photos, tmp_path):
    script = _child(tmp_path)
    config = _config(photos, steps=8, checkpoint_every=2)
    reference, killed = tmp_path / "reference.safetensors", tmp_path / "killed.safetensors"
    checkpoint = tmp_path / "killed.safetensors.ckpt"
    victim = cli_processes.Popen([sys.executable, *_child_args(script, photos, killed, config)],
                                 env=_env(SLOW_STEP="0.3"))
    deadline = time.monotonic() + 120
    while not checkpoint.exists() and victim.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.15)  # land somewhere inside a later step
    assert victim.poll() is None, "the run ended before it could be killed"
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    assert not killed.exists()
    assert torch.load(checkpoint, weights_only=True)["step"] in (2, 4, 6)

    # The resumed run and the uninterrupted one need no process of their own: they run here.
    _train(photos, killed, resume=True, steps=8, checkpoint_every=2)
    _train(photos, reference, steps=8, checkpoint_every=2)
    _assert_same_weights(reference, killed)
    assert [r["step"] for r in _metrics(killed)] == list(range(1, 9))


def _nan_at_calls(monkeypatch, *bad_calls):
    """Make the loss NaN at the given calls (1-based) of PerceptualLoss.from_features."""
    original = PerceptualLoss.from_features
    calls = []

    def flaky(self, image, feats, content=None):
        terms = original(self, image, feats, content)
        calls.append(1)
        if len(calls) in bad_calls:
            terms.total = terms.total * float("nan")
        return terms

    monkeypatch.setattr(PerceptualLoss, "from_features", flaky)


def test_a_non_finite_loss_rolls_back_and_halves_the_learning_rate(photos, tmp_path, monkeypatch):
    _nan_at_calls(monkeypatch, 3)
    output = tmp_path / "rolled.safetensors"
    events = _train(photos, output, steps=6, checkpoint_every=2)

    warnings = [e.text for e in events if isinstance(e, MessageEvent) and "not finite" in e.text]
    assert len(warnings) == 1
    assert "step 3" in warnings[0] and "rolled back to step 2" in warnings[0] and "0.0005" in warnings[0]
    model, metadata = modelfile.load_model(output)
    assert metadata["steps"] == 6
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert [r["lr"] for r in _metrics(output)] == [1e-3, 1e-3, 5e-4, 5e-4, 5e-4, 5e-4]


def test_rollbacks_replay_from_an_unchanged_state(photos, tmp_path, monkeypatch):
    other = tmp_path / "other.safetensors"
    _train(photos, other, steps=4, checkpoint_every=4)
    # Step 6 fails, then (after step 5 has run again) fails again: back to step 4 twice, lr / 4.
    _nan_at_calls(monkeypatch, 6, 8)
    twice = tmp_path / "twice.safetensors"
    _train(photos, twice, steps=8, checkpoint_every=4)
    # The same end by another road: resume at step 4 and fail twice at once, nothing run in between.
    monkeypatch.undo()
    _nan_at_calls(monkeypatch, 1, 2)
    _train(photos, other, resume=True, steps=8, checkpoint_every=4)
    _assert_same_weights(twice, other)
    assert [r["step"] for r in _metrics(twice)] == list(range(1, 9))  # rolled-back steps are not logged twice
    assert [r["lr"] for r in _metrics(twice)][4:] == [2.5e-4] * 4


def test_a_loss_that_stays_non_finite_gives_up_without_writing_a_model(photos, tmp_path, monkeypatch):
    _nan_at_calls(monkeypatch, *range(1, 10))
    with pytest.raises(PainterlyError, match="not finite at step 1 even after 5 rollbacks"):
        _train(photos, tmp_path / "never.safetensors", steps=4)
    assert not (tmp_path / "never.safetensors").exists()


def test_a_callback_can_stop_early_and_keep_a_model(photos, tmp_path):
    def stop_at_three(event):
        if isinstance(event, TrainStepEvent) and event.step == 3:
            raise StopRequested

    output = tmp_path / "stopped.safetensors"
    train(photos.parent / "style.png", _config(photos, steps=8), output, callback=stop_at_three)
    assert modelfile.read_metadata(output)["steps"] == 3
    assert torch.load(tmp_path / "stopped.safetensors.ckpt", weights_only=True)["step"] == 3


def _bad_files(folder):
    Image.new("RGB", (40, 40), (200, 30, 30)).save(folder / "a_truncated.jpg", quality=95)
    data = (folder / "a_truncated.jpg").read_bytes()
    (folder / "a_truncated.jpg").write_bytes(data[: len(data) // 2])
    (folder / "b_text.jpg").write_text("not an image\n")
    (folder / "c_empty.png").write_bytes(b"")


def test_unreadable_photos_are_skipped_and_counted(photos, tmp_path):
    _bad_files(photos)
    # One epoch (11 files // batch 2 = 5 steps) draws every file at least once.
    events = _train(photos, tmp_path / "skip.safetensors", steps=None, epochs=1)
    warnings = [e.text for e in events if isinstance(e, MessageEvent) and e.level == "warning"]
    assert sum("skipping an unreadable photo" in text for text in warnings) == 3
    assert any(f"skipped 3 unreadable photos in {photos}" in text for text in warnings)
    assert modelfile.read_metadata(tmp_path / "skip.safetensors")["steps"] == 5


def test_a_folder_without_readable_photos_fails_before_training(tmp_path):
    data = tmp_path / "bad"
    data.mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "style.png")
    with pytest.raises(PainterlyError, match="no image files found"):
        _train(data, tmp_path / "x.safetensors")
    _bad_files(data)
    with pytest.raises(PainterlyError, match=f"{data}: none of its 3 image files can be read"):
        _train(data, tmp_path / "x.safetensors")
    assert not any(p.name.startswith("x.") for p in tmp_path.iterdir())


def test_user_errors_are_named_before_training(photos, tmp_path):
    style = tmp_path / "style.png"
    with pytest.raises(PainterlyError, match=r"x\.pth: name the model NAME\.safetensors"):
        train(style, _config(photos), tmp_path / "x.pth")
    with pytest.raises(PainterlyError, match="missing.png"):
        train(tmp_path / "missing.png", _config(photos), tmp_path / "x.safetensors")
    # (--resume without a checkpoint is no longer an error: see test_resume_before_the_first_checkpoint_...)
    with pytest.raises(PainterlyError, match="no training photos given"):
        train(style, _config(""), tmp_path / "x.safetensors")


def test_the_cosine_schedule_logs_the_rate_each_step_used(photos, tmp_path):
    output = tmp_path / "cosine.safetensors"
    _train(photos, output, steps=3, lr_schedule="cosine")
    assert [r["lr"] for r in _metrics(output)] == pytest.approx([1e-3, 0.505e-3, 1e-5])


def test_bf16_autocast_trains_on_the_cpu_and_fp16_is_refused_there(photos, tmp_path):
    output = tmp_path / "bf16.safetensors"
    _train(photos, output, steps=2, precision="bf16")
    model, _ = modelfile.load_model(output)
    assert all(p.dtype == torch.float32 and torch.isfinite(p).all() for p in model.parameters())
    with pytest.raises(UsageError, match="fp16 needs a CUDA GPU"):
        _train(photos, tmp_path / "fp16.safetensors", steps=2, precision="fp16")


def test_resume_refuses_a_checkpoint_made_with_other_settings(photos, tmp_path):
    output = tmp_path / "m.safetensors"
    _train(photos, output, steps=2, checkpoint_every=2)
    with pytest.raises(PainterlyError, match="different batch_size, lr; resume with the same settings"):
        _train(photos, output, resume=True, steps=4, lr=2e-3, batch_size=4)


def _wait_for(path, process, seconds=240):
    """Until `path` exists; the process must still be running meanwhile."""
    deadline = time.monotonic() + seconds
    while not path.exists():
        assert process.poll() is None, "the run ended early"
        assert time.monotonic() < deadline, f"no {path} after {seconds} s"
        time.sleep(0.02)


def _cli_train(photos, output, *args):
    """`painterly train` in a subprocess with _config's settings."""
    return [sys.executable, "-m", "painterly", "train", str(photos.parent / "style.png"), "--data", str(photos),
            "-o", str(output), "--size", "32", "--batch-size", "2", "--arch", "light", "--vgg-weights", "random",
            "--device", "cpu", "--content-layers", "relu2_2", "--style-layers", "relu1_2,relu2_2", "--quiet", *args]


def _cli_train_here(photos, output, *args):
    """`painterly train` as _cli_train runs it, but in this process (the Typer app, as the console script runs
    it): for runs whose messages and files are checked, where no real process is needed."""
    return CliRunner().invoke(app, _cli_train(photos, output, *args)[3:])


@pytest.mark.slow
def test_a_second_run_into_the_same_output_is_refused_while_the_first_holds_it(photos, tmp_path):
    script, output, go = _child(tmp_path), tmp_path / "shared.safetensors", tmp_path / "go"
    lock = tmp_path / "shared.safetensors.lock"
    config = _config(photos, steps=4, checkpoint_every=2)
    first = cli_processes.Popen([sys.executable, *_child_args(script, photos, output, config)],
                                env=_env(HOLD_AFTER_STEP_1=str(go)))
    try:
        _wait_for(tmp_path / "go.holding", first)  # the first run is training, holding the lock
        second = _cli_train_here(photos, output, "--steps", "2")
    finally:
        go.touch()
    assert first.wait(timeout=240) == 0
    assert second.exit_code == 1, second.output
    assert second.stderr.splitlines() == [
        f"painterly: error: {lock}: another training run (process {first.pid}) holds this lock on {output}; "
        "wait for it to end, or train into another --output"]
    # Everything beside the model is the first run's alone, and the lock went with it.
    assert [r["step"] for r in _metrics(output)] == [1, 2, 3, 4]
    assert modelfile.read_metadata(output)["steps"] == 4
    assert not lock.exists()


def test_resume_before_the_first_checkpoint_starts_from_step_0(photos, tmp_path, unchosen_random_weights):
    """A restart loop passes --resume every time, also after a run killed before its first checkpoint."""
    script, output, go = _child(tmp_path), tmp_path / "preempted.safetensors", tmp_path / "go"
    config = _config(photos, steps=3, checkpoint_every=100, vgg_weights=None)
    victim = cli_processes.Popen([sys.executable, *_child_args(script, photos, output, config)],
                                 env=_env(HOLD_AFTER_STEP_1=str(go)))
    try:
        _wait_for(tmp_path / "go.holding", victim)
    finally:
        victim.send_signal(signal.SIGKILL)
        victim.wait()
    checkpoint = tmp_path / "preempted.safetensors.ckpt"
    assert not checkpoint.exists() and [r["step"] for r in _metrics(output)] == [1]
    assert (tmp_path / "preempted.safetensors.lock").exists()  # left by kill -9: it must not block the resume

    events = _train(photos, output, resume=True, steps=3, checkpoint_every=100, vgg_weights=None)
    messages = [(e.level, e.text) for e in events if isinstance(e, MessageEvent)]
    assert ("warning", f"{checkpoint}: no checkpoint yet (the run before stopped ahead of its first one); "
                       "starting from step 0") in messages
    assert [text for _, text in messages].count(RANDOM_WARNING) == 1  # one builder, one warning
    assert [e.step for e in events if isinstance(e, TrainStepEvent)] == [1, 2, 3]
    assert [r["step"] for r in _metrics(output)] == [1, 2, 3]  # the dead run's line is not kept twice
    _train(photos, tmp_path / "straight.safetensors", steps=3, checkpoint_every=100, vgg_weights=None)
    _assert_same_weights(tmp_path / "straight.safetensors", output)


FULL_DISK = [
    # A metrics line is about 250 bytes: the third one does not fit.
    (["--log-every", "1"], ".metrics.jsonl"),
    (["--log-every", "100", "--checkpoint-every", "2"], ".ckpt"),
    (["--log-every", "100", "--preview-every", "1"], ".previews/step000001_0.png"),
]

# `painterly train ARGS` for each ARGS in turn, through the console script's entry point, in one process
# (one start of Python and torch for all of them); each run's stderr ends with a line giving its exit status.
TRAIN_IN_TURN = """
import json, sys
from painterly.cli import main

for args in json.loads(sys.argv[1]):
    try:
        main(args)
        status = 0
    except SystemExit as exited:
        status = 0 if exited.code is None else exited.code
    print(f"exit status {status}", file=sys.stderr, flush=True)
"""


@pytest.fixture(scope="module")
def full_disk_runs(tmp_path_factory):
    """For each of FULL_DISK: (its folder, the run's exit status, its stderr lines) of `painterly train` in a
    process where no file may grow past 600 bytes, each run beside its own photos."""
    folders = [tmp_path_factory.mktemp("full-disk") for _ in FULL_DISK]
    runs = [_cli_train(_write_photos(folder), folder / "full.safetensors", "--steps", "6", *options)[3:]
            for folder, (options, _) in zip(folders, FULL_DISK, strict=True)]
    done = cli_processes.run([sys.executable, "-c", TRAIN_IN_TURN, json.dumps([[str(a) for a in run] for run in runs])],
                             env=_env(), capture_output=True, text=True, timeout=240, file_size_limit=600)
    assert done.returncode == 0, done.stderr
    results, lines = [], []
    for line in done.stderr.splitlines():
        if line.startswith("exit status "):
            results.append((folders[len(results)], int(line.removeprefix("exit status ")), lines))
            lines = []
        else:
            lines.append(line)
    assert len(results) == len(FULL_DISK), done.stderr
    return results


@pytest.mark.parametrize("options,failing", FULL_DISK)
def test_an_output_that_cannot_be_written_stops_training_with_one_line_and_no_model(options, failing,
                                                                                   full_disk_runs):
    folder, status, stderr = full_disk_runs[FULL_DISK.index((options, failing))]
    output = folder / "full.safetensors"
    assert status == 1, stderr
    lines = [line for line in stderr if "painterly: warning:" not in line]
    assert lines == [f"painterly: error: {output}{failing}: cannot write (File too large)"]
    assert not output.exists()
    left = sorted(p.name for p in folder.iterdir() if p.name != "photos" and p.name != "style.png")
    assert left == [] or left == ["full.safetensors.metrics.jsonl"], left  # no checkpoint, lock or temporary


def test_channels_last_trains_the_same_network_and_compile_needs_a_gpu(photos, tmp_path):
    plain, last = tmp_path / "plain.safetensors", tmp_path / "last.safetensors"
    _train(photos, plain, steps=2)
    _train(photos, last, steps=2, channels_last=True)
    assert modelfile.read_metadata(last)["training"]["channels_last"] is True
    assert modelfile.read_metadata(last)["training"]["compile"] is False
    # Other kernels, the same computation: the same losses step by step.
    for a, b in zip(_metrics(plain), _metrics(last), strict=True):
        assert a["losses"] == pytest.approx(b["losses"], rel=1e-4)
    if torch.cuda.is_available():
        return
    with pytest.raises(UsageError, match="--compile needs a CUDA GPU"):
        _train(photos, tmp_path / "compiled.safetensors", steps=2, compile=True)
    assert not any(p.name.startswith("compiled.") for p in tmp_path.iterdir())


def test_the_trainer_takes_steps_on_its_own(photos, unchosen_random_weights):
    style = torch.rand(1, 3, 32, 32)
    events = []
    trainer = Trainer(_config(photos, channels_last=True, vgg_weights=None), style, callback=events.append)
    assert [e.text for e in events] == [RANDOM_WARNING]
    assert trainer.model.conv1.conv2d.weight.is_contiguous(memory_format=torch.channels_last)
    assert trainer.encoder.channels_last
    batch = torch.rand(2, 3, 32, 32)
    first = trainer.train_step(batch)
    second = trainer.train_step(batch)
    assert trainer.step == 2 and set(first) == {"total", "content", "style", "tv"}
    assert second["total"] < first["total"]
    assert trainer.optimizer.param_groups[0]["lr"] == 1e-3  # config.lr when none is given


def test_every_network_size_the_config_offers_exists():
    from painterly.config import NET_ARCHS
    from painterly.transformer import ARCHITECTURES

    assert tuple(ARCHITECTURES) == NET_ARCHS


# --- an earlier run's files ---------------------------------------------------------------------------


def _beside(output, suffix):
    return output.with_name(output.name + suffix)


def _previews(output):
    return sorted(path.name for path in _beside(output, ".previews").iterdir())


def test_an_earlier_run_is_refused_unless_resumed_or_overwritten(photos, tmp_path):
    """A second `train -o SAME` used to replace the model and checkpoint (step 110 became step 5), truncate
    the metrics log and leave the old previews among the new ones."""
    output = tmp_path / "m.safetensors"
    checkpoint = _beside(output, ".ckpt")
    _train(photos, output, steps=4, checkpoint_every=2, preview_every=2)
    files = [output, checkpoint, _beside(output, ".metrics.jsonl"), *_beside(output, ".previews").iterdir()]
    before = {path: path.read_bytes() for path in files}
    listing = sorted(tmp_path.rglob("*"))

    refused = _cli_train_here(photos, output, "--steps", "2")
    assert refused.exit_code == 1, refused.output
    assert refused.stderr.splitlines() == [
        f"painterly: error: {output}: an earlier run's model, checkpoint, metrics log and previews are here; "
        "--resume continues that run, --overwrite deletes them and starts again"]
    assert {path: path.read_bytes() for path in files} == before  # nothing touched, nothing added, no lock left
    assert sorted(tmp_path.rglob("*")) == listing

    events = _train(photos, output, resume=True, steps=6, checkpoint_every=2, preview_every=2)
    assert [e.step for e in events if isinstance(e, TrainStepEvent)] == [5, 6]
    assert [r["step"] for r in _metrics(output)] == list(range(1, 7))
    assert _previews(output) == [f"step{step:06d}_{i}.png" for step in (2, 4, 6) for i in range(4)]

    overwritten = _cli_train_here(photos, output, "--steps", "1", "--overwrite", "--preview-every", "1",
                                  "--log-every", "1")
    assert overwritten.exit_code == 0, overwritten.output
    assert modelfile.read_metadata(output)["steps"] == 1
    assert torch.load(checkpoint, weights_only=True)["step"] == 1
    assert [r["step"] for r in _metrics(output)] == [1]
    assert _previews(output) == [f"step000001_{i}.png" for i in range(4)]  # this run's previews only

    with pytest.raises(UsageError, match="give one of them"):
        train(photos.parent / "style.png", _config(photos), output, resume=True, overwrite=True)
    model = output.read_bytes()
    checkpoint.unlink()  # a finished model whose checkpoint was deleted to save space
    with pytest.raises(OutputError, match=f"{output}: has no checkpoint m.safetensors.ckpt to resume from; "
                                          "--overwrite trains it again"):
        _train(photos, output, resume=True)
    assert output.read_bytes() == model


def test_an_empty_metrics_log_is_no_earlier_run(photos, tmp_path):
    """What a run killed before its first step leaves holds no work: the next run may start."""
    output = tmp_path / "empty.safetensors"
    _beside(output, ".metrics.jsonl").write_text("")
    _beside(output, ".previews").mkdir()
    _train(photos, output, steps=1)
    assert [r["step"] for r in _metrics(output)] == [1]


# --- interrupts -----------------------------------------------------------------------------------------


def test_ctrl_c_finishes_the_step_writes_a_checkpoint_and_the_model_and_resumes_exactly(photos, tmp_path):
    output, straight = tmp_path / "interrupted.safetensors", tmp_path / "straight.safetensors"
    checkpoint = _beside(output, ".ckpt")
    handler, events = signal.getsignal(signal.SIGINT), []

    def ctrl_c_in_step_2(event):
        events.append(event)
        if isinstance(event, TrainStepEvent) and event.step == 2:
            signal.raise_signal(signal.SIGINT)  # held: the step goes on to its end
            events.append("after the signal")

    with pytest.raises(KeyboardInterrupt) as excinfo:
        train(photos.parent / "style.png", _config(photos, steps=5, checkpoint_every=100), output,
              callback=ctrl_c_in_step_2)
    assert excinfo.value.__notes__ == [f"wrote a checkpoint at step 2 to {checkpoint} and the model so far to "
                                       f"{output}; --resume continues from it"]
    assert "after the signal" in events
    assert [e.step for e in events if isinstance(e, TrainStepEvent)] == [1, 2]
    assert [e.step for e in events if isinstance(e, CheckpointEvent)] == [2]
    assert ("SIGINT received: stopping after this step, with a checkpoint and the model so far (Ctrl-C again "
            "stops at once)" in [e.text for e in events if isinstance(e, MessageEvent)])
    assert signal.getsignal(signal.SIGINT) is handler  # put back
    assert torch.load(checkpoint, weights_only=True)["step"] == 2
    assert modelfile.read_metadata(output)["steps"] == 2  # a usable model so far
    assert [r["step"] for r in _metrics(output)] == [1, 2]
    assert not _beside(output, ".lock").exists()

    events = _train(photos, output, resume=True, steps=5, checkpoint_every=100)
    assert [e.step for e in events if isinstance(e, TrainStepEvent)] == [3, 4, 5]
    _train(photos, straight, steps=5, checkpoint_every=100)
    _assert_same_weights(straight, output)
    assert [r["step"] for r in _metrics(output)] == list(range(1, 6))


def test_a_second_ctrl_c_stops_at_once_and_keeps_the_last_checkpoint(photos, tmp_path):
    output = tmp_path / "impatient.safetensors"

    def ctrl_c_twice_in_step_2(event):
        if isinstance(event, TrainStepEvent) and event.step == 2:
            signal.raise_signal(signal.SIGINT)
            signal.raise_signal(signal.SIGINT)
            raise AssertionError("the second Ctrl-C did not stop the run")

    with pytest.raises(KeyboardInterrupt) as excinfo:
        train(photos.parent / "style.png", _config(photos, steps=5, checkpoint_every=1), output,
              callback=ctrl_c_twice_in_step_2)
    checkpoint = _beside(output, ".ckpt")
    assert excinfo.value.__notes__ == [f"the checkpoint at step 1 is in {checkpoint}; --resume continues from it"]
    assert torch.load(checkpoint, weights_only=True)["step"] == 1
    assert not output.exists()


def test_an_interrupt_before_any_step_finished_says_nothing_was_written(photos, tmp_path, monkeypatch):
    def ctrl_c_at(text):
        def callback(event):
            if isinstance(event, MessageEvent) and text in event.text:
                signal.raise_signal(signal.SIGINT)
        return callback

    # While the networks are built: not held, it stops at once.
    with pytest.raises(KeyboardInterrupt) as excinfo:
        train(photos.parent / "style.png", _config(photos), tmp_path / "early.safetensors",
              callback=ctrl_c_at("training on"))
    assert excinfo.value.__notes__ == ["no step had finished: nothing was written"]
    # After step 1 failed and rolled back: held, but there is no step to keep, nor the empty log begun.
    _nan_at_calls(monkeypatch, 1)
    with pytest.raises(KeyboardInterrupt) as excinfo:
        train(photos.parent / "style.png", _config(photos), tmp_path / "early.safetensors",
              callback=ctrl_c_at("not finite"))
    assert excinfo.value.__notes__ == ["no step had finished: nothing was written"]
    assert not any(path.name.startswith("early.") for path in tmp_path.iterdir())


# `painterly train` in a real process that waits, after step 1, until the test's signal has been held.
PAUSING_TRAIN = """
import sys, time
from pathlib import Path
from painterly import events, training
from painterly.cli import main

marker, original = Path(sys.argv[1]), training.train

def pausing_train(*args, callback, **kwargs):
    held = []

    def pausing(event):
        callback(event)
        if isinstance(event, events.MessageEvent) and "stopping after this step" in event.text:
            held.append(event)
        if isinstance(event, events.TrainStepEvent) and event.step == 1:
            marker.write_text("paused")
            deadline = time.monotonic() + 300
            while not held and time.monotonic() < deadline:
                time.sleep(0.02)

    return original(*args, callback=pausing, **kwargs)

training.train = pausing_train
main(sys.argv[2:])
"""


@pytest.mark.slow
def test_sigint_and_sigterm_write_a_checkpoint_say_where_and_resume_exactly(photos, tmp_path):
    """Ctrl-C or a scheduler's SIGTERM before the first checkpoint (500 steps, ≈25 minutes on a CPU) lost
    everything, and the message said "nothing was written" though the metrics log was."""
    args = ("--steps", "4", "--checkpoint-every", "100", "--log-every", "1")
    reference = tmp_path / "reference.safetensors"
    outputs = []
    for signum, code, word in ((signal.SIGINT, 130, "interrupted"), (signal.SIGTERM, 143, "terminated")):
        output, marker = tmp_path / f"{word}.safetensors", tmp_path / f"{word}.paused"
        checkpoint = _beside(output, ".ckpt")
        command = [sys.executable, "-c", PAUSING_TRAIN, str(marker), *_cli_train(photos, output, *args)[3:]]
        victim = cli_processes.Popen(command, env=_env(), stderr=subprocess.PIPE, text=True)
        try:
            _wait_for(marker, victim)
            victim.send_signal(signum)
            _, stderr = victim.communicate(timeout=240)
        finally:
            if victim.poll() is None:
                victim.kill()
        assert victim.returncode == code, stderr
        assert [line for line in stderr.splitlines() if "painterly: warning:" not in line] == [
            f"painterly: error: {word}; wrote a checkpoint at step 1 to {checkpoint} and the model so far to "
            f"{output}; --resume continues from it"]
        assert torch.load(checkpoint, weights_only=True)["step"] == 1
        assert modelfile.read_metadata(output)["steps"] == 1
        assert [r["step"] for r in _metrics(output)] == [1]
        assert not _beside(output, ".lock").exists()

        resumed = _cli_train_here(photos, output, *args, "--resume")  # the resume needs no process of its own
        assert resumed.exit_code == 0, resumed.output
        assert [r["step"] for r in _metrics(output)] == [1, 2, 3, 4]
        outputs.append(output)
    straight = _cli_train_here(photos, reference, *args)
    assert straight.exit_code == 0, straight.output
    for output in outputs:
        _assert_same_weights(reference, output)


@pytest.mark.slow
def test_under_torchrun_a_signal_to_one_process_stops_them_all_and_the_resumed_run_rolls_back_together(photos,
                                                                                                      tmp_path):
    """Two processes under torchrun: a SIGINT to one stops both at one step with one checkpoint; resumed (each
    start of a torchrun job costs seconds, so the stopped run is the one resumed) with the first loss NaN on
    rank 1 only, both roll back together, and one model is written."""
    script, output, go = _child(tmp_path), tmp_path / "ddp.safetensors", tmp_path / "go"
    config = _config(photos, steps=6, checkpoint_every=100)
    # A real torchrun: its launcher and its two worker processes are forked from the test zygote (torch imported once).
    torchrun = [*cli_processes.TORCHRUN, "--standalone", "--nproc-per-node", "2"]
    job = cli_processes.Popen([*torchrun, *_child_args(script, photos, output, config)],
                              env=_env(HOLD_AFTER_STEP_1=str(go), PID_DIR=str(tmp_path)),
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for(tmp_path / "go.holding", job)  # rank 0 waits after step 1; rank 1 waits for rank 0
        os.kill(int((tmp_path / "rank1.pid").read_text()), signal.SIGINT)
        go.touch()
        _, stderr = job.communicate(timeout=240)  # a process left training alone would hang here
    finally:
        if job.poll() is None:
            job.kill()
    assert job.returncode != 0  # both raised KeyboardInterrupt
    saved = torch.load(_beside(output, ".ckpt"), weights_only=True)
    assert saved["step"] in (1, 2) and saved["world_size"] == 2  # rank 1 held it after step 1's exchange or before
    assert modelfile.read_metadata(output)["steps"] == saved["step"]
    assert [r["step"] for r in _metrics(output)] == list(range(1, saved["step"] + 1))

    stopped = saved["step"]  # the resumed run's first step fails on rank 1 only: both go back to this one
    config = _config(photos, steps=4, checkpoint_every=100)
    cli_processes.run([*torchrun, *_child_args(script, photos, output, config, resume=True)],
                      env=_env(NAN_ON_RANK="1"), check=True, timeout=240, capture_output=True)
    assert modelfile.read_metadata(output)["steps"] == 4
    assert torch.load(_beside(output, ".ckpt"), weights_only=True)["world_size"] == 2
    assert [(r["step"], r["lr"]) for r in _metrics(output)] == [
        (step, 1e-3 if step <= stopped else 5e-4) for step in range(1, 5)]
    events = (tmp_path / "ddp.safetensors.events-rank0").read_text()
    assert f"not finite at step {stopped + 1}: rolled back to step {stopped}" in events
    written = sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("ddp."))
    # Only rank 0 reports events and writes files.
    assert written == ["ddp.safetensors", "ddp.safetensors.ckpt", "ddp.safetensors.events-rank0",
                       "ddp.safetensors.metrics.jsonl"]
    assert "DoneEvent" in events


# --- checkpoints by the clock -------------------------------------------------------------------------


def test_a_checkpoint_comes_by_the_clock_and_resumes_exactly(photos, tmp_path):
    now, events = [0.0], []
    output, copy = tmp_path / "timed.safetensors", tmp_path / "copy.safetensors"

    def five_minutes_in_step_2(event):
        events.append(event)
        if isinstance(event, TrainStepEvent) and event.step == 2:
            now[0] += 5 * 60
        if isinstance(event, CheckpointEvent) and event.step == 2:
            shutil.copy(event.path, _beside(copy, ".ckpt"))

    train(photos.parent / "style.png", _config(photos, steps=4, checkpoint_every=100, checkpoint_minutes=5), output,
          callback=five_minutes_in_step_2, clock=lambda: now[0])
    assert [e.step for e in events if isinstance(e, CheckpointEvent)] == [2, 4]  # by the clock, then the last
    _train(photos, copy, resume=True, steps=4, checkpoint_every=100, checkpoint_minutes=5)
    _assert_same_weights(output, copy)


def test_a_checkpoint_by_the_clock_is_not_the_rollback_point(photos, tmp_path, monkeypatch):
    """A rollback returns to the schedule's checkpoint, so the weights do not depend on the machine's speed."""
    runs = {}
    for minutes in (0, 5):
        _nan_at_calls(monkeypatch, 4)  # step 4 fails once
        now, events = [0.0], []

        def later_in_step_3(event, now=now, events=events):
            events.append(event)
            if isinstance(event, TrainStepEvent) and event.step == 3 and not now[0]:
                now[0] += 5 * 60

        output = tmp_path / f"minutes{minutes}.safetensors"
        train(photos.parent / "style.png", _config(photos, steps=6, checkpoint_every=2, checkpoint_minutes=minutes),
              output, callback=later_in_step_3, clock=lambda now=now: now[0])
        monkeypatch.undo()
        runs[minutes] = output
        assert any(isinstance(e, MessageEvent) and "rolled back to step 2" in e.text for e in events)
        expected = [2, 3, 4, 6] if minutes else [2, 4, 6]
        assert [e.step for e in events if isinstance(e, CheckpointEvent)] == expected
    _assert_same_weights(runs[0], runs[5])


def test_checkpoint_minutes_must_be_zero_or_more():
    assert TrainConfig(checkpoint_minutes=0).checkpoint_minutes == 0
    for bad in (-1, float("nan"), float("inf"), True):
        with pytest.raises(UsageError, match="checkpoint_minutes must be 0"):
            TrainConfig(checkpoint_minutes=bad)
