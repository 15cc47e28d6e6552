"""The web UI, through its real HTTP API and a real headless browser.

The process's shared server (conftest's `web_server`: on a free port of 127.0.0.1, with random VGG
weights, a tiny random fast model, and low limits, 1 MB uploads and 1 M pixels, so that
refusals are cheap to provoke); the few tests that need other settings launch an app of their own. The
browser tests open their pages in fresh contexts of the process's one Chromium (conftest's `open_page`).
"""

from __future__ import annotations

import asyncio
import hashlib
import http.server
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError

from helpers import (
    WEB_FAST,
    WEB_MAX_PIXELS,
    WEB_MAX_UPLOAD_MB,
    free_port,
    gallery_picture,
    local_http,
    picture,
    tiny_model,
    web_client,
    write_picture,
)
from painterly import cli, samples, web, weights
from painterly.config import ApplyConfig, StylizeConfig
from painterly.errors import ImageError, PainterlyError, UsageError
from painterly.fast import FastStylizer
from painterly.images import read_array, read_settings, save_image

MODEL, MAX_UPLOAD_MB, MAX_PIXELS = WEB_FAST, WEB_MAX_UPLOAD_MB, WEB_MAX_PIXELS
SCREENSHOT_ENV = "PAINTERLY_WEB_SCREENSHOT"


@pytest.fixture(scope="module")
def server(web_server):
    """(url, workdir, models folder) of the shared running app."""
    return web_server


@pytest.fixture(scope="module")
def client(server, tmp_path_factory):
    return web_client(server[0], tmp_path_factory.mktemp("downloads"))


def stylise(client: Client, *paths: Path, size: int | None = None, model: str = MODEL) -> tuple[list, list[str]]:
    """The fast tab's (gallery, downloads) for these files."""
    return client.predict([handle_file(str(path)) for path in paths], model, 1.0, "none", size, api_name="/fast")


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


# --- the tabs ----------------------------------------------------------------------------------


def test_fast_tab_returns_the_stylised_image_with_its_settings(client, tmp_path):
    photo = write_picture(tmp_path / "photo.png", 24, 40)
    gallery, downloads = stylise(client, photo)
    assert len(gallery) == len(downloads) == 1
    result, _ = read_array(downloads[0])
    assert result.shape == (24, 40, 3)
    assert read_array(gallery[0]["image"])[0].shape == (24, 40, 3)
    settings = read_settings(downloads[0])
    assert settings["method"] == "fast"
    assert settings["model"]["file"].endswith(MODEL)
    assert settings["input"]["sha256"] == sha256(photo)
    assert settings["config"]["strength"] == 1.0


def test_fast_tab_takes_several_images_and_a_size(client, tmp_path):
    photos = [write_picture(tmp_path / f"p{i}.png", 24 + 8 * i, 40, seed=i) for i in range(3)]
    _, downloads = stylise(client, *photos, size=32)
    assert [read_array(path)[0].shape for path in downloads] == [(19, 32, 3), (26, 32, 3), (32, 32, 3)]


def test_optimize_tab_streams_intermediate_images_then_the_result(client, tmp_path):
    photo = write_picture(tmp_path / "photo.png", 30, 40)
    job = client.submit(handle_file(str(photo)), [], True, 40, 6, 100, 1, "none", api_name="/optimize")
    image, status, download = job.result(timeout=120)
    updates = job.outputs()
    assert len(updates) >= 3  # intermediate images first, the written result last
    assert all(update[0] is not None for update in updates)
    assert "finished: 6 steps" in status
    assert read_array(image)[0].shape == (30, 40, 3)
    settings = read_settings(download)
    assert settings["method"] == "gatys"
    assert settings["config"]["steps"] == 6 and settings["config"]["vgg_weights"] == "random"
    defaults = StylizeConfig()  # the settings the page leaves alone are the CLI's defaults
    assert [settings["config"][name] for name in ("optimizer", "tv_weight", "style_scale", "style_blend")] == [
        defaults.optimizer, defaults.tv_weight, defaults.style_scale, None]


