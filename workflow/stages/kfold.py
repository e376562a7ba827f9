"""kfold: the k-fold partition of the labelled rows for cross-validation (split.folds).

Reads data/raw/train.csv, split.folds (k = its length) and split.seed; writes to the output folder
folds.json (k) and, for k >= 2, folds.csv (each row's fold, stratified by label, seeded) and
<i>/train.csv, <i>/val.csv per fold, which the fold job fold@<i> trains on (workflow/data/folds.py).
A stage of its own: a new k re-runs this, the fold jobs and cv, and leaves train's split alone.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from workflow.config import load_params
from workflow.core import io
from workflow.core.cli import run, stage_parser
from workflow.data import folds

SECTIONS = ()  # split.folds and split.seed, not the holdout's val_fraction
KEYS = ("split.folds", "split.seed")


def main(argv=None) -> None:
    args = stage_parser(__doc__, raw="data/raw", out="data/folds").parse_args(argv)
    params = load_params(args.params).split
    labelled = pd.read_csv(Path(args.raw) / "train.csv", dtype=str, keep_default_na=False)
    with io.atomic_path(args.out) as out:
        folds.write(labelled, params.k, params.seed, out)
    if params.k == 1:
        print("kfold: one fold in split.folds: no cross-validation (list 0, 1, 2 for 3 folds)")
    else:
        print(f"kfold: {params.k} stratified folds of about {len(labelled) // params.k} rows -> {args.out}")


if __name__ == "__main__":
    raise SystemExit(run(main))
