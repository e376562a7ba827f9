"""The labelled rows a training run reads: the split's train and val rows, their cache (decoded
images, or tokens for a text competition), the class names and, for images, the augment stage's
pipelines fitted to the model's input size."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import albumentations as A
import numpy as np
import pandas as pd

from workflow.core.errors import UserError
from workflow.data.cache import ImageCache
from workflow.data.competition_info import read_competition
from workflow.data.dataset import CachedImages, pixel_transforms
from workflow.data.token_cache import TokenCache
from workflow.data.tokens import CachedTokens
from workflow.data.transforms import check_fits, is_auto_normalize, load_pipeline
from workflow.training.provenance import SPLIT_SEED_FILE


@dataclass(frozen=True)
class LabelledData:
    raw: Path
    classes: list[str]
    train: pd.DataFrame
    val: pd.DataFrame
    pipelines: Path
    cache: ImageCache | TokenCache
    split: Path
    task: str = "image"  # or "text" (data/raw/competition.json)

    @classmethod
    def load(cls, raw: Path | str, split: Path | str, pipelines: Path | str, cache: Path | str) -> "LabelledData":
        raw, split = Path(raw), Path(split)
        read = lambda name: pd.read_csv(split / f"{name}.csv", dtype=str, keep_default_na=False)  # noqa: E731
        competition = read_competition(raw)
        task = competition.get("task", "image")
        opened = TokenCache.open(cache, raw) if task == "text" else ImageCache.open(cache, raw)
        return cls(raw=raw, classes=competition["classes"], train=read("train"), val=read("val"),
                   pipelines=Path(pipelines), cache=opened, split=split, task=task)

    def keys(self, frame: pd.DataFrame) -> pd.Series:
        """Each row's name in the manifests: an image's path, a text row's id."""
        return frame["id" if self.task == "text" else "path"]

    def token_sets(self, tokenizer, name: str, seed: int) -> tuple[CachedTokens, CachedTokens, str]:
        """Train and val token sets for a model with `tokenizer` (the cache's tokens when it tokenizes
        alike), and a note when it had to tokenize in memory. Validation runs in length order."""
        del seed  # text has no augmentation stream; kept for the same call shape as pipelines_for
        tokens, note = self.cache.for_tokenizer(self.raw, tokenizer, name)
        train = CachedTokens(tokens, self.train["id"], "train", self.labels(self.train))
        val = CachedTokens(tokens, self.val["id"], "train", self.labels(self.val), by_length=True)
        return train, val, note

    def own_normalization(self, model_name: str, trust_remote_code: bool) -> dict | None:
        """The model's own normalisation when the pipelines take it (augment.normalize: auto), else None."""
        if not is_auto_normalize(self.pipelines):
            return None
        from workflow.models.preprocessing import own_normalization

        return own_normalization(model_name, trust_remote_code)

    def image_sets(self, train_pipeline: A.Compose, eval_pipeline: A.Compose) -> tuple[CachedImages, CachedImages]:
        return (CachedImages(self.cache, self.train["path"], train_pipeline, self.labels(self.train)),
                CachedImages(self.cache, self.val["path"], eval_pipeline, self.labels(self.val)))

    def seeds(self) -> dict[str, int]:
        """The seeds that made this data (the split's), by params key."""
        seed_file = self.split / SPLIT_SEED_FILE
        return json.loads(seed_file.read_text()) if seed_file.is_file() else {}

    def labels(self, frame: pd.DataFrame) -> np.ndarray:
        index = {label: i for i, label in enumerate(self.classes)}
        return np.array([index[label] for label in frame["label"]], dtype=np.int64)

    def pipelines_for(self, size: int, augment: bool, seed: int, resize: bool,
                      normalize: dict | None = None) -> tuple[A.Compose, A.Compose, A.Normalize | None]:
        """Train and eval pixel pipelines (uint8 in, uint8 out) for a model taking `size` pixels, and
        the Normalize to run on the device; without augmentation, training sees the eval transforms.
        `resize` fits the declared pipelines to the model (screening) instead of insisting they match;
        `normalize` ({'mean', 'std'}) is the model's own normalisation under augment.normalize: auto."""
        target = size if resize else None
        train_pipeline, built_size = load_pipeline(self.pipelines, "train" if augment else "eval", size=target,
                                                   normalize=normalize)
        train_pipeline, normalize_op = pixel_transforms(train_pipeline, seed)
        eval_pipeline, _ = pixel_transforms(load_pipeline(self.pipelines, "eval", size=target, normalize=normalize)[0])
        if built_size != size:
            raise UserError(f"augment.image_size: {built_size}, but the model takes {size}x{size} images; "
                            f"set augment.image_size: {size}")
        if not resize and self.cache.image_size < size:
            raise UserError(f"cache.image_size: {self.cache.image_size} is below the model's {size}x{size} input "
                            f"(images would be upsampled); set cache.image_size: {size} or a little more")
        side = self.cache.image_size
        check_fits(train_pipeline, {"the cached images": (side, side)},
                   f"make it smaller or raise cache.image_size (the cache in {self.cache.folder} is {side})")
        return train_pipeline, eval_pipeline, normalize_op
