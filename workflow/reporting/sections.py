"""The report's page, section by section: the screening, the main model, the ablation, the main
model's errors per class, and the environment. Each builder takes what it shows, already read."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from workflow.reporting.choice import Verdict, overlaps_best, percent, with_interval
from workflow.reporting.document import Bullets, CodeBlock, Figure, InlineCode, Paragraph, Section, Strong, Table
from workflow.reporting.intervals import bootstrap_macro_f1, clopper_pearson
from workflow.reporting.tables import significant
from workflow.reporting.variants import Validation, accuracy_interval

# The ablation table's columns for readers: units in the headers, scores in % with their intervals.
NUMBERS = {"val_f1": "F1 %", "val_log_loss": "log loss", "params_trainable": "trainable",
           "params_trainable_formula": "trainable (formula)", "trainable_pct": "trainable %",
           "memory": "peak memory MiB", "train_seconds": "train s", "artefact_mib": "artefact MiB"}
INTRO = ["Each variant is ", InlineCode("ablation.base"),
         (" in params.yaml with the changes its name says, trained with the same data and budget. Peak memory is "
          "the training's growth of the process's resident memory (CPU) or peak GPU memory allocated; the "
          "artefact is what must be kept to reproduce predictions. Cheapest first.")]


NBSP = "\u00a0"  # a table cell breaks between columns, not inside an interval


def scored(row: pd.Series, score: str) -> str:
    """'84.7 [75.1, 91.2]': a score in % with its 95% interval, when it has one."""
    value = significant(100 * row[score])
    if pd.isna(row.get(f"{score}_low", np.nan)):
        return value
    low, high = significant(100 * row[f"{score}_low"]), significant(100 * row[f"{score}_high"])
    return f"{value}{NBSP}[{low},{NBSP}{high}]"


def ablation_table(table: pd.DataFrame, verdict: Verdict, pareto: pd.Series) -> pd.DataFrame:
    """The table as readers see it (the CSV keeps the raw numbers)."""
    shown = pd.DataFrame({"variant": table["variant"], "method": table["method"]})
    if "augment" in table:
        shown["augment"] = table["augment"].astype(bool)
    several = table["seeds"].max() > 1  # mean and spread across seeds (ablation.seeds)
    if several:
        shown["seeds"] = table["seeds"].astype(int)
    for score, name in (("val_accuracy", "accuracy"), ("val_macro_f1", "macro-F1")):
        shown[f"{name} % [95% CI]"] = table.apply(scored, axis=1, score=score)
        if several:
            shown[f"{name} sd %"] = 100 * table[f"{score}_sd"]
    for column, header in NUMBERS.items():
        if column in table and table[column].notna().any():
            shown[header] = 100 * table[column] if column == "val_f1" else table[column]
    for column in ("trainable", "trainable (formula)"):
        if column in shown:
            shown[column] = shown[column].astype("Int64")
    shown["vs best"] = np.where(table["variant"] == verdict.best, "best",
                                np.where(verdict.indistinguishable, f"\u2248{NBSP}best", "worse"))  # ≈ best
    shown["Pareto"] = pareto.to_numpy()
    return shown


def screening_section(screening: pd.DataFrame, winner: dict, chart: Path | str, validation: Validation) -> Section:
    """The model-zoo screening on the same page: the winner, its command, the table with intervals, the chart."""
    rows = screening.reset_index(drop=True)
    bounds = [accuracy_interval(a, validation.size) for a in rows["val_accuracy"]]
    rows["val_accuracy_low"], rows["val_accuracy_high"] = zip(*bounds) if bounds else ((), ())
    best = int(rows.index[rows["candidate"] == winner["candidate"]][0])
    near = overlaps_best(rows, best)
    shown = pd.DataFrame({"candidate": rows["candidate"], "model": rows["model"],
                          "accuracy % [95% CI]": rows.apply(scored, axis=1, score="val_accuracy"),
                          "macro-F1 %": 100 * rows["val_macro_f1"], "trainable": rows["params_trainable"],
                          "train s": rows["train_seconds"]})
    if "peak_rss_mib" in rows:
        shown["peak RSS MiB"] = rows["peak_rss_mib"]
    shown["vs winner"] = np.where(rows.index == best, "winner", np.where(near, "overlaps", "worse"))
    others = int(near.sum()) - 1
    return Section("Screening", [
        Paragraph(["Every candidate trained with the same short budget (", InlineCode("screen.base"), "). Winner: ",
                   Strong(winner["candidate"]), f", validation accuracy {with_interval(rows.iloc[best])}. ",
                   f"{others} of the other {len(rows) - 1} candidates have intervals that overlap it: the short budget "
                   "ranks them, it does not separate them. To train the winner:"]),
        CodeBlock(winner["train_command"]),
        Table(shown),
        Figure(Path(chart), "screening", "Screening: validation accuracy, trainable parameters and train time per "
                                         "candidate, best first."),
    ])


def main_model_line(metrics: dict, validation: Validation, predicted: np.ndarray) -> str:
    """The train stage's scores, with the intervals its validation predictions give."""
    val = metrics["val"]
    correct = int((predicted == validation.truth).sum())
    low, high = clopper_pearson(correct, validation.size)
    f1_low, f1_high = bootstrap_macro_f1(validation.truth, predicted, validation.classes, validation.draws)
    binary = f", F1 {percent(val['f1'])}" if "f1" in val else ""  # two classes
    kept = (f", epoch {metrics['selection/kept_epoch']} of {metrics['selection/epochs_trained']} trained"
            if "selection/kept_epoch" in metrics else "")
    calibrated = (f", log loss {significant(metrics['calibration/log_loss_before'])} "
                  f"({significant(metrics['calibration/log_loss_after'])} after temperature scaling on the validation "
                  f"split, T = {significant(metrics['calibration/temperature'])})"
                  if "calibration/temperature" in metrics else "")
    return (f"Main model (train stage{kept}): validation accuracy {percent(val['accuracy'])} "
            f"(95% CI {significant(100 * low)}-{significant(100 * high)}), macro-F1 {percent(val['macro_f1'])} "
            f"(95% CI {significant(100 * f1_low)}-{significant(100 * f1_high)}){binary}{calibrated}, "
            f"{metrics['model/trainable_params']:,} of {metrics['model/total_params']:,} parameters trainable.")


