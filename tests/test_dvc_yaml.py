"""dvc.yaml read through DVC's public pieces (workflow/engines/dvc_yaml.py) resolves as DVC itself resolves it.

DVC's own resolution (`Repo.index.stages`) is internal API: it is called here and only here, as the
guard that catches a DVC upgrade whose templating or schema differs from ours.
"""
from __future__ import annotations

import shutil
import textwrap
from pathlib import Path

import pytest
import yaml
from helpers import REPO

from workflow.core.errors import UserError
from workflow.engines import dag, dvc_yaml


def project(root: Path, dvc_file: str | None = None, params: dict | None = None) -> Path:
    """A DVC project without git: the repository's dvc.yaml and params.yaml, or the ones given."""
    if dvc_file is None:
        shutil.copy(REPO / "dvc.yaml", root / "dvc.yaml")
    else:
        (root / "dvc.yaml").write_text(textwrap.dedent(dvc_file))
    if params is None:
        shutil.copy(REPO / "params.yaml", root / "params.yaml")
    else:
        (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    (root / ".dvc").mkdir()
    (root / ".dvc" / "config").write_text("[core]\n    no_scm = true\n")
    return root


def kinds(definition: dict) -> list[tuple[str, str]]:
    """(path, outs | metrics | plots) of one resolved definition, in DVC's order."""
    return [(dag._path(entry), kind) for kind in ("outs", "metrics", "plots") for entry in definition.get(kind) or []]


def ours(root: Path) -> list[tuple[dag.Stage, list]]:
    resolved = dvc_yaml.load(root)
    return [(stage, kinds(resolved[stage.name])) for stage in dag.load_stages(root)]


def dvcs_own(root: Path) -> list[tuple[dag.Stage, list]]:
    from dvc.dependency import ParamsDependency
    from dvc.repo import Repo

    with Repo(str(root)) as repo:
        stages = list(repo.index.stages)
    return [(dag.Stage(
        name=stage.name,
        cmd=dag._command(stage.cmd),
        deps=tuple(d.def_path for d in stage.deps if not isinstance(d, ParamsDependency)),
        params=tuple(key for d in stage.deps if isinstance(d, ParamsDependency) for key in d.params),
        outs=tuple(out.def_path for out in stage.outs),
        desc=" ".join((stage.desc or "").split()),
    ), [(out.def_path, "metrics" if out.metric else "plots" if out.plot else "outs") for out in stage.outs])
        for stage in stages]


def test_the_repositorys_dvc_yaml_resolves_as_dvc_resolves_it(tmp_path):
    root = project(tmp_path)
    assert ours(root) == dvcs_own(root)


# Every kind of templating dvc_yaml.py resolves, and the shapes of deps, params and outs DVC allows.
EVERY_FORM = """\
stages:
  plain:
    desc: lr ${opt.lr}, flag ${opt.flag}, second ${names[1]}
    cmd: >-
      python run.py --lr ${opt.lr} --eps ${opt.eps} --flag ${opt.flag} --none ${opt.none}
      --name ${names[0]} --literal \\${not.this}
    deps: [run.py, "data/${names[1]}"]
    params: [opt.lr, {extra.yaml: [a, b]}, opt.eps]
    outs:
      - out/${names[0]}.txt
      - out/${opt.lr}:
          persist: true
    metrics:
      - m.json:
          cache: false
    plots:
      - curves:
          x: step
  steps:
    cmd: [echo one, echo two]
    outs: [steps.txt]
  listed:
    foreach: [a, 7, true]
    do:
      desc: item ${item}
      cmd: echo ${item}
      outs: ["listed/${item}.txt"]
  composite:
    foreach: ${runs}
    do:
      cmd: echo ${item.name} ${item.size}
      outs: ["composite/${item.name}"]
  mapped:
    foreach: ${models}
    do:
      cmd: echo ${key} ${item.path} ${item.targets[0]}
      params: ["models.${key}"]
      outs: ["mapped/${key}.json"]
  written:
    foreach:
      x: {n: 1}
      y: {n: 2}
    do:
      cmd: echo ${key}=${item.n}
      outs: ["written/${key}"]
  grid:
    matrix:
      model: ${models}
      seed: ${seeds}
      run: ${runs}
      flag: [true]
    desc: ${item.model} seed ${item.seed}
    cmd: echo ${key} ${item.model} ${item.seed} ${item.run.name} ${item.flag}
    params: ["models.${item.model}"]
    outs: ["grid/${key}"]
"""
EVERY_PARAMS = {
    "opt": {"lr": 0.001, "eps": "1e-8", "flag": False, "none": None},
    "names": ["first", "second"],
    "runs": [{"name": "small", "size": 1}, {"name": "big", "size": 2}],
    "models": {"vit": {"path": "v.json", "targets": ["query", "value"]}, "res": {"path": "r.json", "targets": ["conv"]}},
    "seeds": [0, 1],
}


def test_every_templating_form_resolves_as_dvc_resolves_it(tmp_path):
    root = project(tmp_path, EVERY_FORM, EVERY_PARAMS)
    (root / "params.yaml").write_text((root / "params.yaml").read_text().replace("'1e-8'", "1e-8"))  # YAML 1.2: a float
    resolved = ours(root)
    assert resolved == dvcs_own(root)
    names = [stage.name for stage, _ in resolved]
    assert names == ["plain", "steps", "listed@a", "listed@7", "listed@true", "composite@0", "composite@1",
                     "mapped@vit", "mapped@res", "written@x", "written@y",
                     *(f"grid@{m}-{s}-run{r}-true" for m in ("vit", "res") for s in (0, 1) for r in (0, 1))]
    grid = next(stage for stage, _ in resolved if stage.name == "grid@res-1-run0-true")
    assert grid.cmd == "echo res-1-run0-true res 1 small true" and grid.params == ("models.res",)
    plain = resolved[0][0]
    assert "--flag false --none None --name first --literal ${not.this}" in plain.cmd
    assert plain.desc == "lr 0.001, flag false, second second"


# (dvc.yaml, what the one line says). DVC rejects each of them too, except what it supports and the
# Snakefile does not ("not supported").
ERRORS = [
    ("stages:\n  train:\n    cmd: x\n    outz: [a]\n", "dvc.yaml: stage 'train': outz: extra keys not allowed"),
    ("stages:\n  train:\n    cmd: x\n    deps: a\n", "dvc.yaml: stage 'train': deps: expected a list"),
    ("stages:\n  train:\n    outs: [a]\n", "dvc.yaml: stage 'train': cmd: required key not provided"),
    ("stages:\n  screen:\n    foreach: [a]\n    do:\n      outs: [a]\n",
     "dvc.yaml: stage 'screen': do.cmd: required key not provided"),
    ("stages:\n  train:\n    cmd: x\n    desc: [a]\n", "dvc.yaml: stage 'train': desc: expected str"),
    ("stagez: {}\n", "dvc.yaml: stagez: extra keys not allowed"),
    ("stages:\n  sweep:\n    matrix:\n      r: ${train.epochs}\n    cmd: echo ${item.r}\n",
     "dvc.yaml: stage 'sweep': matrix.r: expected a list or a mapping, got int"),
    ("vars: [other.yaml]\nstages:\n  a:\n    cmd: x\n", "dvc.yaml: vars: not supported by the Snakefile"),
    ("stages:\n  a:\n    foreach: [x]\n    do:\n      vars: [{v: 1}]\n      cmd: echo ${v}\n",
     "dvc.yaml: stage 'a': do.vars: not supported by the Snakefile"),
    ("stages:\n  a:\n    cmd: x\n    wdir: sub\n", "dvc.yaml: stage 'a': wdir: not supported by the Snakefile"),
    ("stages:\n  a:\n    cmd: x\n    params: [{other.yaml: a}]\n",
     "dvc.yaml: stage 'a': params: {'other.yaml': 'a'}: expected a list of keys for each params file"),
    ("stages:\n  screen:\n    foreach: ${screen.candidatez}\n    do:\n      cmd: x\n",
     "dvc.yaml: stage 'screen': foreach: could not find 'screen.candidatez' in params.yaml"),
    ("stages:\n  a:\n    foreach: [x]\n    do:\n      cmd: echo ${key}\n",
     "dvc.yaml: stage 'a@x': could not find 'key'"),
    ("stages:\n  a:\n    foreach: ${train.epochs}\n    do:\n      cmd: x\n",
     "dvc.yaml: stage 'a': foreach: expected a list or a mapping, got int"),
    ("stages:\n  a:\n    cmd: python run.py ${screen}\n",
     "dvc.yaml: stage 'a': ${screen}: a dict inside a string is not supported by the Snakefile"),
    ("stages:\n  a:\n    cmd: x\n    deps: ['${lora.targets}']\n",
     "dvc.yaml: stage 'a': ${lora.targets}: a list can only be a foreach's data"),
    ("stages:\n  a:\n    cmd: echo ${lora..r}\n", "dvc.yaml: stage 'a': ${lora..r}: not a key path like a.b or a[0]"),
    ("stages:\n  a:\n    cmd: x\n   outs: [a]\n", "dvc.yaml: not valid YAML (line 4)"),
]


@pytest.mark.parametrize("text, message", ERRORS, ids=[m.split(": ", 1)[1][:40] for _, m in ERRORS])
def test_what_we_do_not_resolve_is_one_line_naming_the_stage(tmp_path, text, message):
    root = project(tmp_path, text)
    with pytest.raises(UserError) as caught:
        dag.load_stages(root, cache="stages.json")
    assert str(caught.value).startswith(message) and "\n" not in str(caught.value)
    assert not (root / "stages.json").exists()


REJECTED_BY_DVC = [(text, message) for text, message in ERRORS if "not supported" not in message]


@pytest.mark.parametrize("text, message", REJECTED_BY_DVC, ids=[m.split(": ", 1)[1][:40] for _, m in REJECTED_BY_DVC])
def test_what_we_reject_dvc_rejects_too(tmp_path, text, message):
    from dvc.exceptions import DvcException

    root = project(tmp_path, text)
    # ValueError: DVC's loader on params entries; TypeError: its matrix over a number (enumerate(int))
    with pytest.raises((DvcException, ValueError, TypeError)):
        dvcs_own(root)
