"""dvc.yaml is the one DAG: each stage declares exactly the params it reads and the command it runs."""
from __future__ import annotations

import importlib
import re
import subprocess
import sys

import pytest
import yaml
from helpers import REPO
from imports import import_closure

from workflow.config import section_keys
from workflow.engines.dag import CHECK_STAGE, Stage, downstream, is_folder, load_stages, rule_name, upstream_outputs

STAGES = load_stages(REPO)


def module_of(stage) -> str:
    return stage.name.split("@")[0]  # foreach jobs are 'screen@vit-tiny'


def test_pipeline_stages():
    names = [s.name for s in STAGES]
    assert names[:5] == [CHECK_STAGE, "download", "split", "kfold", "augment"]
    assert {"train", "infer", "screen_summary", "report"} <= set(names)
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    # One job per screening candidate and per ablation variant.
    assert {n for n in names if n.startswith("screen@")} == {f"screen@{c}" for c in params["screen"]["candidates"]}
    assert {n for n in names if n.startswith("ablation@")} == {f"ablation@{v}-{s}" for v in params["ablation"]["variants"]
                                                               for s in params["ablation"]["seeds"]}


@pytest.mark.parametrize("stage", STAGES, ids=lambda s: s.name)
def test_stage_declares_exactly_the_params_keys_it_reads(stage):
    module = importlib.import_module(f"workflow.stages.{module_of(stage)}")
    declared = {key for section in module.SECTIONS for key in section_keys(section)} | set(getattr(module, "KEYS", ()))
    if "@" in stage.name and hasattr(module, "FOREACH"):  # a job reading its own entry of the mapping it is expanded over
        section, item = module.SECTIONS[0], stage.name.split("@")[1]
        matrix_only = {f"{section}.{key}" for key in getattr(module, "MATRIX_ONLY", ())}
        if matrix_only:  # 'lora-r4-0': the variant, then the seed
            item = item.rsplit("-", 1)[0]
        declared = declared - {f"{section}.{module.FOREACH}"} - matrix_only | {f"{section}.{module.FOREACH}.{item}"}
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


def test_a_summary_waits_for_every_foreach_job():
    summary = next(s for s in STAGES if s.name == "screen_summary")
    inputs = upstream_outputs(summary, {out for s in STAGES for out in s.outs})
    jobs = [s for s in STAGES if s.name.startswith("screen@")]
    assert set(inputs) == {out for job in jobs for out in job.outs}


def test_every_stage_is_downstream_of_the_params_check():
    # So `dvc repro` (whatever the target) validates params.yaml before any stage deletes its outputs.
    produced = {out: s.name for s in STAGES for out in s.outs}
    upstream = {s.name: {produced[p] for p in upstream_outputs(s, set(produced))} for s in STAGES}

    def ancestors(name: str) -> set[str]:
        found = set(upstream[name])
        for parent in upstream[name]:
            found |= ancestors(parent)
        return found

    assert all(CHECK_STAGE in ancestors(s.name) for s in STAGES if s.name != CHECK_STAGE)
    check = next(s for s in STAGES if s.name == CHECK_STAGE)
    assert "params.yaml" in check.deps and check.params == ()  # the whole file, not some keys


def test_training_does_not_depend_on_screening():
    # With a fixed model.name nothing of the screening is upstream of train or infer.
    produced = {out: s.name for s in STAGES for out in s.outs}
    for name in ("train", "infer"):
        stage = next(s for s in STAGES if s.name == name)
        assert not {produced[p] for p in upstream_outputs(stage, set(produced))} & {"screen_summary"}
        assert not any(dep.startswith("reports/screening") for dep in stage.deps)


def test_downstream_is_the_dependent_set_and_stops_at_the_params_check():
    stages = [Stage("a", "", (), (), ("a.txt",)), Stage("b", "", ("a.txt",), (), ("b.txt",)),
              Stage("c", "", ("b.txt",), (), ("c.txt",)), Stage("d", "", ("a.txt",), (), ("d.txt",)),
              Stage(CHECK_STAGE, "", (), (), ("ok.txt",)), Stage("e", "", ("ok.txt",), (), ("e.txt",))]
    assert downstream(stages, {"b"}) == ["b", "c"]
    assert downstream(stages, {"a"}) == ["a", "b", "c", "d"]
    assert downstream(stages, {CHECK_STAGE}) == [CHECK_STAGE]  # a constant output changes nothing
    assert downstream(stages, set()) == []



