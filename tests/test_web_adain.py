"""The web UI's "Any painting" tab: an arbitrary-style (AdaIN) model through the real HTTP API and headless Chromium.

The process's shared server (conftest's `adain_server`: on a free port of 127.0.0.1, with a tiny random
light AdaIN model, a tiny random fast (Johnson) model beside it, and low limits, 1 MB uploads and 1 M
pixels, so that refusals are cheap to provoke). Expected outputs are computed in this process through the public API
(`FastStylizer.style_statistics` / `with_styles`) and compared with what the page returns.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError

from helpers import WEB_ADAIN, WEB_FAST, WEB_MAX_PIXELS, gallery_picture, local_http, web_client, write_picture
from painterly import samples
from painterly.config import ApplyConfig
from painterly.errors import UsageError
from painterly.fast import FastStylizer, Painting
from painterly.images import read_array, read_settings, save_image
from painterly.provenance import describe_file

ADAIN, JOHNSON, MAX_PIXELS = WEB_ADAIN, WEB_FAST, WEB_MAX_PIXELS
SCREENSHOT_ENV = "PAINTERLY_WEB_ADAIN_SCREENSHOT"  # where the browser test saves a screenshot of the tab


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def server(adain_server):
    """(url, models folder) of the shared running app (test_web_regions uses it too)."""
    return adain_server.url, adain_server.models


@pytest.fixture(scope="module")
def client(server, tmp_path_factory):
    return web_client(server[0], tmp_path_factory.mktemp("downloads"))


@pytest.fixture(scope="module")
def local(server) -> FastStylizer:
    """The tab's model, loaded in this process: what the page's results must equal."""
    return FastStylizer(server[1] / ADAIN, ApplyConfig(device="cpu"))


def paint(client: Client, photos: list[Path], paintings: list[Path], *, blend: str = "", alpha: float = 1.0,
          colour: str = "none", mask: Path | None = None, regions: str = "", feather: int = 8,
          size: int | None = None, style_size: int = 0, model: str = ADAIN) -> tuple[list, list[str]]:
    """The Any painting tab's (gallery, downloads); paintings measured as uploaded (tiny), not at 512 px."""
    return client.predict([handle_file(str(path)) for path in photos], [handle_file(str(path)) for path in paintings],
                          model, blend, alpha, colour, None if mask is None else handle_file(str(mask)), regions,
                          feather, size, style_size, api_name="/any_painting")


def expected(local: FastStylizer, photo: Path, paintings: list[Path | None], **settings) -> np.ndarray:
    """The public API's result for this photo and these paintings (None: keep the photo in that mask
    region), 8-bit as the page writes it."""
    config = ApplyConfig(device="cpu", style_size=None,
                         **{key: value for key, value in settings.items() if key != "mask"})
    stylizer = local.with_config(config)
    styles = [None if path is None else Painting(read_array(path, min_side=1, dtype=np.uint8)[0], describe_file(path))
              for path in paintings]
    if "mask" in settings:
        styled = stylizer.with_styles(styles, mask=settings["mask"])
    else:
        styled = stylizer.with_styles(styles, blend=config.style_blend)
    return styled.stylize(read_array(photo, min_side=1, dtype=np.uint8)[0]).astype(np.float32) / 255


# --- the tab -------------------------------------------------------------------------------------


def test_the_tab_returns_the_stylised_photo_with_its_settings(client, local, tmp_path):
    photo = write_picture(tmp_path / "photo.png", 24, 40)
    painting = write_picture(tmp_path / "starry night.png", 32, 32, seed=1)
    gallery, downloads = paint(client, [photo], [painting], alpha=0.8)
    assert len(gallery) == len(downloads) == 1
    assert Path(downloads[0]).name == "photo_starry-night.png"  # named after the photo and the painting
    result, _ = read_array(downloads[0])
    assert result.shape == (24, 40, 3)
    assert read_array(gallery[0]["image"])[0].shape == (24, 40, 3)
    assert np.abs(result - expected(local, photo, [painting], alpha=0.8)).max() <= 1.5 / 255
    settings = read_settings(downloads[0])
    assert settings["model"]["file"].endswith(ADAIN)
    assert settings["input"]["sha256"] == sha256(photo)
    assert settings["method"] == "adain"
    assert settings["config"]["alpha"] == 0.8
    assert sha256(painting) in json.dumps(settings)  # the painting is recorded, by its hash
    _, [recoloured] = paint(client, [photo], [painting], alpha=0.8, colour="histogram")
    assert read_settings(recoloured)["config"]["preserve_color"] == "histogram"
    assert np.abs(read_array(recoloured)[0] - expected(local, photo, [painting], alpha=0.8, preserve_color="histogram")
                  ).max() <= 1.5 / 255


