"""Training photos: a folder of images served as random square crops in a seeded order.

Every random choice is derived from its coordinates, never drawn from a running
generator: the order of epoch e from (seed, e), the crop and flip of a photo
from (seed, e, index). The batch of step s is therefore a function of the seed
and s alone, whatever the number of loader workers and whether the run was
resumed — the basis of `training.py`'s exact resume.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from . import images, pixels
from .errors import ImageError, PainterlyError, UsageError

Key = tuple[int, int]  # (epoch, index of a file)
Skipped = dict[str, str]  # unreadable file -> why


def find_photos(folder: str) -> list[Path]:
    """Every image file under `folder`, sorted; refuses a missing or empty folder."""
    if not folder:
        raise UsageError("no training photos given: set --data to a folder of images")
    files = images.image_files(folder)
    if not files:
        raise PainterlyError(f"{folder}: no image files found (subfolders were searched too)")
    return files


def first_readable(files: Sequence[Path], count: int, folder: str) -> tuple[list[np.ndarray], Skipped]:
    """The first `count` photos that decode, and the unreadable ones met on the way.

    Doubles as the check, before any training, that the folder holds at least one usable photo.
    """
    photos: list[np.ndarray] = []
    skipped: Skipped = {}
    for path in files:
        try:
            photos.append(images.read_array(path)[0])
        except ImageError as error:
            skipped[str(path)] = str(error)
            continue
        if len(photos) == count:
            break
    if not photos:
        example = next(iter(skipped.values()))
        raise PainterlyError(f"{folder}: none of its {len(files)} image files can be read, e.g. {example}")
    return photos, skipped


def steps_per_epoch(count: int, batch_size: int, world_size: int, folder: str) -> int:
    """Full global batches per pass over the photos (the incomplete last one is dropped)."""
    steps = count // (batch_size * world_size)
    if steps == 0:
        raise UsageError(
            f"{folder}: {count} photos are fewer than one batch of {batch_size * world_size}; "
            "lower --batch-size or add photos"
        )
    return steps


def _seed_sequence(*coordinates: int) -> np.random.Generator:
    """A generator for one point of (seed, epoch, index); negative seeds wrap to 64 bits."""
    return np.random.default_rng([value % 2**64 for value in coordinates])


class PhotoCrops(Dataset):
    """Photo `index` of epoch `epoch` as a random `size`² crop, randomly mirrored.

    The short side is first scaled to `size` (up or down), so a crop covers the
    photo's full height or width, as in Johnson et al.'s 256² training images.
    An unreadable file is replaced by the next readable one and reported with
    the sample, so the main process can count it even when workers decode.
    """

    def __init__(self, files: Sequence[Path], size: int, seed: int) -> None:
        self.files = list(files)
        self.size = size
        self.seed = seed

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, key: Key) -> tuple[torch.Tensor, Skipped]:
        epoch, index = key
        rng = _seed_sequence(self.seed, epoch, index)
        skipped: Skipped = {}
        for offset in range(len(self.files)):
            path = self.files[(index + offset) % len(self.files)]
            try:
                rgb, _ = images.read_array(path)
            except ImageError as error:
                skipped[str(path)] = str(error)
                continue
            return self._crop(rgb, rng), skipped
        raise PainterlyError(f"{self.files[0].parent}: no readable image left in the training folder")

    def _crop(self, rgb: np.ndarray, rng: np.random.Generator) -> torch.Tensor:
        """(H, W, 3) array -> (3, size, size) tensor."""
        height, width = rgb.shape[:2]
        scale = self.size / min(height, width)
        rgb = pixels.resize_to(rgb, max(self.size, round(height * scale)), max(self.size, round(width * scale)))
        top = int(rng.integers(rgb.shape[0] - self.size + 1))
        left = int(rng.integers(rgb.shape[1] - self.size + 1))
        crop = rgb[top : top + self.size, left : left + self.size]
        if rng.random() < 0.5:
            crop = crop[:, ::-1]
        return pixels.to_tensor(crop)[0]


class StepBatches(Sampler[list[Key]]):
    """This process's batch of keys for each step in [start, stop).

    Step s belongs to epoch s // per_epoch; the global batch is the next
    batch_size × world_size entries of that epoch's seeded permutation, and
    rank r takes the r-th slice of it, so ranks never see the same photo.
    """

    def __init__(self, count: int, batch_size: int, seed: int, *, start: int, stop: int,
                 rank: int = 0, world_size: int = 1) -> None:
        self.count, self.batch_size, self.seed = count, batch_size, seed
        self.start, self.stop = start, stop
        self.rank, self.world_size = rank, world_size
        self.per_epoch = count // (batch_size * world_size)

    def __len__(self) -> int:
        return max(0, self.stop - self.start)

    def __iter__(self) -> Iterator[list[Key]]:
        order: np.ndarray | None = None
        for step in range(self.start, self.stop):
            epoch, position = divmod(step, self.per_epoch)
            if order is None or position == 0:
                order = _seed_sequence(self.seed, epoch).permutation(self.count)
            first = (position * self.world_size + self.rank) * self.batch_size
            yield [(epoch, int(index)) for index in order[first : first + self.batch_size]]


def collate(samples: list[tuple[torch.Tensor, Skipped]]) -> tuple[torch.Tensor, Skipped]:
    """Stack the crops (N, 3, size, size) and merge the files skipped for them."""
    skipped: Skipped = {}
    for _, problems in samples:
        skipped.update(problems)
    return torch.stack([crop for crop, _ in samples]), skipped
