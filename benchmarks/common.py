"""What the in-process benchmarks share: the default data built by the real stages, timing, tables."""
from __future__ import annotations

import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.chdir(ROOT)  # model names in params.yaml are relative to the repository root, as in dvc.yaml


def build_data(folder: Path, params: Path = ROOT / "params.yaml") -> Path:
    """data/raw, data/split, pipelines.json and the image cache of `params`, made by the stages' main()s."""
    from workflow.stages import augment, cache, download, split

    common = ["--params", str(params)]
    if not (folder / "cache/cache.json").is_file():
        download.main([*common, "--out", str(folder / "raw")])
        split.main([*common, "--raw", str(folder / "raw"), "--out", str(folder / "split")])
        augment.main([*common, "--raw", str(folder / "raw"), "--split", str(folder / "split"),
                      "--out", str(folder / "pipelines.json"), "--preview", str(folder / "preview.png")])
        cache.main([*common, "--raw", str(folder / "raw"), "--out", str(folder / "cache")])
    return folder


def load_dataset(folder: Path):
    from workflow.data.labelled import LabelledData

    return LabelledData.load(folder / "raw", folder / "split", folder / "pipelines.json", folder / "cache")


def seconds(fn: Callable[[], object]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def median(values: list[float]) -> float:
    return statistics.median(values)


def markdown(rows: list[dict], columns: list[str]) -> str:
    def cell(value) -> str:
        return f"{value:,.3f}" if isinstance(value, float) else str(value)
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(row.get(c, "")) for c in columns) + " |" for row in rows]
    return "\n".join(lines)


def write_json(path: str | None, result: dict) -> None:
    if path:
        Path(path).write_text(json.dumps(result, indent=2) + "\n")
