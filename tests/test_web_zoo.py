"""The web UI and the model zoo: the catalogue's models listed in their tabs, pulled when chosen.

Behind the buttons (in-process `Handlers`, each test with its own empty $PAINTERLY_HOME) and in a real
headless browser (one app, built in that test). The zoo's downloads come from a real HTTP server on
127.0.0.1 ($PAINTERLY_MODELS_MIRROR): pytorch/examples' saved_models.zip with tiny random networks, and
pytorch-AdaIN's decoder.pth and vgg_normalised.pth in their published layout, random.
"""

from __future__ import annotations

import functools
import http.server
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest

from adain_helpers import write_published
from helpers import dead_url, file_server, free_port, gallery_picture, serving, tiny_model, write_picture
from painterly import web, zoo
from painterly.config import ApplyConfig
from painterly.fast import FastStylizer
from painterly.images import read_array, read_settings
from zoo_helpers import EXAMPLES_MEMBERS, EXAMPLES_ZIP, zoo_mirror

if TYPE_CHECKING:  # Gradio (with `web_handlers`) is imported by the tests that need it, not at collection
    from painterly.web_handlers import Handlers

JOHNSON = list(EXAMPLES_MEMBERS)  # candy, mosaic, rain-princess, udnie: the Fast tab's
MINE = "mine.safetensors"  # a model file of the user's own, beside the catalogue's
SCREENSHOT_ENV = "PAINTERLY_WEB_ZOO_SCREENSHOT"  # where the browser test saves a screenshot of the Fast tab


@pytest.fixture(scope="module")
def mirror(tmp_path_factory) -> Path:
    """The folder the mirror serves: every download the catalogue names, under its file name."""
    folder = zoo_mirror(tmp_path_factory.mktemp("mirror"))
    write_published(folder)  # decoder.pth, vgg_normalised.pth
    return folder


@pytest.fixture(scope="module")
def mirror_url(mirror) -> Iterator[str]:
    with file_server(mirror) as url:
        yield url


@pytest.fixture
def home(tmp_path, monkeypatch, mirror_url) -> Path:
    """An empty $PAINTERLY_HOME for the test, the zoo's downloads from the local mirror."""
    monkeypatch.setenv(zoo.HOME_ENV, str(tmp_path / "home"))
    monkeypatch.setenv(zoo.MIRROR_ENV, mirror_url)
    return tmp_path / "home"


@pytest.fixture
def mine(tmp_path) -> Path:
    """A --models folder with one tiny model of the user's own."""
    folder = tmp_path / "mine"
    folder.mkdir()
    tiny_model(folder / MINE)
    return folder


def make_handlers(root: Path, *folders: Path) -> Handlers:
    """What `web.build_app` puts behind the buttons: the folders given, then the zoo's."""
    from painterly.web_files import Workspace
    from painterly.web_handlers import Handlers, ModelCatalog

    (root / "work").mkdir()
    return Handlers(catalog=ModelCatalog([*folders, zoo.models_dir()], device="cpu"),
                    workspace=Workspace(root / "work", keep_seconds=60), vgg_weights="random", device="cpu",
                    max_pixels=1_000_000)


@functools.cache
def _recorded_progress_class() -> type:
    import gradio as gr

    class RecordedProgress(gr.Progress):
        """Gradio's progress bar as a handler sees it, recording what it is told (outside a page it shows
        nothing)."""

        def __init__(self) -> None:
            super().__init__()
            self.updates: list[tuple[object, str | None]] = []

        def __call__(self, progress, desc=None, total=None, unit="steps", _tqdm=None):  # type: ignore[override]
            self.updates.append((progress, desc))

    return RecordedProgress


def recorded_progress():  # noqa: ANN201 - a gradio.Progress, defined when first asked for (Gradio imported then)
    """A new progress bar that records its `updates`: (progress, description) pairs."""
    return _recorded_progress_class()()


def tree(folder: Path) -> dict[str, bytes]:
    """Every file under `folder` with its bytes (empty when the folder does not exist)."""
    return {str(path.relative_to(folder)): path.read_bytes() for path in sorted(folder.rglob("*")) if path.is_file()}


def choices(handlers: Handlers, kind: str) -> dict[str, str]:
    """The published list of a tab: name -> label."""
    return {name: label for label, name in handlers.published_choices(kind)}


