"""The AdaIN benchmark rows (issue 10) at tiny sizes: the reference is pytorch-AdaIN's network with
painterly's weights (same output) and the jobs time what they say. (The command's own AdaIN rows, and
their shape, are checked in test_benchmarks.py, from the one real `--tiny` run there.)"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # `benchmarks` is a folder of the repository, not part of the installed package

from benchmarks import adain_jobs  # noqa: E402
from benchmarks.suite import TINY, _adain_light_note, _adain_note  # noqa: E402
from painterly.modelfile import load_model  # noqa: E402
from painterly.pixels import to_tensor  # noqa: E402

SIZE = 64  # the reference's relu4_1 is then 8×8
MATMUL = TINY.matmul_size  # the jobs' matmul rate at the tiny plan's size (their default 2048² costs seconds)



@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """The files the suite's "adain-models" job writes (adain_jobs.write_models), made once. (The suite's
    rows made from them are checked on the real `--tiny` run's JSON in test_benchmarks.py.)"""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return adain_jobs.write_models(str(tmp_path_factory.mktemp("adain-bench")))
    finally:
        torch.set_num_threads(threads)


@pytest.mark.parametrize("alpha", [1.0, 0.4])
def test_reference_runs_the_same_network_as_painterly(models, one_thread, alpha):
    """The speed-up compares like with like: same weights, same computation, same output."""
    reference = adain_jobs.reference_network(Path(models["torch"]))
    ours, _ = load_model(models["torch"])
    photo, painting = to_tensor(adain_jobs.square_content(SIZE)), to_tensor(adain_jobs.square_painting(SIZE))
    theirs = reference.style_transfer(photo, painting, alpha)
    with torch.inference_mode():
        mean, std = ours.statistics(painting)
        mine = ours.stylize(photo, mean, std, alpha)
    assert theirs.shape == (1, 3, SIZE, SIZE)
    assert float(theirs.std()) > 0  # not a constant picture, so the comparison means something
    torch.testing.assert_close(mine, theirs, rtol=1e-5, atol=1e-6)
    other = reference.style_transfer(photo, photo.flip(-1), alpha)  # another "painting" changes the output
    assert not torch.allclose(other, theirs)


def test_reference_is_pytorch_adains_layout():
    """vgg[:31] of pytorch-AdaIN's net.vgg (ends at relu4_1, 512 channels) and its decoder's 29 modules."""
    from benchmarks.reference import ReferenceAdaIN

    net = ReferenceAdaIN()
    assert len(net.vgg) == 31 and len(net.decoder) == 29
    assert isinstance(net.vgg[-1], torch.nn.ReLU) and net.vgg[-2].out_channels == 512
    assert all(pool.ceil_mode for pool in net.vgg if isinstance(pool, torch.nn.MaxPool2d))
    assert all(p.requires_grad for p in net.vgg.parameters())  # test.py never freezes them


def test_light_model_cannot_stand_in_for_the_reference(models):
    with pytest.raises(ValueError, match="pytorch-AdaIN's network"):
        adain_jobs.reference_network(Path(models["light-torch"]))


def test_flops_count_the_photo_only(models, one_thread):
    """painterly's count is one encoder and one decoder pass per photo (the painting's statistics are
    measured once, outside the timed calls); the reference's adds the painting's encoding."""
    reference = adain_jobs.reference_inference(models["torch"], SIZE, runs=1, matmul_size=MATMUL)

    def flops(model: str, size: int) -> int:
        return adain_jobs.painterly_inference(model, size, runs=1, backend="torch", matmul_size=MATMUL)["flops"]

    standard, light = flops(models["torch"], SIZE), flops(models["light-torch"], SIZE)
    assert reference["seconds"] > 0 and reference["flops"] > standard > 3 * light > 0
    # encoder ≈ decoder in work, so the reference (two encoders, one decoder) does about 1.5× painterly's
    assert 1.4 < reference["flops"] / standard < 1.6
    assert flops(models["light-torch"], 2 * SIZE) == pytest.approx(4 * light, rel=0.01)


