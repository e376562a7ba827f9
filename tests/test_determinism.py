"""Determinism: two clean runs of the default pipeline (download to infer, default params, each in
its own fresh copy of the repository) give byte-identical predictions.csv and identical metrics."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_engines import make_project, sh

from workflow.engines.dag import load_stages

pytestmark = pytest.mark.slow
SUBMISSION_PATH = ("download", "split", "augment", "cache", "train", "infer")  # the stages predictions.csv needs


def clean_run(root: Path) -> Path:
    """The submission's stages of a fresh project, run by their dvc.yaml commands."""
    stages = {stage.name: stage for stage in load_stages(root)}
    for name in SUBMISSION_PATH:
        sh(["bash", "-c", stages[name].cmd], root)
    return root


def comparable(metrics_file: Path) -> dict:
    """Every metric but wall time and memory, which no two runs share."""
    metrics = json.loads(metrics_file.read_text())
    return {k: v for k, v in metrics.items() if not k.startswith(("time/", "memory/"))}


def test_two_clean_default_runs_are_identical(tmp_path):
    first, second = (make_project(tmp_path / name, fast=False) for name in ("first", "second"))  # default params
    clean_run(first)
    clean_run(second)
    assert (first / "predictions.csv").read_bytes() == (second / "predictions.csv").read_bytes()
    assert (first / "reports/val_predictions.csv").read_bytes() == (second / "reports/val_predictions.csv").read_bytes()
    metrics = comparable(first / "reports/train/metrics.json")
    assert metrics == comparable(second / "reports/train/metrics.json")
    assert metrics["step"] == 29 and metrics["val"]["accuracy"] > 0.8  # the default 30 epochs really ran
    for weights in sorted((first / "models/adapter").glob("*.safetensors")):
        assert weights.read_bytes() == (second / "models/adapter" / weights.name).read_bytes(), weights.name
    record = json.loads((first / "reports/train/run.json").read_text())
    assert record["seeds"] == {"split.seed": 42, "train.seed": 0}
    assert record == json.loads((second / "reports/train/run.json").read_text())
