"""Atomic writes.

Every output is written next to its destination under a temporary name and renamed into place,
so a killed stage leaves either the previous output or none, never a half-written one.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
from pathlib import Path
from typing import Any, Iterator

from workflow.errors import UserError


def _temp_sibling(dest: Path) -> Path:
    return dest.with_name(f".{dest.name}.tmp-{os.getpid()}")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove_stale_temps(dest: Path) -> None:
    """Drop what a killed writer of `dest` left behind (its process is gone), so kills leave no litter."""
    for kind in ("tmp", "old"):
        for leftover in dest.parent.glob(f".{dest.name}.{kind}-*"):
            pid = leftover.name.rsplit("-", 1)[1]
            if pid.isdigit() and not _pid_alive(int(pid)):
                _remove(leftover)


@contextlib.contextmanager
def atomic_path(dest: Path | str) -> Iterator[Path]:
    """Yield a temporary path beside `dest` (file or folder); on success rename it onto `dest`."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temp_sibling(dest)
    _remove_stale_temps(dest)
    _remove(tmp)
    try:
        yield tmp
        if tmp.is_dir() and dest.is_dir():
            # os.replace cannot overwrite a non-empty folder: swap, then drop the old one.
            old = dest.with_name(f".{dest.name}.old-{os.getpid()}")
            os.replace(dest, old)
            os.replace(tmp, dest)
            _remove(old)
        else:
            if dest.is_dir():
                _remove(dest)
            os.replace(tmp, dest)
    finally:
        _remove(tmp)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def write_text(dest: Path | str, text: str) -> None:
    with atomic_path(dest) as tmp:
        tmp.write_text(text)


def write_bytes(dest: Path | str, data: bytes) -> None:
    with atomic_path(dest) as tmp:
        tmp.write_bytes(data)


def write_json(dest: Path | str, obj: Any) -> None:
    write_text(dest, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def write_csv(dest: Path | str, frame) -> None:
    """Write a pandas DataFrame as CSV without its index, atomically."""
    with atomic_path(dest) as tmp:
        frame.to_csv(tmp, index=False)
