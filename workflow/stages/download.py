"""Download stage: put the competition's files and manifests in data/raw.

Reads the params section `data`. Sources (data.source):
  builtin  the offline digits demo competition (default)
  local    data.path: a zip, tar or folder in a Kaggle layout
  kaggle   data.competition: a slug, downloaded with the user's Kaggle credentials
Writes, atomically as one folder: files/ (the competition root), train.csv (path,label),
test.csv (id,path, in sample_submission's order), sample_submission.csv, skipped_images.csv
(path,reason) and competition.json.

Every train and test image is decoded once here (workflow/data/images.py load_rgb), so later
stages meet only readable files. Bad input and what happens:
  - a training image that is empty, not an image, truncated/corrupt or over the decompression-bomb
    limit (images.MAX_IMAGE_PIXELS): skipped and listed in skipped_images.csv; the run fails if
    more than data.max_bad_fraction of the labelled training images are bad, or a class loses all.
  - an image next to a labels CSV that no row names (an image with no label): skipped and listed
    in skipped_images.csv, since nothing says what to learn from it; it does not count as bad.
  - a bad test image: an error naming the file and its sample_submission line.
  - a labels-CSV row whose image is missing, an empty label, an id given twice (in the labels CSV or
    in sample_submission), a sample_submission id with no test image: an error naming the line.
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
from workflow.data.kaggle_source import download_competition
from workflow.data.layout import read_competition
from workflow.data.local import local_source, unpack
from workflow.data.manifest import write_manifests
from workflow.data.validate import check_images

SECTIONS = ("data",)  # the params sections this stage reads; dvc.yaml lists their keys


def fetch(data: DataParams, scratch: Path) -> Path:
    """The competition as a folder or an archive, from the configured source."""
    if data.source == "builtin":
        return write_digits_competition(scratch / "builtin", data.builtin_test_fraction)
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
        competition, skipped = check_images(read_competition(out / "files"), data.max_bad_fraction)
        info = write_manifests(competition, out, data.source, skipped)
    skipped_note = f", {len(skipped)} skipped (see skipped_images.csv)" if skipped else ""
    print(f"download: {info['num_train']} train and {info['num_test']} test images{skipped_note}, "
          f"{len(info['classes'])} classes, {info['layout']} layout, {info['format']} submission -> {args.out}")


if __name__ == "__main__":
    raise SystemExit(run(main))
