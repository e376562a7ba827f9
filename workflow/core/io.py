"""Atomic writes, and the one-line errors of a full disk or a read-only folder.

Every output is written next to its destination under a temporary name and renamed into place,
so a killed stage leaves either the previous output or none, never a half-written one. When the
disk is full or the folder not writable, the write stops with a UserError naming the output (and
the space it needed, where known), and the temporary is removed.
"""
from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import shutil
from pathlib import Path
from typing import Any, Iterator

from workflow.core.errors import UserError

DISK_FULL = (errno.ENOSPC, errno.EDQUOT)
NOT_WRITABLE = (errno.EACCES, errno.EPERM, errno.EROFS)
_WRITING: list[Path] = []  # temporaries of the atomic_path blocks now open, outermost first


class NoSpace(OSError):
    """ENOSPC that knows how many bytes the write needed."""

    def __init__(self, path: Path | str, needed: int):
        super().__init__(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        self.needed = needed


def reserve(path: Path | str, size: int) -> None:
    """Allocate `size` bytes for the existing file `path` now.

    Writes through a memory map cannot report a full disk: the process dies with SIGBUS. Allocating
    first makes a full disk an OSError here, with the size needed.
    """
    with open(path, "r+b") as handle:
        try:
            os.posix_fallocate(handle.fileno(), 0, size)
        except OSError as err:
            if err.errno in DISK_FULL:
                raise NoSpace(path, size) from None
            if err.errno not in (errno.EOPNOTSUPP, errno.EINVAL):  # a file system that cannot: write as before
                raise


def check_writable(*dests: Path | str) -> None:
    """Fail now, in one line, when an output cannot be written: not after hours of training."""
    for dest in map(Path, dests):
        probe = _temp_sibling(dest)
        try:
            dest.parent.mkdir(parents=True, exist_ok=True)
            probe.touch()
            probe.unlink()
        except OSError as err:
            message = environment_error(err, dest, probe)
            if message is None:
                raise
            raise UserError(message) from None


def wrapped_os_error(err: BaseException, path: Path | str) -> OSError | None:
    """The OS failure (a full disk) inside a library's own exception, or None.

    torch.save raises RuntimeError with the file's OSError as its context; safetensors (Rust) keeps
    only the number, in its message: "... (os error 28)".
    """
    if isinstance(err.__context__, OSError):
        return err.__context__
    found = re.search(r"\(os error (\d+)\)", str(err))
    if found:
        code = int(found.group(1))
        return OSError(code, os.strerror(code), str(path))
    return None


def _mib(size: int) -> str:
    return f"{size / 2**20:,.1f} MiB"


def _existing(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def environment_error(err: OSError, dest: Path | None = None, tmp: Path | None = None) -> str | None:
    """The one line for a full disk or a folder that cannot be written, or None for any other error.

    With `dest` (the output being written through `tmp`), None also when the failing file is
    another one (an input), which the caller's caller names.
    """
    if err.errno not in DISK_FULL + NOT_WRITABLE:
        return None
    failed = Path(err.filename) if isinstance(err.filename, (str, os.PathLike)) else None
    where = failed
    if dest is not None:
        ours = failed is None or failed.is_relative_to(tmp) or dest.is_relative_to(failed)
        if not ours:
            return None
        where = dest
    shown = where if where is not None else "a file"
    if err.errno in DISK_FULL:
        free = shutil.disk_usage(_existing(where)).free if where is not None else None
        sizes = [f"needs {_mib(err.needed)}"] if isinstance(err, NoSpace) else []
        sizes += [f"{_mib(free)} free"] if free is not None else []
        detail = f" ({', '.join(sizes)})" if sizes else ""
        return (f"no space left on the device while writing {shown}{detail}; free space there or write the "
                "output to another disk")
    if dest is None:  # raised outside an output's writing: reading or writing, which is not known here
        return f"{shown}: {err.strerror}; fix the permissions of the file or its folder, or use another path"
    return f"cannot write {shown}: {err.strerror}; make {_existing(dest.parent)} writable or write the output elsewhere"


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
    """Yield a temporary path beside `dest` (file or folder); on success rename it onto `dest`.

    A full disk or an unwritable folder becomes a UserError naming `dest`; inside another
    atomic_path's temporary, the outermost one names its own destination instead.
    """
    dest = Path(dest)
    tmp = _temp_sibling(dest)
    outermost = not any(dest.is_relative_to(outer) for outer in _WRITING)
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        _remove_stale_temps(dest)
        _remove(tmp)
        _WRITING.append(tmp)
        try:
            yield tmp
        finally:
            _WRITING.remove(tmp)
        _commit(tmp, dest)
    except OSError as err:
        message = environment_error(err, dest, tmp) if outermost else None
        if message is None:
            raise
        raise UserError(message) from None
    finally:
        _remove(tmp)


def _commit(tmp: Path, dest: Path) -> None:
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
