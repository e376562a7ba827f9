"""Both engines on the real default pipeline, in temporary git repositories (slow: real training).

One finished run per engine is shared by the tests of this module. They check that each engine
builds the submission from a clean checkout, that both plan exactly the dependents of a change
whichever command ran before (the matrix), that a bad params file loses nothing, and that adding a
candidate or variant runs only its job and the summary.
"""
from __future__ import annotations

import hashlib
import json
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

from workflow.engines import dvc_yaml
from workflow.engines.dag import rule_name

pytestmark = pytest.mark.slow


def run(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)


def sh(args: list[str], cwd: Path) -> str:
    result = run(args, cwd)
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"{' '.join(args)} failed:\n{output[-4000:]}"
    return output


# The tiny default, with shorter budgets so both engines' full DAGs fit in the test suite.
FAST = {"train.epochs": 2, "screen.base.train.epochs": 1, "ablation.base.train.epochs": 1}


def set_params(root: Path, values: dict) -> None:
    """Set dotted keys the way `dvc exp run -S` does (DVC's own code), keeping the file's layout."""
    from dvc.utils.hydra import apply_overrides

    apply_overrides(str(root / "params.yaml"), [f"{key}={value}" for key, value in values.items()])


def make_project(root: Path, fast: bool = True) -> Path:
    """A fresh clone-like copy of the repository: its tracked and unignored files, one commit.

    `fast` shortens the training budgets (FAST); without it the params are the shipped defaults."""
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
                            cwd=REPO, capture_output=True, text=True, check=True).stdout
    for name in filter(None, listed.split("\0")):
        if (REPO / name).is_file() and name != "dvc.lock":
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, root / name)
    if fast:
        set_params(root, FAST)
    sh(["git", "init", "-q"], root)
    commit(root, "init")
    return root


def commit(root: Path, message: str) -> None:
    for args in (["add", "-A"], ["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", message]):
        sh(["git", *args], root)


def set_param(root: Path, keys: tuple[str, ...], value) -> None:
    """Add or replace a nested value (a new candidate or variant): a structural edit by hand."""
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
    assert (root / "reports/ablation.html").read_text().count("data:image/png;base64") == 6


def dvc_ran(output: str) -> set[str]:
    return set(re.findall(r"Running stage '([\w@-]+)'", output))


def snakemake_ran(output: str) -> set[str]:
    return set(re.findall(r"^\s*(?:local)?rule (\w+):", output, flags=re.M)) - {"all"}


def dvc_status(root: Path) -> set[str]:
    """The stages `dvc status` says differ from dvc.lock."""
    return set(json.loads(sh(["dvc", "status", "--json"], root).splitlines()[-1]))


def snakemake_plan(root: Path, target: str = "all") -> set[str]:
    """The stages (DVC names) `snakemake -n` would run."""
    rules = {rule_name(name): name for name in [*stage_names(root), *dvc_yaml.load(root)]}  # foreach/matrix jobs too
    return {rules[rule] for rule in snakemake_ran(sh(["snakemake", "--cores", "1", target, "-n"], root))}


@pytest.fixture(scope="module")
def dvc_project(tmp_path_factory):
    root = make_project(tmp_path_factory.mktemp("dvc"))
    ran = dvc_ran(sh(["dvc", "repro"], root))
    commit(root, "the run to keep")  # as the README says: commit dvc.lock after a run worth keeping
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
    # Every job recorded its stage in dvc.lock: DVC finds nothing to do after a Snakemake run.
    assert dvc_status(root) == set()
    assert dvc_ran(sh(["dvc", "repro"], root)) == set()


def test_both_engines_produce_the_same_report(dvc_project, snakemake_project):
    # Same code, seeds and CPU: the same results; only the measured time and memory may differ.
    same = ["variant", "method", "augment", "accuracy", "macro-F1", "trainable", "trainable (formula)", "artefact MiB"]
    tables = [pd.read_csv(root / "reports/ablation.csv")[same] for root, _ in (dvc_project, snakemake_project)]
    pd.testing.assert_frame_equal(*tables)
    assert (dvc_project[0] / "predictions.csv").read_bytes() == (snakemake_project[0] / "predictions.csv").read_bytes()


# The changes of the matrix: what to edit, what `dvc status` names, and the dependent set both
# engines then plan (what `dvc repro` runs when each re-run changes its outputs).
SCREEN = {f"screen@{c}" for c in ("beit-tiny", "vit-tiny", "swin-tiny", "swinv2-tiny", "resnet-tiny")}
ABLATION = {f"ablation@{v}-0" for v in ("lora-r4", "lora-r8", "lora-r16", "lora-r32", "lora-r8-no-augment",
                                      "full", "head", "last-layers", "bitfit")}
