"""One live process per training run: a lock beside its checkpoint folder, naming the holder's PID.

Two trainers on one checkpoint would overwrite each other's epochs (a second `dvc repro` after a
killed first one, or a stage started twice by hand). The lock is an flock(2) on <checkpoint>.lock:
the kernel releases it when its holder exits, however it exits, so a lock left by a killed run is
taken over without any guess about stale PIDs; the PID written in the file only names the holder
in the error. (The filelock package truncates the file on every attempt, which would erase that PID.)
"""
from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path
from typing import Iterator

from workflow.core.errors import UserError


def lock_file(checkpoint: Path | str) -> Path:
    return Path(f"{Path(checkpoint)}.lock")  # beside the folder, which is deleted when the run ends


@contextlib.contextmanager
def hold(checkpoint: Path | str) -> Iterator[None]:
    """Hold the run's lock for the block, or raise UserError naming the process that holds it."""
    path = lock_file(checkpoint)
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        handle = open(path, "a+")  # "a+": never truncate, the holder's PID must stay readable
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            handle.close()
            raise UserError(f"{checkpoint}: another training run (PID {holder}) is using this checkpoint; "
                            f"wait for it to finish or stop it (kill {holder}), then run again") from None
        # The previous holder deletes the file when it ends: a lock on a deleted file is no lock.
        if path.exists() and path.stat().st_ino == os.fstat(handle.fileno()).st_ino:
            break
        handle.close()
    handle.seek(0)
    handle.truncate()
    handle.write(f"{os.getpid()}\n")
    handle.flush()
    try:
        yield
    finally:
        path.unlink(missing_ok=True)
        handle.close()
