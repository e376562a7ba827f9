"""Write the manifests later stages read instead of the competition's own files.

train.csv (path,label), test.csv (id,path), a byte copy of sample_submission.csv,
skipped_images.csv (path,reason: images left out of train.csv) and competition.json; image paths
are relative to the output folder.
"""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any, Sequence

import pandas as pd

from workflow.core.io import write_csv, write_json
from workflow.data.layout import Competition


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
    columns = competition.submission_columns
    info = {
        "source": source,
        "layout": competition.layout,
        "id_column": columns[0],
        "format": competition.format,
        "label_column": columns[1] if competition.format == "label" else None,
        "submission_columns": columns,
        "classes": competition.classes,
        "num_train": len(train),
        "num_test": len(test),
        "num_skipped": len(skipped_rows),
    }
    write_json(out / "competition.json", info)
    return info
