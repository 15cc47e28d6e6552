"""`python -m benchmarks.live`: the web UI's Live tab, end to end in headless Chromium with a fake camera.

Frames per second as the browser sees them: the page streams a camera to `painterly serve` (in this
process, on 127.0.0.1) and counts the stylised frames that come back, over `--seconds` after
`--warmup` seconds. The camera is Chromium's fake device playing a Y4M clip drawn by code (a pan across
`painterly.samples.landscape`, so that every frame differs) at each size measured, and the working size
is the camera's, so at 320×240 both the camera and the network run at 320×240. The networks are seeded
random TransformerNets, light and standard, their output layer calibrated to mid-grey
(`stroke_jobs.write_models`): their speed does not depend on their weights. The page's own readout
(measured on the server over its last frames) and the model's time per frame are reported beside.

Everything shares the machine: Chromium's capture, JPEG encoding and drawing take CPU from the network,
as they would on a laptop serving its own camera. `--screenshot PATH` saves the tab while the light
network streams at 320×240 (docs/live.png).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from painterly import samples

SIZES = ((320, 240), (640, 480))  # (width, height) of the camera and the working size
ARCHS = ("light", "standard")
CAMERA_FPS = 30  # the clip's frame rate: above what the stream reaches, so no frame is sent twice
CAMERA_FRAMES = 30  # one second of pan, looped by Chromium
CHROMIUM = "/usr/bin/chromium"  # Debian's, as the tests drive it
MIN_FRAMES, MAX_WAIT_S = 5, 120  # a row counts past --seconds until this many frames came, for at most this long
# Records the time of each new picture in the result (a changed src: Svelte may touch the element more often).
_COUNTER = """() => { window.painterlyFrames = []; const box = document.querySelector('#live-result');
    let shown = null;
    new MutationObserver(() => { const image = box.querySelector('img');
        if (image && image.src !== shown) { shown = image.src; window.painterlyFrames.push(performance.now()); } })
        .observe(box, {subtree: true, childList: true, attributes: true, attributeFilter: ['src']}); }"""


def camera_frames(height: int, width: int, count: int, step: int | None = None) -> list[np.ndarray]:
    """`count` uint8 frames of a pan across the drawn landscape, `step` pixels apart (default: a third
    of the width over the clip)."""
    step = step if step is not None else max(1, width // (3 * count))
    scene = np.round(samples.landscape(height, width + step * count) * 255).astype(np.uint8)
    return [np.ascontiguousarray(scene[:, step * index: step * index + width]) for index in range(count)]


def write_y4m(frames: list[np.ndarray], path: Path, fps: int) -> Path:
    """Frames as a Y4M clip (4:2:0, BT.601 studio range), which Chromium's fake camera plays in a loop
    (`--use-file-for-fake-video-capture`)."""
    height, width = frames[0].shape[:2]
    with open(path, "wb") as file:
        file.write(f"YUV4MPEG2 W{width} H{height} F{fps}:1 Ip A1:1 C420jpeg\n".encode())
        for frame in frames:
            file.write(b"FRAME\n")
            for plane in _yuv420(frame):
                file.write(plane.tobytes())
    return path


def _yuv420(rgb: np.ndarray) -> list[np.ndarray]:
    red, green, blue = (rgb[..., channel].astype(np.float32) for channel in range(3))
    luma = 16 + 0.257 * red + 0.504 * green + 0.098 * blue
    blue_diff = 128 - 0.148 * red - 0.291 * green + 0.439 * blue
    red_diff = 128 + 0.439 * red - 0.368 * green - 0.071 * blue

    def half(plane: np.ndarray) -> np.ndarray:
        return plane.reshape(plane.shape[0] // 2, 2, plane.shape[1] // 2, 2).mean(axis=(1, 3))

    return [np.clip(np.round(plane), 0, 255).astype(np.uint8) for plane in (luma, half(blue_diff), half(red_diff))]


def write_models(folder: Path, archs: tuple[str, ...] = ARCHS) -> dict[str, Path]:
    """{arch: model file} of seeded random networks calibrated to mid-grey, named `random-ARCH.safetensors`."""
    from .stroke_jobs import write_models as calibrated

    written = calibrated(str(folder), [f"johnson {arch}" for arch in archs])
    return {arch: Path(written[f"johnson {arch}"]).rename(folder / f"random-{arch}.safetensors") for arch in archs}


def fake_camera(clip: Path) -> tuple[str, ...]:
    """Chromium's flags for a fake camera, granted without asking, that plays `clip`."""
    return ("--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
            f"--use-file-for-fake-video-capture={clip}")