# --- behind the buttons ------------------------------------------------------------------------


def test_each_tab_lists_the_catalogues_models_of_its_kind_pulled_or_not(home, mine, tmp_path):
    from painterly.web_handlers import ARBITRARY, FAST

    handlers = make_handlers(tmp_path, mine)
    fast, arbitrary = choices(handlers, FAST), choices(handlers, ARBITRARY)
    assert list(fast) == JOHNSON and list(arbitrary) == ["adain"]  # all five, each in its own tab
    assert fast["candy"] == "candy — Candy, pytorch/examples · not downloaded yet"
    assert arbitrary["adain"] == "adain — AdaIN (Huang & Belongie 2017), naoto0804/pytorch-AdaIN · not downloaded yet"
    assert handlers.catalog.names(FAST) == [MINE] and handlers.catalog.names(ARBITRARY) == []  # nothing pulled

    dropdown, radio, line = handlers.choose_published("candy", FAST, recorded_progress())
    assert dropdown.value == "candy" and radio.value == "candy"  # pulled, and now the model list's choice
    assert ("candy — Candy, pytorch/examples", "candy") in dropdown.choices
    assert "BSD-3-Clause" in line and "[pytorch/examples](https://github.com/pytorch/examples" in line
    fast = choices(handlers, FAST)  # as the next page load lists them: no restart
    assert fast["candy"].endswith("· downloaded")
    assert all(fast[name].endswith("· not downloaded yet") for name in JOHNSON[1:])
    assert handlers.catalog.names(FAST) == ["candy", MINE]  # by its name, not as candy.safetensors too
    assert handlers.catalog.names(ARBITRARY) == []
    assert choices(handlers, ARBITRARY)["adain"].endswith("not downloaded yet")
    assert [name for _, name in handlers.refresh_models(None, FAST).choices] == ["candy", MINE]
    radio, line = handlers.published_models(MINE, FAST)  # a file of the user's chosen: no catalogue model picked
    assert radio.value is None and all(name in line for name in JOHNSON) and "BSD-3-Clause" in line


def test_the_licence_line_names_licence_source_and_painting():
    from painterly.web_handlers import licence_line

    entries = [zoo.entry(name) for name in (*JOHNSON, "adain")]
    udnie = licence_line(entries, "udnie")
    assert udnie.startswith("**udnie**: licence BSD-3-Clause") and "Francis Picabia" in udnie
    assert "`painterly models info udnie`" in udnie
    adain = licence_line(entries, "adain")
    assert "licence MIT" in adain and "[naoto0804/pytorch-AdaIN](https://github.com/naoto0804/pytorch-AdaIN)" in adain
    unchosen = licence_line(entries, None)
    assert "candy, mosaic, rain-princess, udnie: licence BSD-3-Clause" in unchosen and "adain: licence MIT" in unchosen


def test_choosing_a_missing_model_pulls_it_then_stylises(home, tmp_path):
    handlers = make_handlers(tmp_path)
    photo = write_picture(tmp_path / "photo.png", 24, 40)
    progress = recorded_progress()
    results, downloads = handlers.fast([str(photo)], "mosaic", 1.0, "none", None, progress=progress)
    assert zoo.is_pulled("mosaic") and not zoo.is_pulled("candy")  # only the model chosen is converted
    assert any(desc == f"downloading {EXAMPLES_ZIP}" for _, desc in progress.updates)  # the download's bytes
    assert Path(downloads[0]).name == "photo_mosaic.png"
    result = read_array(downloads[0])[0]
    local = FastStylizer(zoo.model_path("mosaic"), ApplyConfig(device="cpu"))
    assert np.abs(result - local.stylize(read_array(photo)[0])).max() <= 1.5 / 255
    assert np.abs(result - read_array(photo)[0]).max() > 0.1  # stylised, not the photo back
    assert read_settings(downloads[0])["model"]["file"].endswith("mosaic.safetensors")
    progress = recorded_progress()
    handlers.fast([str(photo)], "mosaic", 1.0, "none", None, progress=progress)  # the second time: no download
    assert not any(desc and desc.startswith("downloading") for _, desc in progress.updates)


