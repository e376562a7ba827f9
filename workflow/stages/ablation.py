"""ablation: train one variant: ablation.base with the variant's overrides, and measure what it costs and gives.

dvc.yaml runs this once per variant of ablation.variants and seed of ablation.seeds (a matrix): each
job is cached on its own, so changing one variant re-runs its jobs and adding a seed runs only the
new ones. --seed replaces the recipe's train.seed. Writes the job's artefact (what reproduces its
predictions), its dvclive curves and a JSON row: accuracy, macro-F1, trainable parameters measured
and by formula, peak memory, time and artefact size on disk.
"""
from __future__ import annotations

from workflow.core.cli import run
from workflow.training.study import job_main

SECTIONS = ("ablation",)  # dvc.yaml lists ablation.base and ablation.variants.<variant>
FOREACH = "variants"
# A job's seed is its command's --seed, not a params key: adding a seed must not re-run the others.
MATRIX_ONLY = ("seeds",)


def main(argv=None) -> None:
    job_main(__doc__, "ablation", argv, saves_model=True, resize=False)


if __name__ == "__main__":
    raise SystemExit(run(main))
