"""submit: upload predictions.csv to the Kaggle competition data.competition, when submit.enabled is true.

Off by default, so that no run uploads by surprise: then the stage uploads nothing and says so, after
checking the file. On, it checks predictions.csv against data/raw's sample_submission.csv and
competition.json (ids, order, columns, no empty cell; labels among the classes, or probabilities in
[0, 1] summing to 1), fills in the public scores of earlier submissions, uploads the file with the
official `kaggle` package and your Kaggle credentials (KAGGLE_API_TOKEN, ~/.kaggle/access_token,
~/.kaggle/kaggle.json or KAGGLE_USERNAME + KAGGLE_KEY; see README "Submit to Kaggle"), with a message
built from the run plus submit.message, and adds a row to reports/submissions.csv (--history).
Its output (--out) records what this run did: the upload, or that nothing was uploaded.

    python -m workflow.stages.submit --refresh   # fill in public_score from Kaggle, outside the DAG
"""
from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from pathlib import Path

from workflow.config import load_params
from workflow.core import io
from workflow.core.cli import run, stage_parser
from workflow.core.errors import UserError
from workflow.data import kaggle_submit, submissions
from workflow.data.competition_info import read_competition
from workflow.data.submission_format import check_submission
from workflow.data.submission_message import build_message

SECTIONS = ("submit",)  # the params sections this stage reads; dvc.yaml lists their keys
KEYS = ("data.competition",)  # and single keys of other sections (dvc.yaml lists them too)

DISABLED = {"uploaded": False, "reason": "submit.enabled is false"}  # constant: nothing downstream re-runs


def parse_args(argv=None):
    parser = stage_parser(__doc__, predictions="predictions.csv", raw="data/raw", model="models/adapter",
                          metrics="reports/train/metrics.json", history="reports/submissions.csv",
                          out="reports/submission.json")
    parser.add_argument("--refresh", action="store_true",
                        help="only fill in the public scores of the submissions in --history, then exit")
    return parser.parse_args(argv)


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def refresh(history: Path, competition: str | None = None) -> None:
    """Ask Kaggle for the public scores of the submissions in `history` (to `competition`, or to any) that have
    none yet."""
    waiting = {name: refs for name, refs in submissions.unscored(history).items() if competition in (None, name)}
    if not waiting:
        print(f"submit: no submission in {history} is waiting for a public score")
        return
    scores = {(name, ref): score for name, refs in waiting.items()
              for ref, score in kaggle_submit.public_scores(name, refs).items()}
    filled = submissions.fill_scores(history, scores)
    count = sum(len(refs) for refs in waiting.values())
    print(f"submit: {filled} of {count} submissions waiting got a public score -> {history}")


def check_competition(slug: str, raw: Path, params: str) -> None:
    if not slug:
        raise UserError(f"{params}: data.competition is empty; set it to the competition's Kaggle slug "
                        "(kaggle.com/competitions/<slug>) to submit, or set submit.enabled: false")
    source = read_competition(raw).get("source")
    if source == "builtin":
        raise UserError(f"{raw / 'competition.json'}: the built-in demo competition cannot be submitted to "
                        "Kaggle; set data.source: kaggle (or local, with the competition's files) first")


def main(argv=None) -> None:
    args = parse_args(argv)
    history = submissions.history_path(args.history)
    if args.refresh:
        refresh(history)
        return
    params = load_params(args.params)
    predictions, raw = Path(args.predictions), Path(args.raw)
    check_submission(predictions, raw)  # also when off: a file Kaggle would reject is a bug of infer
    if not params.submit.enabled:
        io.write_json(args.out, DISABLED)
        print(f"submit: submit.enabled is false: nothing uploaded ({predictions} is in the submission format; "
              f"set submit.enabled: true or run `dvc exp run -S submit.enabled=true` to upload it)")
        return

    slug = params.data.competition
    check_competition(slug, raw, args.params)
    digest = sha256(predictions)
    earlier = submissions.submitted(history, slug, digest)
    if earlier:  # a re-run for another reason (code, submit.message) would spend a submission on the same file
        io.write_json(args.out, {"uploaded": False, "reason": f"already submitted as ref {earlier}", "sha256": digest})
        print(f"submit: {predictions} (sha256 {digest[:12]}) was already submitted to {slug} as ref {earlier}: "
              f"nothing uploaded (to submit it again, remove that row from {history})")
        return
    kaggle_submit.require_credentials()
    if slug in submissions.unscored(history):
        refresh(history, slug)  # the same competition, credentials and network as the upload that follows
    message = build_message(Path(args.model), Path(args.metrics), params.submit.message)
    ref = kaggle_submit.submit_file(slug, predictions, message)
    row = {"time": datetime.now(UTC).isoformat(timespec="seconds"), "competition": slug,
           "message": message, "sha256": digest, "ref": ref, "public_score": ""}
    submissions.append(history, row)
    io.write_json(args.out, {"uploaded": True, **{key: row[key] for key in row if key != "public_score"}})
    print(f"submit: {predictions} (sha256 {digest[:12]}) submitted to {slug} as ref {ref}: '{message}' -> "
          f"{history}; its score: python -m workflow.stages.submit --refresh")


if __name__ == "__main__":
    raise SystemExit(run(main))