@pytest.mark.parametrize("variant", ["torch", "onnx", "light-torch", "light-onnx"])
def test_painterly_job_times_stylisation_with_statistics_measured_once(models, one_thread, variant):
    backend = variant.removeprefix("light-")
    result = adain_jobs.painterly_inference(models[variant], SIZE, runs=2, backend=backend, matmul_size=MATMUL)
    assert len(result["samples"]) == 2 and result["seconds"] > 0 and result["statistics_seconds"] > 0
    assert result["precision"] in ("fp32", "bf16")
    assert (result["flops"] is None) == (backend == "onnx")  # ONNX Runtime has no hooks to count with


def test_notes_judge_the_targets_at_1024_only():
    """≥ 2× the reference and ≥ 60 % of the rate for the standard network; ≥ 3× light over standard."""
    machine = {"fp32_gflops": 100.0, "bf16_gflops": 200.0}
    reference = {"seconds": 10.0, "flops": 1.5e12, "matmul_gflops": 150.0}  # 150 GFLOP/s: 100 % of its rate
    fast = {"seconds": 4.0, "flops": 1e12, "precision": "fp32", "statistics_seconds": 1.0, "matmul_gflops": 375.0}
    slow = {**fast, "seconds": 6.0, "precision": "bf16", "matmul_gflops": None}  # no rate of its own: the suite's
    met = _adain_note(1024, reference, fast, machine, standard_network=True)  # 2.5×, 250 of 375 GFLOP/s
    assert "≥ 2× the reference met" in met and "≥ 60 % of the fp32 rate met" in met
    assert "67 % of the fp32 matmul rate (375 GFLOP/s, measured in its worker" in met
    assert "1.50× that" in met and "at 100 % of the fp32 rate" in met
    missed = _adain_note(1024, reference, slow, machine, standard_network=True)  # 1.7×, 167 of 200 GFLOP/s
    assert "≥ 2× the reference MISSED" in missed and "≥ 60 % of the bf16 rate met" in missed
    assert "83 % of the bf16 matmul rate (200 GFLOP/s, measured by the suite" in missed
    assert "targets" not in _adain_note(512, reference, fast, machine, standard_network=True)
    light = _adain_note(1024, reference, fast, machine, standard_network=False)
    assert "targets" not in light and "encoding the painting" not in light
    assert _adain_note(1024, {"error": "boom"}, fast, machine, standard_network=True) == ""


def pairs(ratios: list[float]) -> dict:
    """A paired_inference result whose pairs have these ratios (standard 1 s each)."""
    light = [1 / ratio for ratio in ratios]
    return {"standard": {"seconds": 1.0, "min_seconds": 1.0}, "light": {"seconds": sorted(light)[len(light) // 2],
            "min_seconds": min(light)}, "pair_ratios": ratios, "median_ratio": sorted(ratios)[len(ratios) // 2],
            "ratio_of_minima": 1 / min(light), "cpu_ratio": 2.5, "load_average": [0.5, 1.25]}


def test_the_light_target_is_judged_on_the_interleaved_pairs_not_the_separate_rows():
    """Separate workers may meet different machine rates; the verdict is the one-worker pairs' median."""
    apart = ({"seconds": 2.0}, {"seconds": 1.0})  # the rows: 2.0×
    met = _adain_light_note(1024, "torch", *apart, pairs([3.2, 2.9, 3.05]))
    assert "3 pairs interleaved in one worker: 3.05× faster (target ≥ 3×: met), the median of 2.90–3.20×" in met
    assert "ratio of minima 3.20×, of CPU seconds 2.50×; load average 0.5 → 1.2" in met
    assert "the rows' separate workers: 2.0×" in met and "separate workers: 2.0× (" not in met
    missed = _adain_light_note(1024, "onnx", {"seconds": 4.0}, {"seconds": 1.0}, pairs([2.95, 2.9, 3.5]))
    assert "2.95× faster (target ≥ 3×: MISSED)" in missed and "separate workers: 4.0×" in missed
    assert "target" not in _adain_light_note(512, "onnx", *apart, pairs([2.0]))
    assert "target" not in _adain_light_note(1024, "onnx", *apart)  # no pairs, no verdict
    assert "pairs failed: boom" in _adain_light_note(1024, "onnx", *apart, {"error": "boom"})

