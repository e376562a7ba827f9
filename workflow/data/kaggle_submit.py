"""Submit a file to a Kaggle competition, and read back its submissions' public scores, with the
official `kaggle` package (the same client and endpoints as `kaggle competitions submit`).

Every failure becomes one UserError line naming data.competition and what to do. The credentials stay
where the package looks for them and are used only by it: their values never reach a message, a log or
a file. The package's own printing goes nowhere (with VERBOSE set in the environment it prints each
request's headers, the credentials among them), its verbose mode is switched off, and the one piece of
server text shown (Kaggle's reason for a refusal) has any credential value masked.
"""
from __future__ import annotations

import contextlib
import io
import json
import os
import re
from collections.abc import Iterator
from pathlib import Path

import requests

from workflow.core.errors import UserError
from workflow.data.kaggle_source import TOKEN_PAGE, credentials_found

MISSING_CREDENTIALS = (
    f"submit.enabled is true but no Kaggle credentials were found: create an API token at {TOKEN_PAGE}, then "
    "export KAGGLE_API_TOKEN=<token> or save it to ~/.kaggle/access_token (legacy keys also work: "
    "~/.kaggle/kaggle.json, or KAGGLE_USERNAME and KAGGLE_KEY); never put them in params.yaml"
)
# How Kaggle words a refusal that is not about the credentials or the rules (matched in its JSON reason).
DAILY_LIMIT = re.compile(r"daily|allowance|submission limit|too many|per day", re.IGNORECASE)
CLOSED = re.compile(r"no longer accept|not accepting|(does not|doesn't) accept|has ended|(has|is) closed|"
                    r"deadline (has )?passed", re.IGNORECASE)
PAGE_SIZE, MAX_PAGES = 100, 10  # newest first: the refs still unscored are recent


def require_credentials() -> None:
    if not credentials_found():
        raise UserError(MISSING_CREDENTIALS)


def submit_file(slug: str, path: Path, message: str) -> str:
    """Upload `path` to competition `slug` with `message`; the submission's ref, as Kaggle numbers it."""
    with _calling(slug) as api:
        response = api.competition_submit(str(path), message, slug, quiet=True)
    if not response.ref or response.message == api.COMPETITION_SUBMIT_UPLOAD_FAILED_MESSAGE:
        raise UserError(f"data.competition '{slug}': the upload of {path} to Kaggle's storage failed, so nothing "
                        "was submitted; check the network connection and run again")
    return str(response.ref)


def public_scores(slug: str, refs: set[str]) -> dict[str, str]:
    """ref -> public score, for those of `refs` that Kaggle has scored."""
    found: dict[str, str] = {}
    with _calling(slug) as api:
        for page in range(1, MAX_PAGES + 1):
            submissions = api.competition_submissions(slug, page_number=page, page_size=PAGE_SIZE) or []
            for submission in filter(None, submissions):
                if str(submission.ref) in refs and submission.public_score not in (None, ""):
                    found[str(submission.ref)] = str(submission.public_score)
            if len(submissions) < PAGE_SIZE or set(found) == refs:
                break
    return found


@contextlib.contextmanager
def _calling(slug: str) -> Iterator:
    """An authenticated KaggleApi, with the package's output swallowed and its errors made one line."""
    require_credentials()
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # the import authenticates, and prints on failure
            from kaggle.api.kaggle_api_extended import KaggleApi

            api = KaggleApi()
            api.args = [arg for arg in api.args if arg not in ("--verbose", "-v")]  # would print the headers
            api.authenticate()
            yield api
    except SystemExit:  # authenticate() exits when no credential it found is valid (an expired token)
        raise UserError(f"data.competition '{slug}': Kaggle rejected the credentials; create a new token at "
                        f"{TOKEN_PAGE} and replace the old one") from None
    except requests.HTTPError as err:
        raise UserError(_http_error_message(slug, err)) from None
    except requests.RequestException as err:
        raise UserError(f"data.competition '{slug}': cannot reach Kaggle ({type(err).__name__}); "
                        "check the network connection (and any proxy), then run again") from None
    except ValueError as err:  # an answer that is not the JSON the package expects
        raise UserError(f"data.competition '{slug}': Kaggle's answer could not be read ({type(err).__name__}); "
                        "try again later, or upgrade the kaggle package") from None


def _http_error_message(slug: str, err: requests.HTTPError) -> str:
    status = getattr(err.response, "status_code", None)
    reason = _kaggle_reason(err.response)
    said = f" (Kaggle: {reason})" if reason else ""
    where = f"data.competition '{slug}'"
    if status == 401:
        return f"{where}: Kaggle rejected the credentials (401: invalid or expired); create a new token at {TOKEN_PAGE}"
    if status == 429 or DAILY_LIMIT.search(reason):
        return (f"{where}: Kaggle's submission limit is reached (HTTP {status}){said}: the day's submissions are "
                "used up (they reset at 00:00 UTC) or requests came too fast; run again later")
    if CLOSED.search(reason):
        return f"{where}: the competition no longer accepts submissions{said}; nothing can be submitted to it"
    if status == 403:
        return (f"{where}: Kaggle refused access (403){said}; accept the competition's rules at "
                f"https://www.kaggle.com/competitions/{slug}/rules while logged in, then run again")
    if status == 404:
        return (f"{where}: no such competition, or it no longer accepts submissions (404); use the slug from the "
                "competition's URL, e.g. 'dogs-vs-cats' for kaggle.com/competitions/dogs-vs-cats")
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