def test_two_paintings_blend_and_a_wrong_count_is_a_message(client, local, tmp_path):
    photo = write_picture(tmp_path / "tubingen.png", 24, 32)
    paintings = [write_picture(tmp_path / "waves.png", 24, 32, seed=2),
                 write_picture(tmp_path / "scream.png", 32, 24, seed=3)]
    _, [blended] = paint(client, [photo], paintings, blend="0.7, 0.3")
    assert Path(blended).name == "tubingen_waves_scream.png"
    result = read_array(blended)[0]
    assert np.abs(result - expected(local, photo, paintings, style_blend=(0.7, 0.3))).max() <= 1.5 / 255
    _, [first] = paint(client, [photo], paintings[:1])
    assert np.abs(result - read_array(first)[0]).max() > 2 / 255  # the second painting counts
    assert read_settings(blended)["config"]["style_blend"] == [0.7, 0.3]
    for blend, message in (("1, x", "blend: expected numbers"), ("2", "1 weights for 2 style images")):
        with pytest.raises(AppError, match=message) as error:
            paint(client, [photo], paintings, blend=blend)
        assert error.value.duration is None  # shown in the page until the user closes it


def test_several_photos_share_the_paintings(client, local, tmp_path):
    photos = [write_picture(tmp_path / f"p{i}.png", 24 + 8 * i, 32, seed=10 + i) for i in range(3)]
    painting = write_picture(tmp_path / "candy.png", 24, 24, seed=4)
    _, downloads = paint(client, photos, [painting], size=24)
    assert [Path(path).name for path in downloads] == ["p0_candy.png", "p1_candy.png", "p2_candy.png"]
    assert [read_array(path)[0].shape for path in downloads] == [(18, 24, 3), (24, 24, 3), (24, 19, 3)]


def test_bad_paintings_are_a_message_naming_the_upload(client, tmp_path):
    photo = write_picture(tmp_path / "photo.png")
    broken = tmp_path / "broken.png"
    broken.write_bytes(write_picture(tmp_path / "good.png").read_bytes()[:80])
    with pytest.raises(AppError, match=r"^broken.png: .*corrupt") as error:  # its name, not its server path
        paint(client, [photo], [broken])
    assert error.value.duration is None
    text = tmp_path / "notes.png"
    text.write_text("not a picture at all\n" * 10)
    with pytest.raises(AppError, match=r"^notes.png: .*not an image"):
        paint(client, [photo], [tmp_path / "good.png", text])
    wide = save_image(np.full((1000, 1001, 3), 0.5, np.float32), tmp_path / "wide.png")
    with pytest.raises(AppError, match=r"^wide.png: 1001x1000 = 1,001,000 pixels is over the limit of 1,000,000"):
        paint(client, [photo], [wide])
    with pytest.raises(AppError, match="upload one or more paintings"):
        paint(client, [photo], [])
    with pytest.raises(AppError, match="upload one or more photos"):
        paint(client, [], [tmp_path / "good.png"])


