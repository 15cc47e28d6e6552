"""AdaIN jobs (issue 10): one photo and one painting of the same size, run by `ReferenceAdaIN`
(pytorch-AdaIN's test.py), by painterly's torch backend and by its ONNX Runtime backend.

The models are random (seed 0), as the other fast rows: the VGG-19 prefix from
`weights.random_state_dict("vgg19", seed=0)`, its 1×1 input conv the ImageNet normalisation
(what the published encoder's first layer does), and a decoder as PyTorch initialises it after
`torch.manual_seed(0)`. Both painterly architectures use the published encoder layout (reflection
padding, ceil-mode pooling), so the standard model is exactly the network the reference runs,
weight for weight (tests/test_benchmark_adain.py checks their outputs agree).

painterly measures the painting's statistics once, as every photo after the first finds them
(and `painterly apply` on a folder, a clip, the web UI do); the reference encodes the painting
again for every photo, as test.py does. torch is imported only inside the jobs that need it, so
the ONNX worker's peak memory is that of ONNX Runtime alone.
"""

from __future__ import annotations

import dataclasses
import os
import statistics
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from painterly.config import ApplyConfig
from painterly.fast import FastStylizer
from painterly.pixels import resize_to

from .inputs import SEED, STYLE_FILE, square_content, style_image
from .measure import ConvFlops, time_calls

if TYPE_CHECKING:
    from .reference import ReferenceAdaIN

ARCHITECTURES = ("standard", "light")
LAYOUT = "adain"  # the published encoder's, which ReferenceAdaIN is written in
STYLE_NAME = STYLE_FILE.name if STYLE_FILE.is_file() else "painterly.samples.swirl_painting()"


def square_painting(size: int) -> np.ndarray:
    """The painting squeezed to `size`×`size`: the AdaIN rows take a photo and a painting of one size."""
    return resize_to(style_image(size), size, size)


def architecture(name: str) -> Any:
    """ADAIN_ARCHITECTURES[name] (its bottleneck and decoder width) in the benchmark's encoder layout."""
    from painterly.adain import ADAIN_ARCHITECTURES

    return dataclasses.replace(ADAIN_ARCHITECTURES[name], encoder=LAYOUT)


def random_network(name: str) -> Any:
    """A random AdaINNet (seed 0): random VGG-19 convs, the ImageNet normalisation as the 1×1 front conv."""
    import torch

    from painterly import weights
    from painterly.adain import AdaINNet, encoder_state_from_vgg

    arch = architecture(name)
    vgg = weights.random_state_dict("vgg19", seed=SEED)
    convs = encoder_state_from_vgg(vgg, dataclasses.replace(arch, encoder="torchvision"))
    std, mean = torch.tensor(weights.IMAGENET_STD), torch.tensor(weights.IMAGENET_MEAN)
    front = {"front.weight": torch.diag(1 / std).reshape(3, 3, 1, 1), "front.bias": -mean / std}
    torch.manual_seed(SEED)
    return AdaINNet(arch, encoder_state={**convs, **front}).eval()


def write_models(folder: str) -> dict:
    """The random standard and light models as painterly model files and their ONNX exports
    (`painterly export`'s, parity-checked): {"torch": …, "onnx": …, "light-torch": …, "light-onnx": …}."""
    from painterly.export import export_onnx
    from painterly.modelfile import save_model

    files = {}
    for name in ARCHITECTURES:
        prefix = "" if name == "standard" else f"{name}-"
        model = save_model(random_network(name), Path(folder) / f"random-adain-{name}.safetensors",
                           style={"image": f"none: random weights, seed {SEED}"})
        files[f"{prefix}torch"] = str(model)
        files[f"{prefix}onnx"] = str(export_onnx(model, Path(folder) / f"random-adain-{name}.onnx").path)
    return files


def reference_network(model: Path) -> ReferenceAdaIN:
    """ReferenceAdaIN with the painterly model's weights: its convs in order (the encoder's 1×1 front
    first), the decoder by name (painterly's decoder keeps pytorch-AdaIN's module indices)."""
    import torch

    from painterly.adain import AdaINNet
    from painterly.modelfile import load_model

    from .reference import ReferenceAdaIN

    ours, _ = load_model(model)
    if not isinstance(ours, AdaINNet) or ours.architecture != architecture("standard"):
        shown = getattr(ours, "architecture", type(ours).__name__)
        raise ValueError(f"{model}: ReferenceAdaIN is pytorch-AdaIN's network, not {shown}")
    assert ours.encoder.front is not None  # the published layout's 1×1 input conv
    net = ReferenceAdaIN()
    theirs = [m for m in net.vgg if isinstance(m, torch.nn.Conv2d)]
    mine = [ours.encoder.front] + [m for m in ours.encoder.features if isinstance(m, torch.nn.Conv2d)]
    for target, source in zip(theirs, mine, strict=True):
        target.load_state_dict(source.state_dict())  # strict: weight and bias, shapes checked
    net.decoder.load_state_dict(ours.decoder.state_dict())  # strict: every key and shape
    return net


