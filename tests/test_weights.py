"""Where VGG weights come from: shapes, random init, safe loading, the download path, the cache."""

from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from helpers import dead_url, file_server, run_limited
from painterly import weights
from painterly.errors import WeightsError
from painterly.events import DownloadEvent
from painterly.progress import ProgressPrinter
from painterly.weights import WeightsSpec, WeightsUnavailable

# The first two convs of VGG-19: small files that load in milliseconds.
SMALL = ["features.0.weight", "features.0.bias", "features.2.weight", "features.2.bias"]


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point torch.hub's cache at a temporary folder and clear the module's environment variables."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.delenv(weights.MIRROR_ENV, raising=False)
    monkeypatch.delenv(weights.WEIGHTS_ENV, raising=False)
    monkeypatch.delenv(weights.RANDOM_OK_ENV, raising=False)
    return tmp_path / "torch" / "hub" / "checkpoints"


@pytest.fixture
def small_state() -> dict[str, torch.Tensor]:
    return weights.random_state_dict("vgg19", seed=1, upto=2)


@pytest.fixture(scope="module")
def full_random() -> dict[str, torch.Tensor]:
    return weights.random_state_dict("vgg19", seed=1)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def save_small(folder: Path, state: dict[str, torch.Tensor], name: str = "small.pth") -> Path:
    path = folder / name
    torch.save(state, path)
    return path


@pytest.fixture
def server(tmp_path: Path):
    """A real HTTP server on 127.0.0.1 serving the files put in the yielded folder; yields (base URL, folder)."""
    root = tmp_path / "served"
    root.mkdir()
    with file_server(root) as url:
        yield url, root


@pytest.fixture(name="dead_url")
def dead_url_fixture() -> str:
    """A URL on a port nobody listens on: connection refused."""
    return dead_url()


def assert_offline_message(error: pytest.ExceptionInfo) -> None:
    message = str(error.value)
    assert "\n" not in message
    for way_out in ("painterly weights --download", "--vgg-weights PATH", "--vgg-weights random"):
        assert way_out in message


# --- architecture -----------------------------------------------------------------


@pytest.mark.parametrize("arch", weights.ARCHS)
def test_expected_shapes_match_torchvision(arch: str) -> None:
    import torchvision

    with torch.device("meta"):  # shapes only: no memory, no init time
        model = getattr(torchvision.models, arch)(weights=None)
    torchvision_shapes = {f"features.{k}": tuple(v.shape) for k, v in model.features.state_dict().items()}
    assert weights.expected_shapes(arch) == torchvision_shapes


def test_imagenet_specs_come_from_torchvision() -> None:
    import torchvision

    spec = weights.IMAGENET["vgg19"]
    assert spec.url == torchvision.models.VGG19_Weights.IMAGENET1K_V1.url
    assert spec.filename == "vgg19-dcbb9e9d.pth"
    assert spec.sha256_prefix == "dcbb9e9d"
    assert weights.IMAGENET["vgg16"].sha256_prefix == "397923af"


def test_unknown_arch_is_a_weights_error() -> None:
    with pytest.raises(WeightsError, match="vgg16, vgg19"):
        weights.expected_shapes("vgg11")


def test_cache_follows_torch_home(isolated_cache: Path) -> None:
    assert weights.cache_dir() == isolated_cache
    assert weights.cached_path(weights.IMAGENET["vgg16"]) == isolated_cache / "vgg16-397923af.pth"


def test_mirror_rewrites_the_url(monkeypatch: pytest.MonkeyPatch) -> None:
    assert weights.spec_for("vgg19") == weights.IMAGENET["vgg19"]
    monkeypatch.setenv(weights.MIRROR_ENV, "http://mirror.local/vgg/")
    spec = weights.spec_for("vgg19")
    assert spec.url == "http://mirror.local/vgg/vgg19-dcbb9e9d.pth"
    assert spec.sha256_prefix == "dcbb9e9d"


# --- random weights ---------------------------------------------------------------


def test_random_is_deterministic_per_seed(small_state) -> None:
    again = weights.random_state_dict("vgg19", seed=1, upto=2)
    other = weights.random_state_dict("vgg19", seed=2, upto=2)
    assert list(small_state) == SMALL
    assert all(torch.equal(small_state[k], again[k]) for k in SMALL)
    assert not torch.equal(small_state["features.2.weight"], other["features.2.weight"])


