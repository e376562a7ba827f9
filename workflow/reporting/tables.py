"""Result tables: the rows the foreach and matrix jobs wrote, and their text as Markdown or HTML (tabulate)."""
from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
from pandas.api.types import is_bool_dtype, is_float_dtype, is_numeric_dtype

from workflow.core.errors import UserError

# Floats are rounded to what a reader compares first (_shown: three significant digits), so the format
# only prints every digit left, thousands separated; plain ",g" would turn 1,234,567 into 1.23457e+06.
FLOAT_FORMAT = ",.15g"
INT_FORMAT = ","


def read_rows(folder: Path | str, jobs: Sequence[str], stage: str) -> pd.DataFrame:
    """One row per job of `stage` that params.yaml declares now: `folder`/<job>.json, in `jobs` order.

    A job dropped from params.yaml (a removed candidate, variant or seed) keeps its file, as neither
    DVC nor Snakemake deletes the outputs of a stage that is gone: its row is left out, and said so.
    """
    folder = Path(folder)
    files = [folder / f"{job}.json" for job in jobs]
    missing = [job for job, file in zip(jobs, files) if not file.is_file()]
    if missing:
        raise UserError(f"{folder / (missing[0] + '.json')}: missing ({len(missing)} of {len(jobs)} result rows); "
                        f"run its job first: dvc repro {stage}@{missing[0]}")
    stale = sorted(set(folder.glob("*.json")) - set(files))
    if stale:
        print(f"left out {len(stale)} result rows of {stage} jobs no longer in params.yaml: "
              f"{', '.join(file.name for file in stale)}")
    return pd.DataFrame([json.loads(file.read_text()) for file in files])


def _shown(value: float) -> float:
    """Three significant digits (0.847, 5.31, 45.1); whole numbers from 1,000 up."""
    return float(format(value, ".0f" if abs(value) >= 1000 else ".3g"))


def significant(value: float) -> str:
    """A number in running text as the tables show it: 0.847, 45.1, 12,346."""
    return format(_shown(value), FLOAT_FORMAT)


def _for_readers(frame: pd.DataFrame) -> pd.DataFrame:
    shown = frame.copy()
    for column in shown.columns:
        if is_bool_dtype(shown[column]):
            shown[column] = shown[column].map({True: "yes", False: "no"})
        elif is_float_dtype(shown[column]):
            shown[column] = shown[column].map(_shown)
    return shown


def table_text(frame: pd.DataFrame, tablefmt: str) -> str:
    """`frame` as tabulate's `tablefmt` ("pipe" for Markdown, "html"), numbers right-aligned."""
    shown = _for_readers(frame)
    # Names stay as written: tabulate would otherwise read class "007" as the number 7.
    names = [i for i, column in enumerate(shown.columns) if not is_numeric_dtype(shown[column])]
    text = shown.to_markdown(index=False, tablefmt=tablefmt, floatfmt=FLOAT_FORMAT, intfmt=INT_FORMAT,
                             disable_numparse=names)
    return str(text)  # tabulate's HTML comes as a str subclass made for notebooks
