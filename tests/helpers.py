"""Shared test helpers: params files derived from the repository's own params.yaml."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]


def write_params(folder: Path, overrides: dict[str, Any] | None = None) -> Path:
    """params.yaml in `folder`: the repository's defaults with dotted-key overrides ('lora.r': 4,
    'screen.base.train.epochs': 1)."""
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    for key, value in (overrides or {}).items():
        *parents, name = key.split(".")
        node = params
        for parent in parents:
            node = node[parent]
        node[name] = value
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "params.yaml"
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    return path