def test_random_prefix_matches_full_network(small_state, full_random) -> None:
    assert set(full_random) == set(weights.expected_shapes("vgg19"))
    assert all(torch.equal(small_state[k], full_random[k]) for k in SMALL)


def test_random_activations_stay_in_a_useful_range(full_random) -> None:
    import torchvision

    with torch.device("meta"):
        features = torchvision.models.vgg19(weights=None).features
    features = features.to_empty(device="cpu")
    features.load_state_dict({k.removeprefix("features."): v for k, v in full_random.items()})
    generator = torch.Generator().manual_seed(123)  # not the probe images the scales were fitted on
    image = F.interpolate(torch.rand(1, 3, 6, 6, generator=generator), size=96, mode="bicubic").clamp(0, 1)
    x = (image - torch.tensor(weights.IMAGENET_MEAN).view(1, 3, 1, 1)) / torch.tensor(weights.IMAGENET_STD).view(
        1, 3, 1, 1
    )
    rms = []
    with torch.no_grad():
        for module in features:
            x = module(x)
            if isinstance(module, torch.nn.ReLU):
                rms.append(x.pow(2).mean().sqrt().item())
    assert len(rms) == 16
    assert all(0.1 < value < 10 for value in rms), rms


# --- loading files ----------------------------------------------------------------


def test_loads_pth_and_safetensors(tmp_path: Path, small_state) -> None:
    save_file(small_state, tmp_path / "small.safetensors")
    for path in (save_small(tmp_path, small_state), tmp_path / "small.safetensors"):
        loaded = weights.load_state_dict_file(path, "vgg19", required=SMALL)
        assert list(loaded) == SMALL
        assert all(torch.equal(loaded[k], small_state[k]) for k in SMALL)


def test_returns_only_the_required_keys(tmp_path: Path, small_state) -> None:
    loaded = weights.load_state_dict_file(save_small(tmp_path, small_state), "vgg19", required=["0.weight"])
    assert list(loaded) == ["features.0.weight"]


@pytest.mark.parametrize("prefix", ["module.", "_orig_mod.", "model.", "module._orig_mod."])
def test_wrapper_prefixes_and_classifier_are_cleaned(tmp_path: Path, small_state, prefix: str) -> None:
    state = {prefix + k: v for k, v in small_state.items()}
    state[prefix + "classifier.0.weight"] = torch.zeros(3, 2)
    loaded = weights.load_state_dict_file(save_small(tmp_path, state), "vgg19", required=SMALL)
    assert list(loaded) == SMALL
    assert torch.equal(loaded["features.2.weight"], small_state["features.2.weight"])


def test_bare_features_dict_loads(tmp_path: Path, small_state) -> None:
    bare = {k.removeprefix("features."): v for k, v in small_state.items()}
    loaded = weights.load_state_dict_file(save_small(tmp_path, bare), "vgg19", required=SMALL)
    assert torch.equal(loaded["features.0.bias"], small_state["features.0.bias"])


def test_all_keys_required_by_default(tmp_path: Path, small_state) -> None:
    with pytest.raises(WeightsError, match=r"not VGG-19 weights: missing features\.5\.weight, .* and 25 more"):
        weights.load_state_dict_file(save_small(tmp_path, small_state), "vgg19")


def test_missing_key_is_named(tmp_path: Path, small_state) -> None:
    del small_state["features.2.bias"]
    with pytest.raises(WeightsError, match=r"missing features\.2\.bias"):
        weights.load_state_dict_file(save_small(tmp_path, small_state), "vgg19", required=SMALL)


def test_wrong_shape_names_both_shapes(tmp_path: Path, small_state) -> None:
    small_state["features.2.weight"] = torch.zeros(32, 64, 3, 3)
    with pytest.raises(WeightsError) as error:
        weights.load_state_dict_file(save_small(tmp_path, small_state), "vgg19", required=SMALL)
    assert "features.2.weight" in str(error.value)
    assert "(32, 64, 3, 3)" in str(error.value) and "(64, 64, 3, 3)" in str(error.value)


