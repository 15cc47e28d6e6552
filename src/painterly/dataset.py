"""Training photos (and AdaIN's paintings): folders of images served as random square crops in a seeded order.

Every random choice is derived from its coordinates, never drawn from a running
generator: the order of epoch e from (seed, e), the crop and flip of a photo
from (seed, e, index). The paintings an AdaIN run pairs with the photos follow
the same rule in a stream of their own (`PAINTINGS`): the paintings of step s
are the next entries of an endless series of seeded permutations. The batch of
step s is therefore a function of the seed and s alone, whatever the number of
loader workers and whether the run was resumed — the basis of `training.py`'s
exact resume.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from . import images, pixels
from .errors import ImageError, PainterlyError, UsageError
from .provenance import file_sha256

Key = tuple[int, int]  # (epoch, index of a file)
PairKey = tuple[int, int, int]  # (source: PHOTOS or PAINTINGS, epoch or cycle, index of a file)
Skipped = dict[str, str]  # unreadable file -> why
PHOTOS, PAINTINGS = 0, 1
# Mixed into the paintings' seeds, so that their orders and crops are not the photos' (a value no
# epoch or file index reaches).
_PAINTING_STREAM = 0x5041494E54


def find_photos(folder: str) -> list[Path]:
    """Every image file under `folder`, sorted; refuses a missing or empty folder."""
    if not folder:
        raise UsageError("no training photos given: set --data to a folder of images")
    return find_images(folder)


def find_images(folder: str | Path) -> list[Path]:
    """Every image file under `folder`, sorted; refuses a missing or empty folder (one line naming it)."""
    files = images.image_files(folder)
    if not files:
        raise PainterlyError(f"{folder}: no image files found (subfolders were searched too)")
    return files


def folder_sha256(folder: Path, files: Sequence[Path]) -> str:
    """One SHA-256 over the files' (path relative to `folder`, SHA-256) list: the same paintings in the
    same places give the same digest wherever the folder is, and any change of a file, a name, or a file
    more or less changes it (a resume with other paintings is refused on it)."""
    listing = hashlib.sha256()
    for path in files:
        relative = path.relative_to(folder).as_posix()
        listing.update(f"{file_sha256(path)}  {relative}\n".encode())
    return listing.hexdigest()


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

    The short side is first scaled to `resize` (default `size`; up or down): at `size`
    a crop covers the photo's full height or width, as in Johnson et al.'s 256²
    training images; AdaIN's recipe scales to 512 and crops 256. An unreadable file
    is replaced by the next readable one and reported with the sample, so the main
    process can count it even when workers decode. `stream` (PAINTINGS) gives the
    crops seeds of their own, for a second folder in the same run.
    """

    def __init__(self, files: Sequence[Path], size: int, seed: int, *, resize: int | None = None,
                 stream: int = PHOTOS) -> None:
        self.files = list(files)
        self.size = size
        self.resize = size if resize is None else resize
        self.seed = seed
        self.stream = stream

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, key: Key) -> tuple[torch.Tensor, Skipped]:
        epoch, index = key
        if self.stream == PHOTOS:
            rng = _seed_sequence(self.seed, epoch, index)
        else:
            rng = _seed_sequence(self.seed, epoch, index, _PAINTING_STREAM)
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
        scale = self.resize / min(height, width)
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


class PairedBatches(Sampler[list[PairKey]]):
    """An AdaIN step's keys: this process's photos (as `StepBatches` gives them), then as many paintings.

    The paintings are drawn from an endless series of seeded permutations of all of them: global
    position p = (step × world_size + rank) × batch_size + j is entry p mod count of permutation
    p // count. Each step thus takes the next paintings, a pass over the paintings at a time, whether
    there are fewer paintings than a batch or many more than the photos, as a function of (seed, step).
    """

    def __init__(self, photos: int, paintings: int, batch_size: int, seed: int, *, start: int, stop: int,
                 rank: int = 0, world_size: int = 1) -> None:
        self.photos = StepBatches(photos, batch_size, seed, start=start, stop=stop, rank=rank,
                                  world_size=world_size)
        self.paintings, self.batch_size, self.seed = paintings, batch_size, seed
        self.rank, self.world_size = rank, world_size

    def __len__(self) -> int:
        return len(self.photos)

    def __iter__(self) -> Iterator[list[PairKey]]:
        orders: dict[int, np.ndarray] = {}
        for step, photo_keys in zip(range(self.photos.start, self.photos.stop), self.photos, strict=True):
            first = (step * self.world_size + self.rank) * self.batch_size
            painting_keys = []
            for position in range(first, first + self.batch_size):
                cycle, offset = divmod(position, self.paintings)
                if cycle not in orders:
                    orders = {cycle: _seed_sequence(self.seed, cycle, _PAINTING_STREAM).permutation(self.paintings)}
                painting_keys.append((PAINTINGS, cycle, int(orders[cycle][offset])))
            yield [(PHOTOS, epoch, index) for epoch, index in photo_keys] + painting_keys


class Pairs(Dataset):
    """The photos and the paintings of an AdaIN run as one dataset, keyed by `PairKey`."""

    def __init__(self, photos: PhotoCrops, paintings: PhotoCrops) -> None:
        self.sources = (photos, paintings)

    def __len__(self) -> int:
        return len(self.sources[PHOTOS])

    def __getitem__(self, key: PairKey) -> tuple[int, torch.Tensor, Skipped]:
        source, epoch, index = key
        crop, skipped = self.sources[source][(epoch, index)]
        return source, crop, skipped


def collate_pairs(samples: list[tuple[int, torch.Tensor, Skipped]]) -> tuple[torch.Tensor, torch.Tensor, Skipped]:
    """Stack the photos' crops and the paintings' (each (N, 3, size, size)), and merge what was skipped."""
    skipped: Skipped = {}
    for _, _, problems in samples:
        skipped.update(problems)
    photos = [crop for source, crop, _ in samples if source == PHOTOS]
    paintings = [crop for source, crop, _ in samples if source == PAINTINGS]
    return torch.stack(photos), torch.stack(paintings), skipped