def test_the_any_painting_tab_pulls_the_adain_model_when_chosen(home, tmp_path):
    import gradio as gr

    from painterly.web_handlers import ARBITRARY, FAST

    handlers = make_handlers(tmp_path)
    with pytest.raises(gr.Error, match="adain is an arbitrary-style model .*Any painting"):
        handlers.choose_published("adain", FAST, recorded_progress())  # refused before any download
    assert not zoo.models_dir().exists()
    dropdown, radio, line = handlers.choose_published("adain", ARBITRARY, recorded_progress())
    assert dropdown.value == "adain" and handlers.catalog.names(ARBITRARY) == ["adain"]
    assert "licence MIT" in line
    photo = write_picture(tmp_path / "photo.png", 24, 32)
    painting = write_picture(tmp_path / "waves.png", 24, 24, seed=3)
    _, [result] = handlers.any_painting([str(photo)], [str(painting)], "adain", "", 1.0, "none", None, "", 8,
                                        None, 0, recorded_progress())
    assert Path(result).name == "photo_waves.png"
    assert read_array(result)[0].shape == (24, 32, 3)
    assert read_settings(result)["method"] == "adain"


def test_offline_a_chosen_model_is_one_line_in_the_page_and_nothing_is_written(home, tmp_path, monkeypatch):
    """The AdaIN model's downloads are its own (pytorch/examples' zip, once downloaded, serves all four of its
    models offline too)."""
    import gradio as gr

    from painterly.web_handlers import ARBITRARY, FAST

    handlers = make_handlers(tmp_path)
    handlers.choose_published("candy", FAST, recorded_progress())  # the cache holds something already
    before = tree(home)
    offline = dead_url()
    monkeypatch.setenv(zoo.MIRROR_ENV, offline)
    photo, painting = write_picture(tmp_path / "photo.png"), write_picture(tmp_path / "painting.png", seed=2)
    for choose in (lambda: handlers.choose_published("adain", ARBITRARY, recorded_progress()),
                   lambda: handlers.any_painting([str(photo)], [str(painting)], "adain", "", 1.0, "none", None, "",
                                                 8, None, 0, recorded_progress())):
        with pytest.raises(gr.Error) as error:
            choose()
        message = str(error.value)
        assert "adain" in message and offline in message and "\n" not in message
        assert error.value.duration is None  # stays in the page until closed
    assert tree(home) == before  # the cache as it was: nothing half written, no hash recorded
    assert list((tmp_path / "work").iterdir()) == []  # no job folder left either
    assert choices(handlers, ARBITRARY)["adain"].endswith("not downloaded yet")
    assert handlers.catalog.names(ARBITRARY) == [] and handlers.catalog.names(FAST) == ["candy"]


class HeldServer(http.server.ThreadingHTTPServer):
    """Serves a folder, holding every response until `release` is set, and records each path asked for."""

    def __init__(self, root: Path) -> None:
        super().__init__(("127.0.0.1", 0), functools.partial(_HeldHandler, directory=str(root)))
        self.asked: list[str] = []
        self.arrived = threading.Event()
        self.release = threading.Event()


class _HeldHandler(http.server.SimpleHTTPRequestHandler):
    server: HeldServer

    def do_GET(self) -> None:
        self.server.asked.append(self.path)
        self.server.arrived.set()
        self.server.release.wait(timeout=120)  # only bounds a hang: the test releases it
        super().do_GET()

    def log_message(self, *args) -> None:
        pass


@contextmanager
def held_server(root: Path) -> Iterator[HeldServer]:
    server = HeldServer(root)
    with serving(server):
        try:
            yield server
        finally:
            server.release.set()  # a held answer must not keep the server from shutting down