CHANGES = {
    "no change": (None, set(), set()),
    # fold@0 trains the main recipe too (k-fold); with one fold it writes its note again, and cv
    # (planned by Snakemake) finds it unchanged.
    "one param": ("lora.r", {"check_params", "train", "fold@0"},
                  {"check_params", "train", "fold@0", "infer", "report", "submit", "cv"}),
    # infer restores the trained method through workflow/models/methods.py, so it depends on it too.
    "one code file": ("workflow/models/methods.py", SCREEN | ABLATION | {"train", "fold@0", "infer"},
                      SCREEN | ABLATION | {"train", "fold@0", "infer", "screen_summary", "report", "submit", "cv"}),
    # A new screening result never re-runs training: train trains model.name. The report shows it.
    "a screening param": ("screen.base.train.lr", SCREEN | {"check_params"},
                          SCREEN | {"check_params", "screen_summary", "report"}),
}


def apply_change(root: Path, what: str | None) -> None:
    if what is None:
        return
    if what.endswith(".py"):
        with open(root / what, "a") as f:
            f.write("# an edit\n")
        return
    value = yaml.safe_load((root / "params.yaml").read_text())
    for part in what.split("."):
        value = value[part]
    set_params(root, {what: value * 2})


def revert(root: Path) -> None:
    sh(["git", "checkout", "--", "params.yaml", "workflow/models/methods.py"], root)


def check_both_engines_plan_the_dependents(root: Path, state: str, params_in_git: bool = True) -> None:
    """The matrix from one state: each change, then both planners; the change undone, nothing."""
    saved = (root / "params.yaml").read_text()
    for change, (what, named, planned) in CHANGES.items():
        apply_change(root, what)
        assert dvc_status(root) == named, f"after {state}, {change}: dvc status"
        assert snakemake_plan(root) == planned, f"after {state}, {change}: snakemake -n"
        revert(root)
        (root / "params.yaml").write_text(saved)  # the state's own params (an experiment's)
    assert dvc_status(root) == set() and snakemake_plan(root) == set(), f"after {state}, reverted"


def file_hashes(root: Path) -> dict[str, str]:
    """sha256 of every file a run keeps: models/, reports/ and the submission."""
    files = [p for folder in ("models", "reports") for p in (root / folder).rglob("*")
             if p.is_file() and p.name != ".snakemake_timestamp"]  # Snakemake's marker, not data
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in [*files, root / "predictions.csv"]}


def test_engines_agree_in_every_order(dvc_project):
    root, _ = dvc_project
    baseline = (root / "predictions.csv").read_bytes()
    check_both_engines_plan_the_dependents(root, "dvc repro")

    # An experiment; -S changes only the line of its key (comments and layout survive).
    before = (root / "params.yaml").read_text().splitlines()
    ran = dvc_ran(sh(["dvc", "exp", "run", "-S", "lora.r=12", "-n", "r12"], root))
    assert ran == {"check_params", "train", "fold@0", "infer", "report", "submit"}
    after = (root / "params.yaml").read_text().splitlines()
    assert [(a, b) for a, b in zip(before, after) if a != b] == [("  r: 8", "  r: 12")] and len(before) == len(after)
    check_both_engines_plan_the_dependents(root, "dvc exp run -S")

    # Snakemake after DVC: nothing to do, then a param edited by hand runs exactly its dependents.
    assert snakemake_ran(sh(["snakemake", "--cores", "1", "all"], root)) == set()
    set_params(root, {"lora.r": 8})
    ran = snakemake_ran(sh(["snakemake", "--cores", "1", "all"], root))
    assert ran == {"check_params", "train", "fold_0", "infer", "report", "submit", "cv"}
    # DVC after Snakemake: the jobs recorded themselves in dvc.lock.
    assert dvc_status(root) == set() and dvc_ran(sh(["dvc", "repro"], root)) == set()
    assert (root / "predictions.csv").read_bytes() == baseline  # the same run, by either engine
    check_both_engines_plan_the_dependents(root, "snakemake")

    # Switching experiments rewrites files and their mtimes; only content counts.
    sh(["dvc", "exp", "apply", "r12"], root)
    assert yaml.safe_load((root / "params.yaml").read_text())["lora"]["r"] == 12
    assert dvc_status(root) == set() and snakemake_plan(root) == set()
    sh(["git", "checkout", "--", "params.yaml", "dvc.lock"], root)
    sh(["dvc", "checkout"], root)
    assert dvc_status(root) == set() and snakemake_plan(root) == set()
    assert (root / "predictions.csv").read_bytes() == baseline


