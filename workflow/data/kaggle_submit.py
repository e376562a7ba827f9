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
from collections.abc import Iterator
from pathlib import Path

from workflow.core.errors import UserError
from workflow.data.kaggle_errors import TOKEN_PAGE, kaggle_errors
from workflow.data.kaggle_source import credentials_found

MISSING_CREDENTIALS = (
    f"submit.enabled is true but no Kaggle credentials were found: create an API token at {TOKEN_PAGE}, then "
    "export KAGGLE_API_TOKEN=<token> or save it to ~/.kaggle/access_token (legacy keys also work: "
    "~/.kaggle/kaggle.json, or KAGGLE_USERNAME and KAGGLE_KEY); never put them in params.yaml"
)
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
    with kaggle_errors(slug, "submit"):
        with contextlib.redirect_stdout(io.StringIO()):  # the import authenticates, and prints on failure
            from kaggle.api.kaggle_api_extended import KaggleApi

            api = KaggleApi()
            api.args = [arg for arg in api.args if arg not in ("--verbose", "-v")]  # would print the headers
            api.authenticate()
            yield api
