"""The stroke-scale workload's jobs (issue 13): does a large output, downscaled, look like its preview?

Fast engines (seeded random networks, their output layer calibrated to mid-grey: `write_models`; a
Johnson TransformerNet, standard and light, and an AdaIN model painting the eval painting): the
preview is FastStylizer (torch, ApplyConfig's defaults) on the photo at the preview's long side; the
large output the same on the photo at the large long side, without and with `stroke_size` = the
preview's. Gatys: `stylize` with StylizeConfig's defaults (coarse-to-fine "auto", random VGG-19,
seed 0) at the preview's size and at the large size, with the default `style_scale` 1 (the
painting scaled with the output) and with the painting held at the preview's size in pixels
(style_scale = preview / large: strokes fixed in pixels, as a fast network's are).

Each run is a worker of its own (its time and peak memory); the photos are 8-bit .npy files written
first (as `painterly apply` reads image files), the outputs 8-bit .npy files that `compare` reads:
each large output downscaled to the preview's size (antialiased bicubic), rounded to 8 bits, and
its SSIM against the preview (benchmarks.ssim).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from painterly.config import ApplyConfig
from painterly.fast import FastStylizer
from painterly.pixels import resize_long_side, to_uint8
from painterly.strokes import downscale

from .inputs import content_image, style_image
from .ssim import colour_ssim, luminance_ssim

PAINTING_SIZE = 1024  # the painting as an AdaIN model is given it (ApplyConfig.style_size then resizes it)
ENGINES = {"johnson standard": "standard", "johnson light": "light", "adain": "adain",
           "adain light": "adain-light"}  # engine -> architecture
PROBE_SIZE = 256  # the photo's long side the output layer is calibrated on
GREY_MEAN, GREY_STD = 0.5, 0.2  # what a calibrated random network's output has on the probe, per channel


def write_models(folder: str, engines: list[str]) -> dict:
    """Seeded random networks (seed 0) as painterly model files, {engine: path}: a TransformerNet of each
    size, and the AdaIN benchmark's random models, standard and light (benchmarks.adain_jobs), painting
    the eval painting.

    A random network's raw output is not a picture (half of a TransformerNet's is below 0, the AdaIN
    decoder's near black), and SSIM between clipped or near-constant images says nothing; so, as
    tests/helpers.tiny_model does, the output layer is calibrated: an affine map per channel, folded
    into its weights, that gives the photo at PROBE_SIZE a mean of 0.5 and a std of 0.2.
    """
    import torch

    from painterly.modelfile import save_model
    from painterly.pixels import to_tensor
    from painterly.transformer import TransformerNet

    from . import adain_jobs
    from .inputs import SEED

    probe = to_tensor(content_image(PROBE_SIZE))
    files = {}
    for engine in engines:
        arch = ENGINES[engine]
        with torch.no_grad():
            if arch.startswith("adain"):
                net = adain_jobs.random_network(arch.removeprefix("adain-") if "-" in arch else "standard")
                mean, std = net.statistics(to_tensor(style_image(PROBE_SIZE)))
                last, output = net.decoder[-1], net.stylize(probe, mean, std)
            else:
                torch.manual_seed(SEED)
                net = TransformerNet(arch).eval()
                last, output = net.deconv3.conv2d, net(probe)
            _calibrate(last, output)
        path = Path(folder) / f"stroke-{arch}.safetensors"
        files[engine] = str(save_model(net, path, style={"image": f"none: random weights, seed {SEED}, output "
                                                                    "layer calibrated to mid-grey"}))
    return files


def _calibrate(layer: object, output: object) -> None:
    """Fold (y − mean)·GREY_STD/std + GREY_MEAN, per channel of `output` (1,3,H,W), into the conv `layer`."""
    import torch

    assert isinstance(layer, torch.nn.Conv2d) and isinstance(output, torch.Tensor) and layer.bias is not None
    mean, std = output.mean((0, 2, 3)), output.std((0, 2, 3))
    gain = GREY_STD / std
    layer.weight.mul_(gain.reshape(-1, 1, 1, 1))
    layer.bias.copy_((layer.bias - mean) * gain + GREY_MEAN)


def write_photos(folder: str, sizes: list[int]) -> dict:
    """The photo at each long side as an 8-bit HxWx3 .npy file: {"photos": {size: path}}. Each smaller
    one is the largest resized, so a preview is the same picture as the print (a drawn sample, when the
    eval photo is absent, is drawn once, not anew at each size)."""
    largest = content_image(max(sizes))
    photos = {}
    for size in sizes:
        path = Path(folder) / f"stroke-photo-{size}.npy"
        np.save(path, to_uint8(resize_long_side(largest, size)))
        photos[str(size)] = str(path)
    return {"photos": photos}


def fast_run(model: str, photo: str, output: str, stroke_size: int | None = None) -> dict:
    """One FastStylizer run (torch, defaults but `stroke_size`), 8-bit in and out, after a small warm-up;
    an AdaIN model paints the eval painting, measured before the clock starts."""
    stylizer = FastStylizer(model, ApplyConfig(backend="torch", device="cpu", stroke_size=stroke_size))
    if stylizer.is_arbitrary:
        stylizer = stylizer.with_styles([stylizer.style_statistics(style_image(PAINTING_SIZE))])
    image = np.load(photo)
    stylizer.stylize(image[:64, :64])  # first-call allocations and lazy set-up, out of the time
    start, cpu = time.perf_counter(), time.process_time()
    styled = stylizer.stylize(image)
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    np.save(output, styled)
    height, width = image.shape[:2]
    return {"seconds": seconds, "cpu_seconds": cpu, "precision": stylizer.precision, "height": height, "width": width,
            "tile": stylizer.tile_for(height, width) if stroke_size is None else None}


def gatys_run(size: int, steps: int, coarse_steps: int, style_scale: float, output: str) -> dict:
    """`stylize` at long side `size` (StylizeConfig's defaults: coarse-to-fine above 512 px), the output
    as an 8-bit .npy file."""
    from painterly.optimize import stylize
    from painterly.pixels import to_array

    from .gatys_jobs import config, images

    content, style = images(size)
    settings = config(size, steps, coarse_steps=coarse_steps, style_scale=style_scale)
    start, cpu = time.perf_counter(), time.process_time()
    styled = stylize(content, [style], settings)
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    np.save(output, to_uint8(to_array(styled)))
    return {"seconds": seconds, "cpu_seconds": cpu, "scales": settings.scales(), "steps": steps,
            "coarse_steps": coarse_steps, "style_scale": style_scale}


def compare(preview: str, outputs: dict[str, str], pairs: str | None = None) -> dict:
    """Each large output downscaled to the preview's size, rounded to 8 bits, and its SSIM against the
    preview: {"ssim": {name: {"luminance": …, "colour": …}}}. `pairs`: a folder to also write the
    preview and each downscaled output to as PNGs, to look at."""
    from painterly.images import save_image

    reference = np.load(preview)
    height, width = reference.shape[:2]
    if pairs:
        save_image(reference, Path(pairs) / "preview.png")
    scores = {}
    for name, path in outputs.items():
        small = to_uint8(downscale(np.load(path, mmap_mode="r"), height, width))
        scores[name] = {"luminance": luminance_ssim(reference, small), "colour": colour_ssim(reference, small)}
        if pairs:
            save_image(small, Path(pairs) / f"{name}.png")
    return {"ssim": scores}