BAD_PARAMS = {  # an edit of params.yaml -> the start of the one line the user must see
    "a misspelled key": ("\n  epochs: 2\n", "\n  epoch: 2\n", "train.epoch: unknown key; did you mean train.epochs?"),
    "a misspelled key of an up-to-date section": ("  preview_images:", "  previw_images:",
                                                  "augment.previw_images: unknown key; did you mean augment.preview_images?"),
    "a wrong type": ("\n  r: 8\n", "\n  r: eight\n", "lora.r: Input should be a valid integer"),
    "an out-of-range value": ("\n  r: 8\n", "\n  r: 0\n", "lora.r: Input should be greater than or equal to 1"),
    "a missing key": ("\n  lr: 0.002\n", "\n", "train.lr: missing"),
}


@pytest.mark.parametrize("case", BAD_PARAMS)
def test_a_bad_params_file_stops_both_engines_and_loses_nothing(dvc_project, case):
    root, _ = dvc_project
    old, new, message = BAD_PARAMS[case]
    good = (root / "params.yaml").read_text()
    assert old in good
    kept = file_hashes(root)
    (root / "params.yaml").write_text(good.replace(old, new, 1))
    try:
        for command in (["dvc", "repro"], ["dvc", "exp", "run"], ["snakemake", "--cores", "1", "all"]):
            result = run(command, root)
            assert result.returncode != 0, f"{command} accepted {case}"
            errors = {line for line in (result.stdout + result.stderr).splitlines() if line.startswith("error: ")}
            assert len(errors) == 1 and errors.pop().startswith(f"error: params.yaml: {message}"), result.stderr
            assert file_hashes(root) == kept, f"{command} changed outputs after {case}"
    finally:
        (root / "params.yaml").write_text(good)
    assert dvc_status(root) == set()  # the last good run is still the record


def test_exp_show_is_readable_and_screening_and_ablation_reach_dvc(dvc_project):
    root, _ = dvc_project
    # The README's command for a table of experiments.
    table = sh(["dvc", "exp", "show", "--csv", "--only-changed", "--sort-by", "val.accuracy", "--drop",
                r"Created|^(data|models|reports|workflow|configs)/|\.yaml$|^(screening|ablations)\."], root)
    header = table.splitlines()[0].split(",")
    assert {"val.accuracy", "val.macro_f1", "lora.r"} <= set(header)
    assert not [column for column in header if ":" in column or column.startswith(("reports/", "workflow/"))]
    metrics = sh(["dvc", "metrics", "show", "--json"], root)
    assert "screening" in metrics and "ablations" in metrics
    sh(["dvc", "plots", "show", "-o", "plots_html"], root)
    page = (root / "plots_html/index.html").read_text()
    assert "val/accuracy" in page and "Screening, validation accuracy per candidate" in page
    assert "Ablation, validation accuracy per variant" in page


def test_a_rerun_that_changes_no_output_reruns_nothing_below_it(dvc_project):
    # A new preview size re-runs augment, whose pipelines come out the same: DVC then skips what
    # reads them; Snakemake plans them (it decides before running) but each job finds its inputs
    # unchanged in dvc.lock and takes its outputs from DVC's cache instead of recomputing them.
    root, _ = dvc_project
    kept = file_hashes(root)
    set_params(root, {"augment.preview_images": 9})
    assert dvc_ran(sh(["dvc", "repro"], root)) == {"check_params", "augment"}
    set_params(root, {"augment.preview_images": 4})
    output = sh(["snakemake", "--cores", "1", "all"], root)
    skipped = set(re.findall(r"^([\w@-]+): its deps, params and command are as dvc.lock records them", output, re.M))
    assert len(snakemake_ran(output)) == 23 and snakemake_ran(output) - {rule_name(s) for s in skipped} == {
        "check_params", "augment"}
    assert dvc_status(root) == set()
    changed = {path for path, digest in file_hashes(root).items() if kept.get(path) != digest}
    assert changed == {"reports/augment_preview.png"}  # the model and every report are the same files
    revert(root)
    sh(["dvc", "repro"], root)  # back to the kept run (DVC takes augment from its run cache)
    assert dvc_status(root) == set() and file_hashes(root) == kept


