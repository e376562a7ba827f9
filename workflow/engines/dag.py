"""The pipeline DAG as declared in dvc.yaml, for the Snakefile and the tests.

dvc.yaml is the one declaration. Snakemake gets the same stages: each out (metrics and plots
included) is a rule output, and each dep that another stage produces is an input, which orders the
jobs. What is out of date is not Snakemake's to decide: dvc.lock records it for both engines
(workflow/engines/dvc_lock.py).
"""
from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import asdict, dataclass
from pathlib import Path

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
    desc: str = ""  # one line from dvc.yaml: the rule's docstring in `snakemake --list`


def load_stages(root: Path | str = ".", cache: Path | str | None = None) -> list[Stage]:
    """The stages of dvc.yaml, validated with DVC's schema and their templating resolved
    (workflow/engines/dvc_yaml.py).

    With `cache` (a JSON file, relative to `root`), the resolution is kept there and reused while
    its inputs are unchanged: the bytes of dvc.yaml, params.yaml, this module and dvc_yaml.py, and
    DVC's version (its schema). A Snakemake run that finds it skips importing DVC and resolving the
    DAG, and so does every cluster job, which parses the Snakefile (benchmarks/b5_orchestration.py).
    """
    if cache is None:
        return _resolve_stages(root)
    try:
        key, path = _cache_key(Path(root)), Path(root) / cache
    except OSError:
        return _resolve_stages(root)  # names what is missing, in one line
    try:
        stored = json.loads(path.read_text())
        if stored["key"] == key:
            return [Stage(**{k: tuple(v) if isinstance(v, list) else v for k, v in stage.items()})
                    for stage in stored["stages"]]
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        pass  # missing, unreadable or another version's: resolve again
    stages = _resolve_stages(root)
    from workflow.core import io  # atomic: parallel cluster jobs may write it at once

    io.write_text(path, json.dumps({"key": key, "stages": [asdict(s) for s in stages]}, indent=1) + "\n")
    return stages


def _cache_key(root: Path) -> str:
    """A hash of what the resolution of root/dvc.yaml reads (`vars` files are refused there)."""
    from importlib.metadata import version

    here = Path(__file__).parent
    digest = hashlib.sha256(f"dvc {version('dvc')}".encode())
    for data in ((root / "dvc.yaml").read_bytes(), _read_or_missing(root / "params.yaml"),
                 (here / "dag.py").read_bytes(), (here / "dvc_yaml.py").read_bytes()):
        digest.update(hashlib.sha256(data).digest())
    return digest.hexdigest()


def _read_or_missing(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError:
        return b"\0missing"


def _resolve_stages(root: Path | str) -> list[Stage]:
    from workflow.engines import dvc_yaml

    return [
        Stage(
            name=name,
            cmd=_command(d["cmd"]),
            deps=tuple(d.get("deps") or ()),
            params=_params_keys(d.get("params") or []),
            outs=tuple(_path(entry) for kind in ("outs", "metrics", "plots") for entry in d.get(kind) or []),
            desc=" ".join(str(d.get("desc") or "").split()),
        )
        for name, d in dvc_yaml.load(root).items()
    ]


def _command(cmd: str | list) -> str:
    """One shell line: DVC runs a list of commands one after the other, stopping at a failure."""
    commands = cmd if isinstance(cmd, list) else [cmd]
    return " && ".join(" ".join(str(c).split()) for c in commands)


def _path(entry: str | dict) -> str:
    """An out as written: `path`, or `path: {persist: true}` (metrics and plots alike)."""
    return entry if isinstance(entry, str) else next(iter(entry))


def _params_keys(entries: list) -> tuple[str, ...]:
    """The keys of `params:` grouped by file as DVC groups them (a bare key is params.yaml's); a file
    listed with no keys is tracked whole and contributes none."""
    whole = {name for e in entries if isinstance(e, dict) for name, keys in e.items() if not keys}
    files: dict[str, list[str]] = {}
    for entry in entries:
        for name, keys in ({"params.yaml": [entry]} if isinstance(entry, str) else entry).items():
            files.setdefault(name, []).extend([] if name in whole else list(keys))
    return tuple(key for keys in files.values() for key in keys)


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
