"""What each Snakemake rule asks a cluster for: workflow/engines/resources.yaml, keyed by stage.

The Snakefile gives every rule `resources:` from here. Entries are keyed by a stage's name in
dvc.yaml, so a foreach stage's entry covers all of its jobs ('screen@vit-tiny' -> 'screen'), and
`default` fills in the keys a stage does not set. A site file of the same layout
(`snakemake --config resources=site.yaml`) is merged over the shipped one entry by entry, key by
key; a key set to null there drops the request (e.g. `screen: {gpu: null}` on a node without GPUs).

    python -m workflow.engines.cluster                    # every rule's resources
    python -m workflow.engines.cluster --site site.yaml   # with a site file merged in
"""
from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import Any, Iterable

import yaml

from workflow.core.errors import UserError

DECLARATION = Path("workflow/engines/resources.yaml")
DEFAULT = "default"
_NAME = re.compile(r"^[A-Za-z_]\w*$")  # a Snakemake resource name


def stage_base(stage_name: str) -> str:
    """The dvc.yaml name a resolved stage comes from ('screen@vit-tiny' -> 'screen')."""
    return stage_name.split("@", 1)[0]


def read_table(path: Path | str, stages: Iterable[str], allow_null: bool = False) -> dict[str, dict[str, Any]]:
    """A resources file, checked: every entry is `default` or a stage of dvc.yaml, every value an
    integer >= 0 or a string (null too, in a site file)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such resources file")
    try:
        table = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise UserError(f"{path}: not valid YAML: {str(err).splitlines()[0]}") from None
    if not isinstance(table, dict):
        raise UserError(f"{path}: expected a mapping of stage name -> resources")
    known = {stage_base(name) for name in stages} | {DEFAULT}
    for entry, resources in table.items():
        if entry not in known:
            raise UserError(f"{path}: '{entry}' is not a stage of dvc.yaml (stages: {', '.join(sorted(known))})")
        if not isinstance(resources, dict):
            raise UserError(f"{path}: {entry}: expected a mapping of resource -> value")
        for key, value in resources.items():
            where = f"{path}: {entry}.{key}"
            if not isinstance(key, str) or not _NAME.match(key):
                raise UserError(f"{where}: not a valid resource name")
            if value is None and allow_null:
                continue
            if isinstance(value, bool) or not isinstance(value, (int, str)) or (isinstance(value, int) and value < 0):
                raise UserError(f"{where}: expected an integer >= 0 or a string (got {value!r})")
    return table


def load_table(stages: Iterable[str], site: Path | str | None = None,
               declaration: Path | str = DECLARATION) -> dict[str, dict[str, Any]]:
    """The shipped declaration, with a site file merged over it entry by entry, key by key."""
    stages = list(stages)
    table = {entry: dict(resources) for entry, resources in read_table(declaration, stages).items()}
    if site:
        for entry, resources in read_table(site, stages, allow_null=True).items():
            table.setdefault(entry, {}).update(resources)
    return table


def stage_resources(stage_name: str, table: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The resources of one resolved stage: `default`, then its own entry; null values dropped."""
    merged = {**table.get(DEFAULT, {}), **table.get(stage_base(stage_name), {})}
    return {key: value for key, value in merged.items() if value is not None}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--site", help="a site resources file merged over workflow/engines/resources.yaml")
    args = parser.parse_args(argv)
    from workflow.engines.dag import load_stages, rule_name

    try:
        stages = [stage.name for stage in load_stages(".")]
        table = load_table(stages, args.site)
    except UserError as err:
        raise SystemExit(f"error: {err}") from None
    for name in stages:
        resources = stage_resources(name, table)
        print(f"{rule_name(name)}: " + ", ".join(f"{key}={value}" for key, value in resources.items()))


if __name__ == "__main__":
    main()
