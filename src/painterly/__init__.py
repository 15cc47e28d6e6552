"""painterly: neural style transfer (Gatys et al. 2015; Johnson et al. 2016) on PyTorch.

The public API is imported lazily, so `import painterly` stays cheap and the
parts that need no torch (reading images, ONNX Runtime) can run without it.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_EXPORTS = {
    "keep_freed_memory": "allocator",
    "load_image": "images",
    "save_image": "images",
    "read_settings": "images",
    "stylize": "optimize",
    "stylize_files": "pipeline",
    "stylize_and_save": "pipeline",
    "settings_for": "pipeline",
    "StylizeConfig": "config",
    "TrainConfig": "config",
    "ApplyConfig": "config",
    "train": "training",
    "FastStylizer": "fast",
    "Painting": "fast",
    "StyleStatistics": "style_stats",
    "blend_statistics": "style_stats",
    "read_mask": "regions",
    "load_mask": "regions",
    "auto_mask": "regions",
    "write_mask": "regions",
    "AutoMask": "region_models",
    "apply_files": "apply",
    "stylize_video": "video",
    "export_onnx": "export",
    "load_model": "modelfile",
    "save_model": "modelfile",
    "VGGFeatures": "features",
    "PerceptualLoss": "losses",
    "PainterlyError": "errors",
    "StopRequested": "events",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'painterly' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
