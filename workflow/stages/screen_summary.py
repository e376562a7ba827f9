"""screen_summary: rank the screened candidates and name the winner.

Reads every candidate's row from the screen jobs and writes reports/screening.csv, a Markdown
table, a bar chart, and the winner (best validation accuracy, then macro-F1, then fewer trainable
parameters). The winner file holds only the winner's identity, so train (model.name:
screening-winner) re-runs only when the winner changes.
"""
from __future__ import annotations

from workflow import io
from workflow.cli import run, stage_parser
from workflow.reporting import bar_chart, markdown_table, read_rows

SECTIONS = ()  # reads no params: only the screen jobs' rows
COLUMNS = ["candidate", "model", "method", "val_accuracy", "val_macro_f1", "params_trainable",
           "params_total", "train_seconds", "peak_rss_mib"]


def main(argv=None) -> None:
    args = stage_parser(
        __doc__,
        rows="reports/screening",
        csv="reports/screening.csv",
        markdown="reports/screening.md",
        chart="reports/screening.png",
        winner="reports/screening_winner.json",
    ).parse_args(argv)
    rows = read_rows(args.rows)
    rows = rows.sort_values(["val_accuracy", "val_macro_f1", "params_trainable", "candidate"],
                            ascending=[False, False, True, True]).reset_index(drop=True)
    table = rows[[c for c in COLUMNS if c in rows.columns]]
    best = rows.iloc[0]

    io.write_csv(args.csv, table)
    io.write_text(args.markdown, f"# Model-zoo screening\n\nEvery candidate: {best['method']}, "
                                 f"{best['epochs']} epochs. Winner: **{best['candidate']}**.\n\n"
                                 + markdown_table(table))
    bar_chart(table, "candidate", ["val_accuracy", "params_trainable", "train_seconds"],
              "Model-zoo screening: same budget for every candidate", args.chart)
    io.write_json(args.winner, {"candidate": best["candidate"], "model": best["model"],
                                "targets": list(best["targets"])})
    print(f"screen_summary: {len(rows)} candidates, winner {best['candidate']} "
          f"(val accuracy {best['val_accuracy']:.4f})")


if __name__ == "__main__":
    raise SystemExit(run(main))
