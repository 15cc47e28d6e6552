"""Fixtures several test modules share (plain helpers are in helpers.py)."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
import typer.testing

from helpers import Chromium, WebServer, click_command, launch_chromium, shared_web_server
from painterly.weights import RANDOM_OK_ENV, WEIGHTS_ENV

# typer's CliRunner builds the app's click command afresh at each invoke: the tests' invokes share one.
typer.testing._get_command = click_command

# Under pytest-xdist (scripts/test.sh runs one worker per core) every worker computes with one thread,
# and so does every process a test starts (they inherit the environment): two OpenMP threads per worker
# on shared cores spin waiting for each other and made the suite slower, not faster.
if os.environ.get("PYTEST_XDIST_WORKER"):
    for _name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(_name, "1")
    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))


# The modules that start the web UI (gradio, ~6 CPU-s to import), a browser or both, run on one worker under
# `--dist loadfile` (scripts/test.sh), so that one process pays for gradio, Chromium and the shared servers;
# test_video_stabilize's Video-tab test imports gradio too. (xdist's `loadgroup` marks would do it, but its
# test-id suffix no longer reaches pytest 9's node ids.)
WEB_MODULES = ("test_web", "test_web_adain", "test_web_live", "test_web_regions", "test_web_zoo",
               "test_video_stabilize")


def _unit(nodeid: str) -> str:
    """What one worker runs whole under `--dist loadfile`: the test's file (xdist's scope), or "web" for the
    web modules."""
    module = nodeid.split("::", 1)[0]
    return "web" if Path(module).stem in WEB_MODULES else module


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The units (files; the web modules together) with a `slow` test first, then the others; within each
    kind the units with the most tests first; in a unit its slow tests first. xdist hands out the units in
    this order (its own by-count order is turned off below, since it puts a file of one 14 s test last): the
    long ones start early and the many short ones fill the end, so no worker is left with a long one while
    the other has finished."""
    slow = {item.nodeid for item in items if item.get_closest_marker("slow")}
    units: dict[str, list[int]] = {}
    for index, item in enumerate(items):
        units.setdefault(_unit(item.nodeid), []).append(index)
    has_slow = {unit: any(items[i].nodeid in slow for i in members) for unit, members in units.items()}
    first = {unit: members[0] for unit, members in units.items()}
    order = {index: (not has_slow[unit], -len(members), first[unit], items[index].nodeid not in slow, index)
             for unit, members in units.items() for index in members}
    items[:] = [items[index] for index in sorted(order, key=order.__getitem__)]


@pytest.hookimpl(optionalhook=True)  # xdist's hook: unknown (and so ignored) when it is not installed
def pytest_xdist_make_scheduler(config: pytest.Config, log):
    """`--dist loadfile`, with the web modules as one file."""
    if config.getvalue("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadFileScheduling

    class WebTogether(LoadFileScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return _unit(nodeid)

    config.option.loadscopereorder = False  # the collection's order (pytest_collection_modifyitems) instead
    return WebTogether(config, log)


@pytest.fixture(scope="session", autouse=True)
def _temp_folder_in_pytests(tmp_path_factory) -> Iterator[None]:
    """The tests' temporary files, and those of every process they start, in a folder of pytest's own (which
    keeps the last three runs' folders), not in the system's: gradio_client leaves an empty folder there at
    every download and torchrun a log folder at every run, and after a day of runs /tmp held 9,800 of them."""
    folder = tmp_path_factory.mktemp("tmp")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TMPDIR", str(folder))  # for the processes the tests start (tempfile reads it)
        patch.setattr(tempfile, "tempdir", str(folder))  # for this one, whose tempfile has read it already
        yield


@pytest.fixture(scope="session")
def web_server(tmp_path_factory) -> Iterator[WebServer]:
    """The web UI with a tiny fast model that test_web and test_web_live share, one per process
    (`helpers.shared_web_server`); a test that adds a model to its folder removes it again."""
    with shared_web_server(tmp_path_factory.mktemp("web"), with_adain=False) as server:
        yield server


@pytest.fixture(scope="session")
def adain_server(tmp_path_factory) -> Iterator[WebServer]:
    """The web UI with a tiny AdaIN model beside the fast one that test_web_adain and test_web_regions share,
    one per process."""
    with shared_web_server(tmp_path_factory.mktemp("web-adain"), with_adain=True) as server:
        yield server


@pytest.fixture(scope="session")
def chromium() -> Iterator[Chromium]:
    """The process's one Playwright and headless Chromium, started on first use (most workers never do)."""
    browsers = Chromium()
    try:
        yield browsers
    finally:
        browsers.close()


@pytest.fixture
def open_page(chromium: Chromium):
    """`open_page(url)`: a new page at `url` in a fresh context of the shared Chromium (its own cookies, storage
    and permissions), 1280 px wide, closed after the test. `height` the viewport's; `refused` a list to collect
    the URLs answered 403; `clock=True` installs the page's own clock (moved on by the test instead of waiting);
    `browser_args` launch a Chromium of the test's own with those flags (the Live tab's fake camera)."""
    opened: list = []  # contexts and own browsers, closed in reverse

    def open_(url: str, *, height: int = 900, refused: list[str] | None = None, clock: bool = False,
              browser_args: tuple[str, ...] = ()):
        browser = chromium.browser()
        if browser_args:
            browser = launch_chromium(chromium.playwright, *browser_args)
            opened.append(browser)
        context = browser.new_context(viewport={"width": 1280, "height": height})
        opened.append(context)
        page = context.new_page()
        page.set_default_timeout(90_000)  # generous: the test machine may be busy
        if refused is not None:
            page.on("response", lambda response: refused.append(response.url) if response.status == 403 else None)
        if clock:
            page.clock.install()
        page.goto(url)
        return page

    yield open_
    if opened:
        chromium.resume()
        try:
            for thing in reversed(opened):
                thing.close()
        finally:
            chromium.pause()


@pytest.fixture
def unchosen_random_weights(monkeypatch):
    """Random VGG weights that no setting of the run chose (`vgg_weights=None`): they warn, once.
    (`vgg_weights="random"` given explicitly is the user's consent, and silences the warning.)"""
    monkeypatch.setenv(WEIGHTS_ENV, "random")
    monkeypatch.delenv(RANDOM_OK_ENV, raising=False)


@pytest.fixture
def one_thread():
    """One torch thread for the test: tiny work gains nothing from two, and on 2 shared cores OpenMP's
    spinning threads make two far slower than one."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
