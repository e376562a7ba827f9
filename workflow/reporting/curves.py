"""The main model's training curves from dvclive's files: loss, validation scores and learning rate per epoch.

dvclive writes one TSV per metric under plots/metrics (train/loss.tsv: step, loss), one step per
epoch (workflow/training/live.py).
"""
from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.ticker import FuncFormatter

from workflow.core.errors import UserError
from workflow.reporting.charts import BAR, FONT, save_png
from workflow.reporting.tables import significant

SCORES = {"val/accuracy": "accuracy", "val/macro_f1": "macro-F1", "val/f1": "F1"}
LOSSES = {"train/loss": "training loss", "val/log_loss": "validation log loss"}


def read_curves(folder: Path | str) -> pd.DataFrame:
    """One row per epoch (from 1), one column per metric ('train/loss', 'val/accuracy', ...)."""
    files = sorted(Path(folder).rglob("*.tsv"))
    if not files:
        raise UserError(f"{folder}: no dvclive curves (*.tsv); run the train stage first")
    curves = {}
    for path in files:
        table = pd.read_csv(path, sep="\t")
        curves[path.relative_to(folder).with_suffix("").as_posix()] = table.set_index("step").iloc[:, -1]
    frame = pd.DataFrame(curves).sort_index()
    frame.index = frame.index + 1  # dvclive counts steps from 0; one step per epoch
    frame.index.name = "epoch"
    return frame


def curves_chart(curves: pd.DataFrame, kept_epoch: int | None, dest: Path | str) -> None:
    """Three panels: the losses, the validation scores (%), the learning rate; the kept epoch marked."""
    with plt.rc_context(FONT):
        fig, (losses, scores, rate) = plt.subplots(1, 3, figsize=(13.5, 4.2))
        for ax, names, scale in ((losses, LOSSES, 1), (scores, SCORES, 100)):
            for column, label in names.items():
                if column in curves:
                    ax.plot(curves.index, scale * curves[column], marker=".", label=label)
            ax.legend(fontsize=9)
        if "train/learning_rate" in curves:
            rate.plot(curves.index, curves["train/learning_rate"], color=BAR)
        rate.yaxis.set_major_formatter(FuncFormatter(lambda value, _: significant(value) if value else "0"))
        titles = ("Loss per epoch", "Validation scores per epoch (%)", "Learning rate (end of epoch)")
        for ax, title in zip((losses, scores, rate), titles):
            ax.set_title(title)
            ax.set_xlabel("epoch")
            ax.grid(alpha=0.3)
            if kept_epoch:
                ax.axvline(kept_epoch, color="#888", linestyle=":", label=None)
        if kept_epoch:
            scores.annotate(f"kept: epoch {kept_epoch}", (kept_epoch, 0.02), xycoords=("data", "axes fraction"),
                            xytext=(-4, 0), textcoords="offset points", ha="right", fontsize=9, color="#555")
        save_png(fig, dest)
