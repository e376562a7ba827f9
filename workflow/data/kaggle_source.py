"""Download a competition's zip with the official `kaggle` package.

Credentials are checked here first, because the package itself prints a long help text and exits
when they are missing. Their values are never read out, printed or logged.
"""
from __future__ import annotations

import contextlib
import io
import json
import os
from pathlib import Path

from workflow.core.errors import UserError
from workflow.data.kaggle_errors import TOKEN_PAGE, kaggle_errors

MISSING_CREDENTIALS = (
    f"data.source=kaggle needs Kaggle credentials: create an API token at {TOKEN_PAGE}, then "
    "export KAGGLE_API_TOKEN=<token> or save it to ~/.kaggle/access_token "
    "(legacy keys also work: ~/.kaggle/kaggle.json or KAGGLE_USERNAME and KAGGLE_KEY)"
)


def _config_dir() -> Path:
    # Where the kaggle package looks for kaggle.json, in its order.
    if os.environ.get("KAGGLE_CONFIG_DIR"):
        return Path(os.environ["KAGGLE_CONFIG_DIR"])
    legacy = Path.home() / ".kaggle"
    xdg = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config") / "kaggle"
    return legacy if legacy.exists() else xdg


def _has_legacy_key() -> bool:
    keys = {name for name in ("username", "key") if os.environ.get(f"KAGGLE_{name.upper()}")}
    with contextlib.suppress(OSError, ValueError):
        keys |= set(json.loads((_config_dir() / "kaggle.json").read_text()))
    return {"username", "key"} <= keys


def credentials_found() -> bool:
    """Whether any credential the kaggle package accepts is present: token, legacy key or OAuth login."""
    kaggle_home = Path.home() / ".kaggle"
    token_files = (kaggle_home / "access_token", kaggle_home / "access_token.txt")
    return (
        bool(os.environ.get("KAGGLE_API_TOKEN"))
        or any(path.is_file() and path.stat().st_size > 0 for path in token_files)
        or _has_legacy_key()
        or (kaggle_home / "credentials.json").is_file()  # from `kaggle auth login`
    )


def fetch_competition_zip(slug: str, folder: Path) -> None:
    """The one network call: download the competition's files into `folder` (tests replace this)."""
    # Importing the package authenticates and prints help on failure; keep stdout clean.
    with contextlib.redirect_stdout(io.StringIO()):
        from kaggle.api.kaggle_api_extended import KaggleApi

        api = KaggleApi()
        api.authenticate()
    api.competition_download_files(slug, path=str(folder), quiet=True)


def download_competition(slug: str, folder: Path) -> Path:
    """Download the competition `slug` into `folder` (created) and return the archive's path."""
    if not credentials_found():
        raise UserError(MISSING_CREDENTIALS)
    folder.mkdir(parents=True, exist_ok=True)
    with kaggle_errors(slug, "download"):
        fetch_competition_zip(slug, folder)
    archives = [path for path in folder.iterdir() if path.is_file() and not path.name.startswith(".")]
    if len(archives) != 1:
        raise UserError(f"data.competition '{slug}': expected one downloaded archive, "
                        f"found {sorted(path.name for path in archives)}")
    return archives[0]
