"""Shared entry-point plumbing for the stage modules: one-line errors and a non-zero exit."""
from __future__ import annotations

import argparse
import sys
from typing import Callable, Sequence

from workflow.errors import UserError


def stage_parser(doc: str | None) -> argparse.ArgumentParser:
    """An argparse parser whose description is the stage module's docstring."""
    summary, _, rest = (doc or "").strip().partition("\n")
    return argparse.ArgumentParser(
        description=summary, epilog=rest.strip() or None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def run(main: Callable[[Sequence[str] | None], None], argv: Sequence[str] | None = None) -> int:
    """Call a stage's main; a UserError becomes one line on stderr and exit code 2."""
    try:
        main(argv)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0
