"""train: fine-tune model.name with LoRA on the training split, validating every epoch.

The recipe: peft LoRA on the attention projections named in lora.targets, the classifier head
trained and saved with the adapter, AdamW, a linear schedule with warmup over optimizer steps, and
gradient accumulation over train.grad_accum_steps micro-batches. Metrics and curves go to dvclive
(`dvc exp show`, `dvc plots show`); the adapter (safetensors) and what infer needs to rebuild the
base model go to the output folder.
"""
from __future__ import annotations

import json
import math
import random
import resource
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from dvclive import Live
from tqdm import tqdm
from transformers import get_linear_schedule_with_warmup

from workflow import io
from workflow.cli import run, stage_parser
from workflow.config import load_sections
from workflow.data.dataset import ImageDataset, make_loader
from workflow.errors import UserError
from workflow.models.lora import count_parameters, wrap_lora
from workflow.models.predict import classification_scores, pick_device, predict_logits
from workflow.models.zoo import backbone_checksum, input_size, load_model
from workflow.transforms import load_pipeline

SECTIONS = ("model", "lora", "train")  # the params sections this stage reads; dvc.yaml lists their keys

META_FILE = "model_meta.json"


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def peak_memory_mib(device: torch.device) -> dict[str, float]:
    if device.type == "cuda":
        return {"peak_gpu_mib": torch.cuda.max_memory_allocated(device) / 2**20}
    return {"peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def train_one_epoch(model, loader, optimizer, scheduler, accum: int, device, progress: tqdm) -> float:
    """One pass; an optimizer step every `accum` micro-batches (and after the last). Mean loss."""
    model.train()
    total_loss = torch.zeros((), device=device)  # summed on device: no host sync per step
    num_batches = len(loader)
    for i, (pixels, labels) in enumerate(loader):
        group_start = i - i % accum
        group_size = min(accum, num_batches - group_start)  # the last group may be shorter
        loss = model(pixel_values=pixels.to(device), labels=labels.to(device)).loss
        (loss / group_size).backward()
        total_loss += loss.detach()
        if i + 1 == group_start + group_size:
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
        progress.update(1)
    return total_loss.item() / num_batches


def main(argv=None) -> None:
    args = stage_parser(
        __doc__,
        raw="data/raw",
        split="data/split",
        pipelines="data/augment/pipelines.json",
        out="models/adapter",
        live="reports/train",
    ).parse_args(argv)
    sections = load_sections(*SECTIONS, path=args.params)
    model_params, lora_params, params = sections["model"], sections["lora"], sections["train"]

    started = time.perf_counter()
    seed_everything(params.seed)
    device = pick_device(params.device)
    classes = json.loads((Path(args.raw) / "competition.json").read_text())["classes"]
    label_index = {label: i for i, label in enumerate(classes)}
    train_pipeline, image_size = load_pipeline(args.pipelines, "train", seed=params.seed)
    eval_pipeline, _ = load_pipeline(args.pipelines, "eval")

    model = load_model(model_params.name, classes, seed=params.seed)
    if input_size(model) != image_size:
        raise UserError(
            f"augment.image_size: {image_size}, but model.name '{model_params.name}' takes "
            f"{input_size(model)}x{input_size(model)} images; set augment.image_size: {input_size(model)}"
        )
    checksum = backbone_checksum(model)
    model = wrap_lora(model, lora_params.r, lora_params.alpha, lora_params.dropout, lora_params.targets)
    model.to(device)
    trainable, total = count_parameters(model)
    print(f"train: {type(model.base_model.model).__name__}, {trainable:,} of {total:,} parameters trainable "
          f"({100 * trainable / total:.2f}%) on {device}")

    frames = {name: pd.read_csv(Path(args.split) / f"{name}.csv", dtype=str, keep_default_na=False)
              for name in ("train", "val")}
    train_set = ImageDataset(args.raw, frames["train"]["path"], train_pipeline,
                             [label_index[label] for label in frames["train"]["label"]])
    val_labels = np.array([label_index[label] for label in frames["val"]["label"]])
    val_set = ImageDataset(args.raw, frames["val"]["path"], eval_pipeline, val_labels)
    train_loader = make_loader(train_set, params.batch_size, params.num_workers, shuffle=True, seed=params.seed)
    val_loader = make_loader(val_set, params.batch_size, params.num_workers)

    # The schedule counts optimizer steps, not micro-batches.
    total_steps = params.epochs * math.ceil(len(train_loader) / params.grad_accum_steps)
    optimizer = torch.optim.AdamW(
        [p for p in model.parameters() if p.requires_grad], lr=params.lr, weight_decay=params.weight_decay
    )
    scheduler = get_linear_schedule_with_warmup(optimizer, math.ceil(params.warmup_ratio * total_steps), total_steps)

    live = Live(args.live, save_dvc_exp=False, dvcyaml=None)
    progress = tqdm(total=params.epochs * len(train_loader), desc="train", unit="batch", mininterval=1.0)
    scores: dict[str, float] = {}
    train_started = time.perf_counter()
    for epoch in range(params.epochs):
        lr = scheduler.get_last_lr()[0]
        loss = train_one_epoch(model, train_loader, optimizer, scheduler, params.grad_accum_steps, device, progress)
        scores = classification_scores(val_labels, predict_logits(model, val_loader, device))
        live.log_metric("train/loss", loss)
        live.log_metric("train/lr", lr)
        live.log_metric("val/accuracy", scores["accuracy"])
        live.log_metric("val/macro_f1", scores["macro_f1"])
        live.next_step()
        progress.set_postfix(epoch=epoch + 1, loss=f"{loss:.3f}", val_acc=f"{scores['accuracy']:.3f}")
    progress.close()
    train_seconds = time.perf_counter() - train_started

    meta = {
        "model_name": model_params.name,
        "classes": classes,
        "init_seed": params.seed,
        "backbone_sha256": checksum,
        "image_size": image_size,
        "lora_targets": sorted(model.peft_config["default"].target_modules),
    }
    with io.atomic_path(args.out) as out:
        model.save_pretrained(out)  # adapter_model.safetensors: LoRA weights + the trained head
        (out / META_FILE).write_text(json.dumps(meta, indent=2) + "\n")

    live.summary.update({
        "params/trainable": trainable,
        "params/total": total,
        "params/trainable_pct": 100 * trainable / total,
        "time/train_s": train_seconds,
        "time/stage_s": time.perf_counter() - started,
        "time/images_per_s": params.epochs * len(train_set) / train_seconds,
        **{f"memory/{key}": value for key, value in peak_memory_mib(device).items()},
    })
    live.end()
    print(f"train: val accuracy {scores['accuracy']:.4f}, macro-F1 {scores['macro_f1']:.4f}, "
          f"{train_seconds:.1f} s -> {args.out}")


if __name__ == "__main__":
    raise SystemExit(run(main))
