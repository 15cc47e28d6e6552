"""The benchmark harness (benchmarks/, beside src/) at tiny sizes: the command's JSON, each kind of
job, and the loss agreement that lets painterly's engine stand in for the reference's 300 steps.

The command runs once, for real, for the Gatys and the AdaIN rows together (one `--tiny` run of
`gatys-step` and `adain-inference`: each job is a worker process that imports torch, and the two
share the machine's measurement); test_benchmark_adain.py tests the AdaIN jobs themselves."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import cli_processes

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # `benchmarks` is a folder of the repository, not part of the installed package

from benchmarks import fast_jobs, gatys_jobs, reference, train_jobs  # noqa: E402
from benchmarks.suite import TINY, _spawn  # noqa: E402
from painterly.devices import native_bf16  # noqa: E402
from painterly.modelfile import load_model  # noqa: E402
from painterly.weights import random_state_dict  # noqa: E402


@pytest.fixture(scope="module")
def command(tmp_path_factory) -> tuple[dict, subprocess.CompletedProcess]:
    """`python -m benchmarks --tiny --only gatys-step adain-inference video-flow --json PATH`, run once: the JSON
    and the finished process."""
    out = tmp_path_factory.mktemp("bench") / "results.json"
    done = cli_processes.run(  # forked from the test zygote, where torch is imported already
        [sys.executable, "-m", "benchmarks", "--tiny", "--only", "gatys-step", "adain-inference", "video-flow",
         "--json", str(out)],
        cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True, timeout=600, check=False,
    )
    assert done.returncode == 0, done.stderr
    summary = json.loads(out.read_text())
    assert {row["workload"] for row in summary["rows"]} == {"gatys-step", "adain-inference", "video-flow"}
    return summary, done


def test_a_failed_job_is_the_last_line_of_its_workers_traceback():
    """The full runs' fresh worker per job (--tiny forks them: worker.forked, which ends its lines alike)."""
    assert _spawn('{"job": "no-such-job", "args": {}}') == {"error": "KeyError: 'no-such-job'"}


def rows_of(summary: dict, workload: str) -> list[dict]:
    return [row for row in summary["rows"] if row["workload"] == workload]


@pytest.mark.slow
def test_command_writes_times_speedup_share_and_memory(command):
    summary, done = command
    assert summary["machine"]["fp32_gflops"] > 0 and summary["machine"]["bf16_gflops"] > 0
    native = native_bf16(torch.device("cpu"))
    assert summary["machine"]["native_bf16"] is native
    rows = rows_of(summary, "gatys-step")
    assert [row["variant"] for row in rows] == ["auto", "bf16"]  # the default and the bf16 option
    for row in rows:
        assert row["workload"] == "gatys-step"
        assert row["reference"]["seconds"] > 0 and row["reference"]["peak_rss"] > 0 and row["reference"]["flops"] > 0
        assert row["share_of_fp32_peak"]["reference"] > 0
        if row["variant"] == "bf16" and not native:  # the tiny plan times bf16 only where the CPU computes it
            assert row["painterly"] == {"skipped": "this CPU only emulates bf16, and this plan times bf16 only "
                                                   "where it is native"}
            assert row["speedup"] is None and row["share_of_fp32_peak"]["painterly"] is None
            assert "gatys-step (bf16) 64 px: painterly skipped: this CPU only emulates bf16" in done.stdout
            assert any(line.split()[:3] == ["gatys-step", "(bf16)", "64"] and "skipped" in line.split()
                       for line in done.stdout.splitlines())
            continue
        assert row["painterly"]["seconds"] > 0 and row["painterly"]["peak_rss"] > 0 and row["painterly"]["flops"] > 0
        assert row["share_of_fp32_peak"]["painterly"] > 0
        assert row["speedup"] == pytest.approx(row["reference"]["seconds"] / row["painterly"]["seconds"])
        assert "frozen VGG weights" in row["note"]
    assert "speed-up" in done.stdout and "gatys-step" in done.stdout


@pytest.mark.slow
def test_command_reports_adain_rows(command):
    summary, done = command
    rows = rows_of(summary, "adain-inference")
    assert {row["variant"] for row in rows} >= {"torch", "onnx", "light-torch", "light-onnx"}
    for row in rows:
        assert row["speedup"] == pytest.approx(row["reference"]["seconds"] / row["painterly"]["seconds"])
        assert row["share_of_fp32_peak"]["reference"] > 0 and row["share_of_fp32_peak"]["painterly"] > 0
        assert row["painterly"]["peak_rss"] > 0
    assert "adain-inference (light-onnx)" in done.stdout


