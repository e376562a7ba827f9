"""cv: pool the k fold jobs: the out-of-fold score with its spread, and a fold-averaged submission.

Reads k from data/folds (split wrote it from split.folds) and each fold job's oof.csv and
test_probabilities.csv under --fold-results/<fold>/. Writes, to --out: oof_predictions.csv (every
labelled row once, predicted by the model that did not train on it), submission.csv (the mean of
the k models' test probabilities, in sample_submission's exact format: labels or probabilities)
and cv.md (the per-fold table and the pooled out-of-fold scores); and to --metrics the scores
(`dvc metrics show`): out-of-fold accuracy, macro-F1 and log loss, and the folds' mean, standard
deviation, lowest and highest accuracy. With one fold there is no cross-validation: it says so.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from workflow.core import io
from workflow.core.cli import run, stage_parser
from workflow.core.errors import UserError
from workflow.data import folds as fold_files
from workflow.data.competition_info import read_competition
from workflow.data.submission_format import submission

SECTIONS = ()  # k comes with data/folds, which split writes from split.folds


def log_probabilities(frame: pd.DataFrame, classes: list[str]) -> np.ndarray:
    """The p_<class> columns as logits whose softmax gives them back (the scores' and infer's input)."""
    return np.log(np.clip(frame[[f"p_{label}" for label in classes]].to_numpy(np.float64), 1e-300, None))


def read_fold(results: Path, fold: int, name: str) -> pd.DataFrame:
    path = results / str(fold) / name
    if not path.is_file():
        raise UserError(f"{path}: missing; run the fold job first: dvc repro fold@{fold}")
    return pd.read_csv(path, dtype={"id": str, "path": str, "label": str}, keep_default_na=False)


def main(argv=None) -> None:
    from workflow.models.scores import classification_scores  # scikit-learn: not for --help

    args = stage_parser(__doc__, raw="data/raw", folds="data/folds", fold_results="reports/folds",
                        out="reports/cv", metrics="reports/cv.json").parse_args(argv)
    k = fold_files.count(args.folds)
    if k == 1:
        note = "No cross-validation: split.folds lists one fold (list 0, 1, 2 for 3 folds)."
        with io.atomic_path(args.out) as out:
            out.mkdir()
            (out / "cv.md").write_text(f"# Cross-validation\n\n{note}\n")
        io.write_json(args.metrics, {"cv": {"folds": 1}})
        print(f"cv: {note}")
        return
    raw, results = Path(args.raw), Path(args.fold_results)
    competition = read_competition(raw)
    classes = competition["classes"]
    index = {label: i for i, label in enumerate(classes)}
    oof = pd.concat([read_fold(results, fold, fold_files.OOF_FILE) for fold in range(k)], ignore_index=True)
    key = oof.columns[0]
    if oof[key].duplicated().any() or len(oof) != len(pd.read_csv(raw / "train.csv", dtype=str)):
        raise UserError(f"{results}: the folds' held-out rows are not every labelled row once; re-run the fold "
                        f"jobs after kfold (dvc repro)")
    oof = oof.sort_values(key).reset_index(drop=True)
    labels, logits = oof["label"].map(index).to_numpy(), log_probabilities(oof, classes)
    pooled = classification_scores(labels, logits)
    rows = []
    for fold in range(k):
        held_out = (oof["fold"] == fold).to_numpy()
        rows.append({"fold": fold, "rows": int(held_out.sum()),
                     **classification_scores(labels[held_out], logits[held_out])})
    per_fold = pd.DataFrame(rows)
    spread = per_fold["accuracy"].agg(["mean", "std", "min", "max"])
    test = [read_fold(results, fold, fold_files.TEST_FILE) for fold in range(k)]
    mean = np.mean([frame[[f"p_{label}" for label in classes]].to_numpy(np.float64) for frame in test], axis=0)
    sample = pd.read_csv(raw / "sample_submission.csv", dtype=str, keep_default_na=False)
    averaged = submission(sample, competition, mean, classes)

    scores = {"folds": k, **{f"oof_{name}": value for name, value in pooled.items()},
              **{f"fold_accuracy_{name}": float(value) for name, value in spread.items()}}
    with io.atomic_path(args.out) as out:
        out.mkdir()
        predicted = [classes[i] for i in logits.argmax(axis=1)]
        oof.assign(predicted=predicted).to_csv(out / "oof_predictions.csv", index=False)
        averaged.to_csv(out / "submission.csv", index=False)
        (out / "cv.md").write_text(markdown(per_fold, scores))
    io.write_json(args.metrics, {"cv": scores})
    print(f"cv: {k} folds, out-of-fold accuracy {pooled['accuracy']:.4f} (folds {spread['mean']:.4f} +- "
          f"{spread['std']:.4f}, {spread['min']:.4f}-{spread['max']:.4f}), log loss {pooled['log_loss']:.4f}; "
          f"fold-averaged submission -> {Path(args.out) / 'submission.csv'}")


def markdown(per_fold: pd.DataFrame, scores: dict) -> str:
    from workflow.reporting.tables import table_text

    shown = per_fold.rename(columns={"macro_f1": "macro-F1", "log_loss": "log loss", "f1": "F1"})
    return (f"# Cross-validation: {scores['folds']} folds\n\n"
            f"Out-of-fold (every labelled row predicted by the model that did not train on it): accuracy "
            f"{scores['oof_accuracy']:.4f}, macro-F1 {scores['oof_macro_f1']:.4f}, log loss "
            f"{scores['oof_log_loss']:.4f}. Across folds: accuracy {scores['fold_accuracy_mean']:.4f} +- "
            f"{scores['fold_accuracy_std']:.4f} (sd), from {scores['fold_accuracy_min']:.4f} to "
            f"{scores['fold_accuracy_max']:.4f}.\n\n{table_text(shown, 'pipe')}\n\n"
            "The submission (submission.csv) is the mean of the fold models' test probabilities.\n")


if __name__ == "__main__":
    raise SystemExit(run(main))
