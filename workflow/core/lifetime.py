"""A stage, and every process it starts, ends with the run that started it.

`kill -9` of `dvc repro` or `snakemake` gives the engine no chance to stop its stage: the stage
would go on (a trainer for hours, and a second run would start a second one), and a stage killed
itself would leave its worker processes behind. So on Linux:

- a worker process asks the kernel to kill it when the stage dies (PR_SET_PDEATHSIG);
- a stage started by an engine does the same for its own parent; when that parent is a `sh -c`
  wrapper that stays between them (dash does not exec the command; Snakemake runs
  `bash -c 'set -euo pipefail; (cmd) | tee log'`), the wrapper would outlive the engine, so a
  watchdog thread also follows the wrappers up to the engine and ends the stage when one of them
  loses its parent.

A stage typed in an interactive shell is left alone: the terminal already governs it (Ctrl-C,
hang-up), and `nohup`, tmux and screen keep working as users expect.
"""
from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading
from pathlib import Path

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
SHELLS = {"sh", "dash", "bash", "zsh", "ksh", "mksh", "fish"}
POLL_SECONDS = 0.5


def _die_with_parent(expected_parent: int) -> bool:
    """Have the kernel SIGKILL this process when its parent exits; False when it already has."""
    if not sys.platform.startswith("linux"):
        return True
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    return os.getppid() == expected_parent  # the parent may have died before the call took effect


def worker_initializer(stage_pid: int) -> None:
    """For ProcessPoolExecutor(initializer=..., initargs=(os.getpid(),)): a worker dies with its stage."""
    if not _die_with_parent(stage_pid):
        os._exit(1)


def _stat(pid: int) -> tuple[str, int] | None:
    """(command name, parent pid) of a live process, from /proc; None when it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # "pid (comm) state ppid ...": comm may hold spaces and parentheses, so split at the last ')'.
    name = text[text.index("(") + 1:text.rindex(")")]
    return name, int(text[text.rindex(")") + 2:].split()[1])


def _arguments(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return []


def _is_shell(pid: int) -> bool:
    stat = _stat(pid)
    return stat is not None and stat[0] in SHELLS


def _is_wrapper(pid: int) -> bool:
    """A shell running a command string (`sh -c '...'`, `bash -ec '...'`), not one a person types in
    (nor a script, which runs as the script's author decided)."""
    options = [arg for arg in _arguments(pid)[1:] if arg.startswith("-") and not arg.startswith("--")]
    return _is_shell(pid) and any("c" in option[1:] for option in options)


def _wrappers_above(pid: int) -> list[tuple[int, int]]:
    """(pid, parent) of each `sh -c` wrapper from `pid` up to the first process that is none."""
    chain = []
    while pid > 1 and _is_wrapper(pid):
        stat = _stat(pid)
        if stat is None:
            break
        chain.append((pid, stat[1]))
        pid = stat[1]
    return chain


def _watch(chain: list[tuple[int, int]]) -> None:
    event = threading.Event()
    while not event.wait(POLL_SECONDS):
        for pid, parent in chain:
            stat = _stat(pid)
            if stat is None or stat[1] != parent:  # gone, or orphaned: the engine above it died
                os.kill(os.getpid(), signal.SIGKILL)


def tie_to_engine() -> None:
    """End this stage when the engine that started it ends (see the module's docstring).

    Called as early as the stage starts (workflow/stages/__init__.py): an engine that dies before
    this call cannot be told from a reaper that adopted the stage.
    """
    if not sys.platform.startswith("linux"):
        return
    parent = os.getppid()
    if _is_shell(parent) and not _is_wrapper(parent):
        return  # typed in a terminal: the shell and the terminal decide
    if not _die_with_parent(parent):
        os.kill(os.getpid(), signal.SIGKILL)  # started by a process that is already gone
    chain = _wrappers_above(parent)
    if chain:
        threading.Thread(target=_watch, args=(chain,), name="die-with-engine", daemon=True).start()
