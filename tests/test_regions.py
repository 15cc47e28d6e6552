"""Masks (regions.py): files and grey levels, automatic masks from clustering, specs, and bad input."""

import io
import os
import re

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from painterly.config import MAX_MASK_FEATHER, ApplyConfig, StylizeConfig
from painterly.errors import ImageError, PainterlyError, UsageError
from painterly.regions import (
    MAX_REGIONS,
    PALETTE,
    RegionMask,
    auto_mask,
    load_mask,
    mask_from_labels,
    parse_mask_spec,
    read_mask,
    write_mask,
)


def _blobs(height=60, width=80, seed=0):
    """A drawn photo with three obvious regions: a sky, a red disc in it, a green field; noisy."""
    y, x = np.mgrid[0:height, 0:width]
    labels = np.zeros((height, width), dtype=np.uint8)
    labels[(y - 18) ** 2 + (x - 56) ** 2 < 12 ** 2] = 1
    labels[y >= 38] = 2
    colours = np.array([(90, 150, 235), (220, 40, 30), (50, 140, 60)], dtype=np.float64)
    noise = np.random.default_rng(seed).normal(0, 12, (height, width, 3))
    return np.clip(colours[labels] + noise, 0, 255).astype(np.uint8), labels


PHOTO, TRUTH = _blobs()
TINY_PHOTO = _blobs(12, 16)[0]


def _inner(region):
    """A region's pixels at least two pixels from its edge (where clustering is unambiguous)."""
    inside = region.copy()
    for _ in range(2):
        inside[1:-1, 1:-1] &= inside[:-2, 1:-1] & inside[2:, 1:-1] & inside[1:-1, :-2] & inside[1:-1, 2:]
        inside[[0, -1]] = inside[:, [0, -1]] = False
    return inside


@pytest.fixture(scope="module")
def found():
    return auto_mask(PHOTO, 3, seed=0)


def test_auto_mask_recovers_drawn_blobs_numbered_by_first_appearance(found):
    assert found.count == 3 and found.labels.shape == TRUTH.shape
    assert found.labels[0, 0] == 0  # the first pixel's region is region 0, as in a mask file
    seen = [np.unique(found.labels[_inner(TRUTH == region)]) for region in range(3)]
    assert all(len(values) == 1 for values in seen), seen
    assert sorted(int(values[0]) for values in seen) == [0, 1, 2]
    assert (found.labels == found.labels[TRUTH == 1][0]).sum() >= 0.8 * (TRUTH == 1).sum()
    assert found.colors == PALETTE[:3] and found.source == {"auto": 3, "seed": 0}
    assert np.array_equal(auto_mask(PHOTO, 3, seed=0).labels, found.labels)  # seeded: the same again


def test_auto_mask_accepts_floats_and_a_larger_photo():
    large = np.repeat(np.repeat(PHOTO, 3, axis=0), 3, axis=1)  # clustered on a copy at most 96 px long
    mask = auto_mask(large.astype(np.float32) / 255, 3)
    assert mask.labels.shape == large.shape[:2]
    assert len(np.unique(mask.labels[::3, ::3][_inner(TRUTH == 1)])) == 1


def test_written_mask_reads_back_into_the_same_labels(tmp_path, found):
    path = write_mask(found, tmp_path / "regions.png")
    again = read_mask(path)
    assert np.array_equal(again.labels, found.labels) and again.colors == found.colors
    assert again.describe(4)["regions"] == ["#e6194b", "#3cb44b", "#0082c8"]
    assert again.source["file"] == os.fspath(path) and len(again.source["sha256"]) == 64
    labels = np.array([[0, 0, 1], [2, 2, 1]])  # an array mask has no colours: the palette's are used
    assert read_mask(write_mask(mask_from_labels(labels), tmp_path / "array.png")).colors == PALETTE[:3]


def test_grey_level_masks_are_regions_too(tmp_path):
    grey = np.full((10, 12), 200, dtype=np.uint8)
    grey[:, 6:] = 0
    grey[7:] = 90
    Image.fromarray(grey, mode="L").save(tmp_path / "grey.png")
    mask = read_mask(tmp_path / "grey.png")
    assert mask.colors == ((200, 200, 200), (0, 0, 0), (90, 90, 90))
    assert mask.labels[0, 0] == 0 and mask.labels[0, 11] == 1 and mask.labels[9, 0] == 2


def test_sixteen_bit_grey_levels_are_not_merged_to_eight_bits(tmp_path):
    levels = np.arange(300, dtype=np.uint16) * 200  # 300 levels, 0..59800: many share an 8-bit value
    Image.fromarray(np.tile(levels, (4, 1)).astype(np.uint16)).save(tmp_path / "many.png")
    with pytest.raises(ImageError, match=re.escape(f"{tmp_path / 'many.png'}: ") + ".* 300 colours"):
        read_mask(tmp_path / "many.png")

    close = np.zeros((6, 8), dtype=np.uint16)
    close[:, 4:] = 1  # 0 and 1 of 65535: one 8-bit grey, two regions
    close[3:] = 40000
    with Image.fromarray(close) as image:
        assert image.mode.startswith("I")  # a 16-bit file, as the test means
        image.save(tmp_path / "close.png")
    mask = read_mask(tmp_path / "close.png")
    assert mask.count == 3 and mask.labels[0, 0] == 0 and mask.labels[0, 7] == 1 and mask.labels[5, 0] == 2
    assert mask.colors == ((0, 0, 0), (0, 0, 0), (156, 156, 156))
    written = write_mask(mask, tmp_path / "copy.png")  # colours shared by two regions: the palette instead
    np.testing.assert_array_equal(read_mask(written).labels, mask.labels)


