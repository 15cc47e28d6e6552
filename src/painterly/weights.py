"""Where the VGG weights come from: torchvision's ImageNet files, a local file, or seeded random.

The fetching half (`WeightsSpec`, `download`, `cached_path`, `mirrored`, `install`, `verify`) is also
the one way other pretrained files are fetched: `flow_raft`'s RAFT weights.

Every source yields the same thing: a plain state dict of `features.N.weight` /
`features.N.bias` tensors with torchvision's VGG indices (classifier dropped), so
`features.py` can load it into its own `nn.Sequential`. ImageNet files are
downloaded once into torch.hub's cache (as torchvision does), checked against the
sha256 prefix in their name, and trusted by name afterwards. Files are loaded
without running pickled code (`torchfiles`: `weights_only=True`; or safetensors).

Where the files are, whether they are there, and fetching them need no torch:
`painterly weights` only prints paths, and importing torch takes seconds. torch
is imported by the functions that load or make tensors. A download reports its
progress as `DownloadEvent`s; the library never draws a bar itself.
"""

from __future__ import annotations

import functools
import importlib
import math
import os
import re
import shutil
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlparse

from .atomic import atomic_path
from .config import VGG_ARCHS
from .downloads import NETWORK_ERRORS, fetch, reason
from .errors import OutputError, WeightsError
from .events import Callback, ignore
from .provenance import file_sha256

if TYPE_CHECKING:
    import torch

ARCHS = VGG_ARCHS  # the list config.py owns

