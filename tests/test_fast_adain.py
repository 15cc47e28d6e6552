"""Arbitrary-style (AdaIN) models through FastStylizer: statistics measured once, parity with the network,
blends, alpha, masks, colour, tiling, the settings record, and one-line refusals."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from adain_helpers import painting, photo, save_adain
from helpers import random_model
from painterly import fast
from painterly.config import ApplyConfig
from painterly.errors import ImageError, UsageError
from painterly.fast import FastStylizer, Painting
from painterly.images import save_image
from painterly.modelfile import save_model
from painterly.style_stats import StyleStatistics, blend_statistics

RED, BLUE = (0.9, 0.15, 0.1), (0.1, 0.2, 0.8)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    folder = tmp_path_factory.mktemp("adain")
    return {arch: save_adain(folder / f"{arch}.safetensors", arch) for arch in ("light", "standard")}


@pytest.fixture(scope="module")
def light(models):
    return FastStylizer(models["light"], ApplyConfig(precision="fp32", style_size=48))


def net_of(stylizer: FastStylizer):
    return stylizer.runtime._model  # the loaded AdaINNet: parity is checked against the network itself


def direct(stylizer: FastStylizer, image: np.ndarray, statistics: StyleStatistics, alpha: float = 1.0) -> np.ndarray:
    """The network run by hand on the reflection-padded image, cropped and clipped as FastStylizer promises."""
    height, width = image.shape[:2]
    (top, bottom), (left, right) = (fast._padding(side, stylizer.size_multiple) for side in (height, width))
    padded = np.pad(image, ((top, bottom), (left, right), (0, 0)), mode="reflect")
    tensor = torch.from_numpy(padded.transpose(2, 0, 1)[None].copy())
    with torch.inference_mode():
        out = net_of(stylizer).stylize(tensor, torch.from_numpy(statistics.mean[None]),
                                       torch.from_numpy(statistics.std[None]), alpha)
    return np.clip(out[0].numpy().transpose(1, 2, 0)[top : top + height, left : left + width], 0, 1)


@pytest.mark.parametrize("arch, multiple", [("light", 4), ("standard", 8)])
def test_output_equals_the_network_on_the_padded_image(models, arch, multiple):
    stylizer = FastStylizer(models[arch], ApplyConfig(precision="fp32", style_size=64))
    assert stylizer.is_arbitrary and stylizer.size_multiple == multiple
    statistics = stylizer.style_statistics(painting(50, 70, RED))
    image = photo(27, 45)
    styled = stylizer.with_styles([statistics]).stylize(image)
    assert styled.shape == image.shape and styled.dtype == np.float32
    np.testing.assert_allclose(styled, direct(stylizer, image, statistics), atol=1e-5)


def test_statistics_are_those_of_the_painting_resized_and_cropped_to_the_multiple(light):
    art = painting(60, 90, RED)
    statistics = light.style_statistics(art, source={"file": "red.png"})
    resized = fast.resize_long_side(art, 48)  # 48x32: already multiples of 4, nothing cropped
    with torch.inference_mode():
        mean, std = net_of(light).statistics(torch.from_numpy(resized.transpose(2, 0, 1)[None].copy()))
    np.testing.assert_allclose(statistics.mean, mean[0].numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(statistics.std, std[0].numpy(), rtol=1e-5, atol=1e-6)
    assert statistics.source == {"file": "red.png", "measured_at": [48, 32]}
    odd = light.style_statistics(painting(47, 50, RED))  # 48x45 at style_size 48 -> cropped to 48x44
    assert odd.source["measured_at"] == [48, 44]


def test_a_bound_painting_is_measured_once_for_every_photo(light):
    seen: list[tuple[int, ...]] = []
    hook = net_of(light).encoder.register_forward_hook(lambda module, args, out: seen.append(tuple(args[0].shape)))
    try:
        bound = light.with_styles([Painting(painting(40, 60, RED))])
        measured = list(seen)
        bound.stylize_batch([photo(24, 24, seed) for seed in range(3)])
        bound.stylize(photo(30, 20))
    finally:
        hook.remove()
    assert measured == [(1, 3, 32, 48)]  # the painting, once, at style_size
    assert seen[1:] == [(3, 3, 24, 24), (1, 3, 32, 20)]  # then only the photos (padded), in their batches


def test_blending_paintings_equals_painting_with_blended_statistics(light):
    red, blue = (light.style_statistics(painting(40, 40, tint)) for tint in (RED, BLUE))
    image = photo(32, 36)
    blended = light.with_styles([red, blue], blend=[0.7, 0.3]).stylize(image)
    np.testing.assert_allclose(blended, light.with_styles([blend_statistics([red, blue], [0.7, 0.3])]).stylize(image),
                               atol=1e-6)
    assert np.abs(blended - light.with_styles([red]).stylize(image)).mean() > 1e-3
    by_config = light.with_config(light.config.replace(style_blend=(7, 3))).with_styles([red, blue]).stylize(image)
    np.testing.assert_allclose(by_config, blended, atol=1e-6)


def test_alpha_zero_decodes_the_photos_own_features(light):
    image = photo(28, 28)
    statistics = light.style_statistics(painting(40, 40, RED))
    styled = light.with_config(light.config.replace(alpha=0.0)).with_styles([statistics]).stylize(image)
    (top, bottom), (left, right) = fast._padding(28, 4), fast._padding(28, 4)
    padded = torch.from_numpy(np.pad(image, ((top, bottom), (left, right), (0, 0)), mode="reflect")
                              .transpose(2, 0, 1)[None].copy())
    with torch.inference_mode():
        expected = net_of(light).decode(net_of(light).encode(padded))[0].numpy().transpose(1, 2, 0)
    np.testing.assert_allclose(styled, np.clip(expected[top : top + 28, left : left + 28], 0, 1), atol=1e-5)
    half = light.with_config(light.config.replace(alpha=0.5)).with_styles([statistics]).stylize(image)
    np.testing.assert_allclose(half, direct(light, image, statistics, alpha=0.5), atol=1e-5)


def test_bound_paintings_survive_setting_changes_and_are_measured_again_when_needed(light):
    bound = light.with_styles([Painting(painting(60, 60, RED), {"file": "red.png"})])
    image = photo(24, 24)
    stronger = bound.with_config(bound.config.replace(strength=0.5))
    assert stronger.has_style and stronger.runtime is bound.runtime
    np.testing.assert_allclose(stronger.stylize(image), 0.5 * bound.stylize(image) + 0.5 * image, atol=1e-5)
    finer = bound.with_config(bound.config.replace(style_size=32))
    assert finer.describe()["styles"][0]["measured_at"] == [32, 32]
    assert not np.allclose(finer.stylize(image), bound.stylize(image))


def test_mask_regions_take_their_paintings(light):
    red, blue = (light.style_statistics(painting(48, 48, tint)) for tint in (RED, BLUE))
    image = photo(48, 64)
    labels = np.zeros((48, 64), dtype=np.int64)
    labels[:, 32:] = 1
    masked = light.with_config(light.config.replace(mask_feather=0)).with_styles([red, blue], mask=labels)
    styled = masked.stylize(image)
    all_red, all_blue = (light.with_styles([s]).stylize(image) for s in (red, blue))
    left, right = (slice(4, 44), slice(4, 24)), (slice(4, 44), slice(40, 60))  # interiors, away from the edge

    def gap(a: np.ndarray, b: np.ndarray, where: tuple[slice, slice]) -> float:
        return float(np.abs(a[where] - b[where]).mean())

    assert gap(styled, all_red, left) < 0.25 * gap(styled, all_blue, left)
    assert gap(styled, all_blue, right) < 0.25 * gap(styled, all_red, right)
    settings = masked.describe()
    assert [entry["region"] for entry in settings["styles"]] == [0, 1]
    assert settings["mask"] == {"regions": [None, None], "feather": 0}


def test_a_keep_region_keeps_the_photo(light):
    red = light.style_statistics(painting(48, 48, RED))
    image = photo(40, 64)
    labels = np.zeros((40, 64), dtype=np.int64)
    labels[:, 32:] = 1
    styled = light.with_styles([red, None], mask=labels).stylize(image)
    decoded = light.with_config(light.config.replace(alpha=0.0)).with_styles([red]).stylize(image)
    painted = light.with_styles([red]).stylize(image)
    right = (slice(4, 36), slice(44, 60))
    assert np.abs(styled[right] - decoded[right]).mean() < 0.25 * np.abs(styled[right] - painted[right]).mean()


def test_mask_files_number_regions_by_first_appearance_and_fit_any_image(light, tmp_path):
    mask = np.zeros((20, 30, 3), dtype=np.uint8)
    mask[:, :] = (255, 0, 0)
    mask[:10] = (0, 0, 255)  # blue is met first, at the top-left: region 0
    save_image(mask, tmp_path / "mask.png")
    red, blue = (light.style_statistics(painting(48, 48, tint)) for tint in (RED, BLUE))
    masked = light.with_styles([blue, red], mask=tmp_path / "mask.png")
    record = masked.describe()["mask"]
    assert record["regions"] == ["#0000ff", "#ff0000"] and record["file"].endswith("mask.png")
    assert len(record["sha256"]) == 64 and record["feather"] == ApplyConfig().mask_feather
    image = photo(64, 48)  # another shape than the mask: it is resized (nearest) to the image
    styled = masked.stylize(image)
    all_blue, all_red = (light.with_styles([s]).stylize(image) for s in (blue, red))
    top, bottom = (slice(4, 24), slice(4, 44)), (slice(40, 60), slice(4, 44))
    assert np.abs(styled[top] - all_blue[top]).mean() < np.abs(styled[top] - all_red[top]).mean()
    assert np.abs(styled[bottom] - all_red[bottom]).mean() < np.abs(styled[bottom] - all_blue[bottom]).mean()


def test_feathering_softens_region_edges(light):
    from painterly.regions import mask_from_labels

    labels = np.zeros((16, 40), dtype=np.int64)
    labels[:, 20:] = 1
    weights = mask_from_labels(labels).weights(16, 40, 8)
    np.testing.assert_allclose(weights.sum(axis=0), 1, atol=1e-6)
    row = weights[0, 8]
    assert row[0] == 1 and row[-1] == 0 and 0.3 < row[19] < 0.7 and 0.3 < row[20] < 0.7
    assert np.all(np.diff(row) <= 1e-6)  # a ramp, not a step
    hard = mask_from_labels(labels).weights(16, 40, 0)[0, 8]
    assert set(np.unique(hard)) == {0.0, 1.0}


def test_a_masked_image_is_never_tiled_and_a_large_one_is_refused(light):
    red = light.style_statistics(painting(48, 48, RED))
    masked = light.with_styles([red, None], mask=np.eye(8, dtype=np.int64))
    assert masked.tile_for(4000, 4000) is None
    with pytest.raises(ImageError, match="big.png: 3000x2000 pixels is more than --mask stylises"):
        masked.check_size("big.png", 2000, 3000)
    with pytest.raises(UsageError, match="--mask stylises each image whole"):
        tiled = light.with_config(light.config.replace(tile=64, tile_overlap=16))
        tiled.with_styles([red, None], mask=np.eye(8, dtype=np.int64))


def test_large_images_are_tiled_with_the_bound_painting(light):
    red = light.style_statistics(painting(48, 48, RED))
    image = photo(150, 130)
    tiled_stylizer = light.with_config(light.config.replace(tile=64, tile_overlap=16)).with_styles([red])
    shapes: list[tuple[int, ...]] = []
    run = tiled_stylizer.runtime.run

    def recording(batch, style=None):
        shapes.append((batch.shape, None if style is None else style.mean.shape))
        return run(batch, style)

    tiled_stylizer.runtime.run = recording  # type: ignore[method-assign]
    try:
        tiled = tiled_stylizer.stylize(image)
    finally:
        del tiled_stylizer.runtime.run
    assert tiled.shape == image.shape and np.isfinite(tiled).all()
    assert all(shape[0][2:] == (64, 64) and shape[1] == (1, 256) for shape in shapes) and len(shapes) >= 2
    whole = light.with_styles([red]).stylize(image)
    assert np.abs(tiled - whole).mean() < 0.05  # every tile paints with the same painting


def test_histogram_recolours_each_painting_toward_each_photo(light):
    red = Painting(painting(48, 48, RED), {"file": "red.png"})
    measured: list = []
    statistics = light.runtime.statistics
    light.runtime.statistics = lambda batch: measured.append(np.asarray(batch)) or statistics(batch)  # type: ignore
    try:
        recolouring = light.with_config(light.config.replace(preserve_color="histogram")).with_styles([red])
        assert measured == []  # nothing measured until there is a photo to recolour toward
        greenish = photo(32, 32) * np.array([0.2, 1.0, 0.3], dtype=np.float32)
        styled = recolouring.stylize_batch([greenish, photo(32, 32, seed=5)])
    finally:
        del light.runtime.statistics
    assert [len(batch) for batch in measured] == [1, 1]  # one measurement per photo
    # What is measured for the greenish photo is the red painting turned green (a random decoder's colours
    # need not follow the statistics, so the painting measured is checked, and that the output changes):
    recoloured = measured[0][0].reshape(3, -1).mean(axis=1)
    assert recoloured[1] - recoloured[0] > 0 > RED[1] - RED[0]
    plain = light.with_styles([red]).stylize(greenish)
    assert np.abs(styled[0] - plain).mean() > 1e-3
    assert "toward each photo" in recolouring.describe()["styles_recoloured"]


def test_describe_records_everything_needed_to_reproduce(light, models):
    red = Painting(painting(40, 40, RED), {"file": "red.png", "sha256": "a" * 64})
    blue = light.style_statistics(painting(40, 40, BLUE), source={"file": "blue.png", "sha256": "b" * 64})
    settings = light.with_config(light.config.replace(alpha=0.8)).with_styles([red, blue], blend=[3, 1]).describe()
    assert settings["method"] == "adain" and settings["model"]["sha256"]
    assert settings["config"]["alpha"] == 0.8 and settings["config"]["style_size"] == 48
    [first, second] = settings["styles"]
    assert first["file"] == "red.png" and first["sha256"] == "a" * 64 and first["weight"] == 0.75
    assert second["file"] == "blue.png" and second["weight"] == 0.25 and len(second["statistics_sha256"]) == 64
    johnson = tmp_johnson(models["light"].parent)
    assert "alpha" not in FastStylizer(johnson).describe()["config"]


def tmp_johnson(folder):
    return save_model(random_model("light"), folder / "johnson.safetensors", style={"image": "x.png"})


@pytest.mark.parametrize("call, message", [
    (lambda s: s.stylize(photo(16, 16)), "needs a painting: give --style"),
    (lambda s: s.with_styles([]), "needs a painting: give --style"),
    (lambda s: s.with_styles([None]), "--style keep keeps the photo in a --mask region"),
    (lambda s: s.with_styles([s.style_statistics(painting(32, 32, RED))] * 2, blend=[1, 2, 3]),
     "--style-blend has 3 weights for 2 style images"),
    (lambda s: s.with_styles([s.style_statistics(painting(32, 32, RED))] * 2, blend=[1, 1],
                             mask=np.eye(8, dtype=np.int64)), "with --mask each region takes its own --style"),
    (lambda s: s.with_styles([s.style_statistics(painting(32, 32, RED))] * 3, mask=np.eye(8, dtype=np.int64)),
     "has 2 regions and 3 --style given"),
    (lambda s: s.with_styles([s.style_statistics(painting(32, 32, RED))], mask=np.zeros((8, 8), dtype=np.int64)),
     "the mask has a single region"),
    (lambda s: s.with_styles([StyleStatistics(np.zeros(512), np.ones(512))]), "takes 256 channels"),
    (lambda s: s.style_statistics(painting(4, 30, RED), source={"file": "thin.png"}),
     "thin.png: the painting is 48x6 pixels at --style-size 48; this model needs at least 8 pixels a side"),
    (lambda s: s.with_config(s.config.replace(preserve_color="histogram")).with_styles(
        [s.style_statistics(painting(32, 32, RED))]), "give the paintings"),
])
def test_misuse_is_refused_in_one_line(light, call, message):
    with pytest.raises((UsageError, ImageError)) as caught:
        call(light)
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_a_johnson_model_refuses_paintings_and_histogram(models, light):
    johnson = FastStylizer(tmp_johnson(models["light"].parent))
    assert not johnson.is_arbitrary and johnson.size_multiple == 4
    johnson.check_style()  # a Johnson model needs none
    with pytest.raises(UsageError, match="a Johnson model paints the one style it was trained on"):
        johnson.with_styles([light.style_statistics(painting(32, 32, RED))])
    with pytest.raises(UsageError, match="a fast model has already learned its style; use 'luminance'"):
        johnson.with_config(johnson.config.replace(preserve_color="histogram"))
