"""train: fine-tune model.name with train.method (LoRA by default) and validate every epoch.

The recipe: peft LoRA on the attention projections named in lora.targets (or another method: full,
head, last_layers, bitfit), the classifier head trained and saved with it, AdamW, a linear schedule
with warmup over optimizer steps, and gradient accumulation over train.grad_accum_steps
micro-batches. Metrics and curves go to dvclive (`dvc exp show`, `dvc plots show`); the trained
artefact (safetensors: the adapter and head, or only the trained tensors) and what infer needs to
rebuild the base model go to the output folder; validation predictions go to a CSV for the report.
train.select keeps the last epoch's weights or the best one's (train.select_metric), and
train.early_stopping_patience stops a run that no longer improves; the kept epoch and why are
printed, logged and saved with the artefact. A temperature for calibrated probabilities is fitted
on the validation logits (infer applies it with infer.calibrate). After every epoch the run's state
goes to --checkpoint (outside DVC's outputs, which DVC deletes before a re-run); a re-run of the
same run resumes there and ends bit-identical to an uninterrupted one (num_workers 0); the
checkpoint is deleted once the outputs are written.
"""
from __future__ import annotations

import contextlib
import json
from pathlib import Path

import pandas as pd

from workflow.config import load_sections
from workflow.core import io, runlock
from workflow.core.cli import run, stage_parser
from workflow.data.labelled import LabelledData
from workflow.models.calibration import calibration_record
from workflow.models.methods import META_FILE, artefact_bytes, save
from workflow.recipe import Recipe
from workflow.reporting import model_card
from workflow.training import checkpoint
from workflow.training.live import EpochLog
from workflow.training.loop import FitResult, fit
from workflow.training.provenance import run_record
from workflow.training.runtime import is_main_process

SECTIONS = ("model", "lora", "train")  # the params sections this stage reads; dvc.yaml lists their keys


def parse_args(argv=None):
    return stage_parser(
        __doc__,
        raw="data/raw",
        split="data/split",
        pipelines="data/augment/pipelines.json",
        cache="data/cache",
        out="models/adapter",
        live="reports/train",
        predictions="reports/val_predictions.csv",
        run_record="reports/train/run.json",
        checkpoint=".checkpoints/train",
    ).parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    # One trainer per checkpoint: another one (a second `dvc repro` after a killed first, say) is
    # refused in one line naming the first one's PID (workflow/core/runlock.py).
    with runlock.hold(args.checkpoint) if is_main_process() else contextlib.nullcontext():
        train(args)


def train(args, desc: str = "train") -> tuple[FitResult, LabelledData] | None:
    """Train, write every output; the result and its data on the process that writes (None elsewhere).
    `desc` names the run in the progress bar and the messages ('fold 2' for a cross-validation fold)."""
    sections = load_sections(*SECTIONS, path=args.params)
    if is_main_process():  # the one that writes: a read-only or missing folder fails now, not after training
        io.check_writable(args.out, args.predictions, args.run_record, Path(args.live) / "metrics.json",
                          Path(args.checkpoint) / checkpoint.STATE_FILE)
    recipe = Recipe.from_sections(sections["model"], sections["lora"], sections["train"])
    data = LabelledData.load(args.raw, args.split, args.pipelines, args.cache)

    logger = EpochLog(args.live)  # under `accelerate launch` every process trains; rank 0 writes
    result = fit(recipe, data, sections["train"], desc=desc, on_epoch=logger.log, checkpoint=args.checkpoint)
    if not result.is_main:
        return None

    # Fitted on every run (milliseconds); infer applies it when infer.calibrate is on.
    calibration = calibration_record(data.labels(data.val), result.val_logits)
    meta = {"recipe": recipe.model_dump(), "classes": data.classes, "task": data.task,
            "backbone_sha256": result.backbone_sha256, "kept_epoch": result.kept_epoch,
            "selection": result.selection_note, "calibration": calibration}
    with io.atomic_path(args.out) as out:
        save(result.model, recipe, out)
        (out / META_FILE).write_text(json.dumps(meta, indent=2) + "\n")
        model_card.write(out, recipe, data, result, calibration)  # README.md: the Hub's model card
    predicted = result.val_logits.argmax(axis=1)
    io.write_csv(args.predictions, pd.DataFrame({
        data.keys(data.val).name: data.keys(data.val), "label": data.val["label"],
        "predicted": [data.classes[i] for i in predicted],
    }))
    logger.close(result, artefact_bytes(args.out) / 2**20,
                 extra={f"calibration/{key}": value for key, value in calibration.items()})
    io.write_json(args.run_record, run_record(data.seeds() | {"train.seed": recipe.train.seed}, str(result.device),
                                              images_per_process=result.images_per_process))
    checkpoint.remove(args.checkpoint)
    print(f"{desc}: val accuracy {result.scores['accuracy']:.4f}, macro-F1 {result.scores['macro_f1']:.4f}, "
          f"log loss {calibration['log_loss_before']:.4f} ({calibration['log_loss_after']:.4f} after temperature "
          f"scaling, T = {calibration['temperature']:.3f}), {result.train_seconds:.1f} s -> {args.out}")
    return result, data


if __name__ == "__main__":
    raise SystemExit(run(main))
