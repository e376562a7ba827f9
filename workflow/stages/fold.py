"""fold: one fold of k-fold cross-validation: the main model's recipe trained on the other folds.

dvc.yaml runs this once per entry of split.folds (foreach), each fold its own cached job. The job
trains exactly what train trains (params model, lora and train; the same code), on
data/folds/<fold>/train.csv, validates on that fold's rows, and writes the fold's artefact and
dvclive curves, its out-of-fold class probabilities (oof.csv: every validation row, with its fold)
and its class probabilities for every test row (test_probabilities.csv); the cv stage pools them.
With one fold (split.folds: [0], the default) there is no cross-validation: the job writes a note
saying so and trains nothing (train's holdout split is the run).
"""
from __future__ import annotations

import argparse
import contextlib
import json
from pathlib import Path

from workflow.core import io, runlock
from workflow.core.cli import run, stage_parser
from workflow.core.errors import UserError
from workflow.data import folds as fold_files

SECTIONS = ("model", "lora", "train")  # the main model's recipe, as train reads it


def parser() -> argparse.ArgumentParser:
    parser = stage_parser(__doc__, raw="data/raw", folds="data/folds", pipelines="data/augment/pipelines.json",
                          cache="data/cache")
    parser.add_argument("--fold", type=int, required=True, help="the fold held out: an entry of split.folds")
    parser.add_argument("--model-out", required=True, help="folder for the fold's artefact")
    parser.add_argument("--out", required=True, help="folder for the fold's curves, oof.csv and test_probabilities.csv")
    return parser


def main(argv=None) -> None:
    args = parser().parse_args(argv)
    folds = Path(args.folds)
    k = fold_files.count(folds)
    if args.fold >= k:
        raise UserError(f"split.folds: no fold {args.fold} in {folds} ({k} folds); re-run kfold (dvc repro kfold)")
    if k == 1:
        note = {"fold": args.fold, "folds": 1, "note": "no cross-validation: split.folds lists one fold; list "
                                                        "0, 1, 2 for 3 folds"}
        for folder in (args.model_out, args.out):
            with io.atomic_path(folder) as out:
                out.mkdir()
                (out / fold_files.NOTE_FILE).write_text(json.dumps(note, indent=2) + "\n")
        print(f"fold {args.fold}: {note['note']}")
        return
    from workflow.training.runtime import is_main_process

    checkpoint = f".checkpoints/fold-{args.fold}"  # outside DVC's outputs, as train's
    # One trainer per checkpoint, as for train; under `accelerate launch` only rank 0 holds the lock.
    with runlock.hold(checkpoint) if is_main_process() else contextlib.nullcontext():
        train_fold(args, folds / str(args.fold), checkpoint, k)


def train_fold(args, split: Path, checkpoint: str, k: int) -> None:
    import pandas as pd

    from workflow.config import load_sections
    from workflow.models.scores import probabilities
    from workflow.stages import infer, train

    out = Path(args.out)
    trained = train.train(argparse.Namespace(
        params=args.params, raw=args.raw, split=str(split), pipelines=args.pipelines, cache=args.cache,
        out=args.model_out, live=str(out), predictions=str(out / "val_predictions.csv"),
        run_record=str(out / "run.json"), checkpoint=checkpoint), desc=f"fold {args.fold}")
    if trained is None:  # not the writing process under a launcher
        return
    result, data = trained
    columns = {f"p_{label}": column for label, column in zip(data.classes, probabilities(result.val_logits).T)}
    key = data.keys(data.val)
    oof = pd.DataFrame({key.name: key.to_numpy(), "label": data.val["label"].to_numpy(), "fold": args.fold, **columns})
    io.write_csv(out / fold_files.OOF_FILE, oof)
    sections = load_sections("model", "train", path=args.params)
    logits = infer.test_logits(args, result.model, sections["model"].name, result.device, sections["train"].batch_size,
                               stage=f"fold {args.fold}")
    test = pd.read_csv(Path(args.raw) / "test.csv", dtype=str, keep_default_na=False)
    io.write_csv(out / fold_files.TEST_FILE, pd.DataFrame({"id": test["id"], **{
        f"p_{label}": column for label, column in zip(data.classes, probabilities(logits).T)}}))
    print(f"fold {args.fold} of {k}: val accuracy {result.scores['accuracy']:.4f} on {len(oof)} held-out rows; "
          f"{len(test)} test rows predicted -> {out}")


if __name__ == "__main__":
    raise SystemExit(run(main))
