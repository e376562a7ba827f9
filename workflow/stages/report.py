"""report: one page a reviewer can trust: what to pick and why, the screening, the main model, the ablation.

Reads the ablation variants' rows, the screening's summary, the main model's metrics, dvclive curves
and validation predictions, and writes one document as reports/ablation.md and as a self-contained
reports/ablation.html (figures embedded). It opens with the pick: the best variant and the cheapest
one the validation split cannot tell from it, with their costs. Every accuracy and macro-F1 carries a
95% interval (workflow/reporting/intervals.py). Also written: the table as CSV, its metrics for DVC
(reports/ablation.json), the charts, a confusion matrix and a per-class precision/recall/F1 table.
"""
from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

from workflow.config import load_params
from workflow.core import io
from workflow.core.cli import run, stage_parser
from workflow.core.errors import UserError
from workflow.data.competition_info import read_competition
from workflow.reporting.charts import bar_chart, confusion_png
from workflow.reporting.choice import Verdict, headline, judge, pareto_front, pick
from workflow.reporting.curves import curves_chart, read_curves
from workflow.reporting.document import Document, Paragraph
from workflow.reporting.render import to_html, to_markdown
from workflow.reporting.sections import (ablation_section, ablation_table, environment_section, main_model_line,
                                         main_model_section, per_class_section, screening_section)
from workflow.reporting.tables import read_rows
from workflow.reporting.tradeoffs import cost_chart, placeholder, rank_chart
from workflow.reporting.variants import Validation, Variants, class_indices, rank_sweep, summarize

SECTIONS = ()  # reads the results of the stages above it, and of params only which ablation jobs exist:
KEYS = ("ablation.variants", "ablation.seeds")  # a removed variant's or seed's old row is left out
# reports/ablation.csv: the raw numbers (fractions, not %), one row per variant, cheapest first.
COLUMNS = {
    "variant": "variant", "method": "method", "augment": "augment", "seeds": "seeds", "val_accuracy": "accuracy",
    "val_accuracy_low": "accuracy low", "val_accuracy_high": "accuracy high", "val_accuracy_sd": "accuracy sd",
    "val_macro_f1": "macro-F1", "val_macro_f1_low": "macro-F1 low", "val_macro_f1_high": "macro-F1 high",
    "val_macro_f1_sd": "macro-F1 sd", "val_f1": "F1", "val_log_loss": "log loss", "params_trainable": "trainable",
    "params_trainable_formula": "trainable (formula)", "trainable_pct": "% trainable", "memory": "peak memory MiB",
    "train_seconds": "train s", "artefact_mib": "artefact MiB", "indistinguishable": "indistinguishable from best",
    "pareto": "Pareto (trainable)",
}


def per_class(labels: list[str], truth: pd.Series, predicted: pd.Series) -> pd.DataFrame:
    from sklearn.metrics import classification_report  # ~1 s with SciPy: not for --help

    report = classification_report(truth, predicted, labels=labels, output_dict=True, zero_division=0)
    rows = [{"class": label, **{k: report[label][k] for k in ("precision", "recall", "f1-score")},
             "support": int(report[label]["support"])} for label in labels]
    return pd.DataFrame(rows)


def memory_column(table: pd.DataFrame) -> str | None:
    """Peak GPU memory where the variants trained on a GPU, else the training's RSS growth (CPU)."""
    for column in ("peak_gpu_mib", "training_rss_mib"):
        if column in table and table[column].notna().all():
            return column
    return None


def reproducibility_lines(record: dict, ablation_seeds: pd.Series) -> list[str]:
    """What another run needs to give the same numbers: the seeds, the machine, the package versions."""
    seeds = {**record["seeds"], "ablation seeds": ", ".join(map(str, sorted(set(ablation_seeds))))}
    return [
        "Seeds: " + ", ".join(f"{key} {value}" for key, value in seeds.items()) + ".",
        (f"Main model trained on {record['device']} with {record['torch_threads']} torch threads, "
         f"Python {record['python']} on {record['platform']}."),
        "Packages: " + ", ".join(f"{name} {version}" for name, version in record["packages"].items()) + ".",
    ]


def read_json(path: Path | str, producer: str) -> dict:
    if not Path(path).is_file():
        raise UserError(f"{path}: missing; run the {producer} stage first")
    return json.loads(Path(path).read_text())


def parser():
    return stage_parser(
        __doc__,
        rows="reports/ablation",
        metrics="reports/train/metrics.json",
        run_record="reports/train/run.json",
        predictions="reports/val_predictions.csv",
        curves="reports/train/plots/metrics",
        raw="data/raw",
        screening="reports/screening.csv",
        screening_winner="reports/screening_winner.json",
        screening_chart="reports/screening.png",
        markdown="reports/ablation.md",
        html="reports/ablation.html",
        csv="reports/ablation.csv",
        summary="reports/ablation.json",
        chart="reports/ablation.png",
        rank_chart="reports/ablation_rank.png",
        cost_chart="reports/ablation_cost.png",
        curves_chart="reports/train_curves.png",
        confusion="reports/confusion_matrix.png",
        per_class="reports/per_class.csv",
    )


