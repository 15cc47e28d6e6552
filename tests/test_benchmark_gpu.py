"""`python -m benchmarks.gpu --tiny` on the CPU: the GPU script must run end to end before it is given
scarce GPU time, with every training variant, Gatys run and flow estimator in its JSON and its table.

It runs with `--budget-s 0` (no budget, no row caps), so what runs does not depend on the machine's
speed, and the test asserts nothing about the times but that they are consistent."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

import cli_processes

ROOT = Path(__file__).resolve().parents[1]
VARIANTS = ["fp32", "bf16", "bf16+cl", "bf16+cl+compile"]
GATYS = [("lbfgs", "fp32"), ("lbfgs", "bf16"), ("adam", "fp32"), ("adam", "bf16")]


@pytest.mark.slow
def test_tiny_run_times_every_variant_and_gatys_run(tmp_path):
    out = tmp_path / "gpu.json"
    done = cli_processes.run(  # forked from the test zygote: torch is imported there once
        [sys.executable, "-m", "benchmarks.gpu", "--tiny", "--budget-s", "0", "--json", str(out)],
        cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True, timeout=300, check=False,
    )
    assert done.returncode == 0, done.stderr
    summary = json.loads(out.read_text())
    assert summary["complete"] and summary["mode"] == "tiny" and summary["machine"]["torch"]
    assert summary["budget_s"] == 0  # none

    training = summary["training"]
    assert [row["variant"] for row in training] == VARIANTS  # one batch size with --tiny
    for row in training:
        assert (row["batch"], row["size"]) == (2, 16)
        if row["variant"].endswith("+compile"):  # not compiled on a CPU: said so, not left out
            assert row["error"].startswith("skipped")
            continue
        assert "error" not in row, row
        assert row["images_per_s"] > 0 and row["timed_steps"] >= 3 and row["nonfinite_steps"] == 0
        assert row["timed_steps"] == 3  # all of them: no row cap
        assert row["images_per_s"] * row["step_s"] == pytest.approx(row["batch"])
        assert row["johnson_projection_s"] == pytest.approx(summary["targets"]["johnson_images"] / row["images_per_s"])
        assert row["peak_memory_bytes"] is None  # CUDA memory only

    gatys = summary["gatys"]
    assert [(row["optimizer"], row["precision"]) for row in gatys] == GATYS
    for row in gatys:
        assert "error" not in row, row
        assert row["complete"] and row["steps"] == row["steps_asked"] == 3 and row["size"] == 26
        assert row["wall_s"] > row["step_s"] * 3 > 0

    flows = summary["flow"]
    assert [row["flow"] for row in flows] == ["dis", "raft-small", "raft-large"]
    for row in flows:
        assert "error" not in row, row
        assert row["size"] == "64×48" and row["runs"] == 1 and row["seconds"] > 0 and row["device"] == "cpu"

    lines = done.stdout.splitlines()
    assert "torch" in lines[0] and any(line.startswith("workload") for line in lines)
    for variant in VARIANTS:
        assert any(line.split()[:2] == ["train", variant] for line in lines), variant
    assert sum(line.startswith("gatys 3") for line in lines) == len(GATYS)
    flow_lines = [line for line in lines if line.startswith("flow ")]
    assert [line.split()[1] for line in flow_lines] == ["dis", "raft-small", "raft-large"]
    assert "1× DIS's time" in flow_lines[0] and "DIS's time" in flow_lines[2]


def test_a_budget_that_is_not_a_number_of_seconds_is_refused(capsys):
    from benchmarks.gpu import main

    with pytest.raises(SystemExit) as exited:
        main(["--tiny", "--budget-s", "-1"])
    assert exited.value.code == 2
    assert "--budget-s must be 0 (no limit) or a number of seconds, got -1.0" in capsys.readouterr().err
