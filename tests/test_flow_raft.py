"""`--flow raft-small|raft-large`: torchvision's RAFT through the weights mechanism (mirror, hash, cache,
offline line), its flows in `flow`'s motion, and both video engines and `painterly weights` using it.

The real weights cannot be downloaded here: the tests serve a seeded random RAFT-small from 127.0.0.1
under a name carrying its own hash, as torchvision's files carry theirs. Random weights give
meaningless flows, so what is tested is the plumbing (the files, the shapes, the runs, the records),
not the flow's accuracy."""

from __future__ import annotations

import hashlib
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from helpers import dead_url, file_server, light_model_file, tiny_model
from painterly import flow, flow_raft, weights
from painterly.cli import app
from painterly.config import ApplyConfig, StylizeConfig
from painterly.errors import UsageError, WeightsError
from painterly.gatys_video import stylize_video_files
from painterly.images import save_image
from painterly.video import read_video_settings

FRAMES = 4


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.delenv(weights.MIRROR_ENV, raising=False)
    return tmp_path / "torch" / "hub" / "checkpoints"


@pytest.fixture(scope="module")
def random_raft(tmp_path_factory) -> Path:
    """A seeded random RAFT-small, named as torchvision names its files: <name>-<sha256 prefix>.pth."""
    folder = tmp_path_factory.mktemp("served")
    draft = folder / "draft.pth"
    torch.save(flow_raft.random_state_dict("raft-small", seed=3), draft)
    digest = hashlib.sha256(draft.read_bytes()).hexdigest()[:8]
    return draft.rename(folder / f"raft_small_C_T_V2-{digest}.pth")


@pytest.fixture
def mirror(random_raft, monkeypatch) -> str:
    """$PAINTERLY_WEIGHTS_MIRROR on a real server holding the random file, and the RAFT-small spec naming it."""
    spec = weights.spec_from_url("raft-small", f"https://download.pytorch.org/models/{random_raft.name}",
                                 label="RAFT-small", offline_message=flow_raft.OFFLINE_MESSAGE,
                                 failed_message=flow_raft.DOWNLOAD_FAILED_MESSAGE)
    monkeypatch.setitem(flow_raft.SPECS, "raft-small", spec)
    with file_server(random_raft.parent) as url:
        monkeypatch.setenv(weights.MIRROR_ENV, url)
        yield url


def offline(monkeypatch) -> None:
    monkeypatch.setenv(weights.MIRROR_ENV, dead_url())


