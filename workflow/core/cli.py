"""Shared entry-point plumbing for the stage modules: one-line errors and a non-zero exit."""
from __future__ import annotations

import argparse
import sys
from typing import Callable, Sequence

from workflow.core.errors import UserError
from workflow.core.io import environment_error


def stage_parser(doc: str | None, **paths: str) -> argparse.ArgumentParser:
    """A parser described by the stage's docstring, with --params and one --NAME option per path.

    The defaults are the paths dvc.yaml passes, so a stage also runs by hand from the repo root.
    """
    summary, _, rest = (doc or "").strip().partition("\n")
    parser = argparse.ArgumentParser(
        description=summary, epilog=rest.strip() or None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--params", default="params.yaml", help="params file (default: %(default)s)")
    for name, default in paths.items():
        parser.add_argument(f"--{name.replace('_', '-')}", default=default, help="default: %(default)s")
    return parser


def run(main: Callable[[Sequence[str] | None], None], argv: Sequence[str] | None = None) -> int:
    """Call a stage's main; a UserError, a full disk or an unwritable folder becomes one line on
    stderr and exit code 2. Any other error keeps its traceback: it is a bug to fix here."""
    try:
        main(argv)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except OSError as err:
        message = environment_error(err)
        if message is None:
            raise
        print(f"error: {message}", file=sys.stderr)
        return 2
    return 0
