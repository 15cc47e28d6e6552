"""The web UI's mask editor (`web_regions`): the drawing's layers as labels, the mask written and read back,
a mask file or an automatic mask shown in the editor, each engine's tab giving each region its style or
keeping the photo, and one real-Chromium run that paints a region in the page.

The handlers are called directly (tiny photos, test_web_adain's tiny random AdaIN and Johnson models,
random VGG weights); the browser test uses test_web_adain's server. Gradio (with `web_handlers`) is imported
by the tests that need it, not at collection.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np
import pytest

from helpers import gallery_picture, write_picture
from painterly import samples
from painterly.config import ApplyConfig
from painterly.fast import FastStylizer
from painterly.images import read_array, read_settings, save_image
from painterly.provenance import describe_file
from painterly.regions import KEEP, auto_mask, read_mask
from painterly.web_regions import (
    BRUSH,
    PAINTED_ALPHA,
    REGION_NAMES,
    TINT,
    automatic_in_editor,
    drawn_labels,
    editor_layer,
    mask_file_in_editor,
    mask_labels,
    painting_order,
    save_drawing,
)
from test_web_adain import ADAIN, JOHNSON, expected, server, write_mask  # noqa: F401 - server: the fixture

MAX_PIXELS = 1_000_000
SCREENSHOT_ENV = "PAINTERLY_WEB_REGIONS_SCREENSHOT"  # where the browser test saves a screenshot of the editor
NO_CHOICE = (None,) * len(REGION_NAMES)


def drawing(labels: np.ndarray) -> dict:
    """The editor's value for a drawing of these labels (0 unpainted, k the k-th brush colour)."""
    return {"background": None, "layers": [editor_layer(labels)], "composite": None}


def choose(**regions: str) -> tuple[str | None, ...]:
    """One choice per page region, by name: choose(unpainted="keep", red="2")."""
    return tuple(regions.get(name) for name in REGION_NAMES)


