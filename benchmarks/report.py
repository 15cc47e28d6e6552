"""The report: one table of reference against painterly, the machine's ceiling, notes; the same as JSON."""

from __future__ import annotations

from .suite import Row

HEADER = ("workload", "size", "reference", "painterly", "speed-up", "peak RSS ref", "peak RSS painterly",
          "% fp32 peak ref", "% fp32 peak painterly")
# Rows of these workloads measure stability, not time against a reference: a table of their own.
STABILITY_WORKLOADS = ("video-temporal",)
STABILITY_HEADER = ("workload", "clip", "warping error", "input's", "ghosting", "fidelity", "frames/s", "peak RSS")
# Rows of these measure how alike a large output and its preview look (issue 13): a table of their own too.
LIKENESS_WORKLOADS = ("stroke-scale",)
LIKENESS_HEADER = ("workload", "sizes", "SSIM luminance", "SSIM colour", "time", "peak RSS")


def document(rows: list[Row], machine: dict, mode: str, images: str) -> dict:
    """Everything measured, with the derived numbers the table shows, for `--json`."""
    return {"mode": mode, "machine": machine, "images": images,
            "rows": [summarise(row, machine.get("fp32_gflops")) for row in rows]}


def summarise(row: Row, peak_gflops: float | None) -> dict:
    """A row with its speed-up (reference time / painterly time) and each side's share of the fp32 matmul peak."""
    reference, painterly = _seconds(row, row.reference), _seconds(row, row.painterly)
    return {
        "workload": row.workload, "variant": row.variant, "size": row.size, "timed": row.timed, "note": row.note,
        "reference": row.reference, "painterly": row.painterly,
        "speedup": reference / painterly if reference and painterly else None,
        "share_of_fp32_peak": {"reference": _share(row, row.reference, peak_gflops),
                               "painterly": _share(row, row.painterly, peak_gflops)},
    }


def _seconds(row: Row, result: dict | None) -> float | None:
    return (result or {}).get("seconds") if row.timed else None


def _share(row: Row, result: dict | None, peak_gflops: float | None) -> float | None:
    """Conv FLOPs per second as a fraction of the matmul peak; None where nothing was timed or counted."""
    seconds, flops = _seconds(row, result), (result or {}).get("flops")
    if not (seconds and flops and peak_gflops):
        return None
    return flops / seconds / 1e9 / peak_gflops


def text(summary: dict) -> str:
    """The table, preceded by what it was measured on and followed by the rows' notes and errors."""
    machine = summary["machine"]
    lines = [f"painterly benchmarks ({summary['mode']}); times are medians per step or call unless noted",
             _machine_line(machine), f"images: {summary['images']}", ""]
    timed = [row for row in summary["rows"] if row["workload"] not in STABILITY_WORKLOADS + LIKENESS_WORKLOADS]
    stability = [row for row in summary["rows"] if row["workload"] in STABILITY_WORKLOADS]
    likeness = [row for row in summary["rows"] if row["workload"] in LIKENESS_WORKLOADS]
    if timed or not (stability or likeness):
        lines += _aligned([HEADER] + [_cells(row) for row in timed])
    if stability:
        lines += ([""] if timed else []) + ["stability: mean absolute differences in 8-bit levels; warping error "
                                            "along the true motion, the input's own beside it"]
        lines += _aligned([STABILITY_HEADER] + [_stability_cells(row) for row in stability])
    if likeness:
        lines += ([""] if timed or stability else []) + [
            "likeness: SSIM of the large output, downscaled to the preview's size, against the preview (Gaussian "
            "window; colour: the mean over R, G, B); time and peak RSS of that run"]
        lines += _aligned([LIKENESS_HEADER] + [_likeness_cells(row) for row in likeness])
    notes = [note for row in summary["rows"] for note in _notes(row)]
    if notes:
        lines += ["", "notes:"] + [f"  {note}" for note in notes]
    return "\n".join(lines)


