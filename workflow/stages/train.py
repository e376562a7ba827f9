"""train: fine-tune model.name with train.method (LoRA by default) and validate every epoch.

The recipe: peft LoRA on the attention projections named in lora.targets (or another method: full,
head, last_layers, bitfit), the classifier head trained and saved with it, AdamW, a linear schedule
with warmup over optimizer steps, and gradient accumulation over train.grad_accum_steps
micro-batches. Metrics and curves go to dvclive (`dvc exp show`, `dvc plots show`); the trained
artefact (safetensors: the adapter and head, or only the trained tensors) and what infer needs to
rebuild the base model go to the output folder; validation predictions go to a CSV for the report.
After every epoch the run's state goes to --checkpoint (outside DVC's outputs, which DVC deletes
before a re-run); a re-run of the same run resumes there and ends bit-identical to an uninterrupted
one (num_workers 0); the checkpoint is deleted once the outputs are written.
"""
from __future__ import annotations

import contextlib
import json
from dataclasses import asdict
from pathlib import Path

import pandas as pd

from workflow import checkpoint, io, runlock
from workflow.cli import run, stage_parser
from workflow.config import load_sections
from workflow.live import AtomicLive
from workflow.provenance import run_record
from workflow.methods import META_FILE, MethodSpec, artefact_bytes, save
from workflow.training import Dataset, Hyper, fit, is_main_process

SECTIONS = ("model", "lora", "train")  # the params sections this stage reads; dvc.yaml lists their keys


def method_spec(lora, train) -> MethodSpec:
    return MethodSpec(name=train.method, r=lora.r, alpha=lora.alpha, dropout=lora.dropout,
                      targets=tuple(lora.targets), last_layers=train.last_layers)


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
    # refused in one line naming the first one's PID (workflow/runlock.py).
    with runlock.hold(args.checkpoint) if is_main_process() else contextlib.nullcontext():
        train(args)


def train(args) -> None:
    sections = load_sections(*SECTIONS, path=args.params)
    if is_main_process():  # the one that writes: a read-only or missing folder fails now, not after training
        io.check_writable(args.out, args.predictions, args.run_record, Path(args.live) / "metrics.json",
                          Path(args.checkpoint) / checkpoint.STATE_FILE)
    model_params, params = sections["model"], sections["train"]
    model_name, method = model_params.name, method_spec(sections["lora"], params)
    hyper = Hyper.from_params(params)
    data = Dataset.load(args.raw, args.split, args.pipelines, args.cache)

    live = None

    def log_epoch(row: dict) -> None:
        nonlocal live
        # Under `accelerate launch` every process trains; only the main one (rank 0) writes anything.
        if not is_main_process():
            return
        if live is None:  # opened (and the previous run's metrics cleared) once an epoch has results
            live = AtomicLive(args.live, save_dvc_exp=False, dvcyaml=None)
        live.log_metric("train/loss", row["loss"])
        live.log_metric("train/learning_rate", row["lr"])  # not train/lr: that names a param
        live.log_metric("val/accuracy", row["accuracy"])
        live.log_metric("val/macro_f1", row["macro_f1"])
        live.next_step()

    result = fit(model_name, method, hyper, data, on_epoch=log_epoch, checkpoint=args.checkpoint,
                 trust_remote_code=model_params.trust_remote_code)
    if not result.is_main:
        return

    meta = {"model_name": model_name, "trust_remote_code": model_params.trust_remote_code,
            "classes": data.classes, "init_seed": hyper.seed,
            "backbone_sha256": result.backbone_sha256, "method": asdict(method)}
    with io.atomic_path(args.out) as out:
        save(result.model, method, out)
        (out / META_FILE).write_text(json.dumps(meta, indent=2) + "\n")
    predicted = result.val_logits.argmax(axis=1)
    io.write_csv(args.predictions, pd.DataFrame({
        "path": data.val["path"], "label": data.val["label"],
        "predicted": [data.classes[i] for i in predicted],
    }))

    live.summary.update({
        "model/trainable_params": result.trainable,
        "model/total_params": result.total,
        "model/trainable_pct": 100 * result.trainable / result.total,
        "time/train_s": result.train_seconds,
        "time/images_per_s": result.images_per_second,
        "artefact/mib": artefact_bytes(args.out) / 2**20,
        **{f"memory/{key}": value for key, value in result.peak_memory.items()},
    })
    live.end()
    io.write_json(args.run_record, run_record(data.seeds() | {"train.seed": hyper.seed}, str(result.device),
                                              images_per_process=result.images_per_process))
    checkpoint.remove(args.checkpoint)
    print(f"train: val accuracy {result.scores['accuracy']:.4f}, macro-F1 {result.scores['macro_f1']:.4f}, "
          f"{result.train_seconds:.1f} s -> {args.out}")


if __name__ == "__main__":
    raise SystemExit(run(main))
