"""The report's charts as PNG files, written atomically: bars per row, and a confusion matrix.

Sized to be read at a normal zoom in a 1280-pixel-wide page: at most three panels a row, every bar
labelled with its value (three significant digits), error bars where a column has an interval, and a
log axis where one column spans two orders of magnitude or more (trainable parameters).
"""
from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display on CI or a cluster node
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.ticker import FuncFormatter, NullFormatter  # noqa: E402

from workflow.core import io  # noqa: E402
from workflow.reporting.tables import significant  # noqa: E402

BAR = "#4C72B0"
FONT = {"font.size": 11, "axes.titlesize": 12, "figure.titlesize": 14}
PANELS_PER_ROW = 3


def save_png(fig: plt.Figure, dest: Path | str) -> None:
    fig.tight_layout()
    with io.atomic_path(dest) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)


def compact(value: float, _position=None) -> str:
    """A tick label without mathtext: 500, 2k, 190k, 1.5M."""
    for size, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= size:
            return significant(value / size) + suffix
    return significant(value) if value else "0"


def log_axis(axis, values: pd.Series) -> None:
    """A log scale labelled in plain numbers (2k, 100k); the minor ticks (2k, 3k, ...) too when the
    values lie within about one decade, which would otherwise show no label at all."""
    axis.set_major_formatter(FuncFormatter(compact))
    narrow = not spans_decades(values, decades=0.8)
    axis.set_minor_formatter(FuncFormatter(compact) if narrow else NullFormatter())


def spans_decades(values: pd.Series, decades: float = 2) -> bool:
    """Whether a positive column covers `decades` orders of magnitude: then only a log axis shows it."""
    values = values.dropna()
    return bool(len(values)) and values.min() > 0 and math.log10(values.max() / values.min()) >= decades


def bar_chart(frame: pd.DataFrame, label: str, values: list[str], title: str, dest: Path | str, *,
              errors: dict[str, tuple[str, str]] | None = None) -> None:
    """Horizontal bars of `values` (one panel each) per `label`, each bar labelled with its value;
    `errors` maps a column to the columns of its interval's low and high ends."""
    errors = errors or {}
    rows = math.ceil(len(values) / PANELS_PER_ROW)
    columns = min(len(values), PANELS_PER_ROW)
    with plt.rc_context(FONT):
        fig, axes = plt.subplots(rows, columns, figsize=(4.4 * columns, rows * (0.42 * len(frame) + 1.3)),
                                 squeeze=False)
        names = frame[label].astype(str)
        for ax, column in zip(axes.ravel(), values):
            value = frame[column].astype(float)
            xerr = None
            if column in errors:
                low, high = (frame[c].astype(float) for c in errors[column])
                xerr = np.vstack([value - low, high - value]).clip(0)
            ax.barh(names, value, xerr=xerr, color=BAR, ecolor="#333", capsize=3)
            log = spans_decades(value)
            if log:
                ax.set_xscale("log")
                log_axis(ax.xaxis, value)
            ends = value if xerr is None else value + np.nan_to_num(xerr[1])
            for y, (shown, end) in enumerate(zip(value, ends)):
                if not pd.isna(shown):
                    ax.annotate(significant(shown), (end, y), xytext=(4, 0), textcoords="offset points",
                                va="center", fontsize=10)
            right = np.nanmax(ends) if len(ends) else 1
            if log:  # bars start at a third of the smallest value: a log axis has no zero
                ax.set_xlim(value.min() / 3, right * 8)
            else:
                ax.set_xlim(right=right * 1.3 if right > 0 else 1)
            ax.set_title(column)
            ax.invert_yaxis()
            ax.grid(axis="x", alpha=0.3)
        for ax in axes.ravel()[len(values):]:
            ax.set_visible(False)
        fig.suptitle(title)
        save_png(fig, dest)


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
    save_png(fig, dest)
