"""A shared DVC cache: push to a local-path remote, clone fresh, pull, and nothing re-runs (slow).

The whole pipeline runs once in a temporary git repository (FAST budgets, one screening candidate
and one ablation variant, so every stage still runs). Its cache goes to a remote with `dvc push`;
a fresh `git clone` gets the outputs with `dvc pull`, and then `dvc repro` has nothing to do and
the submission is byte-identical. README "Sharing the cache" describes S3 and SSH remotes.
"""
from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml
from test_engines import dvc_ran, make_project, set_param, sh, stage_names

pytestmark = pytest.mark.slow

GIT_USER = ["-c", "user.name=t", "-c", "user.email=t@t"]


def first_only(root: Path, keys: tuple[str, ...]) -> None:
    """Keep only the first entry of a foreach mapping in params.yaml."""
    node = yaml.safe_load((root / "params.yaml").read_text())
    for key in keys:
        node = node[key]
    name = next(iter(node))
    set_param(root, keys, {name: node[name]})


@pytest.fixture(scope="module")
def pushed(tmp_path_factory):
    """The pipeline run and pushed: (origin repository, remote folder, repro output)."""
    base = tmp_path_factory.mktemp("remote")
    origin, remote = make_project(base / "origin"), base / "storage"
    first_only(origin, ("screen", "candidates"))
    first_only(origin, ("ablation", "variants"))
    ran = dvc_ran(sh(["dvc", "repro"], origin))
    assert {name.split("@")[0] for name in ran} == stage_names(origin)

    sh(["dvc", "remote", "add", "-d", "storage", str(remote)], origin)
    pushed = sh(["dvc", "push"], origin)
    assert "pushed" in pushed and any(remote.rglob("*")), pushed
    assert "in sync" in sh(["dvc", "status", "--cloud"], origin)
    sh(["git", "add", "-A"], origin)  # dvc.lock, params.yaml and .dvc/config (the remote)
    sh(["git", *GIT_USER, "commit", "-qm", "run, lock and remote"], origin)
    assert sh(["git", "status", "--porcelain"], origin) == ""  # every output is git-ignored
    return origin, remote


def test_fresh_clone_pulls_everything_and_runs_nothing(pushed, tmp_path):
    origin, remote = pushed
    clone = tmp_path / "clone"
    sh(["git", "clone", "-q", str(origin), str(clone)], tmp_path)
    assert not (clone / "predictions.csv").exists()
    assert "Data and pipelines are up to date" not in sh(["dvc", "status"], clone)

    sh(["dvc", "pull"], clone)
    status = sh(["dvc", "status"], clone)
    assert "Data and pipelines are up to date" in status, status
    repro = sh(["dvc", "repro"], clone)
    assert dvc_ran(repro) == set() and "Data and pipelines are up to date" in repro, repro
    assert (clone / "predictions.csv").read_bytes() == (origin / "predictions.csv").read_bytes()
    for out in ("models/adapter", "reports/train/metrics.json", "reports/ablation.md"):
        assert (clone / out).exists(), out
    # The clone's cache came from the remote only: it shares nothing with the origin's cache.
    assert (clone / ".dvc/cache").resolve() != (origin / ".dvc/cache").resolve()
    assert sh(["git", "status", "--porcelain"], clone) == ""


def test_pull_of_a_missing_object_fails_loudly(pushed, tmp_path):
    """A remote that lost an object: `dvc pull` says so and exits non-zero, no silent partial pull."""
    origin, remote = pushed
    broken = tmp_path / "broken"
    subprocess.run(["cp", "-a", str(remote), str(broken)], check=True)
    victim = next(p for p in sorted(broken.rglob("*")) if p.is_file())
    victim.unlink()
    clone = tmp_path / "clone"
    sh(["git", "clone", "-q", str(origin), str(clone)], tmp_path)
    sh(["dvc", "remote", "modify", "--local", "storage", "url", str(broken)], clone)
    result = subprocess.run(["dvc", "pull"], cwd=clone, capture_output=True, text=True)
    output = result.stdout + result.stderr
    assert result.returncode != 0 and "failed to pull data from the cloud" in output, output
