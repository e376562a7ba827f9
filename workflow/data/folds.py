"""The k-fold partition (split.folds) in data/folds, and the files of the fold jobs that use it.

kfold writes folds.json (k) and, for k >= 2, folds.csv (each labelled row's fold) and <i>/train.csv,
<i>/val.csv per fold; each fold job (workflow/stages/fold.py) writes oof.csv and
test_probabilities.csv, which cv (workflow/stages/cv.py) pools.
"""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from workflow.core.errors import UserError
from workflow.training.provenance import SPLIT_SEED_FILE

FOLDS_FILE = "folds.json"  # k, and the seed that made the partition
OOF_FILE, TEST_FILE, NOTE_FILE = "oof.csv", "test_probabilities.csv", "fold.json"  # a fold job's files


def count(folds: Path | str) -> int:
    """k, as kfold wrote it; one line naming the stage to run when it has not."""
    path = Path(folds) / FOLDS_FILE
    if not path.is_file():
        raise UserError(f"{path}: missing; run the kfold stage first (dvc repro kfold)")
    return json.loads(path.read_text())["folds"]


def kfold(labelled: pd.DataFrame, k: int, seed: int) -> pd.Series:
    """Each row's fold, stratified by label; a class with fewer rows than k is spread over the folds
    it can fill (scikit-learn's StratifiedKFold), which the message names."""
    import warnings

    from sklearn.model_selection import StratifiedKFold

    if k > len(labelled):
        raise UserError(f"split.folds: {k} folds for {len(labelled)} labelled rows; list fewer folds")
    counts = labelled["label"].value_counts()
    if (counts < k).all():
        raise UserError(f"split.folds: {k} folds, but no class has {k} rows (the largest has {counts.max()}); "
                        f"list fewer folds")
    fold = pd.Series(0, index=labelled.index, name="fold")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "the least populated class has only n members"
        splitter = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
        for index, (_, held_out) in enumerate(splitter.split(labelled, labelled["label"])):
            fold.iloc[held_out] = index
    small = sorted(counts[counts < k].index)
    if small:
        print(f"kfold: {len(small)} classes have fewer rows than the {k} folds (e.g. '{small[0]}'): some folds "
              f"validate without them")
    return fold


def write(labelled: pd.DataFrame, folds: int, seed: int, out: Path) -> None:
    """The k-fold partition: folds.json (k), and for k >= 2 folds.csv and each fold's train/val."""
    out.mkdir()
    (out / FOLDS_FILE).write_text(json.dumps({"folds": folds, "split.seed": seed}) + "\n")
    if folds < 2:
        return
    fold = kfold(labelled, folds, seed)
    key = labelled.columns[0]
    labelled[[key, "label"]].assign(fold=fold).sort_values(key).to_csv(out / "folds.csv", index=False)
    for index in range(folds):
        (out / str(index)).mkdir()
        labelled[fold != index].sort_values(key).to_csv(out / f"{index}/train.csv", index=False)
        labelled[fold == index].sort_values(key).to_csv(out / f"{index}/val.csv", index=False)
        (out / f"{index}/{SPLIT_SEED_FILE}").write_text(json.dumps({"split.seed": seed}) + "\n")
