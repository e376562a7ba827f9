"""Download stage: put the competition's files and manifests in data/raw.

Reads the params section `data`. Sources (data.source):
  builtin  the offline digits demo competition (default)
  local    data.path: a zip, tar or folder in a Kaggle layout
  kaggle   data.competition: a slug, downloaded with the user's Kaggle credentials
Writes, atomically as one folder: files/ (the competition root), train.csv (path,label),
test.csv (id,path, in sample_submission's order), sample_submission.csv and competition.json.
"""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Sequence

from workflow.cli import run, stage_parser
from workflow.config import DataParams, load_sections
from workflow.data.builtin import write_digits_competition
from workflow.data.kaggle_source import download_competition
from workflow.data.layout import read_competition
from workflow.data.local import local_source, unpack
from workflow.data.manifest import write_manifests
from workflow.io import atomic_path

SECTIONS = ("data",)  # the params sections this stage reads; dvc.yaml lists their keys


def fetch(data: DataParams, scratch: Path) -> Path:
    """The competition as a folder or an archive, from the configured source."""
    if data.source == "builtin":
        return write_digits_competition(scratch / "builtin", data.builtin_test_fraction)
    if data.source == "kaggle":
        return download_competition(data.competition, scratch / "kaggle")
    return local_source(data.path)


def main(argv: Sequence[str] | None = None) -> None:
    args = stage_parser(__doc__, out="data/raw").parse_args(argv)
    data = load_sections(*SECTIONS, path=args.params)["data"]
    with atomic_path(args.out) as out:
        scratch = out / ".scratch"  # inside the output, so the root is moved by a rename
        scratch.mkdir(parents=True)
        unpack(fetch(data, scratch), out / "files", scratch)
        shutil.rmtree(scratch)
        info = write_manifests(read_competition(out / "files"), out, data.source)
    print(f"download: {info['num_train']} train and {info['num_test']} test images, "
          f"{len(info['classes'])} classes, {info['layout']} layout, {info['format']} submission -> {args.out}")


if __name__ == "__main__":
    raise SystemExit(run(main))
