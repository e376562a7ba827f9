"""Cluster resources per stage (workflow/engines/resources.yaml) and the SLURM profile, without a cluster.

tests/test_slurm.py runs the profile on a real SLURM; these check the declaration and what
Snakemake makes of it, in seconds.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from helpers import REPO
from test_engines import make_project

from workflow.core.errors import UserError
from workflow.engines.cluster import DECLARATION, load_table, stage_base, stage_resources
from workflow.engines.dag import load_stages, rule_name

GPU_STAGES = {"screen", "train", "fold", "ablation", "infer"}  # infer: see workflow/engines/resources.yaml


@pytest.fixture(scope="module")
def stages() -> list[str]:
    return [stage.name for stage in load_stages(REPO)]


def test_model_stages_ask_for_a_gpu_and_data_stages_for_none(stages):
    table = load_table(stages, declaration=REPO / DECLARATION)
    assert GPU_STAGES <= {stage_base(name) for name in stages}
    for name in stages:
        resources = stage_resources(name, table)
        assert resources["mem_mb"] > 0 and resources["runtime"] > 0, name
        if stage_base(name) in GPU_STAGES:
            assert resources["gpu"] >= 1 and resources["cpus_per_gpu"] >= 1, name
            assert "cpus_per_task" not in resources, f"{name}: cpus_per_task would override cpus_per_gpu"
        else:
            assert "gpu" not in resources and "gpu_model" not in resources, name


def test_site_file_merges_per_key_and_null_drops_a_request(tmp_path, stages):
    site = tmp_path / "site.yaml"
    site.write_text(yaml.safe_dump({"train": {"runtime": 2880, "gpu": None, "slurm_partition": "long"},
                                    "default": {"slurm_account": "proj", "mem_mb": 1}}))
    table = load_table(stages, site, declaration=REPO / DECLARATION)
    shipped = load_table(stages, declaration=REPO / DECLARATION)
    train = stage_resources("train", table)
    assert train["runtime"] == 2880 and train["slurm_partition"] == "long" and "gpu" not in train
    assert train["mem_mb"] == shipped["train"]["mem_mb"]  # the stage's own entry beats the site default
    assert all(stage_resources(name, table)["slurm_account"] == "proj" for name in stages)


@pytest.mark.parametrize("text, message", [
    ("trian: {mem_mb: 1}", "'trian' is not a stage of dvc.yaml"),
    ("train: {mem_mb: -1}", "train.mem_mb: expected an integer >= 0"),
    ("train: {mem_mb: 1.5}", "train.mem_mb: expected an integer >= 0"),
    ("train: {gpu: true}", "train.gpu: expected an integer >= 0"),
    ("train: {gpu: null}", "train.gpu: expected an integer >= 0"),  # null only in a site file
    ("train: [gpu]", "train: expected a mapping"),
    ("train: {mem-mb: 1}", "train.mem-mb: not a valid resource name"),
])
def test_bad_declarations_stop_with_one_line(tmp_path, stages, text, message):
    path = tmp_path / "resources.yaml"
    path.write_text(text)
    with pytest.raises(UserError, match=re.escape(message)):
        load_table(stages, declaration=path)


def test_profile_and_snakefile_give_each_rule_its_resources(tmp_path, stages):
    profile = yaml.safe_load((REPO / "profiles/slurm/config.yaml").read_text())
    assert profile["executor"] == "slurm"
    # A dry run with the profile: the plugin loads, and every job carries its stage's requests.
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    project = make_project(tmp_path)  # a clean copy: every job is planned
    result = subprocess.run(["snakemake", "--profile", "profiles/slurm", "--dry-run", "all"], cwd=project, env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    planned = dict(re.findall(r"^rule (\w+):\n(?:    .*\n)*?    resources: (.*)$", result.stdout, re.M))
    planned.pop("all", None)  # the target rule: no command, never submitted
    assert set(planned) == {rule_name(name) for name in stages}
    table = load_table(stages, declaration=REPO / DECLARATION)
    for name in stages:
        listed = dict(item.split("=", 1) for item in planned[rule_name(name)].split(", "))
        for key, value in stage_resources(name, table).items():
            assert listed[key] == str(value), (name, key, listed)
