"""The fast data path: cached uint8 images (workflow/data/cache.py) through the albumentations
pipeline's pixel transforms, batched as uint8, and normalised on the model's device.

Per sample only the geometric transforms run (on small uint8 arrays); a whole batch is assembled in
one array (`__getitems__`, no per-sample collation), crosses to the device as uint8 (a quarter of
the bytes of float32) and is normalised there in one vectorised op (DeviceNormalize).
"""
from __future__ import annotations

import albumentations as A
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from workflow.data.cache import ImageCache


def pixel_transforms(pipeline: A.Compose, seed: int | None = None) -> tuple[A.Compose, A.Normalize | None]:
    """`pipeline` (unseeded) split into its uint8 pixel transforms, seeded, and its final Normalize.

    A Normalize that is not last, or not the standard (x / max - mean) / std, stays on the host.
    """
    last = pipeline.transforms[-1] if pipeline.transforms else None
    normalize = last if isinstance(last, A.Normalize) and last.normalization == "standard" else None
    pixels = A.Compose(pipeline.transforms[:-1]) if normalize is not None else pipeline
    if seed is not None:
        pixels.set_random_seed(seed)
    return pixels, normalize


class DeviceNormalize:
    """uint8 NCHW on the device -> float32 (x / max_pixel_value - mean) / std, as A.Normalize does."""

    def __init__(self, normalize: A.Normalize | None, channels_last: bool = False):
        self.mean = self.std = None
        if normalize is not None:
            scale = float(normalize.max_pixel_value or 1.0)
            self.mean = torch.tensor(normalize.mean, dtype=torch.float32).view(1, -1, 1, 1) * scale
            self.std = torch.tensor(normalize.std, dtype=torch.float32).view(1, -1, 1, 1) * scale
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format

    def __call__(self, pixels: torch.Tensor) -> torch.Tensor:
        pixels = pixels.float()
        if self.mean is not None:
            if self.mean.device != pixels.device:
                self.mean, self.std = self.mean.to(pixels.device), self.std.to(pixels.device)
            pixels = (pixels - self.mean) / self.std
        return pixels.contiguous(memory_format=self.memory_format)


class CachedImages(Dataset):
    """Batches of (uint8 NCHW pixels, label indices); label index -1 for unlabelled (test) images."""

    def __init__(self, cache: ImageCache, paths, transform: A.Compose, labels=None):
        self.array = cache.array  # memory-mapped: workers share the pages, nothing is copied up front
        self.rows = cache.rows_of(paths)
        self.labels = np.asarray(labels if labels is not None else [-1] * len(self.rows), dtype=np.int64)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.rows)

    def _pixels(self, index: int) -> np.ndarray:
        return self.transform(image=np.asarray(self.array[self.rows[index]]))["image"]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return torch.from_numpy(np.ascontiguousarray(self._pixels(index).transpose(2, 0, 1))), int(self.labels[index])

    def __getitems__(self, indices: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """A whole batch into one preallocated array: the DataLoader's fast path, no collation."""
        first = self._pixels(indices[0])
        batch = np.empty((len(indices), *first.shape), dtype=first.dtype)
        batch[0] = first
        for slot, index in enumerate(indices[1:], start=1):
            batch[slot] = self._pixels(index)
        return torch.from_numpy(batch).permute(0, 3, 1, 2), torch.from_numpy(self.labels[indices])


def _already_batched(batch):
    return batch


def make_loader(dataset: CachedImages, batch_size: int, num_workers: int, shuffle: bool = False, seed: int = 0,
                pin_memory: bool = False, drop_last: bool = False) -> DataLoader:
    generator = torch.Generator().manual_seed(seed)  # the shuffle order depends on train.seed only
    return DataLoader(
        dataset, batch_size=batch_size, shuffle=shuffle, generator=generator, num_workers=num_workers,
        persistent_workers=num_workers > 0, pin_memory=pin_memory, collate_fn=_already_batched, drop_last=drop_last,
        prefetch_factor=4 if num_workers > 0 else None,
    )