def judged(rows: pd.DataFrame, validation: Validation) -> tuple[Variants, Verdict, dict[str, pd.Series]]:
    """One line per variant, cheapest first, with the verdict on each and the Pareto fronts (by
    trainable parameters, by train time); the memory, verdict and front added as columns."""
    variants = summarize(rows, validation)
    table = variants.table.sort_values(["params_trainable", "variant"]).reset_index(drop=True)
    variants = replace(variants, table=table)
    verdict = judge(variants, validation)
    fronts = {cost: pareto_front(table[cost], table["val_accuracy"]) for cost in ("params_trainable", "train_seconds")}
    memory = memory_column(table)
    table = table.assign(memory=table[memory] if memory else np.nan, indistinguishable=verdict.indistinguishable,
                         pareto=fronts["params_trainable"])
    return replace(variants, table=table), verdict, fronts


def write_ablation_chart(shown: pd.DataFrame, table: pd.DataFrame, dest: Path | str) -> None:
    """The table's scores in % with their intervals, and its costs, one panel each."""
    scores = {"accuracy %": "val_accuracy", "macro-F1 %": "val_macro_f1"}
    frame = shown.assign(**{name: 100 * table[score] for name, score in scores.items()},
                         **{f"{name} {end}": 100 * table[f"{score}_{end}"] for name, score in scores.items()
                            for end in ("low", "high")})
    values = [*scores, *(c for c in ("trainable", "peak memory MiB", "train s", "artefact MiB") if c in shown)]
    bar_chart(frame, "variant", values, "Ablation: what each choice gives (validation, 95% CI) and what it costs",
              dest, errors={name: (f"{name} low", f"{name} high") for name in scores})


def main(argv=None) -> None:
    args = parser().parse_args(argv)
    # Every input first, so a missing one fails in one line before anything is written.
    rows = read_rows(args.rows, load_params(args.params).ablation.jobs(), "ablation")
    metrics = read_json(args.metrics, "train")
    record = read_json(args.run_record, "train")
    winner = read_json(args.screening_winner, "screen_summary")
    if not Path(args.screening).is_file() or not Path(args.screening_chart).is_file():
        raise UserError(f"{args.screening} or {args.screening_chart}: missing; run the screen_summary stage first")
    screening = pd.read_csv(args.screening)
    classes = read_competition(args.raw)["classes"]
    predictions = pd.read_csv(args.predictions, dtype=str, keep_default_na=False)
    curves = read_curves(args.curves)
    # The validation split as the jobs scored it: train's predictions have one row per row of
    # data/split/val.csv, in its order (the order of an ablation row's val_predicted).
    validation = Validation.from_labels(predictions["label"], classes)

    variants, verdict, fronts = judged(rows, validation)
    table = variants.table
    shown = ablation_table(table, verdict, fronts["params_trainable"])
    classes_table = per_class(classes, predictions["label"], predictions["predicted"])
    sweep = rank_sweep(table)

    # Columns with no value at all (the seeds' spread with one seed each) are left out.
    io.write_csv(args.csv, table[[c for c in COLUMNS if c in table and table[c].notna().any()]].rename(columns=COLUMNS))
    io.write_json(args.summary, {"ablations": {  # for `dvc metrics show` and `dvc exp show`
        row["variant"]: {"accuracy": row["val_accuracy"], "macro_f1": row["val_macro_f1"],
                         **({"f1": row["val_f1"]} if not pd.isna(row.get("val_f1", np.nan)) else {}),
                         "trainable_params": int(row["params_trainable"])} for _, row in table.iterrows()}})
    io.write_csv(args.per_class, classes_table)
    confusion_png(classes, predictions["label"], predictions["predicted"],
                  "Main model: validation confusion matrix", args.confusion)
    write_ablation_chart(shown, table, args.chart)
    if len(sweep):
        rank_chart(sweep, args.rank_chart)
    else:  # the output exists either way; the page says there is no sweep
        placeholder("No LoRA rank sweep among the variants.", args.rank_chart)
    cost_chart(table, verdict.best, fronts, args.cost_chart)
    curves_chart(curves, metrics.get("selection/kept_epoch"), args.curves_chart)

    main_predicted = class_indices(predictions["predicted"], classes)
    document = Document("Report: what to pick, and why", [
        *(Paragraph(line) for line in headline(table, verdict, validation)),
        screening_section(screening, winner, args.screening_chart, validation),
        main_model_section(main_model_line(metrics, validation, main_predicted), args.curves_chart),
        ablation_section(shown, verdict.rules, validation, args.chart, args.rank_chart if len(sweep) else None,
                         args.cost_chart),
        per_class_section(args.confusion, classes_table),
        environment_section(reproducibility_lines(record, rows["seed"])),
    ])
    io.write_text(args.markdown, to_markdown(document, args.markdown))
    io.write_text(args.html, to_html(document))  # reads the PNGs above: write it after them
    print(f"report: {len(table)} variants; pick {pick(table, verdict)} (best: {verdict.best}) -> {args.markdown}, "
          f"{args.html}")


if __name__ == "__main__":
    raise SystemExit(run(main))