def test_optimize_tab_takes_the_clis_optimizer_tv_weight_style_scale_and_blend(client, tmp_path):
    photo = write_picture(tmp_path / "tubingen.png", 24, 32)
    paintings = [write_picture(tmp_path / "waves.png", 24, 32, seed=1),
                 write_picture(tmp_path / "starry night.png", 32, 24, seed=2)]
    uploads = [handle_file(str(path)) for path in paintings]
    job = client.submit(handle_file(str(photo)), uploads, False, 32, 3, 100, 1, "none", optimizer="adam",
                        tv_weight=0.5, style_scale=0.75, style_blend="1, 3", api_name="/optimize")
    image, status, download = job.result(timeout=120)
    assert "finished: 3 steps" in status
    assert Path(download).name == "tubingen_waves_starry-night.png"  # not result.png
    config = read_settings(download)["config"]
    assert config["optimizer"] == "adam" and config["tv_weight"] == 0.5 and config["style_scale"] == 0.75
    assert config["style_blend"] == [1.0, 3.0]
    assert config["lr"] is None  # Adam's own default rate, as on the command line
    for blend, message in (("1, x", "style blend: expected numbers"), ("2", "1 weights for 2 style images")):
        with pytest.raises(AppError, match=message) as error:
            client.predict(handle_file(str(photo)), uploads, False, 32, 3, 100, 1, "none", style_blend=blend,
                           api_name="/optimize")
        assert error.value.duration is None  # shown in the page until the user closes it
    with pytest.raises(AppError, match="style_scale must be positive"):  # StylizeConfig's own check
        client.predict(handle_file(str(photo)), uploads, False, 32, 3, 100, 1, "none", style_scale=0,
                       api_name="/optimize")


def test_downloads_are_named_after_the_photo_and_the_model(client, tmp_path):
    from painterly.web_files import download_name

    _, downloads = stylise(client, write_picture(tmp_path / "my photo.png"), write_picture(tmp_path / "b.png"))
    assert [Path(path).name for path in downloads] == ["my-photo_tiny.png", "b_tiny.png"]
    assert download_name("tubingen", "starry_night", suffix=".png") == "tubingen_starry_night.png"
    assert download_name("../../etc/passwd", "a\\b:c", suffix=".png") == "etc-passwd_a-b-c.png"  # nothing a path
    assert download_name("..", "", suffix=".mp4") == "painterly.mp4"


def test_stop_keeps_the_current_image(server, tmp_path):
    client = web_client(server[0], tmp_path)
    photo = write_picture(tmp_path / "photo.png", 30, 40)
    # 400 steps: far more than the test lets run; the first image comes at step 20 (a twentieth), then the stop.
    job = client.submit(handle_file(str(photo)), [], True, 32, 400, 100, 1, "none", api_name="/optimize")
    deadline = time.monotonic() + 60
    while not job.outputs() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert job.outputs(), "no intermediate image within 60 s"
    client.predict(api_name="/stop")
    image, status, download = job.result(timeout=60)
    assert status.startswith("stopped early")
    assert read_array(image)[0].shape == (24, 32, 3)
    assert read_settings(download)["stopped_early"] is True


def write_clip(path: Path, height: int, width: int, frames: int) -> Path:
    av = pytest.importorskip("av")
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=8)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for index in range(frames):
            pixels = (picture(height, width, seed=index) * 255).astype(np.uint8)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(pixels, format="rgb24")))
        container.mux(stream.encode())
    return path


def stylise_clip(client: Client, clip: Path) -> str:
    return client.predict(handle_file(str(clip)), MODEL, 1.0, "none", None, 0.5, api_name="/video")


def test_video_tab_returns_a_stylised_clip(client, tmp_path):
    av = pytest.importorskip("av")
    result = stylise_clip(client, write_clip(tmp_path / "clip.mp4", 24, 32, frames=6))
    with av.open(result) as container:
        assert container.streams.video[0].codec_context.name == "h264"  # plays in browsers
        frames = [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]
    assert len(frames) == 6
    assert frames[0].shape == (24, 32, 3)
    assert Path(result).name == "clip_tiny.mp4"  # named after the clip and the model


def test_video_frames_over_the_pixel_limit_are_refused(client, tmp_path):
    clip = write_clip(tmp_path / "large.mp4", 1008, 1008, frames=1)
    assert clip.stat().st_size < MAX_UPLOAD_MB * 1024 * 1024  # a small file of large frames
    # The library's own check (ApplyConfig.max_pixels, on every frame), not one of the web UI's.
    with pytest.raises(AppError, match=r"^large.mp4: 1008x1008 = 1,016,064 pixels is over the limit of 1,000,000"):
        stylise_clip(client, clip)


