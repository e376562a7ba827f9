"""The training loop shared by train, screen and the ablation variants: one recipe, read top to bottom.

AdamW over the trainable weights, a linear schedule with warmup that counts optimizer steps, and
gradient accumulation over `grad_accum_steps` micro-batches; validation after every epoch.
"""
from __future__ import annotations

import json
import math
import random
import resource
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import albumentations as A
import numpy as np
import pandas as pd
import torch
from tqdm import tqdm
from transformers import get_linear_schedule_with_warmup

from workflow import checkpoint as ckpt
from workflow.data.dataset import ImageDataset, make_loader
from workflow.errors import UserError
from workflow.methods import MethodSpec, prepare
from workflow.models.lora import count_parameters
from workflow.models.predict import classification_scores, pick_device, predict_logits
from workflow.models.zoo import backbone_checksum, input_size, load_model
from workflow.transforms import load_pipeline


@dataclass(frozen=True)
class Hyper:
    lr: float
    batch_size: int
    grad_accum_steps: int
    epochs: int
    warmup_ratio: float
    weight_decay: float
    seed: int
    num_workers: int = 0
    device: str = "auto"

    @classmethod
    def from_params(cls, section) -> "Hyper":
        """The fields a params section (train, or an ablation recipe) has; the rest keep defaults."""
        return cls(**{name: getattr(section, name) for name in cls.__dataclass_fields__ if hasattr(section, name)})


@dataclass(frozen=True)
class Dataset:
    """The labelled images as the split stage left them, and the serialized pipelines."""

    raw: Path
    classes: list[str]
    train: pd.DataFrame
    val: pd.DataFrame
    pipelines: Path

    @classmethod
    def load(cls, raw: Path | str, split: Path | str, pipelines: Path | str) -> "Dataset":
        raw, split = Path(raw), Path(split)
        read = lambda name: pd.read_csv(split / f"{name}.csv", dtype=str, keep_default_na=False)  # noqa: E731
        classes = json.loads((raw / "competition.json").read_text())["classes"]
        return cls(raw=raw, classes=classes, train=read("train"), val=read("val"), pipelines=Path(pipelines))

    def labels(self, frame: pd.DataFrame) -> np.ndarray:
        index = {label: i for i, label in enumerate(self.classes)}
        return np.array([index[label] for label in frame["label"]], dtype=np.int64)


@dataclass
class FitResult:
    model: torch.nn.Module
    backbone_sha256: str
    scores: dict[str, float]
    val_logits: np.ndarray
    trainable: int
    total: int
    train_seconds: float
    images_per_second: float
    peak_memory: dict[str, float]
    history: list[dict[str, float]] = field(default_factory=list)

    def row(self) -> dict[str, float]:
        """The measurements every report row carries (screening and ablation alike)."""
        return {
            "val_accuracy": self.scores["accuracy"],
            "val_macro_f1": self.scores["macro_f1"],
            "params_trainable": self.trainable,
            "params_total": self.total,
            "trainable_pct": 100 * self.trainable / self.total,
            "train_seconds": self.train_seconds,
            **self.peak_memory,
        }


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def peak_memory_mib(device: torch.device, rss_before: float) -> dict[str, float]:
    """Peak memory of the run; on CPU also its growth over what the process held before training
    (interpreter, libraries, data), which is the part that differs between methods."""
    if device.type == "cuda":
        return {"peak_gpu_mib": torch.cuda.max_memory_allocated(device) / 2**20}
    peak = peak_rss_mib()
    return {"peak_rss_mib": peak, "training_rss_mib": peak - rss_before}


def train_one_epoch(model, loader, optimizer, scheduler, accum: int, device, progress) -> float:
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


def pipelines_for(data: Dataset, size: int, augment: bool, seed: int,
                  resize: bool) -> tuple[A.Compose, A.Compose]:
    """Train and eval pipelines; without augmentation, training sees the eval transforms."""
    target = size if resize else None
    train_pipeline, built_size = load_pipeline(data.pipelines, "train" if augment else "eval", seed, target)
    eval_pipeline, _ = load_pipeline(data.pipelines, "eval", size=target)
    if built_size != size:
        raise UserError(f"augment.image_size: {built_size}, but the model takes {size}x{size} images; "
                        f"set augment.image_size: {size}")
    return train_pipeline, eval_pipeline


