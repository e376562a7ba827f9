"""dvc.yaml is the one DAG: each stage declares exactly the params it reads and the command it runs."""
from __future__ import annotations

import importlib
import subprocess
import sys

import pytest
import yaml

from helpers import REPO
from workflow.config import section_keys
from workflow.dag import followed_content, is_folder, load_stages, rule_name, snakemake_inputs

STAGES = load_stages(REPO)


def module_of(stage) -> str:
    return stage.name.split("@")[0]  # foreach jobs are 'screen@vit-tiny'


def test_pipeline_stages():
    names = [s.name for s in STAGES]
    assert names[:3] == ["download", "split", "augment"]
    assert {"train", "infer", "screen_summary", "report"} <= set(names)
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    # One job per screening candidate and per ablation variant.
    assert {n for n in names if n.startswith("screen@")} == {f"screen@{c}" for c in params["screen"]["candidates"]}
    assert {n for n in names if n.startswith("ablation@")} == {f"ablation@{v}" for v in params["ablation"]["variants"]}


@pytest.mark.parametrize("stage", STAGES, ids=lambda s: s.name)
def test_stage_declares_exactly_the_params_keys_it_reads(stage):
    module = importlib.import_module(f"workflow.stages.{module_of(stage)}")
    declared = {key for section in module.SECTIONS for key in section_keys(section)}
    if "@" in stage.name:  # a foreach job reads its own entry of the mapping it is expanded over
        section, item = module.SECTIONS[0], stage.name.split("@")[1]
        declared = declared - {f"{section}.{module.FOREACH}"} | {f"{section}.{module.FOREACH}.{item}"}
    assert set(stage.params) == declared


@pytest.mark.parametrize("stage", STAGES, ids=lambda s: s.name)
def test_stage_command_runs_its_module_and_deps_exist_or_are_produced(stage):
    assert stage.cmd.startswith(f"python -m workflow.stages.{module_of(stage)} ")
    produced = {out for s in STAGES for out in s.outs}
    for dep in stage.deps:
        inside = any(out.startswith(dep + "/") for out in produced)
        assert dep in produced or inside or (REPO / dep).exists(), dep


@pytest.mark.parametrize("module", sorted({module_of(s) for s in STAGES}))
def test_stage_has_help(module):
    result = subprocess.run([sys.executable, "-m", f"workflow.stages.{module}", "--help"],
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


def test_snakemake_summary_waits_for_every_foreach_job(monkeypatch):
    monkeypatch.chdir(REPO)
    summary = next(s for s in STAGES if s.name == "screen_summary")
    inputs = snakemake_inputs(summary, {out for s in STAGES for out in s.outs})
    jobs = [s for s in STAGES if s.name.startswith("screen@")]
    assert {out for job in jobs for out in job.outs} <= set(inputs)
    assert "reports/screening" not in inputs


def test_rule_names_are_identifiers():
    assert rule_name("ablation@lora-r8-no-augment") == "ablation_lora_r8_no_augment"


def test_folder_convention():
    assert is_folder("data/raw") and not is_folder("predictions.csv")


def test_snakemake_follows_the_winner_only_when_train_reads_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    winner = "reports/screening_winner.json"
    (tmp_path / "reports").mkdir()
    (tmp_path / winner).write_text('{"candidate": "vit-tiny"}')
    assert followed_content((winner,), {"model.name": "screening-winner"}) == {winner: '{"candidate": "vit-tiny"}'}
    assert followed_content((winner,), {"model.name": "configs/models/beit-tiny.json"}) == {}
