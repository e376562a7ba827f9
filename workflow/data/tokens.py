"""Batches of cached tokens (workflow/data/token_cache.py), padded per batch.

Each batch is cut to its own longest row (dynamic padding): short snippets in a batch cost their
length, not max_length. Evaluation sets may be ordered by length (longest first), so rows of like
length share a batch and little is padded; predictions are put back in the set's order afterwards.
Training keeps the seeded shuffle: ordering by length there would change which rows share a batch,
and so the results.
"""
from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

from workflow.data.token_cache import TokenCache


class CachedTokens(Dataset):
    """Batches of ({input_ids, attention_mask[, token_type_ids]}, label indices); label -1 for test rows."""

    def __init__(self, cache: TokenCache, ids, part: str, labels=None, by_length: bool = False):
        rows = cache.rows_of(ids, part)
        # Longest first: the largest batch comes first, so a run that would run out of memory does so at once.
        self.order = np.argsort(-np.asarray(cache.lengths)[rows], kind="stable") if by_length else None
        self.rows = rows[self.order] if by_length else rows
        labels = np.asarray(labels if labels is not None else [-1] * len(rows), dtype=np.int64)
        self.labels = labels[self.order] if by_length else labels
        self.cache = cache
        self.with_types = "token_type_ids" in cache.model_inputs

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int):
        features, labels = self.__getitems__([index])
        return {name: tensor[0] for name, tensor in features.items()}, int(labels[0])

    def __getitems__(self, indices: list[int]) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        rows = self.rows[indices]
        lengths = np.asarray(self.cache.lengths[rows])
        width = int(lengths.max())
        features = {
            "input_ids": torch.from_numpy(np.asarray(self.cache.input_ids[rows, :width], dtype=np.int64)),
            "attention_mask": torch.from_numpy((np.arange(width) < lengths[:, None]).astype(np.int64)),
        }
        if self.with_types:
            features["token_type_ids"] = torch.from_numpy(np.asarray(self.cache.token_type_ids[rows, :width],
                                                                     dtype=np.int64))
        return features, torch.from_numpy(self.labels[indices])

    def in_set_order(self, values: np.ndarray) -> np.ndarray:
        """Per-row results of the loader's order, back in the order of the ids given."""
        if self.order is None:
            return values
        restored = np.empty_like(values)
        restored[self.order] = values
        return restored

    def tokens(self) -> int:
        """Real (unpadded) tokens in the set: what tokens/s counts."""
        return int(np.asarray(self.cache.lengths)[self.rows].sum())