# --- safety ------------------------------------------------------------------------------------


def test_concurrent_requests_are_all_answered_correctly(server, client, tmp_path, capsys):
    """20 requests at once through the bounded queue; each gets its own image back."""
    _, _, models = server
    photos = [write_picture(tmp_path / f"c{i}.png", 24, 32, seed=100 + i) for i in range(20)]
    stylizer = FastStylizer(models / MODEL, ApplyConfig(device="cpu"))

    def timed(photo: Path) -> tuple[float, str]:
        start = time.perf_counter()
        _, downloads = stylise(client, photo)
        return time.perf_counter() - start, downloads[0]

    with ThreadPoolExecutor(len(photos)) as pool:
        answers = list(pool.map(timed, photos, timeout=240))
    for photo, (_, download) in zip(photos, answers):
        expected = stylizer.stylize(read_array(photo)[0])
        assert np.abs(read_array(download)[0] - expected).max() <= 1.5 / 255
        assert read_settings(download)["input"]["sha256"] == sha256(photo)
    seconds = [elapsed for elapsed, _ in answers]
    with capsys.disabled():  # shown in every run's output, not only on failure
        print(f"\n20 concurrent fast requests: median {statistics.median(seconds):.2f} s, max {max(seconds):.2f} s")


def test_oversized_uploads_are_refused_and_the_server_lives_on(server, client, tmp_path):
    big = tmp_path / "big.png"
    big.write_bytes(os.urandom((MAX_UPLOAD_MB + 1) * 1024 * 1024))
    with pytest.raises(ValueError, match="exceeds the maximum file size"):  # the client reads the limit...
        stylise(client, big)
    with httpx.Client(**local_http(), base_url=server[0], timeout=30) as http:  # ...and the server enforces it
        response = http.post("/gradio_api/upload", files={"files": ("big.png", big.read_bytes(), "image/png")})
    assert response.status_code == 413
    assert "maximum allowed size" in response.text
    many_pixels = save_image(np.full((1000, 1001, 3), 0.5, np.float32), tmp_path / "wide.png")
    assert many_pixels.stat().st_size < 1024 * 1024  # small file, too many pixels
    with pytest.raises(AppError, match=r"^wide.png: 1001x1000 = 1,001,000 pixels is over the limit of 1,000,000"):
        stylise(client, many_pixels)
    with pytest.raises(AppError, match="greater than maximum value 1000"):
        stylise(client, write_picture(tmp_path / "small.png"), size=5000)  # would make 25 M pixels
    assert len(stylise(client, write_picture(tmp_path / "ok.png"))[1]) == 1


def test_corrupt_and_non_image_uploads_give_a_message(client, tmp_path):
    photo = write_picture(tmp_path / "photo.png")
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(photo.read_bytes()[:80])
    with pytest.raises(AppError, match="corrupt"):
        stylise(client, corrupt)
    text = tmp_path / "notes.png"
    text.write_text("not a picture at all\n" * 10)
    with pytest.raises(AppError, match="not an image"):
        stylise(client, text)
    _, downloads = stylise(client, photo, corrupt)  # several files: the good one is still stylised
    assert len(downloads) == 1
    assert len(stylise(client, photo)[1]) == 1


def test_no_file_outside_the_working_folder_is_served(server, client, tmp_path):
    url, workdir, models = server
    secret = workdir.parent / "private.txt"
    stylise(client, write_picture(tmp_path / "photo.png"))
    result = next(workdir.rglob("photo_tiny.png"))  # named after the photo and the model
    with httpx.Client(**local_http(), base_url=url) as http:
        assert http.get(f"/gradio_api/file={result}").status_code == 200  # the route works...
        for path in ("/etc/passwd", str(secret), str(models / MODEL), f"{workdir}/../private.txt"):
            for route in (f"/gradio_api/file={path}", f"/gradio_api/file/{path.lstrip('/')}",
                          f"/gradio_api/file/{path}", f"/file={path}"):
                response = http.get(route)
                assert response.status_code in (403, 404), route  # ...but not outside the folder
                assert "TOP SECRET" not in response.text and "root:" not in response.text


def uploads_folder(workdir: Path) -> Path:
    """Gradio's upload folder of the module's server (GRADIO_TEMP_DIR in the fixture)."""
    return workdir.parent.parent / "uploads"


