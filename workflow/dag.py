"""The pipeline DAG as declared in dvc.yaml, for the Snakefile and the tests.

dvc.yaml is the one declaration. Snakemake gets the same stages: each out (metrics and plots
included) is a rule output, each dep an input, and the values of the declared params keys are rule
params, so Snakemake's params trigger re-runs exactly what DVC would.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any


IGNORED_PARTS = ("__pycache__",)
# Small outputs that Snakemake should follow by content, as DVC does, not by timestamp, and the
# params setting under which a stage reads them at all: the screening winner is rewritten by every
# summary, but train reads it only for model.name: screening-winner.
CONTENT_TRIGGERED = {"reports/screening_winner.json": ("model.name", "screening-winner")}


@dataclass(frozen=True)
class Stage:
    name: str
    cmd: str
    deps: tuple[str, ...]
    params: tuple[str, ...]
    outs: tuple[str, ...]  # outs, metrics and plots alike


def load_stages(root: Path | str = ".") -> list[Stage]:
    """The stages of dvc.yaml as DVC itself resolves them: templating, foreach and matrix expanded."""
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
    """A stage's deps for Snakemake: other stages' outputs as they are; a folder holding several
    of them (a summary over foreach jobs) as those outputs; a source folder as its files."""
    inputs: list[str] = []
    for dep in stage.deps:
        inside = sorted(out for out in produced if Path(out).is_relative_to(dep) and out != dep)
        if dep in produced:
            inputs.append(dep)
        elif inside:
            inputs.extend(inside)
        elif is_folder(dep) and Path(dep).is_dir():
            inputs.extend(source_files(dep))
        else:
            inputs.append(dep)
    return inputs


def followed_content(paths: tuple[str, ...], values: dict[str, Any]) -> dict[str, str]:
    """The text of the content-triggered files a stage reads under its params `values`.

    Snakemake's params trigger then re-runs the stage when that text changes. A file that does not
    exist yet when the Snakefile is parsed is followed from the next run on.
    """
    followed = {}
    for path in paths:
        key, value = CONTENT_TRIGGERED.get(path, (None, None))
        if key is not None and values.get(key) == value and Path(path).is_file():
            followed[path] = Path(path).read_text()
    return followed