@pytest.mark.slow
def test_command_adain_rows_have_their_shape(command):
    """The suite's AdaIN rows at the tiny plan's size (the shape test_benchmark_adain.py's jobs make)."""
    rows = rows_of(command[0], "adain-inference")
    variants = [row["variant"] for row in rows]
    auto = rows[0]["painterly"]["precision"]
    expected = ["torch", "onnx", "light-torch", "light-onnx"]
    assert variants == (expected if auto == "fp32" else ["torch", "torch-fp32", *expected[1:]])
    reference = rows[0]["reference"]
    for row in rows:
        assert row["size"] == f"{TINY.adain_sizes[0]}²" and row["timed"]
        assert row["reference"] == reference  # one reference measurement per size, shared
        assert "error" not in row["painterly"], row["painterly"]
        assert row["painterly"]["seconds"] > 0 and row["painterly"]["flops"] > 0  # ONNX rows get the torch count
        assert row["painterly"]["matmul_gflops"] > 0  # measured in the torch worker, credited to ONNX in fp32
        assert "matmul rate" in row["note"] and "measured in its worker" in row["note"]
        assert "statistics, measured once" in row["note"]
    standard, light = rows[0]["painterly"]["flops"], rows[-1]["painterly"]["flops"]
    assert reference["flops"] > standard > light and reference["matmul_gflops"] > 0
    assert "encoding the painting again" in rows[0]["note"] and "encoding" not in rows[-1]["note"]
    for row in rows[-2:]:  # light-torch, light-onnx: each timed against the standard in one worker, interleaved
        pairs = row["painterly"]["pairs"]
        assert "error" not in pairs, pairs
        assert len(pairs["pair_ratios"]) == TINY.adain_pairs == len(pairs["light"]["samples"])
        assert pairs["standard"]["seconds"] > pairs["light"]["seconds"] > 0  # 3.3× the FLOPs, at 64² too
        assert pairs["median_ratio"] == pytest.approx(sorted(pairs["pair_ratios"])[TINY.adain_pairs // 2], rel=0.5)
        backend = row["variant"].removeprefix("light-")
        assert f"light vs standard AdaIN, {backend}, 64², 2 pairs interleaved" in row["note"]
        assert "the rows' separate workers" in row["note"]


@pytest.mark.slow
def test_command_times_each_raft_against_dis(command):
    summary, done = command
    rows = rows_of(summary, "video-flow")
    assert [row["variant"] for row in rows] == list(TINY.flow_estimators) == ["raft-small"]
    [row] = rows
    height, width = TINY.flow_size
    assert row["size"] == f"{width}×{height} pair" and row["reference"]["flow"] == "dis"
    assert row["painterly"]["flow"] == "raft-small" and row["painterly"]["runs"] == 3
    assert row["reference"]["seconds"] > 0 and row["painterly"]["seconds"] > 0
    assert row["speedup"] == pytest.approx(row["reference"]["seconds"] / row["painterly"]["seconds"])
    assert "random RAFT weights" in row["note"]
    line = next(line for line in done.stdout.splitlines() if line.startswith("video-flow (raft-small)"))
    assert f"{row['speedup']:.2g}×" in line or f"{row['speedup']:.1f}×" in line  # a slowdown is not 0.0×


@pytest.mark.parametrize("arch", ["vgg16", "vgg19"])
def test_the_references_vgg_is_the_stack_torchvision_builds(arch, one_thread):
    """The references build VGG's `features` themselves (importing torchvision costs every job seconds): the
    same modules in the same places as `torchvision.models.ARCH(weights=None).features`, so the same output."""
    import torchvision

    state = random_state_dict(arch, seed=0)
    ours = reference._vgg(arch, state)
    # What torchvision.models.vgg16/vgg19 build their `.features` with (without initialising the classifier).
    theirs = torchvision.models.vgg.make_layers(torchvision.models.vgg.cfgs[{"vgg16": "D", "vgg19": "E"}[arch]])
    theirs.load_state_dict({key.removeprefix("features."): value for key, value in state.items()})
    assert repr(ours) == repr(theirs).replace("ReLU(inplace=True)", "ReLU()")  # inplace off: features are kept
    image = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    assert torch.equal(ours(image), theirs.eval()(image))
    assert all(p.requires_grad is False for p in ours.parameters())
    assert all(p.requires_grad for p in reference._vgg(arch, state, frozen=False).parameters())


def test_gatys_losses_agree_at_step_zero_and_along_adam(one_thread):
    """Same loss definition and the same Adam: the reference's loss after N steps can be computed by painterly."""
    size, steps = 64, 4
    reference = gatys_jobs.reference(size)
    at_content = float(reference.loss(reference.content))
    theirs = [reference.step() for _ in range(steps)]
    ours = gatys_jobs.adam_target_loss(size, steps)["losses"]
    assert ours[0] == pytest.approx(at_content, rel=1e-4)
    assert ours == pytest.approx(theirs, rel=1e-4)


def test_the_textbook_reference_computes_weight_gradients_and_the_frozen_one_does_not(one_thread):
    textbook, frozen = gatys_jobs.reference(64), gatys_jobs.reference(64, frozen=True)
    assert textbook.step() == pytest.approx(frozen.step(), rel=1e-5)  # the same loss either way
    assert textbook.vgg[0].weight.grad is not None  # conv1_1: the gradient went through to the weights
    assert all(p.grad is None and not p.requires_grad for p in frozen.vgg.parameters())


def test_precision_drift_compares_whole_curves(one_thread):
    drift = gatys_jobs.precision_drift(32, steps=3, optimizer="adam")  # painterly's VGG (to relu5_1) takes 32 px
    curves = drift["curves"]
    assert set(curves) == {"fp32", "bf16", "fp32_nudged"} and all(len(curve) == 3 for curve in curves.values())
    assert curves["fp32"][0] == pytest.approx(curves["fp32_nudged"][0], rel=1e-4)  # 1e-6 barely moves the start
    gaps = [abs(b - a) / a for a, b in zip(curves["fp32"], curves["bf16"])]
    assert 0 < max(gaps) < 0.1  # bf16 did run, and stayed near
    assert drift["bf16"]["max"] == pytest.approx(max(gaps)) and drift["bf16"]["last"] == pytest.approx(gaps[-1])
    assert 1 <= drift["bf16"]["max_step"] <= 3


def test_time_to_quality_stops_at_the_target_on_the_final_scale_only(one_thread):
    easy = gatys_jobs.painterly_time_to_quality(64, steps=2, target=math.inf, cap_s=300)
    assert easy["reached"] and easy["seconds"] > 0
    assert (easy["steps"], easy["final_scale_steps"], easy["scales"]) == (2, 1, [32, 64])  # 1 coarse step
    impossible = gatys_jobs.painterly_time_to_quality(64, steps=2, target=-math.inf, cap_s=300)
    assert not impossible["reached"] and impossible["seconds"] is None
    assert (impossible["steps"], impossible["final_scale_steps"]) == (3, 2)


def test_fast_jobs_share_weights_and_time_both_backends(tmp_path, one_thread):
    models = fast_jobs.write_models(str(tmp_path), architectures=("standard",))  # the light one: the same code
    reference = fast_jobs.reference_inference(models["torch"], 64, runs=1)
    assert reference["seconds"] > 0 and reference["flops"] > 0
    for backend in ("torch", "onnx"):
        assert fast_jobs.painterly_inference(models[backend], 64, runs=1, backend=backend)["seconds"] > 0
    ours, _ = load_model(models["torch"])
    theirs = fast_jobs.reference_network(Path(models["torch"]))
    assert all(torch.equal(a, b) for a, b in zip(theirs.state_dict().values(), ours.state_dict().values(), strict=True))
    for backend in ("torch", "onnx"):
        tiled = fast_jobs.painterly_tiled(models[backend], 192, tile=96, backend=backend)
        assert tiled["seconds"] > 0 and tiled["input_bytes"] == 192 * 192 * 3 and tiled["tile"] == 96


def test_training_jobs_time_steps_and_throughput(one_thread):
    for result in (train_jobs.reference_steps(32, 2, steps=2), train_jobs.painterly_steps(32, 2, steps=3)):
        assert result["seconds"] > 0 and result["flops"] > 0 and result["images_per_s"] > 0
