"""The ablation's job rows as one line per variant: seeds pooled, each score with its 95% interval.

A variant trained with several seeds (several rows) shows the mean of its numbers, the seeds' count
and the standard deviation of its scores. Intervals use the validation split's size (accuracy,
exact) and, when the rows carry them, each validation row's prediction (macro-F1, bootstrap).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from workflow.core.errors import UserError
from workflow.reporting.intervals import bootstrap_macro_f1, clopper_pearson, resamples

# The predicted class index of every validation row, in data/split/val.csv order (a job row's field).
PREDICTED = "val_predicted"
# What differs between seeds of one variant and is averaged; everything else is the variant's own.
MEASURED = ["val_accuracy", "val_macro_f1", "val_f1", "val_log_loss", "train_seconds", "training_rss_mib",
            "peak_gpu_mib", "artefact_mib", "kept_epoch"]


def class_indices(labels: pd.Series, classes: list[str]) -> np.ndarray:
    """Each label's position in the competition's classes (what the models predict)."""
    index = {name: i for i, name in enumerate(classes)}
    unknown = sorted(set(labels) - set(index))
    if unknown:
        raise UserError(f"validation labels not among the competition's classes: {', '.join(unknown[:5])}")
    return labels.map(index).to_numpy()


@dataclass(frozen=True)
class Validation:
    """The validation split the scores are measured on: each row's true class index."""

    truth: np.ndarray
    classes: int
    draws: np.ndarray = field(init=False, repr=False, compare=False)  # the bootstrap resamples, shared

    def __post_init__(self):
        object.__setattr__(self, "draws", resamples(len(self.truth)))

    @classmethod
    def from_labels(cls, labels: pd.Series, classes: list[str]) -> Validation:
        return cls(class_indices(labels, classes), len(classes))

    @property
    def size(self) -> int:
        return len(self.truth)


@dataclass(frozen=True)
class Variants:
    """One row per variant (`table`) and, for those whose rows carry them, the (seeds, rows) predictions."""

    table: pd.DataFrame
    predicted: dict[str, np.ndarray]


def accuracy_interval(accuracy: float, size: int, seeds: int = 1) -> tuple[float, float]:
    """Clopper-Pearson over every seed's validation rows pooled (`seeds` x `size` trials)."""
    correct = round(accuracy * size * seeds)
    return clopper_pearson(correct, size * seeds)


def _predictions(rows: pd.DataFrame, variant: str, size: int) -> np.ndarray | None:
    if PREDICTED not in rows or rows[PREDICTED].isna().any():
        return None
    predicted = np.array(rows[PREDICTED].tolist())
    if predicted.ndim != 2 or predicted.shape[1] != size:
        raise UserError(f"ablation variant {variant}: {PREDICTED} has {predicted.shape[-1]} rows, the validation "
                        f"split {size}; re-run its job")
    return predicted


def summarize(rows: pd.DataFrame, validation: Validation) -> Variants:
    """One line per variant, in the order of first appearance: means, seeds, sd and 95% intervals."""
    lines, predicted = [], {}
    for variant, group in rows.groupby("variant", sort=False):
        line = group.iloc[0].drop(labels=[PREDICTED], errors="ignore").to_dict()
        line |= {column: group[column].mean() for column in MEASURED if column in group}
        seeds = len(group)
        line["seeds"] = seeds
        for score in ("val_accuracy", "val_macro_f1"):
            line[f"{score}_sd"] = group[score].std() if seeds > 1 else np.nan
        line["val_accuracy_low"], line["val_accuracy_high"] = accuracy_interval(line["val_accuracy"], validation.size,
                                                                                seeds)
        line["val_macro_f1_low"] = line["val_macro_f1_high"] = np.nan
        predictions = _predictions(group, variant, validation.size)
        if predictions is not None:
            predicted[variant] = predictions
            line["val_macro_f1_low"], line["val_macro_f1_high"] = bootstrap_macro_f1(
                validation.truth, predictions, validation.classes, validation.draws)
        lines.append(line)
    return Variants(pd.DataFrame(lines), predicted)


def lora_rank(method: str) -> int | None:
    """The r of a 'lora r=16 alpha=16 ...' method, None for any other method."""
    found = re.match(r"lora r=(\d+)\b", method)
    return int(found.group(1)) if found else None


def rank_sweep(table: pd.DataFrame) -> pd.DataFrame:
    """The LoRA variants that differ only in rank (and alpha, which often follows it), by rank: the
    largest such set with two ranks or more; empty when there is none."""
    lora = table.assign(r=table["method"].map(lora_rank)).dropna(subset=["r"])
    if lora.empty:
        return lora
    # Same targets, dropout and augmentation: the method string without its r and alpha.
    rest = lora["method"].str.replace(r"\b(r|alpha)=\S+ ?", "", regex=True)
    keys = rest + " augment=" + lora["augment"].astype(str)
    sizes = lora.groupby(keys)["r"].nunique()
    if sizes.max() < 2:
        return lora.iloc[:0]
    sweep = lora[keys == sizes.idxmax()].astype({"r": int})
    return sweep.sort_values(["r", "variant"]).drop_duplicates("r").reset_index(drop=True)