def test_a_file_hard_linked_into_a_served_folder_is_refused(server, client, tmp_path):
    """Gradio checks paths only; painterly serves a file only if it is the very file it wrote."""
    from painterly.web_files import NOT_SERVED

    url, workdir, _ = server
    secret = workdir.parent / "private.txt"
    stylise(client, write_picture(tmp_path / "linked.png"))
    result = next(workdir.rglob("linked_tiny.png"))
    gradio_copy = next(uploads_folder(workdir).rglob("linked_tiny.png"))  # what the page shows
    planted = [result.parent / "leak.png", uploads_folder(workdir) / "leak.png"]
    for path in planted:
        os.link(secret, path)
    (result.parent / "link.png").symlink_to(secret)
    with httpx.Client(**local_http(), base_url=url) as http:
        assert http.get(f"/gradio_api/file={result}").status_code == 200  # painterly's own file...
        assert http.get(f"/gradio_api/file={gradio_copy}").status_code == 200  # ...and Gradio's copy of it
        for path in [*planted, result.parent / "link.png"]:
            for route in (f"/gradio_api/file={path}", f"/gradio_api/file/{path}"):
                response = http.get(route)
                assert response.status_code == 403, route
                assert "TOP SECRET" not in response.text and NOT_SERVED in response.text
        result.unlink()
        os.link(secret, result)  # the very path painterly wrote, now another file
        response = http.get(f"/gradio_api/file={result}")
        assert response.status_code == 403 and "TOP SECRET" not in response.text


class RecordingServer(http.server.ThreadingHTTPServer):
    """A web server on 127.0.0.1 that serves a picture and remembers every request it sees."""

    def __init__(self, body: bytes) -> None:
        self.seen: list[str] = []
        recorder = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - the name http.server calls
                recorder.seen.append(self.path)
                self.send_response(200)
                self.send_header("Content-Type", "image/png")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:
                pass

        super().__init__(("127.0.0.1", 0), Handler)


def test_the_server_fetches_no_urls(server, tmp_path, monkeypatch):
    """Neither the file route, nor the proxy route, nor a file input given as a URL makes it fetch one."""
    import gradio.processing_utils
    import safehttpx

    from painterly.web_files import NO_URLS

    url, _, _ = server
    target = RecordingServer(write_picture(tmp_path / "remote.png").read_bytes())
    threading.Thread(target=target.serve_forever, daemon=True).start()
    remote = f"http://127.0.0.1:{target.server_port}/remote.png"

    async def public(host: str) -> str:  # as if 127.0.0.1 were a public address: Gradio's own check lets it by
        return "127.0.0.1"

    monkeypatch.setattr(safehttpx, "async_validate_url", public)
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    try:
        assert asyncio.run(gradio.processing_utils.async_ssrf_protected_get(remote)).status_code == 200
        assert target.seen == ["/remote.png"]  # Gradio's fetcher would reach the test's server...
        target.seen.clear()
        fake_upload = {"path": remote, "meta": {"_type": "gradio.FileData"}}
        with httpx.Client(**local_http(), base_url=url, timeout=30) as http:
            for route in (f"/gradio_api/file={remote}", f"/gradio_api/proxy={remote}", f"/gradio_api/file/{remote}"):
                response = http.get(route)
                assert response.status_code == 403, route
                assert NO_URLS in response.text
            event = http.post("/gradio_api/call/fast", json={"data": [[fake_upload], MODEL, 1, "none", None,
                                                                   *[None] * 8]})  # no drawn mask
            stream = http.get(f"/gradio_api/call/fast/{event.json()['event_id']}").text
        assert "event: error" in stream and "fetches no URLs" in stream
        assert target.seen == []  # ...but painterly's server never asked it for anything
    finally:
        target.shutdown()
        target.server_close()


def test_old_job_folders_are_removed_when_a_job_starts(server, client, tmp_path):
    _, workdir, _ = server
    old, recent = workdir / "fast-old", workdir / "fast-recent"
    for folder in (old, recent):
        folder.mkdir()
        write_picture(folder / "result.png")
    hours_ago = time.time() - 3 * 3600  # the server keeps results for web.KEEP_RESULTS_MINUTES
    os.utime(old, (hours_ago, hours_ago))
    stylise(client, write_picture(tmp_path / "fresh.png"))
    assert not old.exists()
    assert recent.exists() and next(workdir.rglob("fresh_tiny.png")).exists()


