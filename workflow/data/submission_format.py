"""Check a predictions file against the competition's submission format before it is uploaded.

Kaggle scores a malformed file as an error and still counts it against the day's submissions, so the
file is checked here first, against data/raw (sample_submission.csv and competition.json): the same
columns in the same order, the same ids in the same order, no empty cell, and
  label format:         every label one of the competition's classes;
  probabilities format: every class column a number in [0, 1], each row summing to 1 within 1e-6.
The first problem found is reported in one line naming the file, its line and the column.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from workflow.core.errors import UserError
from workflow.data.competition_info import read_competition

SUM_TOLERANCE = 1e-6
FIX = "re-run infer (dvc repro infer)"


def read_table(path: Path) -> pd.DataFrame:
    # As strings: ids keep their leading zeros, and an empty cell stays empty (not NaN).
    try:
        return pd.read_csv(path, dtype=str, keep_default_na=False)
    except FileNotFoundError:
        raise UserError(f"{path}: not found; {FIX}") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise UserError(f"{path}: not a readable CSV ({type(err).__name__}); {FIX}") from None


def submission(sample: pd.DataFrame, competition: dict, probabilities: np.ndarray, classes: list[str]) -> pd.DataFrame:
    """A frame with sample's columns and id order, filled with each row's most probable label, or with
    the probabilities themselves when the format has a column per class."""
    out = sample.copy()
    if competition["format"] == "label":
        out[competition["label_column"]] = [classes[i] for i in probabilities.argmax(axis=1)]
    else:
        for i, label in enumerate(classes):
            out[label] = probabilities[:, i]
    return out[sample.columns]


def check_submission(predictions: Path, raw: Path) -> None:
    """Raise UserError for the first way `predictions` differs from raw/sample_submission.csv's format."""
    predictions, raw = Path(predictions), Path(raw)
    competition = read_competition(raw)
    sample_path = raw / "sample_submission.csv"
    sample, table = read_table(sample_path), read_table(predictions)
    if list(table.columns) != list(sample.columns):
        raise UserError(f"{predictions}: columns {list(table.columns)} differ from {sample_path}'s "
                        f"{list(sample.columns)}; {FIX}")
    if len(table) != len(sample):
        raise UserError(f"{predictions}: {len(table)} rows where {sample_path} has {len(sample)}; {FIX}")
    id_column = sample.columns[0]
    for line, (got, expected) in enumerate(zip(table[id_column], sample[id_column]), start=2):
        if got != expected:
            raise UserError(f"{predictions} line {line}: id '{got}' where {sample_path} has '{expected}' "
                            f"(the same ids in the same order are required); {FIX}")
    for column in table.columns:
        empty = table.index[table[column].str.strip() == ""]
        if len(empty):
            raise UserError(f"{predictions} line {empty[0] + 2}: column '{column}' is empty; {FIX}")
    if competition["format"] == "label":
        _check_labels(predictions, table[competition["label_column"]], competition["classes"])
    else:
        _check_probabilities(predictions, table[list(sample.columns[1:])])


def _check_labels(path: Path, labels: pd.Series, classes: list[str]) -> None:
    unknown = labels.index[~labels.isin(classes)]
    if len(unknown):
        row = unknown[0]
        raise UserError(f"{path} line {row + 2}: label '{labels[row]}' is not one of the competition's "
                        f"{len(classes)} classes; {FIX}")


def _check_probabilities(path: Path, columns: pd.DataFrame) -> None:
    values = columns.apply(pd.to_numeric, errors="coerce")
    for column in columns.columns:
        bad = values.index[values[column].isna() | ~values[column].between(0, 1)]
        if len(bad):
            row = bad[0]
            raise UserError(f"{path} line {row + 2}: column '{column}' is {columns.at[row, column]!r}, not a "
                            f"probability in [0, 1]; {FIX}")
    sums = values.sum(axis=1)
    off = sums.index[(sums - 1).abs() > SUM_TOLERANCE]
    if len(off):
        row = off[0]
        raise UserError(f"{path} line {row + 2}: the class probabilities sum to {sums[row]:.9g}, not 1 "
                        f"(within {SUM_TOLERANCE:g}); {FIX}")