def test_other_architecture_is_refused(tmp_path: Path) -> None:
    vgg16 = weights.random_state_dict("vgg16", upto=8)  # conv 8 of VGG-16 sits at index 17, a ReLU in VGG-19
    with pytest.raises(WeightsError, match=r"unexpected key 'features\.17\.weight' for VGG-19"):
        weights.load_state_dict_file(save_small(tmp_path, vgg16), "vgg19", required=SMALL)


def test_non_tensor_value_is_refused(tmp_path: Path, small_state) -> None:
    small_state["features.0.bias"] = [0.0] * 64
    with pytest.raises(WeightsError, match="'features.0.bias' is a list, not a tensor"):
        weights.load_state_dict_file(save_small(tmp_path, small_state), "vgg19", required=SMALL)


class RunsCode:
    """A pickle that runs a shell command when loaded without weights_only."""

    def __reduce__(self):
        return (os.system, ("echo pwned > marker",))


@pytest.mark.parametrize("dump", ["torch.save", "pickle.dump"])
@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_pickle_carrying_code_is_refused_and_not_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, small_state, dump: str
) -> None:
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "evil.pth"
    payload = {**small_state, "features.0.bias": RunsCode()}
    if dump == "torch.save":
        torch.save(payload, path)
    else:
        with open(path, "wb") as file:
            pickle.dump(payload, file)
    with pytest.raises(WeightsError, match=r"evil\.pth: refusing to load: .*other than tensors"):
        weights.load_state_dict_file(path, "vgg19", required=SMALL)
    assert not (tmp_path / "marker").exists()


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        ("text.pth", b"hello, not weights\n", "not a PyTorch weights file"),
        ("empty.pth", b"", "empty file"),
        ("empty.safetensors", b"", "not a valid safetensors file"),
        ("weights.txt", b"hello", "unknown weights file type '.txt'"),
    ],
)
def test_not_a_weights_file_gives_one_line(tmp_path: Path, name: str, content: bytes, expected: str) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(WeightsError) as error:
        weights.load_state_dict_file(path, "vgg19", required=SMALL)
    assert str(error.value).startswith(f"{path}: {expected}")
    assert "\n" not in str(error.value)


def test_truncated_file_and_missing_file(tmp_path: Path, small_state) -> None:
    path = save_small(tmp_path, small_state)
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(WeightsError, match=r"small\.pth: truncated or corrupt"):
        weights.load_state_dict_file(path, "vgg19", required=SMALL)
    with pytest.raises(WeightsError, match=r"nothing\.pth: no such file"):
        weights.load_state_dict_file(tmp_path / "nothing.pth", "vgg19", required=SMALL)


# --- download ---------------------------------------------------------------------


def serve_small(root: Path, state: dict[str, torch.Tensor]) -> str:
    """Put a weights file named like torchvision's (vgg19-<its own sha256 prefix>.pth) on the server."""
    path = save_small(root, state, "tmp.pth")
    name = f"vgg19-{sha256(path)[:8]}.pth"
    path.rename(root / name)
    return name


def test_download_lands_in_cache_and_loads(server, small_state, isolated_cache: Path) -> None:
    base, root = server
    name = serve_small(root, small_state)
    spec = WeightsSpec("vgg19", f"{base}/{name}", name[6:14])
    path = weights.download(spec, progress=False)
    assert path == isolated_cache / name
    assert path.read_bytes() == (root / name).read_bytes()
    assert weights.verify(path, spec)
    assert sorted(p.name for p in isolated_cache.iterdir()) == [name]  # no .partial left behind
    loaded = weights.load_state_dict_file(path, "vgg19", required=SMALL)
    assert torch.equal(loaded["features.2.weight"], small_state["features.2.weight"])


def test_download_with_wrong_hash_leaves_nothing(server, small_state, isolated_cache: Path) -> None:
    base, root = server
    save_small(root, small_state, "vgg19-deadbeef.pth")
    spec = WeightsSpec("vgg19", f"{base}/vgg19-deadbeef.pth", "deadbeef")
    with pytest.raises(WeightsError) as error:
        weights.download(spec, progress=False)
    assert not isinstance(error.value, WeightsUnavailable)
    message = str(error.value)
    assert spec.url in message and "deadbeef" in message and sha256(root / "vgg19-deadbeef.pth") in message
    assert not isolated_cache.parent.parent.exists()  # $TORCH_HOME: not even the folders made for the file