def test_job_folders_go_by_age_but_never_while_running(tmp_path):
    from painterly.web_files import FileGuard, Workspace

    root = tmp_path / "painterly-web-test"
    root.mkdir()
    workspace = Workspace(root, keep_seconds=60)
    guard = FileGuard(None, workspace=workspace, upload_folder=tmp_path / "uploads")
    an_hour_ago = time.time() - 3600
    with workspace.job("fast") as finished:
        [written] = workspace.written([write_picture(finished / "out.png")])
    assert guard.may_serve(written)
    with workspace.job("optimize") as running:
        os.utime(finished, (an_hour_ago, an_hour_ago))
        os.utime(running, (an_hour_ago, an_hour_ago))  # a long optimisation: old, but still running
        assert workspace.remove_old_jobs() == [finished]
        assert not finished.exists() and running.exists()
    assert not guard.may_serve(written)
    assert workspace.remove_old_jobs() == [running]  # finished now, and old
    with pytest.raises(ImageError), workspace.job("video") as failed:
        (failed / "partial.mp4").write_bytes(b"half")
        raise ImageError("clip.mp4: damaged")
    assert not failed.exists()  # a failed job leaves nothing behind
    workspace.close()
    assert not root.exists() and tmp_path.exists()


def test_shutdown_removes_the_working_folder_but_not_the_given_workdir(tmp_path, monkeypatch):
    monkeypatch.setenv("PAINTERLY_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path / "uploads"))
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("the user's own file")
    app = web.build_app(workdir=mine, vgg_weights="random", device="cpu")
    [workdir] = mine.glob("painterly-web-*")
    app.launch(server_port=free_port(), prevent_thread_lock=True, quiet=True)
    try:
        job = workdir / "fast-x"
        job.mkdir()
        write_picture(job / "result.png")
    finally:
        app.close()
    deadline = time.monotonic() + 60  # close() waits for the server's shutdown; this only bounds a hang
    while workdir.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not workdir.exists()
    assert (mine / "notes.txt").read_text() == "the user's own file"


def test_keep_results_must_be_a_minute_or_more(tmp_path):
    with pytest.raises(UsageError, match="keep results must be at least 1 minute, got 0"):
        web.build_app(workdir=tmp_path, keep_results_minutes=0)
    assert list(tmp_path.iterdir()) == []  # refused before anything was made
    from typer.testing import CliRunner

    result = CliRunner().invoke(cli.app, ["serve", "--keep-results", "0.5", "--workdir", str(tmp_path)])
    assert result.exit_code == 2
    assert "keep results must be at least 1 minute, got 0.5" in result.output


def test_an_input_naming_a_server_file_is_refused(server):
    """A hand-made request whose 'upload' is a path on the server is refused by Gradio."""
    url, _, _ = server
    fake_upload = {"path": "/etc/passwd", "meta": {"_type": "gradio.FileData"}}
    with httpx.Client(**local_http(), base_url=url, timeout=30) as http:
        event = http.post("/gradio_api/call/fast", json={"data": [[fake_upload], MODEL, 1, "none", None,
                                                                   *[None] * 8]})  # no drawn mask
        stream = http.get(f"/gradio_api/call/fast/{event.json()['event_id']}").text
    assert "event: error" in stream
    assert "root:" not in stream


def test_models_outside_the_list_are_refused(server, client, tmp_path):
    photo = write_picture(tmp_path / "photo.png")
    for name in ("/etc/passwd", "../../x.safetensors", str(server[2] / MODEL)):
        with pytest.raises(AppError):
            stylise(client, photo, model=name)


def test_refresh_lists_models_added_since_the_page_opened(server, tmp_path):
    client = web_client(server[0], tmp_path)
    added = server[2] / "added.safetensors"
    tiny_model(added)
    try:
        update = client.predict(MODEL, api_name="/fast_models")
        assert [value for _, value in update["choices"]] == ["added.safetensors", MODEL]
        assert update["value"] == MODEL
        assert len(stylise(client, write_picture(tmp_path / "photo.png"), model="added.safetensors")[1]) == 1
    finally:
        added.unlink()


def test_the_model_catalog_only_opens_listed_files(server, tmp_path):
    from painterly.web_handlers import ModelCatalog

    catalog = ModelCatalog([server[2], tmp_path / "missing"], device="cpu")
    assert catalog.names() == [MODEL]
    assert catalog.stylizer(MODEL) is catalog.stylizer(MODEL)  # loaded once, shared
    for name in ("/etc/passwd", "../models/" + MODEL, str(server[2] / MODEL), None):
        with pytest.raises(UsageError, match="choose one from the list"):
            catalog.stylizer(name)


def test_the_page_warns_about_random_weights(server):
    with httpx.Client(**local_http(), base_url=server[0]) as http:
        config = http.get("/config").text
    assert "random VGG weights" in config


def test_serve_warns_when_reachable_from_the_network(monkeypatch, capsys):
    launched = {}

    class FakeApp:
        def launch(self, **options):
            launched.update(options)

    monkeypatch.setattr(web, "build_app", lambda **options: FakeApp())
    web.serve(host="0.0.0.0", port=1234)
    assert "reachable from the network" in capsys.readouterr().err
    assert launched == {"server_name": "0.0.0.0", "server_port": 1234}
    web.serve()
    assert capsys.readouterr().err == ""
    assert web.is_loopback("127.0.0.1") and web.is_loopback("::1") and web.is_loopback("localhost")
    assert not web.is_loopback("0.0.0.0") and not web.is_loopback("example.org")


@pytest.mark.slow
def test_serve_says_where_it_serves_not_gradios_hints_and_leaves_nothing_behind(tmp_path):
    """A real `python -m painterly serve`, stopped with SIGTERM: no `share=True` hint, and the system's
    temporary folder is as empty afterwards as before (painterly's working folder and Gradio's both gone)."""
    temp = tmp_path / "tmp"
    temp.mkdir()
    env = {**os.environ, "TMPDIR": str(temp), "PAINTERLY_HOME": str(tmp_path / "home"),
           "TORCH_HOME": str(tmp_path / "torch")}
    env.pop("GRADIO_TEMP_DIR", None)
    url = f"http://127.0.0.1:{free_port()}"
    log = tmp_path / "serve.log"
    with log.open("w") as out:
        process = subprocess.Popen([sys.executable, "-m", "painterly", "serve", "--port", url.rsplit(":", 1)[1],
                                    "--vgg-weights", "random"], stdout=out, stderr=subprocess.STDOUT, env=env,
                                   cwd=tmp_path)
    try:
        deadline = time.monotonic() + 180  # only bounds a hang: it starts in seconds
        while f"serving on {url}" not in log.read_text() and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert f"painterly: serving on {url}" in log.read_text(), log.read_text()
        [workdir] = temp.glob("painterly-web-*")
        picture = write_picture(tmp_path / "photo.png").read_bytes()
        with httpx.Client(**local_http(), base_url=url, timeout=30) as http:
            assert http.get("/").status_code == 200
            [uploaded] = http.post("/gradio_api/upload", files={"files": ("photo.png", picture, "image/png")}).json()
        assert Path(uploaded).is_relative_to(workdir / "gradio")  # Gradio's uploads lie in painterly's folder
        assert Path(uploaded).read_bytes() == picture
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 143
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    output = log.read_text()
    assert "share=True" not in output and "Running on" not in output and "Traceback" not in output
    assert "painterly: stopped the web UI" in output and "error" not in output
    assert list(temp.iterdir()) == []


def test_the_page_says_whether_the_optimize_tab_has_its_vgg_weights(tmp_path, monkeypatch, open_page):
    """Offline without ImageNet weights the page says that Painting will fail, and how to fix it; the
    failure itself is a message that stays until closed."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))  # an empty cache
    monkeypatch.setenv(weights.MIRROR_ENV, f"http://127.0.0.1:{free_port()}")  # offline: nothing listens there
    monkeypatch.delenv(weights.WEIGHTS_ENV, raising=False)
    monkeypatch.setenv("PAINTERLY_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path / "uploads"))
    ready, missing = web.vgg_weights_status(None)
    assert not ready
    assert "Optimize tab will fail" in missing and "painterly weights --download" in missing
    assert "--vgg-weights PATH" in missing and "--vgg-weights random" in missing
    app = web.build_app(workdir=tmp_path / "work", device="cpu")
    url = f"http://127.0.0.1:{free_port()}"
    app.launch(server_port=int(url.rsplit(":", 1)[1]), prevent_thread_lock=True, quiet=True)
    page = None
    try:
        with httpx.Client(**local_http(), base_url=url, timeout=30) as http:
            assert "Optimize tab will fail" in http.get("/config").text
        client = web_client(url, tmp_path / "downloads")
        with pytest.raises(AppError, match="could not be downloaded") as error:
            client.predict(handle_file(str(write_picture(tmp_path / "photo.png"))), [], True, 32, 1, 100, 1, "none",
                           api_name="/optimize")
        assert error.value.duration is None  # not a notice that fades
        cached = weights.cached_path(weights.spec_for("vgg19"))
        cached.parent.mkdir(parents=True)
        cached.write_bytes(b"weights")  # as `painterly weights --download` would, while the server runs
        page = open_page(url, height=720)
        page.get_by_role("tab", name="Optimize").click()
        page.locator("#vgg-weights-status").get_by_text("ImageNet weights present").wait_for()  # no restart
    finally:
        if page is not None:
            page.context.close()  # before the server goes
        app.close()
    ready, present = web.vgg_weights_status(None)
    assert ready and "ImageNet weights present" in present and str(cached) in present
    assert not web.vgg_weights_status(str(tmp_path / "missing.pth"))[0]
    assert web.vgg_weights_status(str(cached)) == (True, f"VGG weights: the file `{cached}`.")
    assert "random VGG weights" in web.vgg_weights_status("random")[1]


def test_a_missing_web_extra_is_a_one_line_error(monkeypatch):
    monkeypatch.setattr(web.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(PainterlyError, match=r"pip install 'painterly\[web\]'"):
        web.build_app()


def test_default_model_dir_follows_painterly_home(monkeypatch, tmp_path):
    monkeypatch.setenv("PAINTERLY_HOME", str(tmp_path))
    assert web.default_model_dir() == tmp_path / "models"
    monkeypatch.delenv("PAINTERLY_HOME")
    assert web.default_model_dir() == Path.home() / ".cache" / "painterly" / "models"


# --- the browser -------------------------------------------------------------------------------



def test_a_real_browser_stylises_an_upload(server, open_page, tmp_path):
    """Headless Chromium: open the page, upload, run, and get a real picture back."""
    photo = save_image(samples.landscape(192, 256), tmp_path / "landscape.png")
    refused: list[str] = []  # the file guard must not get in the page's way
    page = open_page(server[0], refused=refused)
    page.locator("#fast-images input[type=file]").set_input_files(str(photo))
    # Uploaded once its name shows; Gradio may show stem and extension in separate elements.
    page.locator("#fast-images").get_by_text("landscape").first.wait_for()
    page.locator("#fast-run").click()
    pixels = gallery_picture(page, "#fast-gallery", tmp_path / "shown.png")
    assert pixels.shape == (192, 256, 3)
    assert pixels.std() > 0.01  # a picture, not a blank
    assert refused == []
    if os.environ.get(SCREENSHOT_ENV):
        page.screenshot(path=os.environ[SCREENSHOT_ENV], full_page=True)


def test_a_real_browser_keeps_errors_in_the_page(server, open_page, tmp_path):
    """A warning fades as before; an error stays until the user closes it, and the page names the weights."""
    good = write_picture(tmp_path / "good.png")
    corrupt = tmp_path / "broken.png"
    corrupt.write_bytes(good.read_bytes()[:80])
    page = open_page(server[0], clock=True)  # the page's own clock, moved on below instead of waiting for it
    page.locator("#fast-images input[type=file]").set_input_files([str(good), str(corrupt)])
    page.locator("#fast-images").get_by_text("broken").first.wait_for()
    page.locator("#fast-run").click()
    page.locator("#fast-gallery img").first.wait_for()  # the good one is stylised...
    warning = page.get_by_test_id("toast-text").filter(has_text="broken.png: ")
    warning.wait_for()  # ...and the broken one named once, by its name, not its path on the server
    assert page.get_by_test_id("toast-text").all_inner_texts() == [warning.inner_text()]
    assert "corrupt" in warning.inner_text()
    page.get_by_role("tab", name="Optimize").click()
    weights_line = page.locator("#vgg-weights-status, #random-weights-warning").first
    assert "random VGG weights" in weights_line.inner_text()
    page.locator("#optimize-run").click()  # no photo
    error = page.get_by_test_id("toast-text").filter(has_text="upload a photo first")
    error.wait_for()
    page.clock.fast_forward("01:00")  # past any notice's duration
    warning.wait_for(state="detached")  # the warning has faded...
    assert error.is_visible()  # ...the error is still there
