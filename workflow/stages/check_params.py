"""check_params: validate the whole params.yaml before any other stage runs or deletes its outputs.

DVC removes a stage's outputs before it runs the stage's command, so a params file that a stage
itself rejects would cost the last good model. Every stage of dvc.yaml is downstream of this one,
which depends on the whole params file: any edit runs this check first, and a bad file stops the
run here with one line naming the key. Its output is one constant line, so a valid edit still
re-runs only the stages whose own keys changed.
"""
from __future__ import annotations

from workflow.config import load_params
from workflow.core import io
from workflow.core.cli import run, stage_parser

SECTIONS = ()  # reads the whole file (its job), not a section; dvc.yaml tracks params.yaml as a file
CHECKED = "params.yaml passed validation (python -m workflow.config)\n"  # constant: see the docstring


def main(argv=None) -> None:
    args = stage_parser(__doc__, out="data/params_checked.txt").parse_args(argv)
    load_params(args.params)
    io.write_text(args.out, CHECKED)
    print(f"check_params: {args.params} is valid")


if __name__ == "__main__":
    raise SystemExit(run(main))
