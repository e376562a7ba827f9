"""One translation of the `kaggle` package's failures into one-line UserErrors, for downloading a
competition (workflow/data/kaggle_source.py) and submitting to it (workflow/data/kaggle_submit.py).

The one piece of server text shown, Kaggle's reason for a refusal, has any credential value masked.
"""
from __future__ import annotations

import contextlib
import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import requests

from workflow.core.errors import UserError

TOKEN_PAGE = "https://www.kaggle.com/settings/api"
# How Kaggle words a refusal that is not about the credentials or the rules (matched in its JSON reason).
DAILY_LIMIT = re.compile(r"daily|allowance|submission limit|too many|per day", re.IGNORECASE)
CLOSED = re.compile(r"no longer accept|not accepting|(does not|doesn't) accept|has ended|(has|is) closed|"
                    r"deadline (has )?passed", re.IGNORECASE)
Action = Literal["download", "submit"]


@contextlib.contextmanager
def kaggle_errors(slug: str, action: Action) -> Iterator[None]:
    """Around calls of the package for competition `slug`: its failures as one line naming what to do."""
    where = f"data.competition '{slug}'"
    try:
        yield
    except SystemExit:  # authenticate() exits when no credential it found is valid (an expired token)
        raise UserError(f"{where}: Kaggle rejected the credentials; create a new token at {TOKEN_PAGE} and "
                        "replace the old one") from None
    except requests.HTTPError as err:
        raise UserError(http_error_message(slug, err, action)) from None
    except requests.RequestException as err:
        raise UserError(f"{where}: cannot reach Kaggle ({type(err).__name__}); check the network connection "
                        "(and any proxy), then run again") from None
    except ValueError as err:  # an answer that is not the JSON the package expects
        raise UserError(f"{where}: Kaggle's answer could not be read ({type(err).__name__}); try again later, "
                        "or upgrade the kaggle package") from None


def http_error_message(slug: str, err: requests.HTTPError, action: Action) -> str:
    status = getattr(err.response, "status_code", None)
    reason = _kaggle_reason(err.response)
    said = f" (Kaggle: {reason})" if reason else ""
    where = f"data.competition '{slug}'"
    if status == 401:
        return f"{where}: Kaggle rejected the credentials (401: invalid or expired); create a new token at {TOKEN_PAGE}"
    if action == "submit" and (status == 429 or DAILY_LIMIT.search(reason)):
        return (f"{where}: Kaggle's submission limit is reached (HTTP {status}){said}: the day's submissions are "
                "used up (they reset at 00:00 UTC) or requests came too fast; run again later")
    if status == 429:
        return f"{where}: Kaggle is limiting requests (429){said}; wait a few minutes, then run again"
    if action == "submit" and CLOSED.search(reason):
        return f"{where}: the competition no longer accepts submissions{said}; nothing can be submitted to it"
    if status == 403:
        return (f"{where}: Kaggle refused access (403){said}; accept the competition's rules at "
                f"https://www.kaggle.com/competitions/{slug}/rules while logged in, then run again")
    if status == 404:
        closed = ", or it no longer accepts submissions" if action == "submit" else ""
        return (f"{where}: no such competition{closed} (404); use the slug from the competition's URL, e.g. "
                "'dogs-vs-cats' for kaggle.com/competitions/dogs-vs-cats")
    return f"{where}: Kaggle answered HTTP {status}{said}; try again later"


def _kaggle_reason(response) -> str:
    """The reason in Kaggle's JSON error body, on one short line with any credential masked; '' if none."""
    try:
        reason = str(response.json().get("message") or "")
    except (AttributeError, ValueError):
        return ""
    reason = " ".join(reason.split())[:200]
    for secret in _credential_values():
        reason = reason.replace(secret, "***")
    return reason


def _credential_values() -> list[str]:
    """The credential values the package could send, read only to mask them in text shown to the user."""
    values = [os.environ.get(name, "") for name in ("KAGGLE_KEY", "KAGGLE_API_TOKEN")]
    home = Path.home() / ".kaggle"
    token_files = [home / "access_token", home / "access_token.txt", Path(values[1])] if values[1] else [
        home / "access_token", home / "access_token.txt"]
    for path in token_files:
        with contextlib.suppress(OSError):
            values.append(path.read_text().strip())
    folders = [os.environ.get("KAGGLE_CONFIG_DIR"), home, Path(os.environ.get("XDG_CONFIG_HOME") or
                                                               Path.home() / ".config") / "kaggle"]
    for folder in filter(None, folders):
        with contextlib.suppress(OSError, ValueError, AttributeError):
            values.append(str(json.loads((Path(folder) / "kaggle.json").read_text()).get("key", "")))
    return [value for value in values if len(value) >= 4]