def test_download_from_a_dead_server_is_unavailable(dead_url: str, isolated_cache: Path) -> None:
    spec = WeightsSpec("vgg19", f"{dead_url}/vgg19-deadbeef.pth", "deadbeef")
    with pytest.raises(WeightsUnavailable) as error:
        weights.download(spec, progress=False, timeout=5)
    assert_offline_message(error)
    assert spec.url in str(error.value)
    assert not isolated_cache.exists() or list(isolated_cache.iterdir()) == []


def test_http_error_is_unavailable(server) -> None:
    base, _ = server
    spec = WeightsSpec("vgg19", f"{base}/vgg19-deadbeef.pth", "deadbeef")
    with pytest.raises(WeightsUnavailable, match="HTTP 404"):
        weights.download(spec, progress=False)


def test_silent_server_times_out() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()  # connections are queued, never answered
        spec = WeightsSpec("vgg19", f"http://127.0.0.1:{sock.getsockname()[1]}/vgg19-deadbeef.pth", "deadbeef")
        with pytest.raises(WeightsUnavailable, match="timed out"):
            weights.download(spec, progress=False, timeout=0.2)


def test_unwritable_cache_is_not_reported_as_offline(
    tmp_path: Path, dead_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("TORCH_HOME", str(blocker))
    spec = WeightsSpec("vgg19", f"{dead_url}/vgg19-deadbeef.pth", "deadbeef")
    with pytest.raises(WeightsError, match="cannot write .*set TORCH_HOME to a writable folder") as error:
        weights.download(spec, progress=False)
    assert not isinstance(error.value, WeightsUnavailable)


def test_verify_compares_the_prefix(tmp_path: Path, small_state) -> None:
    path = save_small(tmp_path, small_state)
    assert weights.verify(path, WeightsSpec("vgg19", "http://x/vgg19-0.pth", sha256(path)[:10]))
    assert not weights.verify(path, WeightsSpec("vgg19", "http://x/vgg19-0.pth", "00000000"))


# --- resolve ----------------------------------------------------------------------


def test_resolve_imagenet_downloads_from_the_mirror_and_checks_the_hash(
    server, small_state, monkeypatch: pytest.MonkeyPatch, isolated_cache: Path
) -> None:
    base, root = server
    save_small(root, small_state, "vgg19-dcbb9e9d.pth")  # the official name, but not the official content
    monkeypatch.setenv(weights.MIRROR_ENV, base)
    assert weights.spec_for("vgg19").url == f"{base}/vgg19-dcbb9e9d.pth"
    with pytest.raises(WeightsError, match=r"vgg19-dcbb9e9d\.pth: downloaded file has sha256 [0-9a-f]{64}") as error:
        weights.resolve("imagenet", "vgg19", required=SMALL, progress=False)
    assert not isinstance(error.value, WeightsUnavailable)
    assert not isolated_cache.parent.parent.exists()  # $TORCH_HOME: not even the folders made for the file


def test_resolve_imagenet_uses_the_cache_without_network(
    dead_url: str, small_state, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(weights.MIRROR_ENV, dead_url)  # any download attempt would fail
    cached = weights.cached_path(weights.spec_for("vgg19"))
    cached.parent.mkdir(parents=True)
    torch.save(small_state, cached)
    state, description = weights.resolve(None, "vgg19", required=SMALL)
    assert description == "ImageNet (torchvision vgg19-dcbb9e9d.pth)"
    assert torch.equal(state["features.2.weight"], small_state["features.2.weight"])


def test_resolve_imagenet_offline(dead_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(weights.MIRROR_ENV, dead_url)
    with pytest.raises(WeightsUnavailable) as error:
        weights.resolve("imagenet", "vgg19", required=SMALL, progress=False)
    assert_offline_message(error)
    assert "VGG-19" in str(error.value) and str(weights.cache_dir()) in str(error.value)
    with pytest.raises(WeightsUnavailable, match="downloads disabled"):
        weights.resolve("imagenet", "vgg19", required=SMALL, download_missing=False)


def test_resolve_path_from_the_environment(tmp_path: Path, small_state, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "mine.safetensors"
    save_file(small_state, path)
    monkeypatch.setenv(weights.WEIGHTS_ENV, str(path))
    state, description = weights.resolve(None, "vgg19", required=SMALL)
    assert torch.equal(state["features.0.weight"], small_state["features.0.weight"])
    assert description == f"file {path.resolve()} (sha256 {sha256(path)[:8]})"


def test_resolve_random(small_state, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(weights.WEIGHTS_ENV, "random")
    state, description = weights.resolve(None, "vgg19", seed=1, required=SMALL)
    assert "random" in description and "seed 1" in description
    assert list(state) == SMALL
    assert all(torch.equal(state[k], small_state[k]) for k in SMALL)


# --- import and status --------------------------------------------------------------


def full_tiny_state(arch: str, fill: float) -> dict[str, torch.Tensor]:
    """Every key at its full shape, stored as one number each (stride 0), so the file is a few kB."""
    return {key: torch.full((), fill).expand(shape) for key, shape in weights.expected_shapes(arch).items()}


def test_import_of_an_unofficial_file_suggests_using_it_directly(tmp_path: Path) -> None:
    path = save_small(tmp_path, full_tiny_state("vgg19", 0.5), "mine.pth")
    with pytest.raises(WeightsError) as error:
        weights.import_file(path, "vgg19")
    message = str(error.value)
    assert message.startswith(f"{path}: valid VGG-19 weights, but not torchvision's official file")
    assert f"sha256 {sha256(path)[:8]}, expected dcbb9e9d" in message
    assert message.endswith(f"use it directly with --vgg-weights {path}")
    assert not weights.cached_path(weights.spec_for("vgg19")).exists()


def test_import_of_the_official_file_fills_the_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = save_small(tmp_path, full_tiny_state("vgg16", 0.25), "copy.pth")
    official = WeightsSpec("vgg16", f"https://example.invalid/vgg16-{sha256(path)[:8]}.pth", sha256(path)[:8])
    monkeypatch.setitem(weights.IMAGENET, "vgg16", official)
    assert [row["present"] for row in weights.status()] == [False, False]
    cached = weights.import_file(path, "vgg16")
    assert cached == weights.cached_path(official)
    assert cached.read_bytes() == path.read_bytes()
    assert sorted(p.name for p in cached.parent.iterdir()) == [official.filename]
    vgg16_row = weights.status()[0]
    assert vgg16_row == {
        "arch": "vgg16", "url": official.url, "path": cached, "present": True, "size": path.stat().st_size
    }
    state, description = weights.resolve("imagenet", "vgg16", required=["features.28.bias"], download_missing=False)
    assert description == f"ImageNet (torchvision {official.filename})"
    assert torch.all(state["features.28.bias"] == 0.25)


# --- progress as events, the explicit download, no torch for paths -----------------------------------


def test_download_progress_is_reported_as_events_and_nothing_is_printed(server, small_state, capfd) -> None:
    base, root = server
    name = serve_small(root, small_state)
    spec = WeightsSpec("vgg19", f"{base}/{name}", name[6:14])
    seen: list[DownloadEvent] = []
    weights.download(spec, callback=seen.append)
    size = (root / name).stat().st_size
    assert seen[0] == DownloadEvent(spec.url, 0, size) and seen[-1] == DownloadEvent(spec.url, size, size)
    assert [event.done for event in seen] == sorted(event.done for event in seen)
    assert capfd.readouterr() == ("", "")  # the library never prints

    quiet: list[DownloadEvent] = []
    weights.cached_path(spec).unlink()
    weights.download(spec, progress=False, callback=quiet.append)
    assert quiet == []


def test_a_download_event_is_drawn_as_a_byte_bar() -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    stream = Terminal()
    with ProgressPrinter(stream=stream) as progress:
        for done in (0, 500_000, 1_000_000):
            progress(DownloadEvent("https://example.invalid/models/vgg19-dcbb9e9d.pth", done, 1_000_000))
    drawn = stream.getvalue()
    assert "downloading vgg19-dcbb9e9d.pth" in drawn and "1.00M/1.00M" in drawn


def test_an_explicit_download_that_fails_does_not_suggest_itself(dead_url: str) -> None:
    spec = WeightsSpec("vgg19", f"{dead_url}/vgg19-deadbeef.pth", "deadbeef")
    with pytest.raises(WeightsUnavailable) as error:
        weights.download(spec, progress=False, timeout=5, explicit=True)
    message = str(error.value)
    assert "\n" not in message and spec.url in message
    assert "painterly weights --download" not in message
    assert "Run this again once connected" in message
    assert "`painterly weights --import vgg19-deadbeef.pth --arch vgg19`" in message


def _painterly_in_a_subprocess(tmp_path: Path, code: str, **env: str) -> subprocess.CompletedProcess:
    environment = {**os.environ, "TORCH_HOME": str(tmp_path / "torch"), **env}
    environment.pop(weights.WEIGHTS_ENV, None)
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=300, env=environment)


def test_painterly_weights_does_not_import_torch(tmp_path: Path, dead_url: str) -> None:
    """Listing the paths, and a failed `--download`, in a fresh process: torch is never imported."""
    result = _painterly_in_a_subprocess(tmp_path, """
        import sys
        from painterly.cli import main
        for argv in (["weights"], ["weights", "--download", "--arch", "vgg19"]):
            try:
                main(argv)
            except SystemExit as exit:
                print("exit", exit.code)
        print("torch imported:", "torch" in sys.modules, "torchvision imported:", "torchvision" in sys.modules)
    """, PAINTERLY_WEIGHTS_MIRROR=dead_url)
    assert result.returncode == 0, result.stderr
    out = result.stdout.splitlines()
    assert out[-1] == "torch imported: False torchvision imported: False"
    assert f"  file: {tmp_path / 'torch' / 'hub' / 'checkpoints' / 'vgg19-dcbb9e9d.pth'}" in out
    assert out[-2] == "exit 1" and "Traceback" not in result.stderr
    [line] = result.stderr.splitlines()
    assert line.startswith("painterly: error: VGG-19 ImageNet weights could not be downloaded from "
                           f"{dead_url}/vgg19-dcbb9e9d.pth")
    assert "painterly weights --download" not in line and "painterly weights --import" in line


CACHE_ENVIRONMENTS = [{"TORCH_HOME": "{tmp}/home"}, {"XDG_CACHE_HOME": "{tmp}/xdg"}, {}]


@pytest.fixture(scope="module")
def cache_dirs_in_a_fresh_process(tmp_path_factory) -> list[str]:
    """For each of CACHE_ENVIRONMENTS, in one fresh interpreter (one import of torch for all three): whether
    weights.cache_dir() found before torch was imported is what it and torch.hub say once torch is."""
    tmp = tmp_path_factory.mktemp("cache")
    environments = [{key: value.format(tmp=tmp) for key, value in env.items()} for env in CACHE_ENVIRONMENTS]
    base = {key: value for key, value in os.environ.items() if key not in ("TORCH_HOME", "XDG_CACHE_HOME")}
    result = subprocess.run([sys.executable, "-c", textwrap.dedent("""
        import json, os, sys
        from pathlib import Path
        from painterly import weights

        def set_environment(env):
            for key in ("TORCH_HOME", "XDG_CACHE_HOME"):
                os.environ.pop(key, None)
            os.environ.update(env)

        environments, without = json.loads(sys.argv[1]), []
        for env in environments:
            set_environment(env)
            without.append(weights.cache_dir())
        assert "torch" not in sys.modules
        import torch.hub
        for env, path in zip(environments, without):
            set_environment(env)
            print(path == weights.cache_dir(), path == Path(torch.hub.get_dir(), "checkpoints"))
    """), json.dumps(environments)], capture_output=True, text=True, timeout=300, env=base)
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()


@pytest.mark.parametrize("env", CACHE_ENVIRONMENTS)
def test_the_cache_folder_is_torch_hubs_without_importing_torch(env: dict[str, str],
                                                                cache_dirs_in_a_fresh_process: list[str]) -> None:
    assert cache_dirs_in_a_fresh_process[CACHE_ENVIRONMENTS.index(env)] == "True True"


@pytest.mark.skipif(os.name != "posix", reason="RLIMIT_FSIZE")
def test_a_full_disk_during_a_download_is_one_line_and_leaves_nothing(tmp_path: Path, server, small_state) -> None:
    base, root = server
    name = serve_small(root, small_state)
    result = run_limited(f"""
        from painterly import weights
        from painterly.errors import WeightsError
        spec = weights.WeightsSpec("vgg19", "{base}/{name}", "{name[6:14]}")
        try:
            weights.download(spec, progress=False)
        except WeightsError as error:
            print(error)
    """, limit=(root / name).stat().st_size // 2)
    cached = tmp_path / "torch" / "hub" / "checkpoints" / name
    assert result.stdout == f"{cached}: cannot write (File too large); set TORCH_HOME to a writable folder\n"
    assert not (tmp_path / "torch").exists()


def test_integer_keys_in_a_vgg_file_are_one_line(tmp_path: Path, small_state) -> None:
    path = save_small(tmp_path, {0: small_state["features.0.weight"]}, "ints.pth")
    with pytest.raises(WeightsError) as error:
        weights.load_state_dict_file(path, "vgg19", required=SMALL)
    assert str(error.value) == f"{path}: key 0 is an int, not a parameter name; not a VGG state dict"


def test_a_wrapped_state_dict_loads(tmp_path: Path, small_state) -> None:
    path = save_small(tmp_path, {"state_dict": {f"module.{k}": v for k, v in small_state.items()}, "epoch": 90})
    loaded = weights.load_state_dict_file(path, "vgg19", required=SMALL)
    assert torch.equal(loaded["features.2.weight"], small_state["features.2.weight"])


# --- the random-weights warning, and consent to it ---------------------------------------------------


@pytest.mark.parametrize("source,env,warned", [
    (None, {weights.WEIGHTS_ENV: "random"}, True),  # chosen by the environment, not on this run: warned
    (None, {weights.WEIGHTS_ENV: "RANDOM"}, True),
    ("random", {}, False),  # asked for explicitly: consent
    ("Random", {}, False),
    (None, {weights.WEIGHTS_ENV: "random", weights.RANDOM_OK_ENV: "1"}, False),  # read once, silenced
    (None, {weights.WEIGHTS_ENV: "random", weights.RANDOM_OK_ENV: "0"}, True),
    (None, {}, False),  # ImageNet
    ("imagenet", {weights.WEIGHTS_ENV: "random"}, False),
    ("vgg.pth", {}, False),
])
def test_random_weights_warn_unless_consented(source, env, warned, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert weights.random_weights_warning(source) == (weights.RANDOM_WARNING if warned else None)


def test_the_warning_says_how_to_silence_it_and_follows_resolve(monkeypatch: pytest.MonkeyPatch) -> None:
    assert "--vgg-weights random" in weights.RANDOM_WARNING and weights.RANDOM_OK_ENV in weights.RANDOM_WARNING
    monkeypatch.setenv(weights.WEIGHTS_ENV, "random")
    _, description = weights.resolve(None, "vgg19", required=SMALL)
    assert description.startswith("random") and weights.random_weights_warning(None) is not None


def test_build_perceptual_loss_warns_only_without_consent(monkeypatch: pytest.MonkeyPatch) -> None:
    from painterly.config import StylizeConfig
    from painterly.events import MessageEvent
    from painterly.features import build_perceptual_loss

    def warnings_for(config: StylizeConfig) -> list[str]:
        heard: list = []
        build_perceptual_loss(config, torch.device("cpu"), callback=heard.append)
        return [event.text for event in heard if isinstance(event, MessageEvent) and event.level == "warning"]

    layers = {"content_layers": ("relu1_1",), "style_layers": ("relu1_1",)}
    assert warnings_for(StylizeConfig(vgg_weights="random", **layers)) == []
    monkeypatch.setenv(weights.WEIGHTS_ENV, "random")
    assert warnings_for(StylizeConfig(**layers)) == [weights.RANDOM_WARNING]
    monkeypatch.setenv(weights.RANDOM_OK_ENV, "1")
    assert warnings_for(StylizeConfig(**layers)) == []