def test_two_requests_choosing_one_missing_model_pull_it_once(home, tmp_path, monkeypatch, mirror):
    from painterly.web_handlers import FAST

    handlers = make_handlers(tmp_path)
    first, second = recorded_progress(), recorded_progress()
    answers: dict[str, object] = {}

    def choose(key: str, progress) -> None:
        try:
            answers[key] = handlers.choose_published("rain-princess", FAST, progress)[0].value
        except Exception as error:  # noqa: BLE001 - shown by the assertion below
            answers[key] = error

    with held_server(mirror) as server:
        monkeypatch.setenv(zoo.MIRROR_ENV, f"http://127.0.0.1:{server.server_address[1]}")
        threads = [threading.Thread(target=choose, args=("first", first))]
        threads[0].start()
        assert server.arrived.wait(timeout=120)  # the first request is downloading (held by the server)...
        threads.append(threading.Thread(target=choose, args=("second", second)))
        threads[1].start()
        deadline = time.monotonic() + 120  # only bounds a hang: the second request says it waits, or asks too
        while not any("waiting" in (desc or "") for _, desc in second.updates) and len(server.asked) < 2:
            assert time.monotonic() < deadline, "the second request neither waited nor downloaded"
            time.sleep(0.01)
        server.release.set()
        for thread in threads:
            thread.join(timeout=120)
    assert answers == {"first": "rain-princess", "second": "rain-princess"}
    assert [path.split("?")[0] for path in server.asked] == [f"/{EXAMPLES_ZIP}"]  # one download between them
    assert any(desc == "rain-princess: waiting for the download another request started" for _, desc in second.updates)
    assert not any((desc or "").startswith("downloading") for _, desc in second.updates)
    assert FastStylizer(zoo.model_path("rain-princess"), ApplyConfig(device="cpu")).stylize(
        np.full((8, 8, 3), 0.5, np.float32)).shape == (8, 8, 3)


def test_web_uses_the_zoos_models_folder(home):
    assert web.default_model_dir() == zoo.models_dir() == home / "models"


# --- the browser -------------------------------------------------------------------------------


def test_a_real_browser_sees_the_offline_message_then_picks_a_published_model_and_stylises(
        home, mine, tmp_path, monkeypatch, mirror_url, open_page):
    """Headless Chromium: with the mirror dead, choose a catalogue model and see the one line, nothing written;
    with it back, choose one, see it downloaded and its licence, and stylise an upload with it. (Offline first:
    once pytorch/examples' zip is downloaded, its other models need no network.)"""
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path / "uploads"))
    app = web.build_app(models=mine, workdir=tmp_path / "work", vgg_weights="random", device="cpu")
    url = f"http://127.0.0.1:{free_port()}"
    app.launch(server_port=int(url.rsplit(":", 1)[1]), prevent_thread_lock=True, quiet=True)
    photo = write_picture(tmp_path / "landscape.png", 48, 64)
    page = None
    try:
        page = open_page(url)
        published = page.locator("#fast-published")
        offline = dead_url()
        monkeypatch.setenv(zoo.MIRROR_ENV, offline)  # the server reads it at each pull
        published.get_by_text("udnie — Udnie (Francis Picabia, 1913), pytorch/examples · not downloaded yet"
                              ).click()
        error = page.get_by_test_id("toast-text").filter(has_text="udnie: could not download")
        error.wait_for()
        assert offline in error.inner_text()
        published.locator("input:checked").wait_for(state="detached")  # unpicked: picking it again retries
        assert tree(home) == {} and not zoo.is_pulled("udnie")
        monkeypatch.setenv(zoo.MIRROR_ENV, mirror_url)
        published.get_by_text("candy — Candy, pytorch/examples · not downloaded yet").click()
        published.get_by_text("candy — Candy, pytorch/examples · downloaded").wait_for()
        page.locator("#fast-published-licence").get_by_text("licence BSD-3-Clause").wait_for()
        assert page.locator("#fast-model input").input_value() == "candy — Candy, pytorch/examples"
        assert zoo.is_pulled("candy")
        page.locator("#fast-images input[type=file]").set_input_files(str(photo))
        page.locator("#fast-images").get_by_text("landscape").first.wait_for()
        page.locator("#fast-run").click()
        pixels = gallery_picture(page, "#fast-gallery", tmp_path / "shown.png")
        assert pixels.shape == (48, 64, 3)
        assert np.abs(pixels - read_array(photo)[0]).max() > 0.1  # stylised
        page.get_by_role("tab", name="Any painting").click()
        page.locator("#any-published").get_by_text("adain — AdaIN (Huang & Belongie 2017)").first.wait_for()
        if os.environ.get(SCREENSHOT_ENV):
            page.get_by_role("tab", name="Fast").click()
            page.screenshot(path=os.environ[SCREENSHOT_ENV], full_page=True)
    finally:
        if page is not None:
            page.context.close()  # before the server goes
        app.close()