def start_stream(page, model: str, size: int) -> None:  # noqa: ANN001 - a Playwright page
    """On the Live tab: choose the model (by file name) and the working size, open the camera, Record."""
    page.get_by_role("tab", name="Live").click()
    choice = page.locator("#live-model input")
    choice.click()
    page.get_by_role("option", name=re.compile(re.escape(model))).click()
    page.locator("#live-size").get_by_text(f"{size}×{size * 3 // 4}").click()
    camera = page.locator("#live-camera")
    camera.get_by_text("Click to Access Webcam").click()
    camera.get_by_role("button", name="capture photo").click()
    page.locator("#live-result img").wait_for()


def stop_stream(page) -> None:  # noqa: ANN001 - a Playwright page
    page.locator("#live-camera").get_by_text("Stop", exact=True).click()


def measure(url: str, playwright, clip: Path, model: str, size: int, warmup: float, seconds: float,  # noqa: ANN001
            screenshot: Path | None = None) -> dict:
    """Frames per second the page received, and its readout, streaming `clip` through `model`."""
    browser = playwright.chromium.launch(executable_path=CHROMIUM, args=[
        "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", *fake_camera(clip)])
    try:
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.set_default_timeout(120_000)
        page.goto(url)
        start_stream(page, model, size)
        time.sleep(warmup)
        page.evaluate(_COUNTER)
        time.sleep(seconds)
        deadline = time.monotonic() + MAX_WAIT_S  # a slow row counts on until it has MIN_FRAMES frames
        while len(times := page.evaluate("window.painterlyFrames")) < MIN_FRAMES and time.monotonic() < deadline:
            time.sleep(0.5)
        readout = page.locator("#live-rate textarea").input_value()
        if screenshot is not None:
            page.screenshot(path=str(screenshot))
        stop_stream(page)
    finally:
        browser.close()
    fps = (len(times) - 1) / ((times[-1] - times[0]) / 1000) if len(times) >= 2 else 0.0
    server = re.search(r"([\d.]+) frames/s", readout)
    model_ms = re.search(r"model (\d+) ms", readout)
    return {"frames": len(times), "browser_fps": round(fps, 2), "readout": readout,
            "server_fps": float(server[1]) if server else None, "model_ms": int(model_ms[1]) if model_ms else None}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.live", description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=15.0, help="how long each row counts frames")
    parser.add_argument("--warmup", type=float, default=5.0, help="seconds streamed before counting")
    parser.add_argument("--device", default="auto", help="where the server runs the networks")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the rows as JSON")
    parser.add_argument("--screenshot", type=Path, metavar="PATH", help="save the tab (light network, 320×240)")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    from playwright import sync_api

    from painterly import web

    rows = []
    with tempfile.TemporaryDirectory(prefix="painterly-live-bench-") as scratch:
        root = Path(scratch)
        (root / "models").mkdir()
        models = write_models(root / "models")
        os.environ["PAINTERLY_HOME"] = str(root / "home")  # only these models: none from the user's cache
        app = web.build_app(models=root / "models", workdir=root, device=args.device)
        port = _free_port()
        app.launch(server_port=port, prevent_thread_lock=True, quiet=True)
        url = f"http://127.0.0.1:{port}"
        print(f"load average before: {' '.join(f'{load:.2f}' for load in os.getloadavg())}", file=sys.stderr)
        try:
            with sync_api.sync_playwright() as playwright:
                for width, height in SIZES:
                    clip = write_y4m(camera_frames(height, width, CAMERA_FRAMES), root / f"camera-{width}.y4m",
                                     CAMERA_FPS)
                    for arch in ARCHS:
                        shot = args.screenshot if (arch, width) == ("light", 320) else None
                        row = {"camera": f"{width}×{height}", "network": arch,
                               **measure(url, playwright, clip, models[arch].name, width, args.warmup, args.seconds,
                                         screenshot=shot)}
                        print(f"{row['camera']} {arch:8} {row['browser_fps']:6.2f} frames/s in the browser "
                              f"({row['frames']} frames), page readout: {row['readout']}", flush=True)
                        rows.append(row)
        finally:
            app.close()
    print(f"load average after: {' '.join(f'{load:.2f}' for load in os.getloadavg())}", file=sys.stderr)
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "cores": os.cpu_count()}, indent=2) + "\n")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


if __name__ == "__main__":
    main()
    # A stream's last frame may still be inside torch on one of Gradio's worker threads; letting the
    # interpreter tear down under it aborts ("terminate called without an active exception", exit 134)
    # after the results are out. Everything is written and closed by now: leave without the teardown.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