def write_mask(path: Path, height: int, width: int, colours: list[tuple[int, int, int]]) -> Path:
    """Vertical bands, one flat colour each, left to right: regions numbered from the left."""
    mask = np.zeros((height, width, 3), np.float32)
    for index, colour in enumerate(colours):
        mask[:, index * width // len(colours):] = np.array(colour) / 255
    return save_image(mask, path)


def test_a_mask_gives_each_region_its_painting(client, local, tmp_path):
    photo = write_picture(tmp_path / "harbour.png", 24, 32)
    paintings = [write_picture(tmp_path / "sea.png", 24, 24, seed=6), write_picture(tmp_path / "sky.png", seed=7)]
    mask = write_mask(tmp_path / "regions.png", 12, 16, [(255, 0, 0), (0, 0, 255)])  # resized to the photo
    _, [result] = paint(client, [photo], paintings, mask=mask, feather=4)
    pixels = read_array(result)[0]
    assert np.abs(pixels - expected(local, photo, paintings, mask=mask, mask_feather=4)).max() <= 1.5 / 255
    settings = read_settings(result)
    assert settings["config"]["mask_feather"] == 4
    assert sha256(mask) in json.dumps(settings) and sha256(paintings[1]) in json.dumps(settings)
    _, [swapped] = paint(client, [photo], paintings, mask=mask, regions="2, 1", feather=4)
    assert np.abs(read_array(swapped)[0] - expected(local, photo, paintings[::-1], mask=mask, mask_feather=4)
                  ).max() <= 1.5 / 255
    assert np.abs(read_array(swapped)[0] - pixels).max() > 2 / 255
    _, [kept] = paint(client, [photo], paintings[:1], mask=mask, regions="keep, 1")  # one painting, twice named
    assert np.abs(read_array(kept)[0] - expected(local, photo, [None, paintings[0]], mask=mask)).max() <= 1.5 / 255
    three = write_mask(tmp_path / "three.png", 12, 18, [(255, 0, 0), (0, 255, 0), (0, 0, 255)])
    for kwargs, message in (
            ({"mask": three}, r"^three.png has 3 regions .* and 2 paintings: name one painting number"),
            ({"mask": mask, "regions": "1, 3"}, "regions: expected painting numbers 1 to 2 or 'keep'"),
            ({"mask": mask, "blend": "1, 2"}, "with a mask each region takes its own painting")):
        with pytest.raises(AppError, match=message) as error:
            paint(client, [photo], paintings, **kwargs)
        assert error.value.duration is None


def test_each_tab_offers_and_takes_only_its_kind_of_model(server, client, tmp_path):
    assert [value for _, value in client.predict(ADAIN, api_name="/any_models")["choices"]] == [ADAIN]
    assert [value for _, value in client.predict(JOHNSON, api_name="/fast_models")["choices"]] == [JOHNSON]
    assert [value for _, value in client.predict(JOHNSON, api_name="/video_models")["choices"]] == [JOHNSON]
    import httpx

    with httpx.Client(**local_http(), base_url=server[0], timeout=30) as http:
        components = http.get("/config").json()["components"]
    choices = {item["props"].get("elem_id"): [value for _, value in item["props"]["choices"]]
               for item in components if item.get("type") == "dropdown"
               and (item["props"].get("elem_id") or "").endswith("-model")}  # not the mask editor's regions
    assert choices == {"fast-model": [JOHNSON], "any-model": [ADAIN], "video-model": [JOHNSON],
                       "live-model": [JOHNSON]}
    photo = write_picture(tmp_path / "photo.png")
    with pytest.raises(AppError, match="not in the list of choices"):  # Gradio's own check comes first
        paint(client, [photo], [write_picture(tmp_path / "painting.png", seed=5)], model=JOHNSON)
    with pytest.raises(AppError, match="not in the list of choices"):
        client.predict([handle_file(str(photo))], ADAIN, 1.0, "none", None, api_name="/fast")


def test_the_catalog_tells_the_kinds_apart_and_loads_each_model_once(server, tmp_path):
    """.safetensors files by their header, .onnx files by their inputs; a damaged file stays a fast model."""
    from painterly.export import export_onnx
    from painterly.web_handlers import ARBITRARY, FAST, ModelCatalog

    models = tmp_path / "models"
    models.mkdir()
    for name in (ADAIN, JOHNSON):
        (models / name).write_bytes((server[1] / name).read_bytes())
    export_onnx(models / ADAIN, models / "any.onnx", check_sizes=[(1, 3, 16, 16)])
    export_onnx(models / JOHNSON, models / "tiny.onnx", check_sizes=[(1, 3, 16, 16)])
    (models / "damaged.safetensors").write_bytes(b"not a model")
    catalog = ModelCatalog([models], device="cpu")
    assert catalog.names() == ["any.onnx", ADAIN, "damaged.safetensors", "tiny.onnx", JOHNSON]
    assert catalog.names(ARBITRARY) == ["any.onnx", ADAIN]
    assert catalog.names(FAST) == ["damaged.safetensors", "tiny.onnx", JOHNSON]
    assert catalog.stylizer(ADAIN, kind=ARBITRARY) is catalog.stylizer(ADAIN)  # loaded once, shared
    assert catalog.stylizer("any.onnx").backend == "onnx" and catalog.stylizer("any.onnx").is_arbitrary
    for name, tab in ((ADAIN, FAST), ("any.onnx", FAST)):
        with pytest.raises(UsageError, match=f"^{name} is an arbitrary-style model .*choose it in the Any painting"):
            catalog.stylizer(name, kind=tab)
    with pytest.raises(UsageError, match=f"^{JOHNSON} is a fast model of one style: choose it in the Fast tab"):
        catalog.stylizer(JOHNSON, kind=ARBITRARY)


def test_each_painting_is_measured_once_for_all_photos(server, tmp_path, monkeypatch):
    """Behind the button: three photos, two paintings over three mask regions, two measurements."""
    from painterly.web_files import Workspace
    from painterly.web_handlers import Handlers, ModelCatalog

    measured: list[str] = []
    measure = FastStylizer.style_statistics

    def counted(self, painting, **options):
        measured.append(Path(painting.source["file"]).name)
        return measure(self, painting, **options)

    monkeypatch.setattr(FastStylizer, "style_statistics", counted)
    (tmp_path / "work").mkdir()
    handlers = Handlers(catalog=ModelCatalog([server[1]], device="cpu"),
                        workspace=Workspace(tmp_path / "work", keep_seconds=60), vgg_weights="random", device="cpu",
                        max_pixels=MAX_PIXELS)
    photos = [str(write_picture(tmp_path / f"photo{i}.png", 24, 32, seed=20 + i)) for i in range(3)]
    paintings = [str(write_picture(tmp_path / name, seed=30 + i)) for i, name in enumerate(("a.png", "b.png"))]
    mask = write_mask(tmp_path / "mask.png", 24, 30, [(255, 0, 0), (0, 255, 0), (0, 0, 255)])
    results, downloads = handlers.any_painting(photos, paintings, ADAIN, "", 1.0, "none", str(mask), "1, 2, 1", 8,
                                               None, 0)
    assert [Path(path).name for path in results] == ["photo0_a_b.png", "photo1_a_b.png", "photo2_a_b.png"]
    assert sorted(measured) == ["a.png", "b.png"]
    import gradio as gr

    with pytest.raises(gr.Error, match="any.safetensors is an arbitrary-style model .*Any painting tab"):
        handlers.fast(photos, ADAIN, 1.0, "none", None)  # Gradio's list checks first; this is the second line


# --- the browser ---------------------------------------------------------------------------------


def test_a_real_browser_paints_a_photo_after_a_painting(server, open_page, tmp_path):
    """Headless Chromium: open the tab, upload a photo and a painting, paint, and see the result appear."""
    photo = save_image(samples.landscape(96, 128), tmp_path / "landscape.png")
    painting = save_image(samples.swirl_painting(64, 64), tmp_path / "swirls.png")
    refused: list[str] = []  # the file guard must not get in the page's way
    page = open_page(server[0], refused=refused)
    page.get_by_role("tab", name="Any painting").click()
    page.locator("#any-photos input[type=file]").set_input_files(str(photo))
    page.locator("#any-photos").get_by_text("landscape").first.wait_for()
    page.locator("#any-paintings input[type=file]").set_input_files(str(painting))
    page.locator("#any-paintings").get_by_text("swirls").first.wait_for()
    page.locator("#any-more").get_by_text("More settings").click()
    page.get_by_label("Painting's long side (0 = as uploaded)").fill("64")  # tiny: quick to measure
    page.locator("#any-run").click()
    assert gallery_picture(page, "#any-gallery", tmp_path / "shown.png").shape == (96, 128, 3)
    page.locator("#any-downloads").get_by_text("landscape_swirls").first.wait_for()
    assert refused == []
    if os.environ.get(SCREENSHOT_ENV):
        page.screenshot(path=os.environ[SCREENSHOT_ENV], full_page=True)