def main_model_section(line: str, curves: Path | str) -> Section:
    return Section("Main model", [
        Paragraph(line),
        Figure(Path(curves), "training curves", "Main model per epoch (dvclive): training loss and validation log "
                                                "loss, validation accuracy and macro-F1, learning rate; dotted: the "
                                                "epoch whose weights were kept."),
    ])


def ablation_section(shown: pd.DataFrame, rules: tuple[str, ...], validation: Validation, chart: Path | str,
                     rank_chart: Path | str | None, cost_chart: Path | str) -> Section:
    intervals = (f"Intervals are 95%: accuracy exact (Clopper-Pearson, {validation.size} validation rows per seed), "
                 "macro-F1 a percentile bootstrap over the validation rows (2,000 resamples, seed 0) where the "
                 "variant's rows carry per-row predictions. Indistinguishable from the best: " + "; or, without "
                 "per-row predictions, ".join(rules) + ". Pareto: no other variant is both as cheap (trainable "
                 "parameters) and as accurate, and one of them strictly.")
    rank = ([Figure(Path(rank_chart), "rank sweep", "The LoRA rank sweep: validation scores against r and accuracy "
                                                    "against trainable parameters, with 95% intervals; shaded: the "
                                                    "best rank's accuracy interval.")]
            if rank_chart else [Paragraph("No LoRA rank sweep among the variants: fewer than two LoRA ranks that "
                                          "differ only in rank.")])
    return Section("Ablation", [
        Paragraph(INTRO),
        Paragraph(intervals),
        Table(shown),
        Figure(Path(chart), "ablation", "Per variant: accuracy and macro-F1 with 95% intervals, trainable "
                                        "parameters (log scale), peak memory, train time and artefact size."),
        *rank,
        Figure(Path(cost_chart), "cost against benefit", "Accuracy (95% intervals) against trainable parameters and "
                                                         "against train time, one point per variant; orange: the "
                                                         "Pareto front; shaded: the best variant's interval."),
    ])


def per_class_section(confusion: Path | str, classes_table: pd.DataFrame) -> Section:
    return Section("Per-class results and confusion matrix", [
        Paragraph("The main model on the validation split: precision, recall and F1 per class, and where its "
                  "errors go."),
        Table(classes_table),
        Figure(Path(confusion), "confusion matrix",
               "Validation confusion matrix of the main model (rows: true class)."),
    ])


def environment_section(lines: list[str]) -> Section:
    return Section("Reproducibility: environment and seeds", [Bullets(lines)])
