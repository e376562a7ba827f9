"""split: a stratified, seeded train/validation split of the labelled images or text rows.

Reads data/raw/train.csv (path,label for images; id,label,text[,text_pair] for text) and params
`split`; writes train.csv, val.csv and a class-count table (class,train,val) to the output folder.
A class with a single row cannot be stratified: it goes to train, and the class-count table shows it.

With split.folds listing k >= 2 folds, it also writes the k-fold partition to --folds (stratified,
seeded): folds.csv (each row's fold) and <i>/train.csv, <i>/val.csv per fold, which the fold jobs
train on. A separate output, so a new k leaves data/split, and what trains on it, as it was.
"""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from workflow.config import parse_stage
from workflow.core import io
from workflow.core.cli import run
from workflow.core.errors import UserError
from workflow.data import folds
from workflow.training.provenance import SPLIT_SEED_FILE

SECTIONS = ("split",)  # the params sections this stage reads; dvc.yaml lists their keys



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
    args, sections = parse_stage(__doc__, SECTIONS, argv, raw="data/raw", out="data/split", folds="data/folds")
    params = sections["split"]

    labelled = pd.read_csv(Path(args.raw) / "train.csv", dtype=str, keep_default_na=False)
    train, val = stratified_split(labelled, params.val_fraction, params.seed)
    with io.atomic_path(args.out) as out:
        out.mkdir()
        train.to_csv(out / "train.csv", index=False)
        val.to_csv(out / "val.csv", index=False)
        class_counts(train, val).to_csv(out / "class_counts.csv", index=False)
        # The seed travels with the split, so training runs record it (reports/train/run.json).
        (out / SPLIT_SEED_FILE).write_text(json.dumps({"split.seed": params.seed}) + "\n")
    with io.atomic_path(args.folds) as out:
        folds.write(labelled, params.k, params.seed, out)
    what = "rows" if labelled.columns[0] == "id" else "images"
    print(f"split: {len(train)} train, {len(val)} validation {what}, {labelled['label'].nunique()} classes"
          + (f"; {params.k} folds of about {len(labelled) // params.k} {what} -> {args.folds}" if params.k > 1 else ""))


if __name__ == "__main__":
    raise SystemExit(run(main))
