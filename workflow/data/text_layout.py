"""Read a Kaggle text-classification competition from its root (the folder with sample_submission.csv).

The layout: train.csv (an id column first, one text column or two for sentence pairs, a label
column), test.csv (the id and the same text columns) and sample_submission.csv (the ids in the order
the submission must follow, then one label column or one probability column per class). Which
columns hold the texts and the label is detected from the names, or given by data.text_columns and
data.label_column. Every cell is read as the exact string written.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, replace
from pathlib import Path

import pandas as pd

from workflow.core.errors import UserError
from workflow.data.images import is_image_name
from workflow.data.layout import (
    LABEL_CSV_NAMES,
    TEST_DIRS,
    _submission_format,
    is_sample_submission,
    read_csv,
    visible_files,
)

TEST_CSV = "test.csv"
# A column with one of these names (any case) is the text of a single-sentence competition.
TEXT_NAMES = ("text", "sentence", "review", "comment_text", "content", "excerpt")
# Two columns named like this are a sentence pair; other names ending in 1/2 or _a/_b are recognised too.
PAIR_NAMES = (("sentence1", "sentence2"), ("question1", "question2"), ("text1", "text2"),
              ("premise", "hypothesis"), ("text_a", "text_b"))


@dataclass(frozen=True)
class TextRow:
    id: str
    line: int  # in its CSV; the header is line 1
    label: str  # "" for a test row
    texts: tuple[str, ...]  # one text, or two for a sentence pair


@dataclass(frozen=True)
class TextCompetition:
    root: Path
    sample_submission: Path
    submission_columns: list[str]
    format: str  # "label" | "probabilities"
    classes: list[str]
    train_csv: Path
    text_columns: list[str]  # the competition's names of the text columns used
    label_column: str  # train.csv's column the labels come from
    train: list[TextRow]  # in train.csv's order
    test: list[TextRow]  # in sample_submission's order

    @property
    def pair(self) -> bool:
        return len(self.text_columns) == 2


def detect_task(root: Path, task: str) -> tuple[str, str]:
    """("image" | "text", why) for data.task; auto looks at the files in the competition's root."""
    if task != "auto":
        return task, f"data.task={task}"
    test_dir = next((path for path in sorted(root.iterdir()) if path.is_dir() and path.name.lower() in TEST_DIRS
                     and any(is_image_name(image.name) for image in visible_files(path))), None)
    if test_dir is not None:
        return "image", f"detected: test images in {test_dir.name}/"
    labels_csv, test_csv = _labels_csv(root), _file(root, TEST_CSV)
    if labels_csv is None or test_csv is None:
        return "image", f"detected: no {'test.csv' if test_csv is None else 'train.csv'}"
    return "text", f"detected: {labels_csv.name} and {test_csv.name}, no test images"


def read_text_competition(root: Path, text_columns: list[str], label_column: str) -> TextCompetition:
    """Train rows with labels (empty texts included: check_texts skips them), test rows in submission order."""
    submission_csv = next((p for p in sorted(root.iterdir()) if is_sample_submission(p.name)), None)
    if submission_csv is None:
        raise UserError(f"{root}: no sample_submission.csv; expected the competition's root folder")
    train_csv = _labels_csv(root)
    test_csv = _file(root, TEST_CSV)
    if train_csv is None or test_csv is None:
        missing = "train.csv" if train_csv is None else "test.csv"
        raise UserError(f"no {missing} next to {submission_csv.name}; a text competition needs train.csv "
                        "(id, text, label) and test.csv (id, text); set data.task: image for an image competition")
    submission, train, test = read_csv(submission_csv), read_csv(train_csv), read_csv(test_csv)
    columns = list(submission.columns)
    if len(columns) < 2 or submission.empty:
        raise UserError(f"{submission_csv.name}: expected an id column, a prediction column and one row "
                        f"per test row; got columns {columns} and {len(submission)} rows")
    for csv_path, frame in ((train_csv, train), (test_csv, test)):
        if len(frame.columns) < 2:
            raise UserError(f"{csv_path.name}: found columns {list(frame.columns)}; expected an id column "
                            "first, then the text column(s)" + (" and a label column" if frame is train else ""))
    label = _label_column(train_csv.name, train, test, columns, label_column)
    texts = _text_columns(train_csv.name, train, test, label, text_columns)
    train_rows = _train_rows(train_csv.name, train, label, texts)
    classes = sorted({row.label for row in train_rows})
    if len(classes) < 2:
        raise UserError(f"{train_csv.name}: only one class ({classes}) in column '{label}' among {len(train_rows)} "
                        "rows; a classifier needs at least 2, so check data.label_column in params.yaml")
    return TextCompetition(root=root, sample_submission=submission_csv, submission_columns=columns,
                           format=_submission_format(columns, classes, submission_csv.name), classes=classes,
                           train_csv=train_csv, text_columns=texts, label_column=label, train=train_rows,
                           test=_test_rows(submission_csv.name, submission, test, texts))


