"""Result tables: the rows the foreach jobs wrote, and their text as Markdown or HTML (tabulate)."""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
from pandas.api.types import is_bool_dtype, is_float_dtype, is_numeric_dtype

from workflow.core.errors import UserError

# Floats are rounded to what a reader compares first (_shown: three significant digits), so the format
# only prints every digit left, thousands separated; plain ",g" would turn 1,234,567 into 1.23457e+06.
FLOAT_FORMAT = ",.15g"
INT_FORMAT = ","


def read_rows(folder: Path | str) -> pd.DataFrame:
    """One row per JSON file in `folder` (the per-job results of a foreach stage)."""
    files = sorted(Path(folder).glob("*.json"))
    if not files:
        raise UserError(f"{folder}: no result rows; run the jobs that write them first")
    return pd.DataFrame([json.loads(f.read_text()) for f in files])


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
