"""reports/submissions.csv: one row per upload to Kaggle, kept across runs, engines and experiments.

Columns: time (UTC, ISO 8601), competition, message, sha256 (of the file uploaded), ref (Kaggle's number
for the submission), public_score (empty until Kaggle has scored it and a refresh has asked).

It is no DVC output, and git ignores it: DVC and Snakemake delete a stage's outputs before the stage runs;
a filled-in score would make `dvc status` call the stage changed, and the next `dvc repro` would upload
again; `dvc exp apply` or `git checkout` would put back an older copy. Only the submit stage and its
--refresh write it, each time whole and atomically, under a lock (queued experiments may submit at once).
"""
from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

import pandas as pd

from workflow.core import io
from workflow.core.errors import UserError

COLUMNS = ["time", "competition", "message", "sha256", "ref", "public_score"]


def history_path(path: Path | str) -> Path:
    """`path` in the workspace the user works in.

    A queued or --temp experiment runs in a copy of the repository that is thrown away; DVC_ROOT names
    the workspace it came from (DVC sets it for every stage; in the workspace it is the current folder).
    """
    root = os.environ.get("DVC_ROOT")
    return Path(root) / path if root and not Path(path).is_absolute() else Path(path)


def read(path: Path) -> pd.DataFrame:
    if not path.is_file():
        return pd.DataFrame(columns=COLUMNS)
    table = pd.read_csv(path, dtype=str, keep_default_na=False)
    if list(table.columns) != COLUMNS:
        raise UserError(f"{path}: columns {list(table.columns)}, expected {COLUMNS}; restore the file "
                        "or move it away (a new one is started)")
    return table


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    # A lock on the folder: the file itself is replaced by each write.
    path.parent.mkdir(parents=True, exist_ok=True)
    folder = os.open(path.parent, os.O_RDONLY)
    try:
        fcntl.flock(folder, fcntl.LOCK_EX)
        yield
    finally:
        os.close(folder)  # releases the lock


def append(path: Path, row: dict[str, str]) -> None:
    with _locked(path):
        io.write_csv(path, pd.DataFrame([*read(path).to_dict("records"), row], columns=COLUMNS))


def submitted(path: Path, competition: str, sha256: str) -> str:
    """The ref under which this file (by its sha256) was submitted to `competition`, or ''."""
    table = read(path)
    same = table[(table["competition"] == competition) & (table["sha256"] == sha256)]
    return same["ref"].iloc[-1] if len(same) else ""


def unscored(path: Path) -> dict[str, set[str]]:
    """competition -> the refs of its submissions that have no public score yet."""
    table = read(path)
    waiting = table[table["public_score"] == ""]
    return {competition: set(rows["ref"]) for competition, rows in waiting.groupby("competition")}


def fill_scores(path: Path, scores: dict[tuple[str, str], str]) -> int:
    """Write the public score of each (competition, ref) given; how many rows got one."""
    with _locked(path):
        table = read(path)
        filled = 0
        for index, row in table.iterrows():
            score = scores.get((row["competition"], row["ref"]))
            if score is not None and row["public_score"] == "":
                table.at[index, "public_score"] = score
                filled += 1
        if filled:
            io.write_csv(path, table)
    return filled
