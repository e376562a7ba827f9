"""Write the manifests later stages read instead of the competition's own files.

Images: train.csv (path,label), test.csv (id,path), a byte copy of sample_submission.csv,
skipped_images.csv (path,reason: images left out of train.csv) and competition.json; image paths
are relative to the output folder.
Texts: train.csv (id,label,text[,text_pair]), test.csv (id,text[,text_pair]), a byte copy of
sample_submission.csv, skipped_rows.csv (id,line,reason: rows left out of train.csv) and
competition.json; the text columns get these names whatever the competition called them.
"""
from __future__ import annotations

import csv
import shutil
from pathlib import Path
from typing import Any, Sequence

import pandas as pd

from workflow.core.io import atomic_path, write_csv, write_json
from workflow.data.layout import Competition
from workflow.data.text_layout import TextCompetition, TextRow

TEXT_COLUMNS = ("text", "text_pair")


def write_manifests(competition: Competition, out: Path, source: str,
                    skipped: Sequence[tuple[Path, str]] = ()) -> dict[str, Any]:
    """Write the manifests into `out` (which holds competition.root) and return competition.json's content."""
    def relative(image: Path) -> str:
        return image.relative_to(out).as_posix()

    train = sorted((relative(image), label) for image, label in competition.train)
    write_csv(out / "train.csv", pd.DataFrame(train, columns=["path", "label"]))
    test = [(image_id, relative(image)) for image_id, image in competition.test]
    write_csv(out / "test.csv", pd.DataFrame(test, columns=["id", "path"]))
    shutil.copyfile(competition.sample_submission, out / "sample_submission.csv")
    skipped_rows = sorted((relative(image), reason) for image, reason in skipped)
    write_csv(out / "skipped_images.csv", pd.DataFrame(skipped_rows, columns=["path", "reason"]))
    info = {**_info(competition, source, competition.layout, len(train), len(test), len(skipped_rows)),
            "task": "image"}
    write_json(out / "competition.json", info)
    return info


def write_text_manifests(competition: TextCompetition, out: Path, source: str,
                         skipped: Sequence[tuple[TextRow, str]] = ()) -> dict[str, Any]:
    """Write the text manifests into `out` and return competition.json's content."""
    texts = list(TEXT_COLUMNS[:len(competition.text_columns)])
    train = sorted((row.id, row.label, *row.texts) for row in competition.train)
    _write_texts(out / "train.csv", pd.DataFrame(train, columns=["id", "label", *texts]))
    test = [(row.id, *row.texts) for row in competition.test]
    _write_texts(out / "test.csv", pd.DataFrame(test, columns=["id", *texts]))
    shutil.copyfile(competition.sample_submission, out / "sample_submission.csv")
    skipped_rows = [(row.id, row.line, reason) for row, reason in sorted(skipped, key=lambda item: item[0].line)]
    write_csv(out / "skipped_rows.csv", pd.DataFrame(skipped_rows, columns=["id", "line", "reason"]))
    info = {**_info(competition, source, "csv", len(train), len(test), len(skipped_rows)), "task": "text",
            "text_columns": competition.text_columns, "label_source_column": competition.label_column,
            "pair": competition.pair}
    write_json(out / "competition.json", info)
    return info


def _info(competition: Competition | TextCompetition, source: str, layout: str,
          num_train: int, num_test: int, num_skipped: int) -> dict[str, Any]:
    """competition.json's keys shared by both tasks."""
    columns = competition.submission_columns
    return {
        "source": source,
        "layout": layout,
        "id_column": columns[0],
        "format": competition.format,
        "label_column": columns[1] if competition.format == "label" else None,
        "submission_columns": columns,
        "classes": competition.classes,
        "num_train": num_train,
        "num_test": num_test,
        "num_skipped": num_skipped,
    }


def _write_texts(dest: Path, frame: pd.DataFrame) -> None:
    # The csv module quotes a field holding "\n" but not one holding a lone "\r", which a reader then takes
    # for a line end: quote every field in that case, so each text reads back exactly as written.
    lone_cr = frame.map(lambda cell: isinstance(cell, str) and "\r" in cell).to_numpy().any()
    with atomic_path(dest) as tmp:
        frame.to_csv(tmp, index=False, quoting=csv.QUOTE_ALL if lone_cr else csv.QUOTE_MINIMAL)
