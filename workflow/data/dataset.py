"""Images listed in a manifest, decoded and transformed into CHW float tensors for the model."""
from __future__ import annotations

from pathlib import Path

import albumentations as A
import torch
from torch.utils.data import DataLoader, Dataset

from workflow.data.images import load_rgb
from workflow.transforms import to_chw_float


class ImageDataset(Dataset):
    """(pixels, label index) pairs; label index is -1 for unlabelled (test) images."""

    def __init__(self, root: Path | str, paths: list[str], transform: A.Compose, labels: list[int] | None = None):
        self.root = Path(root)
        self.paths = list(paths)
        self.labels = list(labels) if labels is not None else [-1] * len(self.paths)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        image = self.transform(image=load_rgb(self.root / self.paths[index]))["image"]
        return torch.from_numpy(to_chw_float(image)), self.labels[index]


def make_loader(dataset: ImageDataset, batch_size: int, num_workers: int, shuffle: bool = False, seed: int = 0) -> DataLoader:
    generator = torch.Generator().manual_seed(seed)  # the shuffle order depends on train.seed only
    return DataLoader(
        dataset, batch_size=batch_size, shuffle=shuffle, generator=generator,
        num_workers=num_workers, persistent_workers=num_workers > 0,
    )