# torchvision's `cfgs`: an int is a 3x3 conv (followed by a ReLU) with that many
# output channels, "M" a 2x2 max-pool. Copied, not imported: `cfgs` is private.
CONFIGS: dict[str, list[int | str]] = {
    "vgg16": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
    "vgg19": [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M"],
}

# The statistics the ImageNet weights were trained with (torchvision's transforms).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

MIRROR_ENV = "PAINTERLY_WEIGHTS_MIRROR"
WEIGHTS_ENV = "PAINTERLY_VGG_WEIGHTS"
RANDOM_OK_ENV = "PAINTERLY_RANDOM_WEIGHTS_OK"  # 1: "I have read the random-weights warning"

RANDOM_WARNING = (
    "random VGG weights transfer colours and coarse texture only, far below ImageNet quality; "
    "fetch the real weights once with `painterly weights --download` or pass a file with --vgg-weights PATH "
    "(--vgg-weights random or " + RANDOM_OK_ENV + "=1 silences this)"
)

OFFLINE_MESSAGE = (
    "{label} ImageNet weights are not in the cache ({path}) and could not be downloaded from {url} ({reason}). "
    "Either connect to the internet once (`painterly weights --download`), "
    "pass a local file with --vgg-weights PATH (or " + WEIGHTS_ENV + "), "
    "or use --vgg-weights random (runs offline, much lower quality)."
)
# For `painterly weights --download` itself: telling it to run itself would be no help.
DOWNLOAD_FAILED_MESSAGE = (
    "{label} ImageNet weights could not be downloaded from {url} ({reason}). "
    "Run this again once connected (or with " + MIRROR_ENV + " set to a mirror you can reach), "
    "or copy the file from a machine that has it: `painterly weights --import {filename} --arch {arch}`."
)

# torchvision's ImageNet files (VGG16_Weights/VGG19_Weights.IMAGENET1K_V1.url), written out so that
# nothing here needs torchvision; tests/test_weights.py checks them against torchvision's.
IMAGENET_URLS = {
    "vgg16": "https://download.pytorch.org/models/vgg16-397923af.pth",
    "vgg19": "https://download.pytorch.org/models/vgg19-dcbb9e9d.pth",
}

# A module holding the VGG prefixes its keys with "model."; DataParallel's and torch.compile's
# prefixes are the ones `torchfiles.clean_key` removes from every file.
_VGG_PREFIXES = ("module.", "_orig_mod.", "model.")
_TORCH_SUFFIXES = (".pth", ".pt", ".bin")
# torch.hub's naming rule: the hex digits after the last "-" are the start of the sha256.
_HASH_IN_NAME = re.compile(r".*-([0-9a-f]{8,})\.[^.]+")


class WeightsUnavailable(WeightsError):
    """The ImageNet weights are not cached and the download failed (offline, refused, timeout, HTTP error)."""


@dataclass(frozen=True)
class WeightsSpec:
    """Pretrained weights as data, like torchvision's `Weights`: where to fetch them and how to check them."""

    arch: str
    url: str
    sha256_prefix: str  # torchvision names files by the start of their sha256: vgg19-dcbb9e9d.pth
    # How messages name the weights, and what they say when they cannot be fetched (str.format'ed with
    # label, path, url, reason, filename, arch): the VGG's unless told.
    label: str = ""
    offline_message: str = OFFLINE_MESSAGE
    failed_message: str = DOWNLOAD_FAILED_MESSAGE

    @property
    def filename(self) -> str:
        """The cache file name: the URL's last path segment, as torch.hub uses it."""
        return Path(urlparse(self.url).path).name


def spec_from_url(arch: str, url: str, **messages: str) -> WeightsSpec:
    """Build a spec from torchvision's URL, reading the hash prefix from the file name."""
    match = _HASH_IN_NAME.fullmatch(Path(urlparse(url).path).name)
    if match is None:
        raise RuntimeError(f"torchvision's {arch} URL {url} has no hash in its file name")
    return WeightsSpec(arch, url, match.group(1), **messages)


IMAGENET: dict[str, WeightsSpec] = {arch: spec_from_url(arch, url) for arch, url in IMAGENET_URLS.items()}


# --- architecture -------------------------------------------------------------


def _label(arch: str) -> str:
    """'vgg19' -> 'VGG-19', as people write it."""
    return f"VGG-{arch.removeprefix('vgg')}"


def _checked(arch: str) -> str:
    if arch not in CONFIGS:
        raise WeightsError(f"unknown VGG architecture {arch!r}; choose one of {', '.join(ARCHS)}")
    return arch


def _convs(arch: str) -> list[tuple[int, int, int]]:
    """(index in `features`, in channels, out channels) of each conv: conv at i, ReLU at i+1, a pool takes one index."""
    convs: list[tuple[int, int, int]] = []
    index, channels = 0, 3
    for item in CONFIGS[_checked(arch)]:
        if isinstance(item, str):  # "M"
            index += 1
        else:
            convs.append((index, channels, item))
            index, channels = index + 2, item
    return convs


def expected_shapes(arch: str) -> dict[str, tuple[int, ...]]:
    """Every parameter of torchvision's `vgg*.features` and its shape; the yardstick for every loaded file."""
    shapes: dict[str, tuple[int, ...]] = {}
    for index, c_in, c_out in _convs(arch):
        shapes[f"features.{index}.weight"] = (c_out, c_in, 3, 3)
        shapes[f"features.{index}.bias"] = (c_out,)
    return shapes


def _vgg_key(key: str) -> str:
    """'module._orig_mod.features.0.weight', 'model.features.0.weight' or a bare '0.weight' -> 'features.0.weight'."""
    from .torchfiles import clean_key

    key = clean_key(key, _VGG_PREFIXES)
    return f"features.{key}" if key[:1].isdigit() else key


def _required_keys(arch: str, required: Iterable[str] | None) -> list[str]:
    """The keys a caller needs (all by default), in torchvision's naming even if given bare ('0.weight')."""
    shapes = expected_shapes(arch)
    if required is None:
        return list(shapes)
    keys = [_vgg_key(key) for key in required]
    unknown = [key for key in keys if key not in shapes]
    if unknown:
        raise ValueError(f"not {arch} parameters: {', '.join(unknown[:3])}")
    return keys


# --- cache and download ---------------------------------------------------------


def cache_dir() -> Path:
    """torch.hub's checkpoint folder (honours TORCH_HOME), shared with torchvision so nothing is fetched twice.

    Worked out as torch.hub does (TORCH_HOME, else $XDG_CACHE_HOME/torch, else ~/.cache/torch) without
    importing torch; once torch is loaded anyway, torch.hub is asked, which also honours `set_dir`.
    """
    if "torch" in sys.modules:
        return Path(importlib.import_module("torch.hub").get_dir()) / "checkpoints"
    xdg_cache = os.environ.get("XDG_CACHE_HOME", "~/.cache")
    torch_home = os.path.expanduser(os.environ.get("TORCH_HOME", os.path.join(xdg_cache, "torch")))
    return Path(torch_home) / "hub" / "checkpoints"


def cached_path(spec: WeightsSpec) -> Path:
    """Where `spec`'s file lives once downloaded or imported."""
    return cache_dir() / spec.filename


def spec_for(arch: str) -> WeightsSpec:
    """The ImageNet spec for `arch`, fetched from $PAINTERLY_WEIGHTS_MIRROR instead when set (mirrors, proxies)."""
    return mirrored(IMAGENET[_checked(arch)])


def mirrored(spec: WeightsSpec) -> WeightsSpec:
    """`spec` fetched from $PAINTERLY_WEIGHTS_MIRROR (the same file name under it) when that is set."""
    mirror = os.environ.get(MIRROR_ENV)
    return replace(spec, url=f"{mirror.rstrip('/')}/{spec.filename}") if mirror else spec


def _unreadable(path: Path, error: OSError) -> WeightsError:
    return WeightsError(f"{path}: cannot read ({error.strerror or error})")


def _sha256(path: Path) -> str:
    """provenance.file_sha256, with a read error as a WeightsError naming the file."""
    try:
        return file_sha256(path)
    except OSError as error:
        raise _unreadable(path, error) from error


def verify(path: Path, spec: WeightsSpec) -> bool:
    """Whether the file is the one `spec` names: its sha256 starts with the prefix."""
    return _sha256(path).startswith(spec.sha256_prefix)


def _offline(spec: WeightsSpec, reason: str, *, explicit: bool = False) -> WeightsUnavailable:
    reason = " ".join(reason.split())  # one line, whatever the network layer said
    template = spec.failed_message if explicit else spec.offline_message
    return WeightsUnavailable(template.format(label=spec.label or _label(spec.arch), path=cached_path(spec),
                                              url=spec.url, reason=reason, filename=spec.filename, arch=spec.arch))


def unavailable(spec: WeightsSpec, reason: str) -> WeightsUnavailable:
    """The error for `spec`'s file missing from the cache when it may not be downloaded."""
    return _offline(spec, reason)


def _unwritable(error: OutputError) -> WeightsError:
    """The cache could not be written: the output boundary's line, and the way out."""
    return WeightsError(f"{error}; set TORCH_HOME to a writable folder")


def download(spec: WeightsSpec, *, progress: bool = True, timeout: float = 30, callback: Callback = ignore,
             explicit: bool = False) -> Path:
    """Fetch `spec` into the cache and check its hash; written atomically, so a failure leaves nothing behind.

    Progress goes to `callback` as DownloadEvents (none when `progress` is false). `explicit`: the user
    asked for this download (`painterly weights --download`), so a failure does not suggest running it.
    Our own copy of torch.hub.download_url_to_file, because that one has no timeout
    and reports a bad hash as a bare RuntimeError.
    """
    dst = cached_path(spec)
    try:
        with atomic_path(dst) as tmp:
            try:
                digest = fetch(spec.url, tmp, timeout=timeout, callback=callback if progress else ignore)
            except NETWORK_ERRORS as error:  # OSErrors too, but the network's, not the disk's
                raise _offline(spec, reason(error), explicit=explicit) from error
            if not digest.startswith(spec.sha256_prefix):
                raise WeightsError(
                    f"{spec.url}: downloaded file has sha256 {digest}, expected one starting with "
                    f"{spec.sha256_prefix}; nothing was saved (a broken mirror or proxy?)"
                )
    except OutputError as error:
        raise _unwritable(error) from error
    return dst


# --- loading ------------------------------------------------------------------


def _read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    import safetensors.torch
    from safetensors import SafetensorError

    try:
        return safetensors.torch.load_file(path, device="cpu")
    except SafetensorError as error:
        raise WeightsError(f"{path}: not a valid safetensors file ({error})") from error
    except OSError as error:
        raise _unreadable(path, error) from error


def _read(path: Path) -> dict[str, torch.Tensor]:
    """The tensors stored in a .pth/.pt/.bin or .safetensors file, by name, wrapper prefixes removed."""
    from .torchfiles import load_torch_file, state_dict_of

    if not path.is_file():
        raise WeightsError(
            f"{path}: no such file (VGG weights are 'imagenet', 'random' or a .pth/.safetensors file)"
        )
    suffix = path.suffix.lower()
    if suffix != ".safetensors" and suffix not in _TORCH_SUFFIXES:
        raise WeightsError(f"{path}: unknown weights file type {suffix!r}; expected .pth, .pt, .bin or .safetensors")
    content = _read_safetensors(path) if suffix == ".safetensors" else load_torch_file(path, "weights",
                                                                                        error=WeightsError)
    return state_dict_of(content, path, "VGG", error=WeightsError)


def _features(raw: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The `features.*` entries in torchvision's naming (the classifier is not needed)."""
    features: dict[str, torch.Tensor] = {}
    for key, value in raw.items():
        name = _vgg_key(key)
        if name.startswith("features."):
            features[name] = value
    return features


def _check(features: Mapping[str, torch.Tensor], arch: str, keys: list[str], path: Path) -> None:
    """Every present key known and of the right shape, every needed key present."""
    shapes = expected_shapes(arch)
    for key, tensor in features.items():
        if key not in shapes:
            raise WeightsError(f"{path}: unexpected key {key!r} for {_label(arch)}; weights of another architecture?")
        if tuple(tensor.shape) != shapes[key]:
            raise WeightsError(
                f"{path}: {key} has shape {tuple(tensor.shape)}, expected {shapes[key]} for {_label(arch)}"
            )
    missing = [key for key in keys if key not in features]
    if missing:
        more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
        raise WeightsError(f"{path}: not {_label(arch)} weights: missing {', '.join(missing[:3])}{more}")


def load_state_dict_file(
    path: str | Path, arch: str, *, required: Iterable[str] | None = None
) -> dict[str, torch.Tensor]:
    """Load and check a VGG state dict from disk; returns exactly the `required` keys (default: all).

    Accepts a full torchvision VGG state dict, a bare `features` one ('0.weight') and
    keys prefixed by 'module.' / '_orig_mod.' / 'model.'; the classifier is dropped.
    """
    path = Path(path)
    keys = _required_keys(arch, required)
    features = _features(_read(path))
    _check(features, arch, keys, path)
    return {key: features[key] for key in keys}


# --- random weights -------------------------------------------------------------


def _probe_images(generator: torch.Generator) -> torch.Tensor:
    """Four smooth 64x64 pseudo-photos, ImageNet-normalised: upsampled coarse colour noise plus a finer octave."""
    import torch
    import torch.nn.functional as F

    coarse = F.interpolate(torch.rand(4, 3, 8, 8, generator=generator), size=64, mode="bilinear")
    fine = F.interpolate(torch.rand(4, 3, 32, 32, generator=generator), size=64, mode="bilinear")
    image = 0.75 * coarse + 0.25 * fine
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return (image - mean) / std


def random_state_dict(arch: str, *, seed: int = 0, upto: int | None = None) -> dict[str, torch.Tensor]:
    """Seeded random VGG weights for offline use and tests, scaled so activations stay O(1) at every depth.

    Kaiming-normal alone lets the activation scale drift layer by layer; here each conv
    is then rescaled so its post-ReLU output has mean square 1 on fixed probe images
    (LSUV, Mishkin & Matas 2016, deterministic). Biases are zero, which keeps the ReLU
    output proportional to the weight scale. `upto` limits the number of convs; the
    result is a prefix of the full network for the same seed.

    The same arguments always give the same tensors, and making them costs a forward pass per
    conv, so the last few are kept (a web server or a test run asks again and again); each call
    gets its own copies, free to change.
    """
    convs = _convs(arch)
    upto = len(convs) if upto is None else upto
    if not 0 <= upto <= len(convs):
        raise ValueError(f"upto must be between 0 and {len(convs)} for {arch}, got {upto}")
    return {key: value.clone() for key, value in _random_state(arch, seed, upto).items()}


@functools.lru_cache(maxsize=4)
def _random_state(arch: str, seed: int, upto: int) -> dict[str, torch.Tensor]:
    import torch
    import torch.nn.functional as F

    with torch.no_grad():  # no autograd graph: these are constants
        convs = _convs(arch)
        generator = torch.Generator().manual_seed(seed)
        x = _probe_images(generator)
        state: dict[str, torch.Tensor] = {}
        next_index = 0
        for index, c_in, c_out in convs[:upto]:
            if index != next_index:  # a max-pool sits between the previous conv's ReLU and this conv
                x = F.max_pool2d(x, 2)
            weight = torch.randn(c_out, c_in, 3, 3, generator=generator) * math.sqrt(2 / (c_in * 9))
            x = F.relu(F.conv2d(x, weight, padding=1))
            scale = x.pow(2).mean().rsqrt()
            state[f"features.{index}.weight"] = weight * scale
            state[f"features.{index}.bias"] = torch.zeros(c_out)
            x = x * scale
            next_index = index + 2
        return state


# --- choosing a source ------------------------------------------------------------


def _imagenet(arch: str, keys: list[str], *, download_missing: bool, progress: bool,
              callback: Callback) -> dict[str, torch.Tensor]:
    """The cached ImageNet file, downloaded (and hash-checked) only if absent; a cached file is trusted by name."""
    spec = spec_for(arch)
    path = cached_path(spec)
    if not path.is_file():
        if not download_missing:
            raise unavailable(spec, "downloads disabled")
        download(spec, progress=progress, callback=callback)
    return load_state_dict_file(path, arch, required=keys)


def _conv_count(arch: str, keys: list[str]) -> int:
    """How many convs a network needs to hold every key in `keys`."""
    positions = {f"features.{index}": n for n, (index, _, _) in enumerate(_convs(arch))}
    return max((positions[key.rsplit(".", 1)[0]] + 1 for key in keys), default=0)


def _source(source: str | Path | None) -> str | Path:
    """What `source` names once the environment is consulted: None is $PAINTERLY_VGG_WEIGHTS, else 'imagenet'."""
    return (os.environ.get(WEIGHTS_ENV) or "imagenet") if source is None else source


def _is_random(source: str | Path | None) -> bool:
    return isinstance(source, str) and source.lower() == "random"


def random_weights_warning(source: str | Path | None) -> str | None:
    """The warning to show for the weights `source` names (as `resolve` takes it), or None.

    Random weights are far below ImageNet's, so they warn, unless the user has said they know:
    `source` is "random" given explicitly (`--vgg-weights random`), or $PAINTERLY_RANDOM_WEIGHTS_OK
    is set to 1. Random weights nobody chose on this run (None with $PAINTERLY_VGG_WEIGHTS=random)
    still warn, so a first-time user always sees it. The one decision for every front-end: the
    perceptual-loss builder and the web UI's banner.
    """
    if not _is_random(_source(source)):
        return None
    if _is_random(source) or os.environ.get(RANDOM_OK_ENV, "").strip().lower() in ("1", "true", "yes"):
        return None
    return RANDOM_WARNING


def resolve(
    source: str | Path | None,
    arch: str,
    *,
    seed: int = 0,
    required: Iterable[str] | None = None,
    download_missing: bool = True,
    progress: bool = True,
    callback: Callback = ignore,
) -> tuple[dict[str, torch.Tensor], str]:
    """Weights from 'imagenet', 'random' or a file path (None: $PAINTERLY_VGG_WEIGHTS, else 'imagenet').

    Returns the `required` keys (default: all) and a short description for output metadata.
    A download's progress goes to `callback` (DownloadEvents), unless `progress` is false.
    """
    keys = _required_keys(arch, required)
    source = _source(source)
    if isinstance(source, str) and source.lower() == "imagenet":
        state = _imagenet(arch, keys, download_missing=download_missing, progress=progress, callback=callback)
        return state, f"ImageNet (torchvision {spec_for(arch).filename})"
    if _is_random(source):
        state = random_state_dict(arch, seed=seed, upto=_conv_count(arch, keys))
        return {key: state[key] for key in keys}, f"random (seed {seed})"
    path = Path(source)
    state = load_state_dict_file(path, arch, required=keys)
    return state, f"file {path.resolve()} (sha256 {_sha256(path)[:8]})"


def import_file(path: Path, arch: str) -> Path:
    """Copy a local copy of torchvision's official file into the cache, so 'imagenet' works offline."""
    path = Path(path)
    load_state_dict_file(path, arch)
    return install(path, spec_for(arch), otherwise=f"use it directly with --vgg-weights {path}")


def install(path: Path, spec: WeightsSpec, *, otherwise: str) -> Path:
    """Copy a checked file into the cache as `spec`'s, if it is the official one (its hash); `otherwise`
    says what to do with another."""
    digest = _sha256(path)
    if not digest.startswith(spec.sha256_prefix):
        raise WeightsError(
            f"{path}: valid {spec.label or _label(spec.arch)} weights, but not torchvision's official file "
            f"(sha256 {digest[:len(spec.sha256_prefix)]}, expected {spec.sha256_prefix}); {otherwise}"
        )
    dst = cached_path(spec)
    try:
        with atomic_path(dst) as tmp:
            shutil.copyfile(path, tmp)
    except OutputError as error:
        raise _unwritable(error) from error
    return dst


def status() -> list[dict]:
    """Per architecture: arch, url, path, present, size (bytes, None if absent); for `painterly weights`."""
    rows = []
    for arch in ARCHS:
        spec = spec_for(arch)
        path = cached_path(spec)
        present = path.is_file()
        size = path.stat().st_size if present else None
        rows.append({"arch": arch, "url": spec.url, "path": path, "present": present, "size": size})
    return rows
