"""split: a stratified, seeded train/validation split of the labelled images or text rows.

Reads data/raw/train.csv (path,label for images; id,label,text[,text_pair] for text) and params
`split`; writes train.csv, val.csv and a class-count table (class,train,val) to the output folder.
A class with a single row cannot be stratified: it goes to train, and the class-count table shows it.
Reads split.val_fraction and split.seed; the k-fold partition of split.folds is the kfold stage's.
"""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from workflow.config import load_params
from workflow.core import io
from workflow.core.cli import run, stage_parser
from workflow.core.errors import UserError
from workflow.training.provenance import SPLIT_SEED_FILE

SECTIONS = ()  # of its section, not split.folds: a new k must not re-run what trains on this split
KEYS = ("split.val_fraction", "split.seed")



def stratified_split(labelled: pd.DataFrame, val_fraction: float, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    from sklearn.model_selection import train_test_split  # ~1 s with SciPy: not for --help

    counts = labelled["label"].value_counts()
    singletons = labelled["label"].isin(counts[counts < 2].index)
    splittable = labelled[~singletons]
    num_classes = splittable["label"].nunique()
    num_val = round(len(splittable) * val_fraction)
    if num_classes == 0:
        raise UserError("data/raw/train.csv: every class has a single image, so nothing can be held out "
                        "for validation; add images (at least 2 per class)")
    if len(splittable) - num_val < num_classes:
        raise UserError(
            f"split.val_fraction: {val_fraction} leaves {len(splittable) - num_val} training images for "
            f"{num_classes} classes; lower it so each class keeps a training image"
        )
    if num_val < num_classes:
        raise UserError(
            f"split.val_fraction: {val_fraction} gives {num_val} validation images for {num_classes} "
            f"classes; raise it to at least {num_classes / len(splittable):.3f} so each class is seen"
        )
    train, val = train_test_split(
        splittable, test_size=num_val, stratify=splittable["label"], random_state=seed
    )
    train = pd.concat([train, labelled[singletons]])
    key = labelled.columns[0]  # an image's path, a text row's id
    return train.sort_values(key), val.sort_values(key)


def class_counts(train: pd.DataFrame, val: pd.DataFrame) -> pd.DataFrame:
    table = pd.DataFrame({"train": train["label"].value_counts(), "val": val["label"].value_counts()})
    table = table.fillna(0).astype(int).rename_axis("class").reset_index()
    return table.sort_values("class")


def main(argv=None) -> None:
    args = stage_parser(__doc__, raw="data/raw", out="data/split").parse_args(argv)
    params = load_params(args.params).split

    labelled = pd.read_csv(Path(args.raw) / "train.csv", dtype=str, keep_default_na=False)
    train, val = stratified_split(labelled, params.val_fraction, params.seed)
    with io.atomic_path(args.out) as out:
        out.mkdir()
        train.to_csv(out / "train.csv", index=False)
        val.to_csv(out / "val.csv", index=False)
        class_counts(train, val).to_csv(out / "class_counts.csv", index=False)
        # The seed travels with the split, so training runs record it (reports/train/run.json).
        (out / SPLIT_SEED_FILE).write_text(json.dumps({"split.seed": params.seed}) + "\n")
    what = "rows" if labelled.columns[0] == "id" else "images"
    print(f"split: {len(train)} train, {len(val)} validation {what}, {labelled['label'].nunique()} classes")


if __name__ == "__main__":
    raise SystemExit(run(main))