def code_files(deps: tuple[str, ...]) -> set[str]:
    """The Python files a stage's deps cover: files as they are, folders as the .py files inside."""
    files = set()
    for dep in deps:
        path = REPO / dep
        if dep.endswith(".py"):
            files.add(dep)
        elif path.is_dir() and dep.startswith("workflow/"):
            files |= {str(p.relative_to(REPO)) for p in path.rglob("*.py") if "__pycache__" not in p.parts}
    return files


@pytest.mark.parametrize("stage", STAGES, ids=lambda s: s.name)
def test_stage_deps_are_exactly_the_code_its_module_imports(stage):
    # A change to a module re-runs exactly the stages that import it (also lazily, in a function).
    imported = import_closure(f"workflow.stages.{module_of(stage)}", REPO)
    declared = code_files(stage.deps)
    assert imported - declared == set(), f"{stage.name}: add to its deps in dvc.yaml"
    assert declared - imported == set(), f"{stage.name}: deps in dvc.yaml that it does not import"


def test_import_closure_follows_lazy_and_package_imports(tmp_path):
    (tmp_path / "workflow/sub").mkdir(parents=True)
    (tmp_path / "workflow/__init__.py").write_text("")
    (tmp_path / "workflow/sub/__init__.py").write_text("from . import helper\n")
    (tmp_path / "workflow/sub/helper.py").write_text("")
    (tmp_path / "workflow/lazy.py").write_text("")
    (tmp_path / "workflow/entry.py").write_text("import os\ndef f():\n    from workflow.sub import thing\n"
                                                "    import workflow.lazy\n")
    assert import_closure("workflow.entry", tmp_path) == {
        "workflow/__init__.py", "workflow/entry.py", "workflow/lazy.py", "workflow/sub/__init__.py",
        "workflow/sub/helper.py"}


@pytest.mark.parametrize("stage", STAGES, ids=lambda s: s.name)
def test_stage_has_a_one_line_desc(stage):
    # `snakemake --list` and `dvc stage list` print it; the latter cuts it at about 80 characters.
    assert 0 < len(stage.desc) <= 80 and "\n" not in stage.desc


def test_snakemake_list_shows_every_rule_with_its_desc(tmp_path):
    from test_engines import make_project, run

    root = make_project(tmp_path, fast=False)
    result = run([sys.executable, "-m", "snakemake", "--list-rules"], root)
    assert result.returncode == 0, result.stderr[-2000:]
    listed = dict(re.fullmatch(r"(\w+) \((.*)\)", line).groups() for line in result.stdout.splitlines()
                  if re.fullmatch(r"\w+ \(.*\)", line))
    assert listed == {"all": "every output of the stages of dvc.yaml",
                      **{rule_name(stage.name): stage.desc for stage in load_stages(root)}}
    assert listed["screen_vit_tiny"].startswith("screen candidate vit-tiny ")  # ${key} resolved per job


def test_rule_names_are_identifiers():
    assert rule_name("ablation@lora-r8-no-augment") == "ablation_lora_r8_no_augment"


def test_folder_convention():
    assert is_folder("data/raw") and not is_folder("predictions.csv")


@pytest.mark.parametrize("stage", STAGES, ids=lambda s: s.name)
def test_a_stage_run_by_hand_writes_where_dvc_yaml_says(stage, monkeypatch, capsys):
    # Each stage's path options default to the paths its dvc.yaml command passes, so
    # `python -m workflow.stages.X` from the repository root does what `dvc repro X` does.
    monkeypatch.setenv("COLUMNS", "400")  # one help line per option
    module = importlib.import_module(f"workflow.stages.{module_of(stage)}")
    with pytest.raises(SystemExit):
        module.main(["--help"])
    defaults = dict(re.findall(r"^\s+--([\w-]+) \S+\s+default: (\S+)$", capsys.readouterr().out, re.M))
    passed = dict(re.findall(r"--([\w-]+) (?!-)(\S+)", stage.cmd))
    assert defaults, f"{stage.name}: its --help shows no defaults"
    shared = set(defaults) & set(passed)
    assert {name: passed[name] for name in shared} == {name: defaults[name] for name in shared}
    assert set(passed) - set(defaults) <= {"candidate", "variant", "seed", "fold", "out", "live", "model-out"}, stage.cmd


def test_every_output_stays_out_of_git():
    # Outputs are DVC's to track: one committed by mistake stops `dvc repro` ("already tracked by SCM").
    outs = sorted({out for stage in STAGES for out in stage.outs})
    ignored = subprocess.run(["git", "check-ignore", "--no-index", *outs], cwd=REPO, capture_output=True, text=True)
    assert set(ignored.stdout.split()) == set(outs)
