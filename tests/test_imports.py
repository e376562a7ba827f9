"""What keeps starting a stage and a no-op Snakemake run cheap (benchmarks/b5_orchestration.py).

Stages that build no model do not import torch (3 s and 300 MiB per start on 2 cores), neither on
import nor for --help. The Snakefile reuses its resolution of dvc.yaml (workflow/engines/dvc_yaml.py,
checked with DVC's schema) from a cache file while what it reads is unchanged, so a no-op run does
not import DVC.
"""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from helpers import REPO

from workflow.engines import dag

# The stages that build or run a model: the only ones that may import torch.
NEEDS_TORCH = {"train", "infer", "screen", "ablation"}
HEAVY = ("torch", "transformers", "peft")


def stage_modules() -> list[str]:
    """The modules dvc.yaml runs (`python -m workflow.stages.X`)."""
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    commands = [stage.get("cmd") or stage["do"]["cmd"] for stage in stages.values()]
    return sorted({re.search(r"-m workflow\.stages\.(\w+)", cmd).group(1) for cmd in commands})


LIGHT = [module for module in stage_modules() if module not in NEEDS_TORCH]


def heavy_modules_after(code: str) -> tuple[list[str], str]:
    """The heavy packages a fresh interpreter has loaded after `code`, and what it printed."""
    probe = f"{code}\nimport json, sys\nprint('LOADED', json.dumps([m for m in {HEAVY!r} if m in sys.modules]))"
    result = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(re.search(r"^LOADED (.*)$", result.stdout, re.M).group(1)), result.stdout


def test_the_light_stages_are_found():
    assert {"download", "split", "augment", "screen_summary", "report"} <= set(LIGHT)


@pytest.mark.parametrize("module", LIGHT)
def test_light_stage_imports_no_torch(module):
    loaded, _ = heavy_modules_after(f"import workflow.stages.{module}")
    assert loaded == []


@pytest.mark.parametrize("module", LIGHT)
def test_light_stage_help_works_without_torch(module):
    loaded, printed = heavy_modules_after(
        "import runpy, sys\n"
        f"sys.argv = ['{module}', '--help']\n"
        "try:\n"
        f"    runpy.run_module('workflow.stages.{module}', run_name='__main__')\n"
        "except SystemExit as done:\n"
        "    assert done.code in (0, None), done.code\n"
    )
    assert "--params" in printed and loaded == []


def dvc_project(root: Path) -> Path:
    for name in ("dvc.yaml", "params.yaml"):
        shutil.copy(REPO / name, root / name)
    (root / ".dvc").mkdir()
    (root / ".dvc" / "config").write_text("[core]\n    no_scm = true\n")
    return root


def test_cached_stages_are_a_fresh_resolution_and_follow_params(tmp_path, monkeypatch):
    root = dvc_project(tmp_path)
    resolved = dag.load_stages(root)
    assert dag.load_stages(root, cache="cache/stages.json") == resolved
    assert (root / "cache/stages.json").is_file()

    def not_again(_root):
        raise AssertionError("resolved again")

    with monkeypatch.context() as patch:
        patch.setattr(dag, "_resolve_stages", not_again)
        assert dag.load_stages(root, cache="cache/stages.json") == resolved

    # A new screening candidate changes params.yaml, so it is resolved again: one more job.
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["screen"]["candidates"]["vit-tiny-2"] = {"model": "configs/models/vit-tiny.json"}
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    names = [stage.name for stage in dag.load_stages(root, cache="cache/stages.json")]
    assert names == [stage.name for stage in dag.load_stages(root)]
    assert "screen@vit-tiny-2" in names and len(names) == len(resolved) + 1

    (root / "cache/stages.json").write_text("{not json")
    assert [s.name for s in dag.load_stages(root, cache="cache/stages.json")] == names


def test_a_cached_resolution_does_not_import_dvc(tmp_path):
    root = dvc_project(tmp_path)
    code = f"from workflow.engines.dag import load_stages\nload_stages({str(root)!r}, cache='stages.json')\n"
    code += "import sys\nprint('DVC' if 'dvc' in sys.modules else 'NO-DVC')"
    ran = [subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
           for _ in range(2)]  # the first resolves, with DVC's schema; the second reads the cache
    assert [r.stdout.strip() for r in ran] == ["DVC", "NO-DVC"], ran[-1].stderr[-2000:]
