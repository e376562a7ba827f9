"""report: the ablation report: what every choice costs and gives, plus the main model's errors.

Reads the ablation variants' rows, the main model's metrics and its validation predictions, and
writes one report as reports/ablation.md and as a self-contained reports/ablation.html (charts
embedded), the table as CSV, its metrics for DVC (reports/ablation.json), a confusion matrix PNG and
a per-class precision/recall/F1 table.
"""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from workflow.core import io
from workflow.core.cli import run, stage_parser
from workflow.reporting.charts import bar_chart, confusion_png
from workflow.reporting.document import Bullets, Document, Figure, InlineCode, Paragraph, Section, Table
from workflow.reporting.render import to_html, to_markdown
from workflow.reporting.tables import read_rows

SECTIONS = ()  # reads no params: only the results of train and the ablation jobs
COLUMNS = {
    "variant": "variant", "method": "method", "augment": "augment", "val_accuracy": "accuracy",
    "val_macro_f1": "macro-F1", "val_f1": "F1", "params_trainable": "trainable", "params_trainable_formula": "trainable (formula)",
    "trainable_pct": "% trainable", "training_rss_mib": "peak memory MiB", "train_seconds": "train s",
    "artefact_mib": "artefact MiB",
}
# Above the table: how its rows were made and what its costs measure.
INTRO = ["Each variant is ", InlineCode("ablation.base"),
         (" in params.yaml with the changes its name says, trained with the same data and budget. Peak memory is "
          "the training's growth of the process's resident memory (CPU) or peak GPU memory allocated; the "
          "artefact is what must be kept to reproduce predictions.")]


def per_class(labels: list[str], truth: pd.Series, predicted: pd.Series) -> pd.DataFrame:
    from sklearn.metrics import classification_report  # ~1 s with SciPy: not for --help

    report = classification_report(truth, predicted, labels=labels, output_dict=True, zero_division=0)
    rows = [{"class": label, **{k: report[label][k] for k in ("precision", "recall", "f1-score")},
             "support": int(report[label]["support"])} for label in labels]
    return pd.DataFrame(rows)


def main_model_line(metrics: dict) -> str:
    binary = f", F1 {metrics['val']['f1']:.4f}" if "f1" in metrics["val"] else ""  # two classes
    return (f"Main model (train stage): validation accuracy {metrics['val']['accuracy']:.4f}, "
            f"macro-F1 {metrics['val']['macro_f1']:.4f}{binary}, {metrics['model/trainable_params']:,} of "
            f"{metrics['model/total_params']:,} parameters trainable.")


def reproducibility_lines(record: dict, ablation_seeds: pd.Series) -> list[str]:
    """What another run needs to give the same numbers: the seeds, the machine, the package versions."""
    seeds = {**record["seeds"], "ablation seeds": ", ".join(map(str, sorted(set(ablation_seeds))))}
    return [
        "Seeds: " + ", ".join(f"{key} {value}" for key, value in seeds.items()) + ".",
        (f"Main model trained on {record['device']} with {record['torch_threads']} torch threads, "
         f"Python {record['python']} on {record['platform']}."),
        "Packages: " + ", ".join(f"{name} {version}" for name, version in record["packages"].items()) + ".",
    ]


def ablation_document(table: pd.DataFrame, chart: Path | str, main_line: str, confusion: Path | str,
                      classes_table: pd.DataFrame, reproducibility: list[str]) -> Document:
    return Document("Ablation report", [
        Paragraph(INTRO),
        Table(table),
        Figure(Path(chart), "ablation",
               "Accuracy, trainable parameters, peak memory, train time and artefact size per variant."),
        Section("Main model", [
            Paragraph(main_line),
            Figure(Path(confusion), "confusion matrix",
                   "Validation confusion matrix of the main model (rows: true class)."),
            Table(classes_table),
        ]),
        Section("Reproducibility", [Bullets(reproducibility)]),
    ])


def main(argv=None) -> None:
    args = stage_parser(
        __doc__,
        rows="reports/ablation",
        metrics="reports/train/metrics.json",
        run_record="reports/train/run.json",
        predictions="reports/val_predictions.csv",
        raw="data/raw",
        markdown="reports/ablation.md",
        html="reports/ablation.html",
        csv="reports/ablation.csv",
        summary="reports/ablation.json",
        chart="reports/ablation.png",
        confusion="reports/confusion_matrix.png",
        per_class="reports/per_class.csv",
    ).parse_args(argv)
    rows = read_rows(args.rows).sort_values(["params_trainable", "variant"])  # cheapest first
    table = rows[[c for c in COLUMNS if c in rows.columns]].rename(columns=COLUMNS)
    metrics = json.loads(Path(args.metrics).read_text())
    classes = json.loads((Path(args.raw) / "competition.json").read_text())["classes"]
    predictions = pd.read_csv(args.predictions, dtype=str, keep_default_na=False)
    classes_table = per_class(classes, predictions["label"], predictions["predicted"])

    io.write_csv(args.csv, table)
    io.write_json(args.summary, {"ablations": {  # for `dvc metrics show` and `dvc exp show`
        row["variant"]: {"accuracy": row["val_accuracy"], "macro_f1": row["val_macro_f1"],
                         **({"f1": row["val_f1"]} if "val_f1" in row else {}),
                         "trainable_params": int(row["params_trainable"])} for _, row in rows.iterrows()}})
    io.write_csv(args.per_class, classes_table)
    confusion_png(classes, predictions["label"], predictions["predicted"],
                  "Main model: validation confusion matrix", args.confusion)
    bar_chart(table, "variant", ["accuracy", "trainable", "peak memory MiB", "train s", "artefact MiB"],
              "Ablation: what each choice gives (accuracy) and costs", args.chart)

    record = json.loads(Path(args.run_record).read_text())
    document = ablation_document(table, args.chart, main_model_line(metrics), args.confusion, classes_table,
                                 reproducibility_lines(record, rows["seed"]))
    io.write_text(args.markdown, to_markdown(document, args.markdown))
    io.write_text(args.html, to_html(document))  # reads the PNGs above: write it after them
    print(f"report: {len(table)} variants -> {args.markdown}, {args.html}")


if __name__ == "__main__":
    raise SystemExit(run(main))
