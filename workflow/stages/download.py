"""Download stage: put the competition's files and manifests in data/raw.

Reads the params section `data`. Sources (data.source):
  builtin  an offline demo competition (default), data.builtin: digits (images), reviews (text:
           fresh or rotten) or review_pairs (sentence pairs: same or different); data.builtin_rows
           labelled rows of the text ones (0 = all), data.builtin_test_fraction held out as the test set
  local    data.path: a zip, tar or folder in a Kaggle layout
  kaggle   data.competition: a slug, downloaded with the user's Kaggle credentials
The task (data.task) is image or text; auto picks text when the competition has train.csv (or another
labels CSV) and test.csv and no test image folder, and the stage's last line says which and why.
Writes, atomically as one folder: files/ (the competition root), sample_submission.csv, competition.json
(with "task") and
  image: train.csv (path,label), test.csv (id,path, in sample_submission's order), skipped_images.csv
         (path,reason);
  text:  train.csv (id,label,text or id,label,text,text_pair, sorted by id), test.csv (id,text[,text_pair],
         in sample_submission's order), skipped_rows.csv (id,line,reason).

Images: every train and test image is decoded once here (workflow/data/images.py load_rgb), so later
stages meet only readable files. Bad input and what happens:
  - a training image that is empty, not an image, truncated/corrupt or over the decompression-bomb
    limit (images.MAX_IMAGE_PIXELS): skipped and listed in skipped_images.csv; the run fails if
    more than data.max_bad_fraction of the labelled training images are bad, or a class loses all.
  - an image next to a labels CSV that no row names (an image with no label): skipped and listed
    in skipped_images.csv, since nothing says what to learn from it; it does not count as bad.
  - a bad test image: an error naming the file and its sample_submission line.
  - a labels-CSV row whose image is missing, an empty label, an id given twice (in the labels CSV or
    in sample_submission), a sample_submission id with no test image: an error naming the line.
Texts: train.csv's first column is the id; the label column is data.label_column, else
sample_submission's label column, else the one column test.csv lacks; the text columns are
data.text_columns, else detected by name (text, sentence, review, comment_text, content, excerpt; a pair
such as question1/question2 or premise/hypothesis), else the one or two other columns both files share.
  - a training row with an empty text: skipped and listed in skipped_rows.csv, with the same limits as
    bad images (data.max_bad_fraction, no class may lose all its rows).
  - an empty label, an id given twice (in train.csv or in sample_submission), a sample_submission id
    that test.csv lacks, a test row with an empty text: an error naming the file and line.
sample_submission's id column may have any name and its ids any order: test.csv keeps that order.
"""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Sequence

from workflow.config import DataParams, parse_stage
from workflow.core.cli import run
from workflow.core.io import atomic_path
from workflow.data.builtin import write_digits_competition
from workflow.data.builtin_text import write_text_competition
from workflow.data.kaggle_source import download_competition
from workflow.data.layout import read_competition
from workflow.data.local import local_source, unpack
from workflow.data.manifest import write_manifests, write_text_manifests
from workflow.data.text_layout import check_texts, detect_task, read_text_competition
from workflow.data.validate import check_images

SECTIONS = ("data",)  # the params sections this stage reads; dvc.yaml lists their keys


def fetch(data: DataParams, scratch: Path) -> Path:
    """The competition as a folder or an archive, from the configured source."""
    if data.source == "builtin" and data.builtin == "digits":
        return write_digits_competition(scratch / "builtin", data.builtin_test_fraction)
    if data.source == "builtin":
        return write_text_competition(data.builtin, scratch / "builtin", data.builtin_rows, data.builtin_test_fraction)
    if data.source == "kaggle":
        return download_competition(data.competition, scratch / "kaggle")
    return local_source(data.path)


def main(argv: Sequence[str] | None = None) -> None:
    args, sections = parse_stage(__doc__, SECTIONS, argv, out="data/raw")
    data = sections["data"]
    with atomic_path(args.out) as out:
        scratch = out / ".scratch"  # inside the output, so the root is moved by a rename
        scratch.mkdir(parents=True)
        unpack(fetch(data, scratch), out / "files", scratch)
        shutil.rmtree(scratch)
        task, why = detect_task(out / "files", data.task)
        if task == "text":
            competition, skipped = check_texts(
                read_text_competition(out / "files", data.text_columns, data.label_column), data.max_bad_fraction)
            info = write_text_manifests(competition, out, data.source, skipped)
        else:
            competition, skipped = check_images(read_competition(out / "files"), data.max_bad_fraction)
            info = write_manifests(competition, out, data.source, skipped)
    print(summary(task, why, info, args.out))


def summary(task: str, why: str, info: dict, out: str) -> str:
    """The stage's last line: what was written, and which task and why."""
    rows, report = ("rows", "skipped_rows.csv") if task == "text" else ("images", "skipped_images.csv")
    skipped = f", {info['num_skipped']} skipped (see {report})" if info["num_skipped"] else ""
    detail = (f"texts from {' + '.join(info['text_columns'])}, labels from {info['label_source_column']}"
              if task == "text" else f"{info['layout']} layout")
    return (f"download: {task} task ({why}): {info['num_train']} train and {info['num_test']} test {rows}{skipped}, "
            f"{len(info['classes'])} classes, {detail}, {info['format']} submission -> {out}")


if __name__ == "__main__":
    raise SystemExit(run(main))