def test_load_mask_takes_every_kind_of_mask(tmp_path, found):
    assert load_mask(found) is found
    assert load_mask(np.array([[0, 1], [1, 1]])).count == 2
    assert load_mask("auto:2", TINY_PHOTO).count == 2
    assert load_mask(write_mask(found, tmp_path / "m.png")).count == 3
    assert parse_mask_spec("auto:16") == MAX_REGIONS and parse_mask_spec("sky.png") is None


@pytest.mark.parametrize(("spec", "error", "words"), [
    ("auto:1", UsageError, "from 2 to 16"),
    ("auto:17", UsageError, "from 2 to 16"),
    ("auto:three", UsageError, "auto:K"),
    ("auto:2", UsageError, "from a photo"),  # no photo given
    ("missing.png", ImageError, "no such file"),
    ("a\0b.png", ImageError, "NUL"),
])
def test_bad_specs_are_one_line(spec, error, words):
    with pytest.raises(error, match=words) as caught:
        load_mask(spec)
    assert "\n" not in str(caught.value)


def test_bad_masks_to_write_are_refused(tmp_path, found):
    with pytest.raises(ImageError, match="PNG"):
        write_mask(found, tmp_path / "mask.jpg")
    with pytest.raises(UsageError, match="first appear"):  # the file would number these 0, 1
        write_mask(mask_from_labels(np.array([[1, 0], [0, 0]])), tmp_path / "order.png")
    with pytest.raises(UsageError, match="2 to 16"):
        auto_mask(PHOTO, 1)
    assert not list(tmp_path.iterdir())


def _png(array):
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


_FILES = st.one_of(
    st.binary(max_size=200),
    st.builds(lambda data, cut: _png(np.frombuffer(data.ljust(48, b"\0")[:48], np.uint8).reshape(4, 4, 3))[:cut],
              st.binary(min_size=1, max_size=48), st.integers(8, 400)),
    st.builds(lambda values: _png(np.array(values + values, dtype=np.uint8).reshape(2, -1)),  # grey levels
              st.lists(st.integers(0, 3).map(lambda v: v * 80), min_size=1, max_size=4)),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=_FILES)
def test_any_file_is_a_mask_or_one_painterly_error(tmp_path, data):
    path = tmp_path / "mask.png"
    path.write_bytes(data)
    try:
        mask = load_mask(path)
    except PainterlyError as error:
        assert "\n" not in str(error)
    else:
        assert isinstance(mask, RegionMask) and 2 <= mask.count <= MAX_REGIONS


@settings(max_examples=60, deadline=None)
@given(spec=st.one_of(st.text(max_size=30), st.from_regex(r"auto:[0-9x ]{0,3}", fullmatch=True)))
def test_any_spec_is_a_mask_or_one_painterly_error(spec):
    try:
        mask = load_mask(spec, TINY_PHOTO)
    except PainterlyError as error:
        assert "\n" not in str(error)
    else:
        assert isinstance(mask, RegionMask) and 2 <= mask.count <= MAX_REGIONS


def _padded_blur(values: np.ndarray, radius: int, axis: int) -> np.ndarray:
    """A box blur with the edges extended, the plain way: pad by the radius, then a running sum."""
    pad = [(0, 0)] * values.ndim
    pad[axis] = (radius + 1, radius)
    sums = np.cumsum(np.pad(values, pad, mode="edge"), axis=axis)
    length = values.shape[axis]
    return (np.take(sums, np.arange(2 * radius + 1, 2 * radius + 1 + length), axis=axis)
            - np.take(sums, np.arange(length), axis=axis)) / (2 * radius + 1)


@settings(max_examples=40, deadline=None)
@given(height=st.integers(1, 12), width=st.integers(1, 12), feather=st.integers(0, 200), seed=st.integers(0, 9))
def test_feathered_weights_are_edge_extended_box_blurs(height, width, feather, seed):
    """Each region's weight: two box blurs per axis with the edges extended, normalised to sum to 1, as
    padding gives it, also for feathers far wider than the image (which once padded by the feather, and a
    feather of 10^8 ran out of memory)."""
    labels = np.random.default_rng(seed).integers(0, 3, (height, width))
    labels[0, 0], labels[-1, -1] = 0, 1  # at least two regions
    mask = mask_from_labels(labels)
    expected = (labels[None] == np.arange(mask.count)[:, None, None]).astype(np.float64)
    if feather > 0:
        for axis in (1, 2):
            expected = _padded_blur(_padded_blur(expected, max(1, feather // 2), axis), max(1, feather // 2), axis)
        expected /= expected.sum(axis=0, keepdims=True)
    weights = mask.weights(height, width, feather)
    assert weights.shape == (mask.count, height, width) and weights.dtype == np.float32
    np.testing.assert_allclose(weights, expected, atol=1e-5)


def test_the_widest_feather_is_cheap_and_still_sums_to_one():
    labels = np.zeros((40, 60), np.uint8)
    labels[:, 30:] = 1
    weights = mask_from_labels(labels).weights(600, 900, MAX_MASK_FEATHER)  # a feather 70 times the image
    assert np.isfinite(weights).all() and np.allclose(weights.sum(axis=0), 1, atol=1e-5)
    assert 0.45 < weights[0, :, 0].min() and weights[0, :, -1].max() < 0.55  # nearly even everywhere


@pytest.mark.parametrize("feather", [-1, 65_537, 10**8, True, 2.5])
def test_a_feather_out_of_range_is_one_usage_line(feather):
    with pytest.raises(UsageError, match=r"^mask_feather must be 0 \(hard edges\) to 65536 pixels, got "):
        ApplyConfig(mask_feather=feather)
    with pytest.raises(UsageError, match=r"^mask_feather must be 0 \(hard edges\) to 65536 pixels, got "):
        StylizeConfig(mask_feather=feather)