def reference_inference(model: str, size: int, runs: int, matmul_size: int = 2048) -> dict:
    """ReferenceAdaIN.style_transfer on a size² photo and a size² painting; conv FLOPs counted, and the
    fp32 matmul rate measured in this worker after the timings."""
    from painterly.pixels import to_tensor

    net = reference_network(Path(model))
    content, style = to_tensor(square_content(size)), to_tensor(square_painting(size))
    with ConvFlops() as counter:
        timing = time_calls(lambda: net.style_transfer(content, style), runs, counter)
    return {**timing.summary(), "matmul_gflops": _matmul_rate("fp32", matmul_size)}


def painterly_inference(model: str, size: int, runs: int, backend: str, precision: str = "auto",
                        matmul_size: int = 2048) -> dict:
    """FastStylizer on the same photo and painting: `style_statistics` once (timed apart, after the photos,
    as `statistics_seconds`), then `with_styles([statistics]).stylize(photo)`, array in and array out,
    timed. The painting is measured at its full size (`style_size`), as the reference encodes it.
    The torch job also counts the conv FLOPs of one more call, untimed (one encoder and one decoder pass per
    photo: the painting's statistics are measured once), and the matmul rate of the precision it ran in."""
    stylizer = FastStylizer(model, ApplyConfig(backend=backend, device="cpu", precision=precision, style_size=size))
    painting, photo = square_painting(size), square_content(size)
    source = {"image": f"{STYLE_NAME} squeezed to {size}²"}
    styled = stylizer.with_styles([stylizer.style_statistics(painting, source=source)])
    timing = time_calls(lambda: styled.stylize(photo), runs).summary()
    start = time.perf_counter()
    stylizer.style_statistics(painting, source=source)
    statistics_seconds = time.perf_counter() - start
    result = {**timing, "precision": styled.precision, "statistics_seconds": statistics_seconds}
    if backend == "torch":  # ONNX Runtime has no hooks; torch's fused conv + ReLU calls skip them (adain.run_fused),
        with ConvFlops() as counter:  # so the count is one more call, after the timed ones, module by module
            styled.stylize(photo)
        result["flops"] = counter.total
    if backend == "torch":  # the ONNX worker has no torch: the suite credits it with the torch row's FLOPs
        result["matmul_gflops"] = _matmul_rate(styled.precision, matmul_size)
    return result


def paired_inference(standard: str, light: str, size: int, runs: int, backend: str, precision: str = "auto") -> dict:
    """The standard and the light network on one backend in this one worker, timed interleaved: standard,
    light, standard, light … `runs` pairs after one untimed call of each, as `painterly_inference` times
    one. Separate workers (the rows) may meet a machine running at different rates (the quiet rerun's
    measured torch.mm rates differed by 29 % between them); here both see the same process, allocator
    and load, and each pair's ratio compares two calls seconds apart. Wall and process CPU seconds per
    call, the load average before and after."""
    photo, painting = square_content(size), square_painting(size)
    styled = {}
    for name, model in (("standard", standard), ("light", light)):
        stylizer = FastStylizer(model, ApplyConfig(backend=backend, device="cpu", precision=precision, style_size=size))
        source = {"image": f"{STYLE_NAME} squeezed to {size}²"}
        styled[name] = stylizer.with_styles([stylizer.style_statistics(painting, source=source)])
    load_before = os.getloadavg()
    times: dict[str, dict[str, list[float]]] = {name: {"seconds": [], "cpu_seconds": []} for name in styled}
    for index in range(1 + runs):
        for name, stylizer in styled.items():  # standard first, then light: the pair
            start, cpu = time.perf_counter(), time.process_time()
            stylizer.stylize(photo)
            if index:  # the first round warms both up
                times[name]["seconds"].append(time.perf_counter() - start)
                times[name]["cpu_seconds"].append(time.process_time() - cpu)
    ratios = [s / w for s, w in zip(times["standard"]["seconds"], times["light"]["seconds"], strict=True)]
    result: dict[str, Any] = {name: {"seconds": statistics.median(t["seconds"]), "min_seconds": min(t["seconds"]),
                                     "samples": t["seconds"], "cpu_seconds": statistics.median(t["cpu_seconds"]),
                                     "precision": styled[name].precision} for name, t in times.items()}
    return {**result, "pair_ratios": ratios, "median_ratio": statistics.median(ratios),
            "ratio_of_minima": result["standard"]["min_seconds"] / result["light"]["min_seconds"],
            "cpu_ratio": result["standard"]["cpu_seconds"] / result["light"]["cpu_seconds"],
            "load_average": [load_before[0], os.getloadavg()[0]]}


def _matmul_rate(precision: str, size: int) -> float:
    """torch.mm's GFLOP/s in `precision`, measured in this worker right after its timings: on a shared
    machine the suite's own measurement (minutes earlier, another process) may have met another load."""
    import torch

    from .machine import matmul_gflops

    return matmul_gflops(size, {"fp32": torch.float32, "bf16": torch.bfloat16}[precision])
