"""Both engines on the real default pipeline, in a temporary git repository (slow: real training).

Checks that each engine builds the submission from a clean checkout, that a second run does
nothing, and that changing lora.r re-runs exactly train and infer.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from helpers import REPO

pytestmark = pytest.mark.slow
ALL_STAGES = {"download", "split", "augment", "train", "infer"}


def sh(args: list[str], cwd: Path) -> str:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"{' '.join(args)} failed:\n{output[-4000:]}"
    return output


@pytest.fixture
def project(tmp_path) -> Path:
    """A fresh clone-like copy of the repository: its tracked and unignored files, one commit."""
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
                            cwd=REPO, capture_output=True, text=True, check=True).stdout
    root = tmp_path / "project"
    for name in filter(None, listed.split("\0")):
        if (REPO / name).is_file():
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, root / name)
    for args in (["init", "-q"], ["add", "-A"], ["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "init"]):
        sh(["git", *args], root)
    return root


def set_param(root: Path, section: str, key: str, value) -> None:
    path = root / "params.yaml"
    params = yaml.safe_load(path.read_text())
    params[section][key] = value
    path.write_text(yaml.safe_dump(params, sort_keys=False))


def check_submission(root: Path) -> None:
    sample = pd.read_csv(root / "data/raw/sample_submission.csv", dtype=str)
    predictions = pd.read_csv(root / "predictions.csv", dtype=str)
    assert list(predictions.columns) == list(sample.columns)
    assert list(predictions["id"]) == list(sample["id"])


def dvc_ran(output: str) -> set[str]:
    return set(re.findall(r"Running stage '(\w+)'", output))


def snakemake_ran(output: str) -> set[str]:
    return set(re.findall(r"^\s*(?:local)?rule (\w+):", output, flags=re.M)) - {"all"}


def test_dvc_repro_then_noop_then_exp_run_reruns_only_train_and_infer(project):
    assert dvc_ran(sh(["dvc", "repro"], project)) == ALL_STAGES
    check_submission(project)
    second = sh(["dvc", "repro"], project)
    assert dvc_ran(second) == set() and "Data and pipelines are up to date" in second

    assert dvc_ran(sh(["dvc", "exp", "run", "-S", "lora.r=16"], project)) == {"train", "infer"}
    check_submission(project)
    assert yaml.safe_load((project / "params.yaml").read_text())["lora"]["r"] == 16
    table = sh(["dvc", "exp", "show", "--csv"], project)
    assert "val.accuracy" in table.splitlines()[0] and "lora.r" in table.splitlines()[0]
    sh(["dvc", "plots", "show", "-o", "plots_html"], project)
    assert "val/accuracy" in (project / "plots_html/index.html").read_text()


def test_snakemake_all_then_noop_then_lora_change_reruns_only_train_and_infer(project):
    assert snakemake_ran(sh(["snakemake", "--cores", "1", "all"], project)) == ALL_STAGES
    check_submission(project)
    second = sh(["snakemake", "--cores", "1", "all"], project)
    assert snakemake_ran(second) == set() and "Nothing to be done" in second

    set_param(project, "lora", "r", 16)
    assert snakemake_ran(sh(["snakemake", "--cores", "1", "all"], project)) == {"train", "infer"}
    check_submission(project)
    assert (project / "logs/snakemake/train.log").read_text().count("val accuracy") == 1


def dot_edges(dot: str) -> set[tuple[str, str]]:
    """Edges of a Graphviz DAG, with node ids replaced by their labels."""
    labels = {node: label for node, label in re.findall(r'^\s*"?([\w./]+)"?\s*\[label\s*=\s*"([^"\\]+)', dot, re.M)}
    edges = re.findall(r'^\s*"?([\w./]+)"?\s*->\s*"?([\w./]+)"?', dot, re.M)
    return {(labels.get(a, a), labels.get(b, b)) for a, b in edges}


def test_both_engines_see_the_same_dag(project):
    dvc_edges = dot_edges(sh(["dvc", "dag", "--dot"], project))
    snakemake_edges = {
        (a, b) for a, b in dot_edges(sh(["snakemake", "--cores", "1", "all", "--dag"], project)) if "all" not in (a, b)
    }
    assert dvc_edges == snakemake_edges
    assert ("train", "infer") in dvc_edges and ("download", "split") in dvc_edges
