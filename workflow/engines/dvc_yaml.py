"""dvc.yaml read through DVC's public, versioned pieces, for the Snakefile's rules.

DVC's own resolver (`dvc.parsing`, `Repo.index`) is internal API: an upgrade may change it without
notice, and the Snakefile would plan another DAG than `dvc repro` runs. So this module parses the
file as DVC does (ruamel.yaml, YAML 1.2), validates it with DVC's own schema (`dvc.schema`), and
resolves the part of DVC's templating this project uses:

- `${a.b}` or `${a[0]}`: a value of params.yaml. A string that is only `${...}` takes the value's type.
- `foreach:` over a mapping or a list (written out or `${...}`), and in `do:` `${key}` (mappings
  only), `${item}` and `${item.x}`.
- `matrix:` of named lists or mappings (a mapping stands for its keys), one job per combination,
  named and scoped as DVC does: `${key}` ('lora-r4-0') and `${item.<name>}`.

Everything else DVC's templating can do (`vars`, `wdir`, a mapping or list inside a
string) is refused with one line, never resolved differently. tests/test_dvc_yaml.py compares the
result with DVC's own resolution of the repository's dvc.yaml, so an upgrade that changes the
rules fails there.
"""
from __future__ import annotations

import itertools
import re
from pathlib import Path
from typing import Any

from workflow.core.errors import UserError

FILE, PARAMS = "dvc.yaml", "params.yaml"
# DVC has them; this project does not use them. What to write instead:
UNSUPPORTED = {"vars": f"put the values in {PARAMS}", "wdir": "write the paths from the repository root"}
# DVC's pattern: `${...}`, unless escaped as `\${...}`.
TEMPLATE = re.compile(r"(?<!\\)\$\{(?P<inner>.*?)\}")
PRIMITIVE = (str, int, float, bool, type(None))


def load(root: Path | str = ".") -> dict[str, dict[str, Any]]:
    """Stage name ('train', 'screen@vit-tiny') -> its definition with templating resolved, in file order."""
    root = Path(root)
    declared = read_yaml(root / FILE)
    validate(declared)
    params = read_yaml(root / PARAMS) if (root / PARAMS).exists() else {}
    stages: dict[str, dict[str, Any]] = {}
    for name, definition in (declared.get("stages") or {}).items():
        if "foreach" in definition:
            jobs, template = foreach(name, definition["foreach"], params), definition["do"]
        elif "matrix" in definition:
            jobs = matrix(name, definition["matrix"], params)
            template = {k: v for k, v in definition.items() if k != "matrix"}
        else:
            stages[name] = resolve(definition, params, f"stage '{name}'")
            continue
        for key, scope in jobs:
            stages[f"{name}@{key}"] = resolve(template, {**params, **scope}, f"stage '{name}@{key}'")
    return stages


def read_yaml(path: Path) -> dict:
    from ruamel.yaml import YAML, YAMLError  # DVC's parser: YAML 1.2, so `1e-3` is a number as DVC sees it

    try:
        data = YAML(typ="safe").load(path.read_text())
    except OSError as err:
        raise UserError(f"{path.name}: cannot read it ({err.strerror})") from None
    except YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark else ""
        raise UserError(f"{path.name}: not valid YAML{where}: {getattr(err, 'problem', None) or err}") from None
    if data is not None and not isinstance(data, dict):
        raise UserError(f"{path.name}: expected a mapping at the top, got {type(data).__name__}")
    return data or {}


def validate(declared: dict) -> None:
    """DVC's schema for dvc.yaml, then what this module does not resolve: one line naming the stage."""
    import voluptuous
    from dvc.schema import COMPILED_MULTI_STAGE_SCHEMA

    try:
        COMPILED_MULTI_STAGE_SCHEMA(declared)
    except voluptuous.MultipleInvalid as err:
        raise UserError(f"{FILE}: {_located(err.errors[0])}") from None
    except voluptuous.Invalid as err:
        raise UserError(f"{FILE}: {_located(err)}") from None
    blocks = [("", declared)] + [(f"stage '{name}': {prefix}", block) for name, definition in
                                 (declared.get("stages") or {}).items()
                                 for prefix, block in (("", definition), ("do.", definition.get("do") or {}))]
    for where, block in blocks:
        for keyword, instead in UNSUPPORTED.items():
            if keyword in block:
                raise UserError(f"{FILE}: {where}{keyword}: not supported by the Snakefile "
                                f"(workflow/engines/dvc_yaml.py); {instead}")
        for entry in block.get("params") or []:  # DVC's loader, not its schema, checks these
            if isinstance(entry, dict) and not all(not keys or isinstance(keys, list) for keys in entry.values()):
                raise UserError(f"{FILE}: {where}params: {entry}: expected a list of keys for each params file")


