"""The report's charts as PNG files, written atomically: bars per row, and a confusion matrix."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display on CI or a cluster node
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from workflow.core import io  # noqa: E402


def _save_png(fig: plt.Figure, dest: Path | str) -> None:
    fig.tight_layout()
    with io.atomic_path(dest) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)


def bar_chart(frame: pd.DataFrame, label: str, values: list[str], title: str, dest: Path | str) -> None:
    """Horizontal bars of `values` (one panel each) per `label`."""
    fig, axes = plt.subplots(1, len(values), figsize=(4.5 * len(values), 0.45 * len(frame) + 1.5), squeeze=False)
    for ax, column in zip(axes[0], values):
        ax.barh(frame[label].astype(str), frame[column], color="#4C72B0")
        ax.set_title(column)
        ax.invert_yaxis()
        ax.grid(axis="x", alpha=0.3)
    fig.suptitle(title)
    _save_png(fig, dest)


def confusion_png(labels: list[str], truth: pd.Series, predicted: pd.Series, title: str, dest: Path | str) -> None:
    """Counts per (true, predicted) class, rows true; empty cells left blank so 200 classes stay readable."""
    from sklearn.metrics import ConfusionMatrixDisplay  # ~1 s with SciPy: not for --help

    fig, ax = plt.subplots(figsize=(0.5 * len(labels) + 3, 0.5 * len(labels) + 2.5))
    display = ConfusionMatrixDisplay.from_predictions(
        truth, predicted, labels=labels, cmap="Blues", colorbar=False, xticks_rotation="vertical", ax=ax,
        text_kw={"fontsize": 8})
    for count, text in zip(display.confusion_matrix.ravel(), display.text_.ravel()):
        if not count:
            text.set_text("")
    ax.set_title(title)
    _save_png(fig, dest)