def check_texts(competition: TextCompetition, max_bad_fraction: float
                ) -> tuple[TextCompetition, list[tuple[TextRow, str]]]:
    """The competition without the training rows whose text is empty, and each of them with the reason.

    The same rules as the images' (workflow/data/validate.py): up to data.max_bad_fraction of the
    labelled rows may be skipped, and no class may lose all of its rows.
    """
    csv_name, train = competition.train_csv.name, competition.train
    bad = [(row, why) for row in train if (why := _empty_text(row, competition.text_columns))]
    if bad and len(bad) > max_bad_fraction * len(train):
        first, why = bad[0]
        raise UserError(f"{len(bad)} of {len(train)} training rows ({len(bad) / len(train):.1%}) have an empty "
                        f"text, more than data.max_bad_fraction={max_bad_fraction}; the first: {csv_name} line "
                        f"{first.line} (id '{first.id}') {why}; fill in the texts or raise data.max_bad_fraction "
                        "in params.yaml")
    skipped = {row.line for row, _ in bad}
    good = [row for row in train if row.line not in skipped]
    lost = sorted(set(competition.classes) - {row.label for row in good})
    if lost:
        row, why = next((row, why) for row, why in bad if row.label == lost[0])
        raise UserError(f"class '{lost[0]}' has no training row with a text left (e.g. {csv_name} line {row.line}, "
                        f"id '{row.id}', {why}); fill in its texts")
    return replace(competition, train=good), bad


def _file(root: Path, name: str) -> Path | None:
    return next((path for path in sorted(root.iterdir()) if path.is_file() and path.name.lower() == name), None)


def _labels_csv(root: Path) -> Path | None:
    """train.csv, or another labels CSV name Kaggle uses (labels.csv, train_labels.csv)."""
    return next((hit for name in LABEL_CSV_NAMES if (hit := _file(root, name)) is not None), None)


def _label_column(csv_name: str, train: pd.DataFrame, test: pd.DataFrame, submission_columns: list[str],
                  label_column: str) -> str:
    columns = list(train.columns)
    if label_column:
        if label_column not in columns[1:]:
            raise UserError(f"data.label_column: '{label_column}' is not a column of {csv_name} (columns "
                            f"{columns}); set it to the label column, or to '' to detect it")
        return label_column
    if len(submission_columns) == 2 and submission_columns[1] in columns[1:]:
        return submission_columns[1]  # the column the submission predicts
    train_only = [column for column in columns[1:] if column not in test.columns]
    if len(train_only) == 1:
        return train_only[0]
    raise UserError(f"{csv_name}: cannot tell which column holds the labels (columns {columns}); "
                    "set data.label_column in params.yaml to one of them")