def _located(error) -> str:
    """'stage 'train': outs[0]: expected str' from voluptuous's path ['stages', 'train', 'outs', 0]."""
    path = list(error.path)
    where = ""
    if len(path) >= 2 and path[0] == "stages":
        where, path = f"stage '{path[1]}': ", path[2:]
    dotted = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path).lstrip(".")
    return f"{where}{dotted + ': ' if dotted else ''}{error.msg}"


def foreach(name: str, spec: Any, params: dict) -> list[tuple[str, dict]]:
    """(generated key, what `do:` sees) per job, as DVC names them: a mapping's keys; a list's values,
    or its indexes when an entry is a mapping or a list. `${key}` exists for mappings only."""
    where = f"stage '{name}': foreach"
    data = resolve(spec, params, where, any_type=True)
    if isinstance(data, dict):
        return [(to_str(key), {"key": to_str(key), "item": item}) for key, item in data.items()]
    if not isinstance(data, list):
        raise UserError(f"{FILE}: {where}: expected a list or a mapping, got {type(data).__name__}")
    composite = any(isinstance(item, (dict, list)) for item in data)
    return [(str(index) if composite else to_str(item), {"item": item}) for index, item in enumerate(data)]


def matrix(name: str, spec: Any, params: dict) -> list[tuple[str, dict]]:
    """(generated key, what the template sees) per combination, in DVC's order and with its names:
    the values joined by '-', a composite value as its dimension's name and index ('seed0')."""
    where = f"stage '{name}': matrix"
    dimensions = resolve(spec, params, where, any_type=True)
    if not isinstance(dimensions, dict) or not dimensions:
        raise UserError(f"{FILE}: {where}: expected a mapping of names to lists")
    for dimension, values in dimensions.items():
        if not isinstance(values, (list, dict)):
            raise UserError(f"{FILE}: {where}.{dimension}: expected a list or a mapping, got {type(values).__name__}")
    jobs = []
    for combination in itertools.product(*(enumerate(values) for values in dimensions.values())):
        item = {dimension: value for dimension, (_, value) in zip(dimensions, combination)}
        key = "-".join(f"{dimension}{index}" if isinstance(value, (dict, list)) else to_str(value)
                       for dimension, (index, value) in zip(dimensions, combination))
        jobs.append((key, {"key": key, "item": item}))
    return jobs


def resolve(value: Any, scope: dict, where: str, any_type: bool = False) -> Any:
    """`value` with every `${...}` replaced, in mapping keys too (DVC resolves those as well)."""
    if isinstance(value, dict):
        return {resolve(k, scope, where, any_type): resolve(v, scope, where, any_type) for k, v in value.items()}
    if isinstance(value, list):
        return [resolve(item, scope, where, any_type) for item in value]
    if not isinstance(value, str):
        return value
    matches = list(TEMPLATE.finditer(value))
    if len(matches) == 1 and matches[0].group(0) == value:  # the whole string: the value, its type kept
        found = select(scope, matches[0]["inner"], where)
        if not any_type and not isinstance(found, PRIMITIVE):
            raise UserError(f"{FILE}: {where}: {value}: a {type(found).__name__} can only be a foreach's data")
        return found
    text, end = "", 0
    for match in matches:
        found = select(scope, match["inner"], where)
        if not isinstance(found, PRIMITIVE):  # DVC turns a mapping in cmd into --key value arguments
            raise UserError(f"{FILE}: {where}: {match.group(0)}: a {type(found).__name__} inside a string "
                            f"is not supported by the Snakefile (workflow/engines/dvc_yaml.py)")
        text += value[end:match.start()] + to_str(found)
        end = match.end()
    return (text + value[end:]).replace(r"\${", "${")


def select(scope: dict, expression: str, where: str) -> Any:
    """`a.b`, `a[0]`, `item.x`: the value at that path, or one line naming what is missing."""
    parts = [part.strip() for part in expression.replace("[", ".").replace("]", "").split(".")]
    if not all(parts):
        raise UserError(f"{FILE}: {where}: ${{{expression}}}: not a key path like a.b or a[0]")
    node = scope
    for depth, part in enumerate(parts):
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.lstrip("-").isdigit() and -len(node) <= int(part) < len(node):
            node = node[int(part)]
        else:
            missing = ".".join(parts[:depth + 1])
            source = "" if parts[0] in ("key", "item") and "item" in scope else f" in {PARAMS}"
            raise UserError(f"{FILE}: {where}: could not find '{missing}'{source}")
    return node


def to_str(value: Any) -> str:
    """As DVC writes a value into a string: booleans in YAML's spelling."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
