"""screen: train one model-zoo candidate: screen.base with the candidate's overrides, the budget all share.

dvc.yaml runs this once per entry of screen.candidates (foreach), so adding a candidate runs only
that candidate's job and the summary. Each candidate is trained at its own model's input size (the
declared pipelines are resized to it). Writes one JSON row (validation accuracy and macro-F1,
trainable/total parameters, peak memory, wall time) and its dvclive curves.
"""
from __future__ import annotations

from workflow.core.cli import run
from workflow.training.study import job_main

SECTIONS = ("screen",)  # dvc.yaml lists screen.base and screen.candidates.<candidate>
FOREACH = "candidates"  # the section key a foreach stage is expanded over


def main(argv=None) -> None:
    job_main(__doc__, "screen", argv, saves_model=False, resize=True)


if __name__ == "__main__":
    raise SystemExit(run(main))
