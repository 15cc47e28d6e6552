"""The `stroke-scale` workload's rows (issue 13): which jobs run, and the SSIM target against them.

Planning and verdicts only, in the parent process; the measurements are `benchmarks.stroke_jobs`'s,
in worker processes.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from .suite import Plan, Row

WORKLOAD = "stroke-scale"
TARGET = 0.8  # issue 13: SSIM of the large output, downscaled, against the preview, with the option
UNPLANNED = "not in this plan (a random VGG alone takes seconds to build); the quick and full plans run it"


def stroke_rows(plan: Plan, run: Callable[..., dict], scratch: Path, pairs: str | None = None) -> list[Row]:
    """Preview, large without and large with the option, for each fast engine and for Gatys.
    `pairs`: a folder the compare jobs also write the preview and the downscaled outputs to."""
    preview, large = plan.stroke_sizes
    photos = run("stroke-photos", folder=str(scratch), sizes=[preview, large])
    if "error" in photos:
        return [Row(WORKLOAD, f"{preview} → {large} px", None, photos, timed=False)]
    models = run("stroke-models", folder=str(scratch), engines=list(plan.stroke_engines))
    rows = []
    for engine in plan.stroke_engines:
        if "error" in models:
            rows.append(Row(WORKLOAD, f"{preview} → {large} px", None, models, variant=engine, timed=False))
            continue
        tag = engine.replace(" ", "-")
        outputs = {name: str(scratch / f"stroke-{tag}-{name}.npy") for name in ("preview", "without", "with")}
        results = {
            "preview": run("stroke-fast", model=models[engine], photo=photos["photos"][str(preview)],
                           output=outputs["preview"]),
            "without": run("stroke-fast", model=models[engine], photo=photos["photos"][str(large)],
                           output=outputs["without"]),
            "with": run("stroke-fast", model=models[engine], photo=photos["photos"][str(large)],
                        output=outputs["with"], stroke_size=preview),
        }
        labels = {"preview": f"{engine}, preview", "without": f"{engine}, without",
                  "with": f"{engine}, --stroke-size {preview}"}
        rows += _rows(run, results, outputs, labels, f"{preview} → {large} px", pairs and f"{pairs}/{tag}")
    return rows + _gatys_rows(plan, run, scratch, pairs)


def _gatys_rows(plan: Plan, run: Callable[..., dict], scratch: Path, pairs: str | None) -> list[Row]:
    """Gatys at the preview's size and at the large one, the painting scaled with the output (the
    default) and held at the preview's pixels."""
    preview, large = plan.stroke_gatys_sizes
    size = f"{preview} → {large} px"
    if not plan.stroke_gatys_steps:
        return [Row(WORKLOAD, size, None, {"skipped": UNPLANNED}, variant="gatys", timed=False)]
    steps, final = plan.stroke_gatys_steps, plan.stroke_gatys_final_steps
    held = preview / large
    outputs = {name: str(scratch / f"stroke-gatys-{name}.npy") for name in ("preview", "with", "without")}
    results = {
        "preview": run("stroke-gatys", size=preview, steps=steps, coarse_steps=steps, style_scale=1.0,
                       output=outputs["preview"]),
        "with": run("stroke-gatys", size=large, steps=final, coarse_steps=steps, style_scale=1.0,
                    output=outputs["with"]),
        "without": run("stroke-gatys", size=large, steps=final, coarse_steps=steps, style_scale=held,
                       output=outputs["without"]),
    }
    labels = {"preview": "gatys, preview", "with": "gatys, --style-scale 1",
              "without": f"gatys, --style-scale {held:g}"}
    return _rows(run, results, outputs, labels, size, pairs and f"{pairs}/gatys")


def _rows(run: Callable[..., dict], results: dict[str, dict], outputs: dict[str, str], labels: dict[str, str],
          size: str, pairs: str | None) -> list[Row]:
    """The three rows of one engine: SSIMs from one compare job, the target's verdict and the option's cost."""
    ready = {name: outputs[name] for name in ("without", "with") if "error" not in results[name]}
    scores: dict = {}
    if "error" not in results["preview"] and ready:
        compared = run("stroke-compare", preview=outputs["preview"], outputs=ready, pairs=pairs)
        scores = compared.get("ssim", {})
        if "error" in compared:  # each compared row says why it has no SSIM
            results = {**results, **{name: {**results[name], "error": compared["error"]} for name in ready}}
    rows = []
    for name in ("preview", "without", "with"):
        result = {**results[name], **({"ssim": scores[name]} if name in scores else {})}
        note = _note(result, results["without"]) if name == "with" else _how(result)
        rows.append(Row(WORKLOAD, size, None, result, variant=labels[name], note=note, timed=False))
    return rows


def _how(result: dict) -> str:
    """The run's CPU time, and how a Gatys run went (its scales and steps)."""
    cpu = f"{result['cpu_seconds']:.1f} CPU-s" if "cpu_seconds" in result else ""
    if "scales" not in result:
        return cpu
    scales = " → ".join(str(side) for side in result["scales"])
    return (f"{cpu + '; ' if cpu else ''}scales {scales} px, {result['coarse_steps']} L-BFGS steps "
            f"at each coarser scale, {result['steps']} at the last; style image {result['style_scale']:g} × each size")


def _note(result: dict, without: dict) -> str:
    """Issue 13's target for the option's row, and what it costs against the row without it."""
    if "ssim" not in result:
        return ""
    value = result["ssim"]["luminance"]
    parts = [f"target SSIM ≥ {TARGET:g} (luminance {value:.3f}, colour {result['ssim']['colour']:.3f}): "
             f"{'met' if min(value, result['ssim']['colour']) >= TARGET else 'MISSED'}"]
    if "seconds" in without and "seconds" in result:
        memory = (f" and peak memory {result['peak_rss'] / without['peak_rss']:.2f}×"
                  if "peak_rss" in result and "peak_rss" in without else "")
        parts.append(f"time {result['seconds'] / without['seconds']:.2f}×{memory} the run without")
    how = _how(result)
    return "; ".join(parts + ([how] if how else []))