def test_dvc_noop_then_one_job_per_candidate_and_variant(dvc_project):
    root, _ = dvc_project
    second = sh(["dvc", "repro"], root)
    assert dvc_ran(second) == set() and "Data and pipelines are up to date" in second

    set_param(root, ("screen", "candidates", "vit-tiny-2"), {"model": {"name": "configs/models/vit-tiny.json"}})
    set_param(root, ("ablation", "variants", "lora-r4"), {"lora": {"r": 4, "alpha": 8}})
    # A dry run lists the changed jobs; the real run adds the summaries that read them, nothing else.
    # The summaries read which jobs exist (a removed one's old row is left out), so they are listed too.
    changed = {"check_params", "screen@vit-tiny-2", "screen_summary", "ablation@lora-r4-0", "report"}
    assert dvc_ran(sh(["dvc", "repro", "--dry"], root)) == changed
    assert dvc_ran(sh(["dvc", "repro"], root)) == changed

    # A second seed: both engines plan its jobs and the report, nothing else. One of them run: the
    # report pools lora-r4's two seeds; the seed removed again, its row is left out.
    set_params(root, {"ablation.seeds": "[0,1]"})
    second = {name.replace("-0", "-1") for name in ABLATION}
    assert dvc_ran(sh(["dvc", "repro", "--dry"], root)) == {"check_params", "report", *second}
    assert snakemake_plan(root) == {"check_params", "report", *second}
    sh(["dvc", "repro", "--single-item", "ablation@lora-r4-1", "ablation@head-1"], root)
    # The other variants dropped: their rows stay on disk (no engine deletes a removed stage's outputs).
    set_param(root, ("ablation", "variants"), {"head": {"train": {"method": "head"}},
                                               "lora-r4": {"lora": {"r": 4, "alpha": 8}}})
    output = sh(["dvc", "repro", "--single-item", "check_params", "report"], root)
    assert "left out 7 result rows of ablation jobs no longer in params.yaml: bitfit-0.json" in output
    table = pd.read_csv(root / "reports/ablation.csv").set_index("variant")
    assert sorted(table.index) == ["head", "lora-r4"] and list(table["seeds"]) == [2, 2]
    rows = [json.loads((root / f"reports/ablation/lora-r4-{seed}.json").read_text()) for seed in (0, 1)]
    assert [row["seed"] for row in rows] == [0, 1]
    assert table.loc["lora-r4", "accuracy"] == pytest.approx((rows[0]["val_accuracy"] + rows[1]["val_accuracy"]) / 2)


def test_snakemake_noop_then_lora_change_then_one_job_per_candidate_and_variant(snakemake_project):
    root, _ = snakemake_project
    second = sh(["snakemake", "--cores", "1", "all"], root)
    assert snakemake_ran(second) == set() and "Nothing to be done" in second

    set_params(root, {"lora.r": 16})
    assert snakemake_ran(sh(["snakemake", "--cores", "1", "all"], root)) == {"check_params", "train", "fold_0", "infer",
                                                                             "report", "submit", "cv"}
    assert (root / "logs/snakemake/train.log").read_text().count("val accuracy") == 1

    set_param(root, ("screen", "candidates", "vit-tiny-2"), {"model": {"name": "configs/models/vit-tiny.json"}})
    set_param(root, ("ablation", "variants", "lora-r4"), {"lora": {"r": 4, "alpha": 8}})
    planned = snakemake_ran(sh(["snakemake", "--cores", "1", "all", "--dry-run"], root))
    assert planned == {"check_params", "screen_vit_tiny_2", "screen_summary", "ablation_lora_r4_0", "report"}
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


def test_both_engines_see_the_same_dag_and_screening_is_upstream_of_nothing_trained(tmp_path):
    project = make_project(tmp_path)
    dvc_edges = {(rule_name(a), rule_name(b)) for a, b in dot_edges(sh(["dvc", "dag", "--dot"], project))}
    snakemake_edges = {
        (a, b) for a, b in dot_edges(sh(["snakemake", "--cores", "1", "all", "--dag"], project)) if "all" not in (a, b)
    }
    assert dvc_edges == snakemake_edges and ("check_params", "download") in dvc_edges
    assert ("train", "infer") in dvc_edges and ("download", "split") in dvc_edges
    assert ("screen_beit_tiny", "screen_summary") in dvc_edges
    assert {b for a, b in dvc_edges if a == "screen_summary"} == {"report"}  # the one page shows the screening
    assert ("ablation_full_0", "report") in dvc_edges and len(dvc_edges) > 40

    # With a fixed model.name, building the submission runs no screening job, in either engine.
    upstream = {node for edge in dot_edges(sh(["dvc", "dag", "--dot", "infer"], project)) for node in edge}
    assert upstream == {"check_params", "download", "split", "augment", "cache", "train", "infer"}
    assert snakemake_plan(project, "infer") == upstream