def left_red(height: int, width: int) -> np.ndarray:
    labels = np.zeros((height, width), np.uint8)
    labels[:, : width // 2] = 1
    return labels


@pytest.fixture(scope="module")
def handlers(server, tmp_path_factory):  # noqa: F811 - the imported fixture
    from painterly.web_files import Workspace
    from painterly.web_handlers import Handlers, ModelCatalog

    work = tmp_path_factory.mktemp("regions-work")
    return Handlers(catalog=ModelCatalog([server[1]], device="cpu"), workspace=Workspace(work, keep_seconds=600),
                    vgg_weights="random", device="cpu", max_pixels=MAX_PIXELS)


@pytest.fixture(scope="module")
def pictures(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("regions-pictures")
    return {"photo": write_picture(folder / "harbour.png", 24, 32),
            "sea": write_picture(folder / "sea.png", 24, 24, seed=6),
            "sky": write_picture(folder / "sky.png", seed=7)}


# --- the drawing ------------------------------------------------------------------------------------


def test_drawn_layers_become_exact_labels():
    height, width = 12, 16
    first = np.zeros((height, width, 4), np.uint8)
    first[:, :8] = (*BRUSH[0], 255)  # red over the left half
    first[0, :8, 3] = PAINTED_ALPHA - 1  # a stroke's faint rim: unpainted
    first[1, :8, :3] = (200, 40, 90)  # an antialiased, slightly other colour: still the nearest, red
    first[2, :8, 3] = PAINTED_ALPHA  # half opaque: painted
    second = np.zeros_like(first)
    second[6:, 4:12] = (*BRUSH[2], 255)  # a later layer's blue covers the red
    second[6:, 12:] = (*BRUSH[1], 0)  # a colour under no alpha (erased): nothing
    labels = np.zeros((height, width), np.uint8)
    labels[:, :8] = 1
    labels[0, :8] = 0
    labels[6:, 4:12] = 3
    assert np.array_equal(drawn_labels({"background": None, "layers": [first, second], "composite": None}), labels)
    assert np.array_equal(drawn_labels(drawing(labels)), labels)  # editor_layer is the inverse
    for nothing in (None, {"layers": []}, {"layers": [np.zeros((4, 4, 4), np.uint8)]}):
        assert drawn_labels(nothing) is None  # nothing painted: the whole photo is styled


def test_a_drawing_is_written_as_a_mask_file_in_its_own_region_order(tmp_path):
    labels = np.zeros((8, 8), np.uint8)
    labels[:2, :2] = 3  # blue first from the top-left: the file's region 1
    labels[4:] = 1
    drawn = save_drawing(drawing(labels), choose(unpainted=KEEP, red="2", blue="1"), tmp_path)
    assert drawn.path == tmp_path / "mask.png"
    assert drawn.names == ("blue", "unpainted", "red") and drawn.choices == ("1", KEEP, "2")
    assert drawn.mask.colors == (BRUSH[2], (255, 255, 255), BRUSH[0])
    assert np.array_equal(read_mask(drawn.path).labels, np.choose(labels, [1, 2, 0, 0]))  # 0->1, 1->2, 3->0
    assert painting_order(drawn, 2) == [0, None, 1]
    with pytest.raises(Exception, match="the red region takes painting 2 and 1 painting is uploaded"):
        painting_order(drawn, 1)
    every_keep = save_drawing(drawing(labels), choose(unpainted=KEEP, red=KEEP, blue=KEEP), tmp_path / "keep")
    with pytest.raises(Exception, match="every region of the mask drawing keeps the photo"):
        painting_order(every_keep, 2)
    with pytest.raises(Exception, match="the red region has no style chosen"):
        save_drawing(drawing(labels), choose(unpainted=KEEP, blue="1"), tmp_path)
    with pytest.raises(Exception, match="the mask drawing is all red: paint a second colour"):
        save_drawing(drawing(np.ones((4, 4), np.uint8)), choose(red="1"), tmp_path)


def test_a_mask_file_or_an_automatic_mask_is_shown_in_the_editor(pictures, tmp_path):
    """Shown in the background (the editor drops layers a server sets), tinted in the brush's colours; kept as
    labels."""
    photo = str(pictures["photo"])
    rgb = read_array(pictures["photo"], min_side=1, dtype=np.uint8)[0]
    bands = write_mask(tmp_path / "bands.png", 12, 16, [(9, 9, 9), (200, 0, 0), (0, 0, 200)])  # half the photo
    loaded = mask_file_in_editor(photo, str(bands))
    file_labels = read_mask(bands).labels.repeat(2, axis=0).repeat(2, axis=1)
    assert loaded.count == 3 and np.array_equal(loaded.labels, file_labels)  # region 1 is label 0: unpainted
    assert loaded.value["layers"] == [] and drawn_labels(loaded.value) is None  # nothing drawn yet
    background = loaded.value["background"].astype(np.float32)
    assert np.array_equal(background[file_labels == 0], rgb[file_labels == 0])  # region 1: the photo as it is
    for label in (1, 2):  # region k+1 tinted TINT of the way to the k-th brush colour
        where = file_labels == label
        want = rgb[where] * (1 - TINT) + np.asarray(BRUSH[label - 1], np.float32) * TINT
        assert np.abs(background[where] - want).max() <= 0.51  # rounded to whole levels
    found = automatic_in_editor(photo, 3)
    assert np.array_equal(found.labels, auto_mask(rgb, 3).labels) and found.count == 3
    seven = write_mask(tmp_path / "seven.png", 4, 14, [(i * 30, 0, 0) for i in range(7)])
    with pytest.raises(Exception, match="seven.png has 7 regions and the page's editor shows 6 at most"):
        mask_file_in_editor(photo, str(seven))
    with pytest.raises(Exception, match="upload the photo first"):
        automatic_in_editor(None, 3)


def test_strokes_over_a_loaded_mask_override_it_where_painted(pictures, tmp_path):
    loaded = np.zeros((24, 32), np.uint8)
    loaded[:, 16:] = 2  # a loaded mask: region 1 left, region 3 (green) right
    strokes = np.zeros((24, 32), np.uint8)
    strokes[:4] = 1  # a red stroke along the top, over both
    want = loaded.copy()
    want[:4] = 1
    assert np.array_equal(mask_labels(drawing(strokes), loaded), want)
    assert np.array_equal(mask_labels(None, loaded), loaded)  # nothing painted since: the loaded mask
    assert mask_labels(None, None) is None
    half = mask_labels(drawing(strokes[::2, ::2]), loaded)  # strokes at another size: the mask follows them
    assert np.array_equal(half, want[::2, ::2])
    drawn = save_drawing(None, choose(unpainted=KEEP, green="1"), tmp_path, loaded=loaded)
    assert drawn.names == ("unpainted", "green") and drawn.choices == (KEEP, "1")
    assert np.array_equal(drawn.mask.labels, (loaded > 0).astype(np.uint8))


# --- each engine's tab ---------------------------------------------------------------------------------


def kept_and_styled(result: str, photo: Path) -> tuple[float, float]:
    """How far the result's right half (unpainted: kept) and left half (red: styled) are from the photo."""
    pixels, original = read_array(result)[0], read_array(photo)[0]
    half = pixels.shape[1] // 2
    return float(np.abs(pixels[:, half:] - original[:, half:]).max()), float(
        np.abs(pixels[:, :half] - original[:, :half]).mean())


def test_any_painting_tab_gives_the_drawn_region_its_painting_and_keeps_the_rest(handlers, server, pictures):  # noqa: F811
    import gradio as gr

    photo, paintings = pictures["photo"], [str(pictures["sea"]), str(pictures["sky"])]
    value = drawing(left_red(24, 32))
    gallery, downloads = handlers.any_painting([str(photo)], paintings, ADAIN, "", 1.0, "none", None, "", 8, None, 0,
                                               value, 0, *choose(unpainted=KEEP, red="2"))
    mask = handlers.masks.last("", "any")
    assert mask is not None and Path(mask).name == "mask.png"
    assert Path(mask).parent.parent == Path(downloads[0]).parent  # in the job's folder, apart from the results
    local = FastStylizer(server[1] / ADAIN, ApplyConfig(device="cpu"))
    want = expected(local, photo, [pictures["sky"], None], mask=mask, mask_feather=0)  # the file's order: red first
    pixels = read_array(downloads[0])[0]
    assert np.abs(pixels - want).max() <= 1.5 / 255
    # AdaIN keeps the photo's own features there (decoded), not its pixels: the other order differs
    swapped = expected(local, photo, [None, pictures["sky"]], mask=mask, mask_feather=0)
    assert np.abs(pixels - swapped).max() > 5 / 255
    settings = json.dumps(read_settings(downloads[0]))
    assert describe_file(mask)["sha256"] in settings and describe_file(pictures["sky"])["sha256"] in settings
    with pytest.raises(gr.Error, match="the mask drawing is all red"):
        handlers.any_painting([str(photo)], paintings, ADAIN, "", 1.0, "none", None, "", 8, None, 0,
                              drawing(np.ones((24, 32), np.uint8)), 0, *choose(red="1"))
    with pytest.raises(gr.Error, match="with a mask each region takes its own painting"):
        handlers.any_painting([str(photo)], paintings, ADAIN, "1, 2", 1.0, "none", None, "", 8, None, 0,
                              value, 0, *choose(unpainted=KEEP, red="2"))


def test_fast_tab_gives_the_drawn_region_its_model_and_keeps_the_rest(handlers, server, pictures):  # noqa: F811
    import gradio as gr

    photo = pictures["photo"]
    _, [result] = handlers.fast([str(photo)], JOHNSON, 1.0, "none", None, drawing(left_red(24, 32)), 0,
                                *choose(unpainted=KEEP, red=JOHNSON))
    mask = handlers.masks.last("", "fast")
    assert mask is not None
    local = FastStylizer(server[1] / JOHNSON, ApplyConfig(device="cpu", mask_feather=0))
    want = local.with_regions(mask, [local, None]).stylize(read_array(photo, dtype=np.uint8)[0])
    assert np.abs(read_array(result)[0] - want.astype(np.float32) / 255).max() <= 1.5 / 255
    kept, styled = kept_and_styled(result, photo)
    assert kept <= 1 / 255 and styled > 0.05
    assert describe_file(mask)["sha256"] in json.dumps(read_settings(result))
    with pytest.raises(gr.Error, match="every region of the mask drawing keeps the photo"):
        handlers.fast([str(photo)], JOHNSON, 1.0, "none", None, drawing(left_red(24, 32)), 0,
                      *choose(unpainted=KEEP, red=KEEP))
    # A mask found in the page (the right half green), nothing drawn, then a red stroke over its left half:
    loaded = np.zeros((24, 32), np.uint8)
    loaded[:, 16:] = 2
    _, [found] = handlers.fast([str(photo)], JOHNSON, 1.0, "none", None, drawing(np.zeros((24, 32), np.uint8)), 0,
                               *choose(unpainted=KEEP, green=JOHNSON), loaded[:, ::-1].copy())  # left green
    assert read_mask(handlers.masks.last("", "fast")).count == 2
    assert np.array_equal(read_array(found)[0], read_array(result)[0])  # the same halves as the drawing above
    _, [over] = handlers.fast([str(photo)], JOHNSON, 1.0, "none", None, drawing(left_red(24, 32)), 0,
                              *choose(unpainted=KEEP, red=JOHNSON, green=KEEP), loaded)
    assert np.array_equal(read_array(over)[0], read_array(result)[0])  # red left styled, green right kept
    assert read_mask(handlers.masks.last("", "fast")).colors == (BRUSH[0], BRUSH[1])


def test_fast_tab_region_model_lists_follow_the_model_list(tmp_path):
    """What Refresh (and a pull) gives each region's model list: the models found now, each choice kept while listed."""
    from helpers import tiny_model
    from painterly.web_files import Workspace
    from painterly.web_handlers import Handlers, ModelCatalog

    folder = tmp_path / "models"
    folder.mkdir()
    tiny_model(folder / "a.safetensors")
    handlers = Handlers(catalog=ModelCatalog([folder], device="cpu"),
                        workspace=Workspace(tmp_path / "work", keep_seconds=600), vgg_weights="random", device="cpu",
                        max_pixels=MAX_PIXELS)
    (folder / "b.safetensors").write_bytes((folder / "a.safetensors").read_bytes())  # one more since the page
    lists = handlers.region_models(KEEP, "a.safetensors", "gone.safetensors", None, "a.safetensors", KEEP)
    assert [value for _, value in lists[0].choices] == [KEEP, "a.safetensors", "b.safetensors"]
    assert [menu.value for menu in lists] == [KEEP, "a.safetensors", "a.safetensors", "a.safetensors",
                                              "a.safetensors", KEEP]  # gone or empty: the region's default
    (folder / "a.safetensors").unlink()
    assert [menu.value for menu in handlers.region_models(KEEP, "a.safetensors")] == [KEEP, "b.safetensors"]


def test_optimize_tab_paints_the_drawn_region_and_keeps_the_rest(handlers, pictures):
    photo = pictures["photo"]
    updates = list(handlers.optimize(str(photo), [str(pictures["sea"])], True, 32, 2, 100, 1, "none", "adam",
                                     1, 1, "", drawing(left_red(24, 32)), 0,
                                     *choose(unpainted=KEEP, red="2")))  # painting 2: the sample, ticked
    _, status, download = updates[-1]
    assert "finished: 2 steps" in status
    mask = handlers.masks.last("", "optimize")
    assert mask is not None and Path(mask).parent.parent == Path(download).parent
    settings = read_settings(download)
    assert describe_file(mask)["sha256"] in json.dumps(settings)
    assert settings["config"]["mask_feather"] == 0
    kept, styled = kept_and_styled(download, photo)
    assert kept <= 1 / 255 and styled > 0.02


# --- the browser -------------------------------------------------------------------------------------------


def test_a_real_browser_paints_a_region_and_gets_a_result(server, open_page, tmp_path):  # noqa: F811
    """Headless Chromium, in the Fast tab: upload a photo, Find regions (3: the region choices follow), paint a
    stroke over them in the editor, Stylise; the mask as used appears, the found regions with the stroke over
    them, and the styled regions are styled while region 1 keeps the photo."""
    from playwright import sync_api

    photo = save_image(samples.landscape(48, 64), tmp_path / "landscape.png")
    page = open_page(server[0], height=1000)
    page.locator("#fast-images input[type=file]").set_input_files(str(photo))
    page.locator("#fast-regions").get_by_text("Regions:").first.click()
    sync_api.expect(page.locator("#fast-region-2 input")).to_have_value(JOHNSON)  # red: the model
    canvas = page.locator("#fast-mask-editor canvas").first
    canvas.wait_for()
    page.locator("#fast-mask-find").click()  # 3 regions, the default
    sync_api.expect(page.locator("#fast-region-4")).to_be_hidden(timeout=90_000)  # the busy machine
    sync_api.expect(page.locator("#fast-region-3")).to_be_visible()
    page.wait_for_timeout(500)  # the tinted photo drawn
    page.locator("#fast-mask-editor button[aria-label=Brush]").click()
    box = canvas.bounding_box()
    assert box is not None
    x, y = box["x"] + box["width"] * 0.3, box["y"] + box["height"] * 0.75  # low: the sky (region 1) mostly kept
    page.mouse.move(x, y)
    page.wait_for_timeout(300)  # the editor draws on its own render loop: a stroke given time, as by a hand
    page.mouse.down()
    for step in range(1, 6):
        page.wait_for_timeout(200)
        page.mouse.move(x + step * box["width"] * 0.05, y)
    page.mouse.up()
    page.wait_for_timeout(300)
    page.locator("#fast-run").click()
    mask_box = page.locator("#fast-mask-file")
    sync_api.expect(mask_box).to_contain_text(re.compile(r"mask\s*\.png"), timeout=90_000)
    if os.environ.get(SCREENSHOT_ENV):
        page.screenshot(path=os.environ[SCREENSHOT_ENV], full_page=True)
    link = page.locator("#fast-mask-file a").first.get_attribute("href")
    drawn = tmp_path / "drawn.png"
    drawn.write_bytes(page.request.get(link).body())
    used, found = read_mask(drawn), auto_mask(read_array(photo, min_side=1, dtype=np.uint8)[0], 3)
    assert used.count == 3 and set(used.colors) == {(255, 255, 255), BRUSH[0], BRUSH[1]}
    page_labels = np.asarray([[(255, 255, 255), *BRUSH].index(colour) for colour in used.colors])[used.labels]
    unstroked = page_labels != 1  # the red stroke's pixels are red; everywhere else the regions found, as found
    assert np.array_equal(page_labels[unstroked], found.labels[unstroked]) and (found.labels[~unstroked] != 1).any()
    pixels, original = gallery_picture(page, "#fast-gallery", tmp_path / "shown.png"), read_array(photo)[0]
    changed = np.abs(pixels - original).max(axis=2) > 2 / 255
    assert 0.05 < changed.mean() < 0.95  # the stroke's region styled, the unpainted rest kept
