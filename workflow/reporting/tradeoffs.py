"""What extra cost buys: the LoRA rank sweep as a curve, and accuracy against cost with its Pareto front.

Both draw each variant's accuracy with its 95% interval and shade the interval of the best one, so a
point whose bar reaches the band is one the validation split cannot tell from the best.
"""
from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.ticker import FixedFormatter, FixedLocator, NullLocator

from workflow.reporting.charts import BAR, FONT, compact, log_axis, save_png, spans_decades

FRONT = "#DD8452"
MACRO = "#55A868"
LABEL = {"boxstyle": "round,pad=0.15", "facecolor": "white", "edgecolor": "none", "alpha": 0.8}  # over error bars


def _errors(frame: pd.DataFrame, score: str) -> list[pd.Series]:
    value = 100 * frame[score]
    return [(value - 100 * frame[f"{score}_low"]).clip(lower=0), (100 * frame[f"{score}_high"] - value).clip(lower=0)]


def _band(ax, row: pd.Series, label: str) -> None:
    ax.axhspan(100 * row["val_accuracy_low"], 100 * row["val_accuracy_high"], color=BAR, alpha=0.12, label=label)


def _scores(ax, frame: pd.DataFrame, x: pd.Series, labels: pd.Series, macro: bool = True) -> None:
    """Accuracy (and macro-F1 where it has an interval) with error bars, each point named."""
    ax.errorbar(x, 100 * frame["val_accuracy"], yerr=_errors(frame, "val_accuracy"), fmt="o-", color=BAR,
                capsize=4, label="accuracy (95% CI)")
    if macro and frame["val_macro_f1_low"].notna().all():
        ax.errorbar(x * 1.04, 100 * frame["val_macro_f1"], yerr=_errors(frame, "val_macro_f1"), fmt="s--",
                    color=MACRO, capsize=4, label="macro-F1 (95% CI)")
    for xi, yi, text in zip(x, 100 * frame["val_accuracy"], labels):
        ax.annotate(text, (xi, yi), xytext=(7, 5), textcoords="offset points", fontsize=9, bbox=LABEL)
    ax.set_ylabel("validation %")
    ax.grid(alpha=0.3)


def placeholder(text: str, dest: Path | str) -> None:
    """A one-line figure where there is nothing to draw: the output still exists for DVC."""
    with plt.rc_context(FONT):
        fig, ax = plt.subplots(figsize=(9, 1.2))
        ax.axis("off")
        ax.text(0.5, 0.5, text, ha="center", va="center")
        save_png(fig, dest)


def _ticks_at(axis, values: pd.Series, labels: list[str]) -> None:
    """Ticks at the points themselves (r = 4, 8, 16; their parameter counts), nowhere else."""
    axis.set_major_locator(FixedLocator(values.astype(float).tolist()))
    axis.set_minor_locator(NullLocator())
    axis.set_major_formatter(FixedFormatter(labels))


def rank_chart(sweep: pd.DataFrame, dest: Path | str) -> None:
    """Accuracy against LoRA r and against trainable parameters (log axes), best rank's interval shaded."""
    best = sweep.sort_values(["val_accuracy", "r"], ascending=[False, True]).iloc[0]
    with plt.rc_context(FONT):
        fig, (by_rank, by_params) = plt.subplots(1, 2, figsize=(12.8, 4.8))
        _scores(by_rank, sweep, sweep["r"].astype(float), sweep["val_accuracy"].map(lambda v: f"{100 * v:.3g}%"))
        by_rank.set_xscale("log", base=2)
        _ticks_at(by_rank.xaxis, sweep["r"], [str(r) for r in sweep["r"]])
        by_rank.set_xlabel("LoRA rank r (log scale)")
        by_rank.set_title("Validation scores against LoRA rank")
        params = sweep["params_trainable"].astype(float)
        _scores(by_params, sweep, params, "r=" + sweep["r"].astype(str), macro=False)
        by_params.set_xscale("log")
        _ticks_at(by_params.xaxis, params, [compact(p) for p in params])
        by_params.set_xlabel("trainable parameters (log scale)")
        by_params.set_title("Accuracy against trainable parameters")
        for ax in (by_rank, by_params):
            _band(ax, best, f"r={best['r']}'s accuracy 95% CI")
            ax.legend(fontsize=9, loc="best")
        save_png(fig, dest)


# Where a point's name may go, in points from it, tried in this order: right above, right below, left.
PLACES = ((7, 5, "left"), (7, -14, "left"), (-7, 5, "right"), (-7, -14, "right"), (7, 14, "left"))


def _name_points(ax, x: pd.Series, y: pd.Series, names: pd.Series) -> None:
    """Each point's name beside it, in the first place where it overlaps no name already written
    (variants often share a cost or a score). Call with the axes' scale and data final."""
    ax.autoscale_view()
    renderer = ax.figure.canvas.get_renderer()
    written = []
    for index in x.sort_values(kind="stable").index:
        for dx, dy, align in PLACES:
            label = ax.annotate(names[index], (x[index], y[index]), xytext=(dx, dy), textcoords="offset points",
                                ha=align, fontsize=9, bbox=LABEL)
            box = label.get_window_extent(renderer)
            if not any(box.overlaps(other) for other in written) or (dx, dy, align) == PLACES[-1]:
                written.append(box)
                break
            label.remove()


def _front_line(ax, x: pd.Series, y: pd.Series, front: pd.Series) -> None:
    order = x[front].sort_values().index
    ax.plot(x[order], y[order], "-", color=FRONT, linewidth=2, zorder=1, label="Pareto front")
    ax.scatter(x[front], y[front], s=90, facecolors="none", edgecolors=FRONT, linewidths=2, zorder=3)


def cost_chart(table: pd.DataFrame, best: str, fronts: dict[str, pd.Series], dest: Path | str) -> None:
    """Accuracy against trainable parameters and against train time, one point per variant; `fronts`
    maps the cost column (params_trainable, train_seconds) to its Pareto front."""
    titles = {"params_trainable": "trainable parameters", "train_seconds": "train time (s)"}
    best_row = table.set_index("variant").loc[best]
    with plt.rc_context(FONT):
        fig, axes = plt.subplots(1, len(fronts), figsize=(6.4 * len(fronts), 5.2), squeeze=False)
        for ax, (cost, front) in zip(axes[0], fronts.items()):
            x, y = table[cost].astype(float), 100 * table["val_accuracy"]
            ax.errorbar(x, y, yerr=_errors(table, "val_accuracy"), fmt="o", color=BAR, capsize=4, zorder=2,
                        label="variant: accuracy (95% CI)")
            _front_line(ax, x, y, front)
            _band(ax, best_row, f"best ({best}): 95% CI")
            log = spans_decades(x, decades=1)
            if log:
                ax.set_xscale("log")
                log_axis(ax.xaxis, x)
            _name_points(ax, x, y, table["variant"])
            ax.set_xlabel(titles[cost] + (" (log scale)" if log else ""))
            ax.set_ylabel("validation accuracy %")
            ax.set_title(f"Accuracy against {titles[cost]}")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=9, loc="best")
        save_png(fig, dest)
