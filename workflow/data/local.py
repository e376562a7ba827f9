"""Bring a competition given as a zip, a tar or a folder into one folder: its root.

The root is the folder that holds sample_submission.csv; archives often wrap it in one or more
top-level folders (comp/comp/train/...), so it is searched for rather than assumed.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

from workflow.data.layout import is_sample_submission, visible_files
from workflow.errors import UserError
from workflow.io import extract_archive


def local_source(path: str) -> Path:
    """data.path as an existing zip, tar or folder."""
    source = Path(path).expanduser()
    if not source.exists():
        raise UserError(f"data.path: '{path}' does not exist; set data.path in params.yaml "
                        "to the competition's zip, tar or folder")
    return source


def find_root(folder: Path, source: Path) -> Path:
    """The shallowest folder under `folder` holding sample_submission.csv (`source` names it in errors)."""
    hits = [path for path in visible_files(folder) if is_sample_submission(path.name)]
    if not hits:
        raise UserError(f"{source}: no sample_submission.csv inside; expected a Kaggle competition "
                        "(sample_submission.csv next to train/ or a labels CSV, and test/)")
    return min(hits, key=lambda path: (len(path.parts), str(path))).parent


def unpack(source: Path, files: Path, scratch: Path) -> None:
    """Put the competition root found in `source` (folder or archive) at `files`; `scratch` is temporary space."""
    if source.is_dir():
        shutil.copytree(find_root(source, source), files)
        return
    extracted = scratch / "extracted"
    extract_archive(source, extracted)
    # Same filesystem as `files`, so moving the root is a rename, not a second copy.
    os.replace(find_root(extracted, source), files)
