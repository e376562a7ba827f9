"""screen_summary: rank the screened candidates and name the winner.

Reads every candidate's row from the screen jobs and writes reports/screening.csv, a bar chart,
a Markdown page (the ranking, the chart and the command that trains the winner), the metrics DVC
shows (`dvc metrics show`, `dvc exp show`), and the winner (best validation accuracy, then
macro-F1, then fewer trainable parameters) with the one command that trains it. Train does not
read the winner: it trains model.name, so a screening run never re-runs train, and `dvc repro
infer` runs no screening job.
"""
from __future__ import annotations

import shlex
from pathlib import Path

import pandas as pd

from workflow.config import load_params
from workflow.core import io
from workflow.core.cli import run, stage_parser
from workflow.reporting.charts import bar_chart
from workflow.reporting.document import CodeBlock, Document, Figure, InlineCode, Paragraph, Strong, Table
from workflow.reporting.render import to_markdown
from workflow.reporting.tables import read_rows

SECTIONS = ()  # reads the screen jobs' rows, and of params only which jobs exist:
KEYS = ("screen.candidates",)  # a removed candidate's old row is left out
COLUMNS = ["candidate", "model", "method", "val_accuracy", "val_macro_f1", "params_trainable",
           "params_total", "input_size", "normalize", "train_seconds", "peak_rss_mib"]


# The chart's panels, titled with their units.
CHART = {"val_accuracy": "validation accuracy %", "params_trainable": "trainable parameters",
         "train_seconds": "train s"}


def chart_columns(table: pd.DataFrame) -> pd.DataFrame:
    return table.assign(val_accuracy=100 * table["val_accuracy"]).rename(columns=CHART)


def is_text(row) -> bool:
    return row.get("task") == "text"


def train_command(winner) -> str:
    """The one step that trains the winner: an experiment with its model, LoRA targets and (images)
    input size; a text model's input is its tokens, which the cache stage re-tokenizes for it."""
    settings = [f"model.name={winner['model']}", f"lora.targets=[{','.join(winner['targets'])}]"]
    if not is_text(winner):
        settings.append(f"augment.image_size={int(winner['input_size'])}")
    return "dvc exp run " + " ".join(f"-S {shlex.quote(s)}" for s in settings)


def screening_document(table: pd.DataFrame, best: pd.Series, command: str, chart: Path | str) -> Document:
    return Document("Model-zoo screening", [
        Paragraph([f"Every candidate: {best['method']}, {best['epochs']} epochs. Winner: ",
                   Strong(best["candidate"]), "."]),
        Paragraph(["To train the winner:"] if is_text(best) else
                  ["To train the winner (set ", InlineCode("cache.image_size"),
                   f" at or above its input size {int(best['input_size'])}):"]),
        CodeBlock(command),
        Table(table),
        Figure(Path(chart), "screening", "Validation accuracy, trainable parameters and training time per "
                                         "candidate, best first."),
    ])


def main(argv=None) -> None:
    args = stage_parser(
        __doc__,
        rows="reports/screening",
        csv="reports/screening.csv",
        markdown="reports/screening.md",
        chart="reports/screening.png",
        metrics="reports/screening.json",
        winner="reports/screening_winner.json",
    ).parse_args(argv)
    rows = read_rows(args.rows, list(load_params(args.params).screen.candidates), "screen")
    rows = rows.sort_values(["val_accuracy", "val_macro_f1", "params_trainable", "candidate"],
                            ascending=[False, False, True, True]).reset_index(drop=True)
    table = rows[[c for c in COLUMNS if c in rows.columns]]
    best = rows.iloc[0]
    command = train_command(best)

    io.write_csv(args.csv, table)
    io.write_text(args.markdown, to_markdown(screening_document(table, best, command, args.chart), args.markdown))
    bar_chart(chart_columns(table), "candidate", list(CHART.values()),
              "Model-zoo screening: same budget for every candidate", args.chart)
    io.write_json(args.metrics, {"screening": {
        row["candidate"]: {"accuracy": row["val_accuracy"], "macro_f1": row["val_macro_f1"]}
        for _, row in rows.iterrows()}})
    io.write_json(args.winner, {"candidate": best["candidate"], "model": best["model"],
                                "targets": list(best["targets"]), "input_size": int(best["input_size"]),
                                "train_command": command})
    print(f"screen_summary: {len(rows)} candidates, winner {best['candidate']} "
          f"(val accuracy {best['val_accuracy']:.4f}); to train it: {command}")


if __name__ == "__main__":
    raise SystemExit(run(main))
