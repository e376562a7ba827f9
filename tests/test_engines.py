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
from workflow.dag import rule_name

pytestmark = pytest.mark.slow


def sh(args: list[str], cwd: Path) -> str:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"{' '.join(args)} failed:\n{output[-4000:]}"
    return output


# The tiny default, with shorter budgets so both engines' full DAGs fit in the test suite.
FAST = {("train", "epochs"): 2, ("screen", "epochs"): 1, ("ablation", "base", "epochs"): 1}


def make_project(root: Path, fast: bool = True) -> Path:
    """A fresh clone-like copy of the repository: its tracked and unignored files, one commit.

    `fast` shortens the training budgets (FAST); without it the params are the shipped defaults."""
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
                            cwd=REPO, capture_output=True, text=True, check=True).stdout
    for name in filter(None, listed.split("\0")):
        if (REPO / name).is_file() and name != "dvc.lock":
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, root / name)
    for keys, value in (FAST.items() if fast else ()):
        set_param(root, keys, value)
    for args in (["init", "-q"], ["add", "-A"], ["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "init"]):
        sh(["git", *args], root)
    return root


def set_param(root: Path, keys: tuple[str, ...], value) -> None:
    path = root / "params.yaml"
    params = yaml.safe_load(path.read_text())
    node = params
    for key in keys[:-1]:
        node = node[key]
    node[keys[-1]] = value
    path.write_text(yaml.safe_dump(params, sort_keys=False))


def stage_names(root: Path) -> set[str]:
    return {name for name in yaml.safe_load((root / "dvc.yaml").read_text())["stages"]}


def check_outputs(root: Path) -> None:
    sample = pd.read_csv(root / "data/raw/sample_submission.csv", dtype=str)
    predictions = pd.read_csv(root / "predictions.csv", dtype=str)
    assert list(predictions.columns) == list(sample.columns)
    assert list(predictions["id"]) == list(sample["id"])
    ablation = pd.read_csv(root / "reports/ablation.csv")
    assert len(ablation) == 9 and (ablation["trainable"] == ablation["trainable (formula)"]).all()
    assert "Winner: **" in (root / "reports/screening.md").read_text()
    assert (root / "reports/ablation.html").read_text().count("data:image/png;base64") == 2


def dvc_ran(output: str) -> set[str]:
    return set(re.findall(r"Running stage '([\w@-]+)'", output))


def snakemake_ran(output: str) -> set[str]:
    return set(re.findall(r"^\s*(?:local)?rule (\w+):", output, flags=re.M)) - {"all"}


@pytest.fixture(scope="module")
def dvc_project(tmp_path_factory):
    root = make_project(tmp_path_factory.mktemp("dvc"))
    ran = dvc_ran(sh(["dvc", "repro"], root))
    return root, ran


@pytest.fixture(scope="module")
def snakemake_project(tmp_path_factory):
    root = make_project(tmp_path_factory.mktemp("snakemake"))
    ran = snakemake_ran(sh(["snakemake", "--cores", "1", "all"], root))
    return root, ran


def test_dvc_repro_builds_everything_from_a_clean_checkout(dvc_project):
    root, ran = dvc_project
    assert {name.split("@")[0] for name in ran} == stage_names(root)
    assert len([n for n in ran if n.startswith("screen@")]) == 5 and len([n for n in ran if n.startswith("ablation@")]) == 9
    check_outputs(root)


def test_snakemake_builds_everything_from_a_clean_checkout(snakemake_project, dvc_project):
    root, ran = snakemake_project
    assert ran == {rule_name(name) for name in dvc_project[1]}
    check_outputs(root)


def test_both_engines_produce_the_same_report(dvc_project, snakemake_project):
    # Same code, seeds and CPU: the same results; only the measured time and memory may differ.
    same = ["variant", "method", "augment", "accuracy", "macro-F1", "trainable", "trainable (formula)", "artefact MiB"]
    tables = [pd.read_csv(root / "reports/ablation.csv")[same] for root, _ in (dvc_project, snakemake_project)]
    pd.testing.assert_frame_equal(*tables)
    assert (dvc_project[0] / "predictions.csv").read_bytes() == (snakemake_project[0] / "predictions.csv").read_bytes()


def test_dvc_noop_then_exp_run_then_one_job_per_candidate_and_variant(dvc_project):
    root, _ = dvc_project
    second = sh(["dvc", "repro"], root)
    assert dvc_ran(second) == set() and "Data and pipelines are up to date" in second

    assert dvc_ran(sh(["dvc", "exp", "run", "-S", "lora.r=16"], root)) == {"train", "infer", "report"}
    assert yaml.safe_load((root / "params.yaml").read_text())["lora"]["r"] == 16
    table = sh(["dvc", "exp", "show", "--csv"], root)
    assert "val.accuracy" in table.splitlines()[0] and "lora.r" in table.splitlines()[0]
    sh(["dvc", "plots", "show", "-o", "plots_html"], root)
    assert "val/accuracy" in (root / "plots_html/index.html").read_text()

    set_param(root, ("screen", "candidates", "vit-tiny-2"), {"model": "configs/models/vit-tiny.json"})
    set_param(root, ("ablation", "variants", "lora-r4"), {"r": 4, "alpha": 8})
    # A dry run lists the changed jobs; the real run adds the summaries that read them, nothing else.
    assert dvc_ran(sh(["dvc", "repro", "--dry"], root)) == {"screen@vit-tiny-2", "ablation@lora-r4"}
    ran = dvc_ran(sh(["dvc", "repro"], root))
    assert ran == {"screen@vit-tiny-2", "screen_summary", "ablation@lora-r4", "report"}


def test_snakemake_noop_then_lora_change_then_one_job_per_candidate_and_variant(snakemake_project):
    root, _ = snakemake_project
    second = sh(["snakemake", "--cores", "1", "all"], root)
    assert snakemake_ran(second) == set() and "Nothing to be done" in second

    set_param(root, ("lora", "r"), 16)
    assert snakemake_ran(sh(["snakemake", "--cores", "1", "all"], root)) == {"train", "infer", "report"}
    assert (root / "logs/snakemake/train.log").read_text().count("val accuracy") == 1

    set_param(root, ("screen", "candidates", "vit-tiny-2"), {"model": "configs/models/vit-tiny.json"})
    set_param(root, ("ablation", "variants", "lora-r4"), {"r": 4, "alpha": 8})
    planned = snakemake_ran(sh(["snakemake", "--cores", "1", "all", "--dry-run"], root))
    assert planned == {"screen_vit_tiny_2", "screen_summary", "ablation_lora_r4", "report"}
    assert snakemake_ran(sh(["snakemake", "--cores", "1", "all"], root)) == planned

    sh(["snakemake", "--report", "reports/report.html"], root)
    page = (root / "reports/report.html").read_text()
    assert "ablation.png" in page and "confusion_matrix.png" in page


def dot_edges(dot: str) -> set[tuple[str, str]]:
    """Edges of a Graphviz DAG, with node ids replaced by their labels."""
    node = r'"?([\w./@-]+)"?'
    labels = dict(re.findall(rf'^\s*{node}\s*\[label\s*=\s*"([^"\\]+)', dot, re.M))
    edges = re.findall(rf"^\s*{node}\s*->\s*{node}", dot, re.M)
    return {(labels.get(a, a), labels.get(b, b)) for a, b in edges}


def test_both_engines_see_the_same_dag(tmp_path):
    project = make_project(tmp_path)
    dvc_edges = {(rule_name(a), rule_name(b)) for a, b in dot_edges(sh(["dvc", "dag", "--dot"], project))}
    snakemake_edges = {
        (a, b) for a, b in dot_edges(sh(["snakemake", "--cores", "1", "all", "--dag"], project)) if "all" not in (a, b)
    }
    assert dvc_edges == snakemake_edges
    assert ("train", "infer") in dvc_edges and ("download", "split") in dvc_edges
    assert ("screen_beit_tiny", "screen_summary") in dvc_edges and ("screen_summary", "train") in dvc_edges
    assert ("ablation_full", "report") in dvc_edges and len(dvc_edges) > 40