def _text_columns(csv_name: str, train: pd.DataFrame, test: pd.DataFrame, label: str,
                  text_columns: list[str]) -> list[str]:
    if text_columns:
        for column in text_columns:
            for name, frame in ((csv_name, train), (TEST_CSV, test)):
                if column not in frame.columns[1:]:
                    raise UserError(f"data.text_columns: '{column}' is not a column of {name} (columns "
                                    f"{list(frame.columns)}); list the text column, or two for sentence pairs")
        if len(set(text_columns)) < len(text_columns) or label in text_columns:
            raise UserError(f"data.text_columns: {text_columns} must be 1 or 2 different columns other than the "
                            f"label column '{label}'")
        return list(text_columns)
    shared = [column for column in train.columns[1:] if column in test.columns[1:] and column != label]
    by_name = {column.lower(): column for column in shared}
    single = next((by_name[name] for name in TEXT_NAMES if name in by_name), None)
    if single is not None:
        return [single]
    pair = _named_pair(shared)
    if pair is not None:
        return pair
    if len(shared) in (1, 2):
        return shared
    raise UserError(f"{csv_name} and {TEST_CSV} share the columns {shared} besides the id; set data.text_columns "
                    "in params.yaml to the text column, or to two of them for sentence pairs")


def _named_pair(columns: list[str]) -> list[str] | None:
    by_name = {column.lower(): column for column in columns}
    for first, second in PAIR_NAMES:
        if first in by_name and second in by_name:
            return [by_name[first], by_name[second]]
    # question1/question2, anchor_a/anchor_b: one name with the two suffixes.
    for column in columns:
        found = re.fullmatch(r"(.+?)(1|_a)", column, flags=re.IGNORECASE)
        if found:
            partner = found.group(1) + {"1": "2", "_a": "_b"}[found.group(2).lower()]
            if partner.lower() in by_name:
                return [column, by_name[partner.lower()]]
    return None


def _train_rows(csv_name: str, train: pd.DataFrame, label: str, texts: list[str]) -> list[TextRow]:
    seen: dict[str, int] = {}
    rows = []
    for line, (row_id, row_label, *row_texts) in enumerate(
            zip(train.iloc[:, 0], train[label], *(train[column] for column in texts)), start=2):  # line 1: header
        if not row_label.strip():
            raise UserError(f"{csv_name} line {line}: empty label for id '{row_id}'; fill it in or remove the row")
        if row_id in seen:
            raise UserError(f"{csv_name} line {line}: id '{row_id}' repeats line {seen[row_id]}; "
                            "each training row must appear once, so remove the duplicate row")
        seen[row_id] = line
        rows.append(TextRow(row_id, line, row_label, tuple(row_texts)))
    return rows


def _test_rows(submission_name: str, submission: pd.DataFrame, test: pd.DataFrame, texts: list[str]) -> list[TextRow]:
    wanted = set(submission.iloc[:, 0])
    by_id: dict[str, TextRow] = {}
    for line, (row_id, *row_texts) in enumerate(zip(test.iloc[:, 0], *(test[column] for column in texts)), start=2):
        if row_id not in wanted:
            continue  # a test row the submission does not ask for
        if row_id in by_id:
            raise UserError(f"{TEST_CSV} line {line}: id '{row_id}' repeats line {by_id[row_id].line}; "
                            "each test id must appear once, so remove the duplicate row")
        by_id[row_id] = TextRow(row_id, line, "", tuple(row_texts))
    seen: dict[str, int] = {}
    rows = []
    for line, row_id in enumerate(submission.iloc[:, 0], start=2):
        if row_id in seen:
            raise UserError(f"{submission_name} line {line}: id '{row_id}' repeats line {seen[row_id]}; "
                            "each test id must appear once, so remove the duplicate row")
        seen[row_id] = line
        row = by_id.get(row_id)
        if row is None:
            raise UserError(f"{submission_name} line {line}: id '{row_id}' is not in {TEST_CSV}; "
                            f"expected a {TEST_CSV} row with that id and its text")
        why = _empty_text(row, texts)
        if why:
            raise UserError(f"{TEST_CSV} line {row.line}: the test row for id '{row_id}' ({submission_name} line "
                            f"{line}) {why}; the submission needs every id, so fill it in")
        rows.append(row)
    return rows


def _empty_text(row: TextRow, columns: list[str]) -> str | None:
    """Why the row has no text to learn from or predict on, or None."""
    column = next((column for column, text in zip(columns, row.texts) if not text.strip()), None)
    return f"has an empty text in column '{column}'" if column is not None else None