def write_clip(path: Path, count: int = FRAMES, width: int = 64, height: int = 48) -> Path:
    """A square moving right over a gradient, in H.264."""
    y, x = np.mgrid[0:height, 0:width]
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=12)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for index in range(count):
            frame = np.stack([x * 255 // width, y * 255 // height, np.full_like(x, 90)], axis=2).astype(np.uint8)
            frame[10:26, 8 + 3 * index:24 + 3 * index] = 240
            picture = av.VideoFrame.from_ndarray(frame, format="rgb24")
            picture.pts = index
            container.mux(stream.encode(picture))
        container.mux(stream.encode(None))
    return path


# --- the files ----------------------------------------------------------------------------------


def test_the_urls_are_torchvisions():
    from torchvision.models.optical_flow import Raft_Large_Weights, Raft_Small_Weights

    assert flow_raft.RAFT_URLS == {"raft-small": Raft_Small_Weights.C_T_V2.url,
                                   "raft-large": Raft_Large_Weights.C_T_SKHT_V2.url}
    assert flow_raft.SPECS["raft-small"].sha256_prefix == "01064c6d"
    assert flow_raft.spec_for("raft-large").filename == "raft_large_C_T_SKHT_V2-ff5fadd5.pth"


def test_fetched_once_from_the_mirror_then_used_offline(mirror, random_raft, isolated_cache, monkeypatch):
    model = flow_raft.load_model("raft-small")
    cached = isolated_cache / random_raft.name
    assert cached.read_bytes() == random_raft.read_bytes()
    served = torch.load(random_raft, weights_only=True)
    key = next(iter(served))
    assert torch.equal(model.state_dict()[key], served[key]) and not model.training
    offline(monkeypatch)
    assert flow_raft.ensure_weights("raft-small") == cached  # from the cache: no network asked


def test_offline_without_the_file_is_one_line_with_the_ways_out(isolated_cache, monkeypatch):
    offline(monkeypatch)
    with pytest.raises(weights.WeightsUnavailable) as refused:
        flow.estimator("raft-large")
    message = str(refused.value)
    assert "\n" not in message and message.startswith("RAFT-large optical-flow weights are not in the cache")
    for way_out in ("painterly weights --download --arch raft-large", "--import raft_large_C_T_SKHT_V2-ff5fadd5.pth",
                    "--flow dis", str(isolated_cache / "raft_large_C_T_SKHT_V2-ff5fadd5.pth")):
        assert way_out in message
    assert not isolated_cache.exists() or not list(isolated_cache.iterdir())


@pytest.mark.parametrize("content, words", [
    ("vgg", "not RAFT-small weights (unexpected keys: features.0.weight"),
    ("nan", "holds NaN or infinity"),
    ("garbage", "not a PyTorch RAFT-small weights file"),
    ("empty", "empty file"),
])
def test_a_cached_file_that_is_not_raft_small_is_named(isolated_cache, monkeypatch, content, words):
    path = weights.cached_path(flow_raft.spec_for("raft-small"))
    path.parent.mkdir(parents=True)
    if content == "vgg":
        torch.save(weights.random_state_dict("vgg19", upto=1), path)
    elif content == "nan":
        state = flow_raft.random_state_dict("raft-small")
        next(value for value in state.values() if value.is_floating_point())[0] = float("nan")
        torch.save(state, path)
    else:
        path.write_bytes(b"" if content == "empty" else b"not a torch file at all")
    offline(monkeypatch)
    with pytest.raises(WeightsError) as refused:
        flow_raft.load_model("raft-small")
    assert str(refused.value).startswith(f"{path}: ") and words in str(refused.value)
    assert str(refused.value).endswith("it is the cached copy: delete it to download it again, or use --flow dis")


@pytest.fixture(scope="module")
def raft_bytes(random_raft) -> bytes:
    return random_raft.read_bytes()


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_cached_file_is_raft_small_or_one_weights_error(isolated_cache, monkeypatch, raft_bytes, data):
    """Whatever lies under RAFT-small's cached name (the file cut anywhere, a byte changed, random bytes):
    the network, or one WeightsError line naming the file; never a traceback."""
    kind = data.draw(st.sampled_from(["cut", "flipped", "random"]))
    if kind == "cut":
        content = raft_bytes[:data.draw(st.integers(0, len(raft_bytes) - 1))]
    elif kind == "flipped":
        at = data.draw(st.integers(0, len(raft_bytes) - 1))
        content = raft_bytes[:at] + bytes([raft_bytes[at] ^ 0xFF]) + raft_bytes[at + 1:]
    else:
        content = data.draw(st.binary(max_size=2048))
    path = weights.cached_path(flow_raft.spec_for("raft-small"))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    offline(monkeypatch)
    try:
        model = flow_raft.load_model("raft-small")
    except WeightsError as error:
        assert "\n" not in str(error) and str(error).startswith(f"{path}: ")
    else:
        assert kind == "flipped"  # a changed byte inside a tensor's data still loads: the hash is what checks that
        assert all(torch.isfinite(value).all() for value in model.state_dict().values()
                   if value.is_floating_point())


# --- the flows ----------------------------------------------------------------------------------


@given(st.integers(1, 5000), st.integers(1, 5000))
def test_the_working_size_is_what_raft_takes(height, width):
    rows, columns = flow_raft.working_size(height, width, flow.FLOW_LONG_SIDE)
    assert rows % 8 == 0 and columns % 8 == 0 and min(rows, columns) >= 128
    if min(height, width) * flow.FLOW_LONG_SIDE >= 128 * max(height, width):  # no side forced up to 128
        assert max(rows, columns) <= flow.FLOW_LONG_SIDE + 7
    assert abs(rows / columns - height / width) <= 8 / min(rows, columns) * max(1, height / width) + 1e-9


def test_raft_gives_both_flows_and_the_motion_at_the_frames_size(mirror):
    raft = flow.estimator("raft-small")
    rng = np.random.default_rng(0)
    previous = rng.random((40, 56, 3), dtype=np.float32)
    current = np.roll(previous, 2, axis=1)
    prepared = raft.prepare(current)
    assert tuple(prepared.shape) == (1, 3, 128, 184) and float(prepared.min()) >= -1 and float(prepared.max()) <= 1
    backward, forward = raft.flows(raft.prepare(previous), prepared)
    assert backward.shape == forward.shape == (128, 184, 2) and backward.dtype == np.float32
    assert np.isfinite(backward).all() and not np.array_equal(backward, forward)
    found = flow.motion(previous, current, raft)
    assert found.backward.shape == (40, 56, 2) and found.visible.shape == (40, 56)
    assert 0 <= found.visible.min() and found.visible.max() <= 1
    eight_bit = flow.motion((previous * 255).astype(np.uint8), (current * 255).astype(np.uint8), raft)
    assert eight_bit.backward.shape == (40, 56, 2)


def test_the_blend_follows_the_estimator_it_is_given(mirror):
    """The same frames blended along RAFT's flows and along DIS's: other motion, another second frame."""
    rng = np.random.default_rng(2)
    y, x = np.mgrid[0:48, 0:64].astype(np.float32)
    first = np.stack([x / 64, y / 48, 0.5 + 0.4 * np.sin(x / 5) * np.cos(y / 7)], axis=2)
    frames = [first, np.roll(first, 3, axis=1)]  # a small pan: not a cut
    styled = [rng.random((48, 64, 3), dtype=np.float32) for _ in frames]
    outputs = {}
    for name in ("dis", "raft-small"):
        blender = flow.FlowBlender(0.8, flow.estimator(name))
        outputs[name] = [blender(frame, painted) for frame, painted in zip(frames, styled)]
    np.testing.assert_array_equal(outputs["dis"][0], outputs["raft-small"][0])  # nothing to blend with yet
    assert np.abs(outputs["dis"][1] - outputs["raft-small"][1]).mean() > 1e-3


# --- the engines --------------------------------------------------------------------------------


def test_apply_stabilize_follows_raft_and_records_it(mirror, tmp_path):
    clip, model = write_clip(tmp_path / "clip.mp4"), light_model_file(tmp_path)
    out = tmp_path / "out.mp4"
    result = CliRunner().invoke(app, ["apply", str(model), str(clip), "-o", str(out), "--stabilize", "0.5",
                                      "--flow", "raft-small", "--device", "cpu", "--precision", "fp32", "--quiet"])
    assert result.exit_code == 0, result.output
    assert read_video_settings(out)["config"]["flow"] == "raft-small"
    with av.open(str(out)) as container:
        assert sum(1 for _ in container.decode(video=0)) == FRAMES


def test_apply_with_raft_offline_is_one_line_before_any_work(isolated_cache, tmp_path, monkeypatch):
    offline(monkeypatch)
    clips = tmp_path / "clips"
    clips.mkdir()
    write_clip(clips / "a.mp4"), write_clip(clips / "b.mp4")
    model = light_model_file(tmp_path)
    result = CliRunner().invoke(app, ["apply", str(model), str(clips), "-o", str(tmp_path / "out"), "--stabilize",
                                      "0.5", "--flow", "raft-small", "--device", "cpu"])
    assert result.exit_code == 1, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("painterly: error: RAFT-small optical-flow weights"), lines
    assert "--flow dis" in lines[0] and "Traceback" not in result.output
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())


def test_gatys_video_follows_raft_and_records_it(mirror, tmp_path, one_thread):
    clip = write_clip(tmp_path / "clip.mp4", count=3)
    style = save_image(np.random.default_rng(1).random((32, 32, 3), dtype=np.float32), tmp_path / "style.png")
    config = StylizeConfig(size=48, steps=3, frame_steps=2, vgg="vgg16", content_layers=("relu2_2",),
                           style_layers=("relu1_2",), vgg_weights="random", device="cpu", flow="raft-small")
    report = stylize_video_files(clip, [style], tmp_path / "out.mp4", config)
    assert report["frames"] == 3 and report["config"]["flow"] == "raft-small"
    assert read_video_settings(tmp_path / "out.mp4")["config"]["flow"] == "raft-small"


def test_the_web_video_tab_passes_its_flow_choice_to_stabilize(mirror, tmp_path):
    from painterly.web_files import Workspace
    from painterly.web_handlers import Handlers, ModelCatalog

    models, work = tmp_path / "models", tmp_path / "work"
    models.mkdir(), work.mkdir()
    tiny_model(models / "tiny.safetensors")
    handlers = Handlers(catalog=ModelCatalog([models], device="cpu"), workspace=Workspace(work, keep_seconds=60),
                        vgg_weights="random", device="cpu", max_pixels=1_000_000)
    clip = write_clip(tmp_path / "clip.mp4", count=3)
    steadied = handlers.video(str(clip), "tiny.safetensors", 1.0, "none", None, 0.0, 0.6, "raft-small")
    assert read_video_settings(steadied)["config"]["flow"] == "raft-small"
    plain = handlers.video(str(clip), "tiny.safetensors", 1.0, "none", None, 0.0, 0.0, "raft-small")
    assert read_video_settings(plain)["config"]["flow"] == "dis"  # Stabilise at 0: nothing follows a flow


@pytest.mark.parametrize("make, words", [
    (lambda: ApplyConfig(flow="raft-small"), "without stabilize nothing uses it"),
    (lambda: ApplyConfig(stabilize=0.5, flow="farneback"), "flow must be one of dis, raft-small, raft-large"),
    (lambda: StylizeConfig(flow="raft"), "flow must be one of dis, raft-small, raft-large"),
])
def test_flow_settings_that_cannot_apply_are_refused(make, words):
    with pytest.raises(UsageError, match=words):
        make()


def test_stylize_an_image_with_a_raft_flow_is_refused(tmp_path):
    photo = save_image(np.zeros((16, 16, 3), np.float32), tmp_path / "photo.png")
    result = CliRunner().invoke(app, ["stylize", str(photo), str(photo), "-o", str(tmp_path / "out.png"),
                                      "--flow", "raft-small", "--vgg-weights", "random", "--device", "cpu"])
    assert result.exit_code == 2 and "an image has none" in result.stderr, result.output
    assert not (tmp_path / "out.png").exists()


# --- painterly weights --------------------------------------------------------------------------


def test_weights_command_downloads_verifies_and_imports_raft(mirror, random_raft, isolated_cache, tmp_path):
    runner = CliRunner()
    result = runner.invoke(app, ["weights", "--download", "--arch", "raft-small"])
    assert result.exit_code == 0, result.output
    assert (isolated_cache / random_raft.name).is_file() and "raft-small: cached" in result.stdout
    assert "vgg19" not in result.stdout  # only what --arch named
    result = runner.invoke(app, ["weights", "--verify", "--arch", "raft-small"])
    assert "hash OK" in result.stdout, result.output
    other = tmp_path / "other.pth"
    torch.save(flow_raft.random_state_dict("raft-small", seed=4), other)
    result = runner.invoke(app, ["weights", "--import", str(other), "--arch", "raft-small"])
    assert result.exit_code == 1 and "not torchvision's official file" in result.stderr, result.output
    assert (isolated_cache / random_raft.name).read_bytes() == random_raft.read_bytes()  # left as it was
