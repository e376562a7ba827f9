"""Read a Kaggle image-classification competition from its root (the folder with sample_submission.csv).

Two train layouts are recognised: ImageFolder (train/<class>/<image>) and a labels CSV (an id
column naming images by file name or stem, and a label column). Test images live in test/ (or
test_images/) and are matched to sample_submission's ids the same way.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from workflow.core.errors import UserError
from workflow.data.images import is_image_name

TRAIN_DIRS = ("train", "train_images")
TEST_DIRS = ("test", "test_images")
LABEL_CSV_NAMES = ("train.csv", "labels.csv", "train_labels.csv", "trainlabels.csv")
EXPECTED = ("expected train/<class>/<image> folders (ImageFolder) or a labels CSV such as train.csv "
            "whose first column names the images in train/")


@dataclass(frozen=True)
class Competition:
    root: Path
    sample_submission: Path
    submission_columns: list[str]
    layout: str  # "imagefolder" | "csv"
    format: str  # "label" | "probabilities"
    classes: list[str]
    train: list[tuple[Path, str]]  # (image, label)
    test: list[tuple[str, Path]]  # (id, image), in sample_submission's order
    # Images next to a labels CSV that no row names: not trained on, listed in the skipped report.
    unlabelled: list[Path] = field(default_factory=list)
    labels_csv: Path | None = None  # the labels CSV of the csv layout


def is_sample_submission(name: str) -> bool:
    # Kaggle spells it sample_submission.csv, sampleSubmission.csv, sample-submission.csv.
    return name.lower().replace("_", "").replace("-", "") == "samplesubmission.csv"


def visible_files(folder: Path) -> list[Path]:
    """Files under `folder`, sorted, leaving out hidden files and macOS zip debris (__MACOSX, ._*)."""
    return sorted(
        path for path in folder.rglob("*")
        if path.is_file() and not any(part.startswith(".") or part == "__MACOSX"
                                      for part in path.relative_to(folder).parts)
    )


def read_csv(path: Path) -> pd.DataFrame:
    """Every cell as the exact string written: "007" stays "007", "NA" stays "NA"."""
    try:
        return pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError) as err:
        first_line = str(err).strip().splitlines()[0]
        raise UserError(f"{path.name}: not a readable CSV ({first_line}); fix or remove the file") from None


def read_competition(root: Path) -> Competition:
    """Train images with labels, test images in submission order, and the submission format."""
    submission_csv = next((p for p in sorted(root.iterdir()) if is_sample_submission(p.name)), None)
    if submission_csv is None:
        raise UserError(f"{root}: no sample_submission.csv; expected the competition's root folder")
    submission = read_csv(submission_csv)
    columns = list(submission.columns)
    if len(columns) < 2 or submission.empty:
        raise UserError(f"{submission_csv.name}: expected an id column, a prediction column and one row "
                        f"per test image; got columns {columns} and {len(submission)} rows")
    test_dir = _child_dir(root, TEST_DIRS)
    if test_dir is None:
        raise UserError(f"no test/ folder next to {submission_csv.name}; "
                        "expected the test images in test/ or test_images/")
    test = _test_images(test_dir, submission, submission_csv.name)
    label_column = columns[1] if len(columns) == 2 else None
    layout, train, unlabelled, labels_csv = _train_images(root, test_dir, label_column)
    classes = sorted({label for _, label in train})
    if len(classes) < 2:
        raise UserError(f"only one class ({classes}) among {len(train)} train images; {EXPECTED}")
    return Competition(root=root, sample_submission=submission_csv, submission_columns=columns,
                       layout=layout, format=_submission_format(columns, classes, submission_csv.name),
                       classes=classes, train=train, test=test, unlabelled=unlabelled,
                       labels_csv=labels_csv)


def _images(folder: Path) -> list[Path]:
    return [path for path in visible_files(folder) if is_image_name(path.name)]


def _child_dir(root: Path, names: tuple[str, ...]) -> Path | None:
    dirs = {path.name.lower(): path for path in sorted(root.iterdir()) if path.is_dir()}
    return next((dirs[name] for name in names if name in dirs), None)


def _index(images: list[Path], base: Path) -> dict[str, list[Path]]:
    """Each image under every name an id may use for it: file name, stem, path from `base`."""
    index: dict[str, list[Path]] = defaultdict(list)
    for image in images:
        for key in {image.name, image.stem, image.relative_to(base).as_posix()}:
            index[key].append(image)
    return index


def _find(index: dict[str, list[Path]], image_id: str, where: str) -> Path | None:
    hits = index.get(image_id, [])
    if len(hits) > 1:
        names = ", ".join(hit.name for hit in hits[:3])
        raise UserError(f"{where}: id '{image_id}' matches {len(hits)} images ({names}); "
                        "each id must name exactly one file")
    return hits[0] if hits else None


class _OncePerImage:
    """Refuses a second row naming an image already named: a repeated id, or 'a' after 'a.jpg'."""

    def __init__(self, csv_name: str, what: str):
        self.csv_name, self.what = csv_name, what
        self.seen: dict[Path, tuple[int, str]] = {}

    def check(self, image: Path, line: int, image_id: str) -> None:
        if image in self.seen:
            first_line, first_id = self.seen[image]
            same = "repeats" if first_id == image_id else f"names the same image as id '{first_id}' on"
            raise UserError(f"{self.csv_name} line {line}: id '{image_id}' {same} line {first_line}; "
                            f"each {self.what} must appear once, so remove the duplicate row")
        self.seen[image] = (line, image_id)


def _test_images(test_dir: Path, submission: pd.DataFrame, submission_name: str) -> list[tuple[str, Path]]:
    index = _index(_images(test_dir), test_dir)
    once = _OncePerImage(submission_name, "test id")
    test = []
    for line, image_id in enumerate(submission.iloc[:, 0], start=2):  # line 1 is the header
        image = _find(index, image_id, f"{submission_name} line {line}")
        if image is None:
            raise UserError(f"{submission_name} line {line}: no test image for id '{image_id}' in "
                            f"{test_dir.name}/; expected a file named '{image_id}' or '{image_id}.<ext>'")
        once.check(image, line, image_id)
        test.append((image_id, image))
    return test


def _train_images(root: Path, test_dir: Path, label_column: str | None
                  ) -> tuple[str, list[tuple[Path, str]], list[Path], Path | None]:
    """(layout, labelled images, unlabelled images, labels CSV)."""
    train_dir = _child_dir(root, TRAIN_DIRS)
    images = _images(train_dir) if train_dir is not None else []
    # Images only inside class folders is ImageFolder; loose images get their labels from a CSV.
    if images and all(len(image.relative_to(train_dir).parts) > 1 for image in images):
        return "imagefolder", [(image, image.relative_to(train_dir).parts[0]) for image in images], [], None
    return "csv", *_labels_from_csv(root, test_dir, label_column)


def _labels_from_csv(root: Path, test_dir: Path, label_column: str | None
                     ) -> tuple[list[tuple[Path, str]], list[Path], Path]:
    train_candidates = [image for image in _images(root) if not image.is_relative_to(test_dir)]
    index = _index(train_candidates, root)
    candidates = sorted(
        (path for path in root.iterdir() if path.is_file() and path.suffix.lower() == ".csv"
         and not is_sample_submission(path.name)),
        key=lambda path: (path.name.lower() not in LABEL_CSV_NAMES, path.name),
    )
    for csv_path in candidates:
        frame = read_csv(csv_path)
        if len(frame.columns) >= 2 and len(frame) and _find(index, frame.iloc[0, 0], f"{csv_path.name} line 2"):
            break
    else:
        raise UserError(f"no training labels found next to sample_submission.csv; {EXPECTED}")
    column = _label_column(list(frame.columns), csv_path.name, label_column)
    once = _OncePerImage(csv_path.name, "image")
    train = []
    for line, (image_id, label) in enumerate(zip(frame.iloc[:, 0], frame[column]), start=2):
        image = _find(index, image_id, f"{csv_path.name} line {line}")
        if image is None:
            raise UserError(f"{csv_path.name} line {line}: no image for id '{image_id}'; "
                            f"expected a file named '{image_id}' or '{image_id}.<ext>' in the train folder")
        if not label:
            raise UserError(f"{csv_path.name} line {line}: empty label for id '{image_id}'; "
                            "fill it in or remove the row")
        once.check(image, line, image_id)
        train.append((image, label))
    unlabelled = [image for image in train_candidates if image not in once.seen]
    return train, unlabelled, csv_path


def _label_column(columns: list[str], csv_name: str, label_column: str | None) -> str:
    if len(columns) == 2:
        return columns[1]
    if label_column in columns[1:]:
        return label_column
    named = f" or a column named '{label_column}' as in sample_submission.csv" if label_column else ""
    raise UserError(f"{csv_name}: found columns {columns}; expected 2 columns (id, label){named}")


def _submission_format(columns: list[str], classes: list[str], submission_name: str) -> str:
    if len(columns) == 2:
        return "label"
    if sorted(columns[1:]) == classes:
        return "probabilities"
    shown = ", ".join(classes[:10]) + (", ..." if len(classes) > 10 else "")
    raise UserError(f"{submission_name}: columns {columns} fit no known format; expected '{columns[0]}' and "
                    f"one label column, or '{columns[0]}' and one column per class ({len(classes)} classes: {shown})")
