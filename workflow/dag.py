"""The pipeline DAG as declared in dvc.yaml, for the Snakefile and the tests.

dvc.yaml is the one declaration. Snakemake gets the same stages: each out (metrics and plots
included) is a rule output, each dep an input, and the values of the declared params keys are rule
params, so Snakemake's params trigger re-runs exactly what DVC would.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

IGNORED_PARTS = ("__pycache__",)


@dataclass(frozen=True)
class Stage:
    name: str
    cmd: str
    deps: tuple[str, ...]
    params: tuple[str, ...]
    outs: tuple[str, ...]  # outs, metrics and plots alike


def _paths(entries: list[Any]) -> tuple[str, ...]:
    """dvc.yaml lists a path either bare or as a one-key mapping to its options."""
    return tuple(next(iter(e)) if isinstance(e, dict) else str(e) for e in entries or [])


def load_stages(path: Path | str = "dvc.yaml") -> list[Stage]:
    spec = yaml.safe_load(Path(path).read_text())
    return [
        Stage(
            name=name,
            cmd=" ".join(str(body["cmd"]).split()),
            deps=_paths(body.get("deps")),
            params=_paths(body.get("params")),
            outs=_paths(body.get("outs")) + _paths(body.get("metrics")) + _paths(body.get("plots")),
        )
        for name, body in spec["stages"].items()
    ]


def is_folder(path: str) -> bool:
    """The convention in dvc.yaml: a path without a file suffix is a folder."""
    return Path(path).suffix == ""


def param_values(keys: tuple[str, ...], params: dict) -> dict[str, Any]:
    """{'lora.r': 8, ...} for dotted keys of a loaded params.yaml."""
    values = {}
    for key in keys:
        node = params
        for part in key.split("."):
            node = node[part]
        values[key] = node
    return values


def source_files(folder: str) -> list[str]:
    """The files of a source folder, so Snakemake sees an edit to any of them (DVC hashes them)."""
    return sorted(
        str(p) for p in Path(folder).rglob("*")
        if p.is_file() and not any(part in IGNORED_PARTS or part.startswith(".") for part in p.parts)
    )


def snakemake_inputs(stage: Stage, produced: set[str]) -> list[str]:
    """A stage's deps for Snakemake: outputs of other stages as they are, source folders expanded."""
    inputs: list[str] = []
    for dep in stage.deps:
        if dep not in produced and is_folder(dep) and Path(dep).is_dir():
            inputs.extend(source_files(dep))
        else:
            inputs.append(dep)
    return inputs
