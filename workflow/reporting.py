"""Tables and charts for the screening and ablation reports: Markdown, CSV and PNG, no server."""
from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display on CI or a cluster node
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from workflow import io  # noqa: E402
from workflow.errors import UserError  # noqa: E402


def read_rows(folder: Path | str) -> pd.DataFrame:
    """One row per JSON file in `folder` (the per-job results of a foreach stage)."""
    files = sorted(Path(folder).glob("*.json"))
    if not files:
        raise UserError(f"{folder}: no result rows; run the jobs that write them first")
    return pd.DataFrame([json.loads(f.read_text()) for f in files])


def _cell(value) -> str:
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if isinstance(value, float):
        # Four significant digits (0.8472, 5.308, 45.13), whole numbers from 1,000 up.
        return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.4g}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def markdown_table(frame: pd.DataFrame) -> str:
    header = "| " + " | ".join(frame.columns) + " |"
    rule = "|" + "|".join("---" for _ in frame.columns) + "|"
    body = ["| " + " | ".join(_cell(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join([header, rule, *body]) + "\n"


def bar_chart(frame: pd.DataFrame, label: str, values: list[str], title: str, dest: Path | str) -> None:
    """Horizontal bars of `values` (one panel each) per `label`, saved atomically as PNG."""
    fig, axes = plt.subplots(1, len(values), figsize=(4.5 * len(values), 0.45 * len(frame) + 1.5), squeeze=False)
    for ax, column in zip(axes[0], values):
        ax.barh(frame[label].astype(str), frame[column], color="#4C72B0")
        ax.set_title(column)
        ax.invert_yaxis()
        ax.grid(axis="x", alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    with io.atomic_path(dest) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
