"""dvc.yaml is the one DAG: each stage declares exactly the params it reads and the command it runs."""
from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

from helpers import REPO
from workflow.config import section_keys
from workflow.dag import is_folder, load_stages, snakemake_inputs

STAGES = load_stages(REPO / "dvc.yaml")


def test_pipeline_order():
    assert [s.name for s in STAGES] == ["download", "split", "augment", "train", "infer"]


@pytest.mark.parametrize("stage", STAGES, ids=lambda s: s.name)
def test_stage_declares_exactly_the_params_keys_it_reads(stage):
    module = importlib.import_module(f"workflow.stages.{stage.name}")
    declared = {key for section in module.SECTIONS for key in section_keys(section)}
    assert set(stage.params) == declared


@pytest.mark.parametrize("stage", STAGES, ids=lambda s: s.name)
def test_stage_command_runs_its_module_and_deps_exist_or_are_produced(stage):
    assert stage.cmd.startswith(f"python -m workflow.stages.{stage.name} ")
    produced = {out for s in STAGES for out in s.outs}
    for dep in stage.deps:
        assert dep in produced or (REPO / dep).exists(), dep


@pytest.mark.parametrize("stage", STAGES, ids=lambda s: s.name)
def test_stage_has_help(stage):
    result = subprocess.run([sys.executable, "-m", f"workflow.stages.{stage.name}", "--help"],
                            cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0
    assert "--params" in result.stdout


def test_snakemake_expands_source_folders_but_keeps_produced_ones(monkeypatch):
    monkeypatch.chdir(REPO)
    train = next(s for s in STAGES if s.name == "train")
    inputs = snakemake_inputs(train, {out for s in STAGES for out in s.outs})
    assert "data/raw" in inputs and "data/split" in inputs
    assert "workflow/models/lora.py" in inputs and "workflow/models" not in inputs
    assert not any("__pycache__" in path for path in inputs)


def test_folder_convention():
    assert is_folder("data/raw") and not is_folder("predictions.csv")