def _machine_line(machine: dict) -> str:
    if "error" in machine:
        return f"machine: not measured ({machine['error']}); no share of peak"
    return (f"machine: {machine['cpu']}, {machine['cores']} cores, torch {machine['torch']}, "
            f"torch threads: {machine['torch_threads']}; torch.mm {machine['matmul_size']}²: "
            f"fp32 {machine['fp32_gflops']:.0f} GFLOP/s, "
            f"bf16 {machine['bf16_gflops']:.0f} GFLOP/s{_bf16_size(machine)}; "
            f"the worker measuring this (torch loaded) peaked at {_memory(machine)}")


def _bf16_size(machine: dict) -> str:
    size = machine.get("bf16_matmul_size", machine["matmul_size"])
    return "" if size == machine["matmul_size"] else f" (emulated, timed at {size}²)"


def _name(row: dict) -> str:
    return f"{row['workload']} ({row['variant']})" if row["variant"] else row["workload"]


def _cells(row: dict) -> tuple[str, ...]:
    shares = row["share_of_fp32_peak"]
    return (_name(row), row["size"], _time(row["reference"], row), _time(row["painterly"], row),
            _times(row["speedup"]) if row["speedup"] else "—",
            _memory(row["reference"]), _memory(row["painterly"]),
            _percent(shares["reference"]), _percent(shares["painterly"]))


def _stability_cells(row: dict) -> tuple[str, ...]:
    result = row["painterly"] or {}
    if "error" in result or "skipped" in result:
        return (_name(row), row["size"], "failed" if "error" in result else "skipped", "", "", "", "", "")

    def level(key: str) -> str:
        value = result.get(key)
        return "—" if value is None else f"{value:.2f}"

    rate = result.get("frames_per_s")
    return (_name(row), row["size"], level("warping_error"), level("input_warping_error"), level("ghosting"),
            level("fidelity"), f"{rate:.3g}" if rate else "—", _memory(result))


def _likeness_cells(row: dict) -> tuple[str, ...]:
    result = row["painterly"] or {}
    if "error" in result or "skipped" in result:
        return (_name(row), row["size"], "failed" if "error" in result else "skipped", "", "", "")
    scores = result.get("ssim", {})
    seconds = result.get("seconds")
    shown = "—" if seconds is None else f"{seconds:.0f} s" if seconds >= 100 else f"{seconds:.3g} s"
    values = (f"{scores[key]:.3f}" if key in scores else "—" for key in ("luminance", "colour"))
    return (_name(row), row["size"], *values, shown, _memory(result))


def _time(result: dict | None, row: dict) -> str:
    if result is None:
        return "—"
    if "error" in result:
        return "failed"
    if "skipped" in result:
        return "skipped"
    if result.get("reached") is False:
        return "not reached"
    seconds = result.get("seconds") if row["timed"] else None
    if seconds is None:
        return "—"
    return f"{seconds:.0f} s" if seconds >= 100 else f"{seconds:.3g} s"


def _memory(result: dict | None) -> str:
    if not result or "peak_rss" not in result:
        return "—"
    size = result["peak_rss"]
    return f"{size / 2**30:.2f} GiB" if size >= 2**30 else f"{size / 2**20:.0f} MiB"


def _percent(share: float | None) -> str:
    return f"{100 * share:.0f} %" if share is not None else "—"


def _notes(row: dict) -> list[str]:
    """The row's note and why any side failed, each prefixed by the row it belongs to."""
    sides = (("reference", row["reference"]), ("painterly", row["painterly"]))
    errors = [f"{side} failed: {result['error']}" for side, result in sides if result and "error" in result]
    errors += [f"{side} skipped: {result['skipped']}" for side, result in sides if result and "skipped" in result]
    return [f"{_name(row)} {row['size']}: {line}" for line in ([row["note"]] if row["note"] else []) + errors]


def _aligned(table: list[tuple[str, ...]]) -> list[str]:
    """Columns padded to their widest cell; text left-aligned, numbers right-aligned."""
    widths = [max(len(cells[i]) for cells in table) for i in range(len(table[0]))]
    return ["  ".join(cell.ljust(width) if i < 2 else cell.rjust(width) for i, (cell, width) in
                      enumerate(zip(cells, widths, strict=True))).rstrip() for cells in table]


def _times(speedup: float) -> str:
    """1.5×, 12.0×; a slowdown keeps two significant figures (0.051×), where one decimal would say 0.0×."""
    return f"{speedup:.1f}×" if speedup >= 0.95 else f"{speedup:.2g}×"
