"""data/raw/competition.json, the download stage's record of the competition (task, classes, source,
layout, counts), read the same way by every stage that needs it."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from workflow.core.errors import UserError

FILE = "competition.json"


def read_competition(raw: Path | str) -> dict[str, Any]:
    """competition.json in `raw`; a one-line error naming the file when download has not written it."""
    path = Path(raw) / FILE
    try:
        info = json.loads(path.read_text())
    except FileNotFoundError:
        raise UserError(f"{path}: missing; {raw} is written by the download stage: run `dvc repro download` "
                        f"(or `snakemake download`) first") from None
    except (OSError, ValueError) as err:
        raise UserError(f"{path}: unreadable ({type(err).__name__}); delete {raw} and run the download "
                        f"stage again") from None
    if not isinstance(info, dict) or "classes" not in info:
        raise UserError(f"{path}: not a competition record (no 'classes'); delete {raw} and run the download "
                        f"stage again")
    return info


def competition_task(raw: Path | str) -> str:
    """'image' or 'text' (records written before text competitions existed are image ones)."""
    return read_competition(raw).get("task", "image")