def fit(model_name: str, method: MethodSpec, hyper: Hyper, data: Dataset, *, augment: bool = True,
        resize: bool = False, desc: str = "train",
        on_epoch: Callable[[dict[str, float]], None] | None = None,
        checkpoint: Path | str | None = None) -> FitResult:
    """Build `model_name` for the data's classes, apply `method`, train, and validate every epoch.

    `resize` fits the declared pipelines to the model's input size instead of insisting they match.
    `checkpoint`: a folder to save the run's state to after every epoch and to resume from when it
    holds the state of this same run (see workflow/checkpoint.py); the caller deletes it once its
    outputs are written. On resume, `on_epoch` is first called again for every restored epoch.
    """
    seed_everything(hyper.seed)
    device = pick_device(hyper.device)
    rss_before = peak_rss_mib()
    base = load_model(model_name, data.classes, seed=hyper.seed)
    train_pipeline, eval_pipeline = pipelines_for(data, input_size(base), augment, hyper.seed, resize)
    checksum = backbone_checksum(base)
    model = prepare(base, method).to(device)
    trainable, total = count_parameters(model)
    print(f"{desc}: {type(base).__name__} with {method.name}, {trainable:,} of {total:,} parameters "
          f"trainable ({100 * trainable / total:.2f}%) on {device}")

    train_set = ImageDataset(data.raw, data.train["path"], train_pipeline, data.labels(data.train))
    val_labels = data.labels(data.val)
    val_set = ImageDataset(data.raw, data.val["path"], eval_pipeline, val_labels)
    train_loader = make_loader(train_set, hyper.batch_size, hyper.num_workers, shuffle=True, seed=hyper.seed)
    val_loader = make_loader(val_set, hyper.batch_size, hyper.num_workers)

    # The schedule counts optimizer steps, not micro-batches.
    total_steps = hyper.epochs * math.ceil(len(train_loader) / hyper.grad_accum_steps)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad],
                                  lr=hyper.lr, weight_decay=hyper.weight_decay)
    scheduler = get_linear_schedule_with_warmup(optimizer, math.ceil(hyper.warmup_ratio * total_steps), total_steps)

    history: list[dict[str, float]] = []
    start, elapsed = 0, 0.0
    if checkpoint is not None:
        run_id = ckpt.fingerprint(
            model=model_name, method=asdict(method), hyper=asdict(hyper), augment=augment, resize=resize,
            device=str(device), backbone=checksum, classes=data.classes,
            train=data.train.to_csv(index=False), val=data.val.to_csv(index=False),
            pipelines=data.pipelines.read_text())
        state = ckpt.load(checkpoint, run_id)
        if state is not None:
            start, history, elapsed = ckpt.restore(state, model=model, optimizer=optimizer, scheduler=scheduler,
                                                   loader_generator=train_loader.generator, pipeline=train_pipeline)
            caveat = (" (num_workers > 0: augmentations after the resume differ from an uninterrupted run)"
                      if hyper.num_workers > 0 else "")
            print(f"{desc}: resuming from {Path(checkpoint) / ckpt.STATE_FILE} after epoch {start} "
                  f"of {hyper.epochs}{caveat}")
            for row in history:
                if on_epoch is not None:
                    on_epoch(row)
    progress = tqdm(total=hyper.epochs * len(train_loader), initial=start * len(train_loader), desc=desc,
                    unit="batch", mininterval=1.0)
    started = time.perf_counter()
    for epoch in range(start, hyper.epochs):
        lr = scheduler.get_last_lr()[0]
        loss = train_one_epoch(model, train_loader, optimizer, scheduler, hyper.grad_accum_steps, device, progress)
        val_logits = predict_logits(model, val_loader, device)
        scores = classification_scores(val_labels, val_logits)
        history.append({"epoch": epoch + 1, "loss": loss, "lr": lr, **scores})
        if on_epoch is not None:
            on_epoch(history[-1])
        if checkpoint is not None:
            ckpt.save(checkpoint, fingerprint=run_id, epoch=epoch + 1, history=history,
                      elapsed=elapsed + time.perf_counter() - started, model=model, optimizer=optimizer,
                      scheduler=scheduler, loader_generator=train_loader.generator, pipeline=train_pipeline)
        progress.set_postfix(epoch=epoch + 1, loss=f"{loss:.3f}", val_acc=f"{scores['accuracy']:.3f}")
    progress.close()
    if start == hyper.epochs:  # resumed after the last epoch: only the outputs were missing
        val_logits = predict_logits(model, val_loader, device)
        scores = classification_scores(val_labels, val_logits)
    seconds = elapsed + time.perf_counter() - started
    return FitResult(
        model=model, backbone_sha256=checksum, scores=scores, val_logits=val_logits,
        trainable=trainable, total=total, train_seconds=seconds,
        images_per_second=hyper.epochs * len(train_set) / seconds,
        peak_memory=peak_memory_mib(device, rss_before), history=history,
    )
