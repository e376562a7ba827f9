"""The pipeline DAG as declared in dvc.yaml, for the Snakefile and the tests.

dvc.yaml is the one declaration. Snakemake gets the same stages: each out (metrics and plots
included) is a rule output, and each dep that another stage produces is an input, which orders the
jobs. What is out of date is not Snakemake's to decide: dvc.lock records it for both engines
(workflow/dvc_lock.py).
"""
from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import asdict, dataclass
from pathlib import Path

import yaml


# Upstream of every stage: validates the whole params file first. Its output is one constant line,
# so its re-running (after any edit of params.yaml) changes nothing downstream.
CHECK_STAGE = "check_params"


@dataclass(frozen=True)
class Stage:
    name: str
    cmd: str
    deps: tuple[str, ...]
    params: tuple[str, ...]
    outs: tuple[str, ...]  # outs, metrics and plots alike


def load_stages(root: Path | str = ".", cache: Path | str | None = None) -> list[Stage]:
    """The stages of dvc.yaml as DVC itself resolves them: templating, foreach and matrix expanded.

    With `cache` (a JSON file, relative to `root`), DVC's resolution is kept there and reused while
    its inputs are unchanged: the bytes of dvc.yaml, params.yaml and any `vars` files dvc.yaml
    names, this module and DVC's version. A Snakemake run that finds it skips importing DVC and
    resolving the DAG: 0.4 of the 1.7 CPU seconds of a no-op `snakemake --cores 1 all` (2 cores,
    benchmarks/b5_orchestration.py), and as much in every cluster job, which parses the Snakefile.
    """
    if cache is None:
        return _resolve_stages(root)
    try:
        key, path = _cache_key(Path(root)), Path(root) / cache
    except (OSError, yaml.YAMLError, AttributeError, TypeError):
        return _resolve_stages(root)  # DVC names what is wrong with dvc.yaml
    try:
        stored = json.loads(path.read_text())
        if stored["key"] == key:
            return [Stage(**{k: tuple(v) if isinstance(v, list) else v for k, v in stage.items()})
                    for stage in stored["stages"]]
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        pass  # missing, unreadable or another version's: resolve again
    stages = _resolve_stages(root)
    from workflow import io  # atomic: parallel cluster jobs may write it at once

    io.write_text(path, json.dumps({"key": key, "stages": [asdict(s) for s in stages]}, indent=1) + "\n")
    return stages


def _cache_key(root: Path) -> str:
    """A hash of what DVC's resolution of root/dvc.yaml reads."""
    from importlib.metadata import version

    dvc_yaml = (root / "dvc.yaml").read_bytes()
    declared = yaml.load(dvc_yaml, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)) or {}
    # Templating reads params.yaml and the files named in `vars`, at the top or in a stage.
    blocks = [declared, *(s for s in (declared.get("stages") or {}).values() if isinstance(s, dict))]
    blocks += [block["do"] for block in blocks if isinstance(block.get("do"), dict)]
    names = ["params.yaml", *(entry.split(":")[0] for block in blocks
                              for entry in block.get("vars") or [] if isinstance(entry, str))]
    digest = hashlib.sha256(f"dvc {version('dvc')}".encode())
    for data in (dvc_yaml, Path(__file__).read_bytes(), *(_read_or_missing(root / name) for name in names)):
        digest.update(hashlib.sha256(data).digest())
    return digest.hexdigest()


def _read_or_missing(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError:
        return b"\0missing"


def _resolve_stages(root: Path | str) -> list[Stage]:
    from dvc.dependency import ParamsDependency
    from dvc.repo import Repo

    with Repo(str(root)) as repo:
        resolved = list(repo.index.stages)
    return [
        Stage(
            name=stage.name,
            cmd=" ".join(str(stage.cmd).split()),
            deps=tuple(d.def_path for d in stage.deps if not isinstance(d, ParamsDependency)),
            params=tuple(key for d in stage.deps if isinstance(d, ParamsDependency) for key in d.params),
            outs=tuple(out.def_path for out in stage.outs),  # outs, metrics and plots alike
        )
        for stage in resolved
    ]


def rule_name(stage_name: str) -> str:
    """A Snakemake rule name for a DVC stage name ('screen@vit-tiny' -> 'screen_vit_tiny')."""
    return re.sub(r"\W", "_", stage_name)


def is_folder(path: str) -> bool:
    """The convention in dvc.yaml: a path without a file suffix is a folder."""
    return Path(path).suffix == ""


def upstream_outputs(stage: Stage, produced: set[str]) -> list[str]:
    """The deps of `stage` that other stages produce: those outputs themselves, and for a folder dep
    holding several of them (a summary over foreach jobs) each of those outputs."""
    inputs: list[str] = []
    produced_paths = [(out, os.path.normpath(out) + "/") for out in produced]
    for dep in stage.deps:
        folder = os.path.normpath(dep).rstrip("/") + "/"  # string prefixes: Path is slow in a loop
        if dep in produced:
            inputs.append(dep)
        else:
            inputs.extend(sorted(out for out, normal in produced_paths if normal.startswith(folder) and normal != folder))
    return inputs


def downstream(stages: list[Stage], names: set[str]) -> list[str]:
    """`names` and every stage that depends on them, directly or not, in the order of `stages`.

    Nothing propagates from CHECK_STAGE: its output is constant, so downstream stages see no change.
    """
    producer = {out: stage.name for stage in stages for out in stage.outs}
    produced = set(producer)
    consumers: dict[str, set[str]] = {}
    for stage in stages:
        for path in upstream_outputs(stage, produced):
            consumers.setdefault(producer[path], set()).add(stage.name)
    reached, queue = set(names), [n for n in names if n != CHECK_STAGE]
    while queue:
        for consumer in consumers.get(queue.pop(), ()):
            if consumer not in reached:
                reached.add(consumer)
                queue.append(consumer)
    return [stage.name for stage in stages if stage.name in reached]
