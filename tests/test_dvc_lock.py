"""dvc.lock as the record both engines plan from: `dvc status` read through DVC's CLI, on a real
two-stage DVC project in a temporary git repository (fast: the stages only copy text)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from workflow.core.errors import UserError
from workflow.engines import dvc_lock
from workflow.engines.dag import Stage

DVC_YAML = """stages:
  a:
    cmd: python -c "import yaml; open('a.txt','w').write(str(yaml.safe_load(open('params.yaml'))['a']['x']))"
    params: [a.x]
    outs: [a.txt]
  b:
    cmd: python -c "open('b.txt','w').write(open('a.txt').read() + open('code.py').read())"
    deps: [a.txt, code.py]
    outs: [b.txt]
"""


def sh(*args: str, cwd: Path) -> str:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


@pytest.fixture
def project(tmp_path, monkeypatch):
    (tmp_path / "dvc.yaml").write_text(DVC_YAML)
    (tmp_path / "params.yaml").write_text("a:\n  x: 1\n")
    (tmp_path / "code.py").write_text("# v1\n")
    sh("git", "init", "-q", cwd=tmp_path)
    sh("dvc", "init", "-q", cwd=tmp_path)
    sh("dvc", "repro", "-q", cwd=tmp_path)
    monkeypatch.chdir(tmp_path)
    return tmp_path


STAGES = [Stage("a", "", (), ("a.x",), ("a.txt",)), Stage("b", "", ("a.txt", "code.py"), (), ("b.txt",))]


def test_dvc_status_names_what_changed_and_the_plan_adds_its_dependents(project):
    assert dvc_lock.plan(STAGES) == ({}, [])
    (project / "params.yaml").write_text("a:\n  x: 2\n")
    changed, planned = dvc_lock.plan(STAGES)
    assert changed == {"a": "param a.x modified"} and planned == ["a", "b"]
    assert dvc_lock.summary(changed, planned) == "dvc.lock: changed: a (param a.x modified). To run: a, b"


def test_only_content_counts_not_timestamps(project):
    os.utime(project / "a.txt", (0, 0))  # what a checkout does to mtimes
    (project / "code.py").touch()
    assert dvc_lock.plan(STAGES) == ({}, [])
    (project / "code.py").write_text("# v2\n")
    assert dvc_lock.plan(STAGES) == ({"b": "deps code.py modified"}, ["b"])
    (project / "b.txt").unlink()
    assert dvc_lock.changed_stages()["b"] == "deps code.py modified; outs b.txt deleted"


def test_recording_a_stage_run_outside_dvc_updates_dvc_lock(project):
    (project / "params.yaml").write_text("a:\n  x: 3\n")
    (project / "a.txt").write_text("3")  # the stage's command, run by Snakemake
    sh(*dvc_lock.RECORD.split(), "a", cwd=project)
    assert dvc_lock.changed_stages() == {"b": "deps a.txt modified"}


def test_markers_tell_snakemake_what_to_run(project):
    dvc_lock.mark(STAGES, {"a": "param a.x modified"}, ["a", "b"])
    first = Path(dvc_lock.marker("a")).read_text()
    assert first.startswith("planned at ") and first.endswith("param a.x modified\n")
    assert "downstream of a changed stage" in Path(dvc_lock.marker("b")).read_text()
    dvc_lock.mark(STAGES, {"a": "param a.x modified"}, ["a", "b"])
    assert Path(dvc_lock.marker("a")).read_text() != first  # new content: Snakemake's checksums see it


def test_a_failing_dvc_status_is_one_line(project):
    (project / "dvc.yaml").write_text("stages: [oops\n")
    with pytest.raises(UserError, match=r"^dvc status failed \(.*\); fix what it names, then run again$"):
        dvc_lock.changed_stages()


def test_a_job_whose_inputs_came_out_unchanged_takes_its_outputs_from_dvcs_cache(project):
    before = (project / "b.txt").read_text()
    (project / "b.txt").unlink()  # Snakemake removes a job's outputs before it runs the job
    assert dvc_lock.restore("b") and (project / "b.txt").read_text() == before
    assert dvc_lock.restore("b")  # up to date: nothing to do
    (project / "code.py").write_text("# v2\n")
    (project / "b.txt").unlink()
    assert not dvc_lock.restore("b") and not (project / "b.txt").exists()  # a dep changed: run it


def test_restore_is_what_a_snakemake_job_runs_first(project):
    result = subprocess.run([sys.executable, "-m", "workflow.engines.dvc_lock", "restore", "b"], cwd=project,
                            capture_output=True, text=True, timeout=120,
                            env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])})
    assert result.returncode == 0 and result.stdout.startswith("b: its deps, params and command are as dvc.lock")
