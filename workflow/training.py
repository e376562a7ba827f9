"""The training loop shared by train, screen and the ablation variants: one recipe, read top to bottom.

AdamW over the trainable weights, a linear schedule with warmup that counts optimizer steps, and
gradient accumulation over `grad_accum_steps` micro-batches; validation after every epoch.
"""
from __future__ import annotations

import json
import math
import os
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
from workflow.data.cache import ImageCache
from workflow.data.dataset import CachedImages, DeviceNormalize, make_loader, pixel_transforms
from workflow.errors import UserError
from workflow.methods import MethodSpec, prepare
from workflow.models.lora import count_parameters
from workflow.provenance import SPLIT_SEED_FILE
from workflow.models.predict import Compute, classification_scores, pick_device, pick_precision, predict_logits
from workflow.models.zoo import backbone_checksum, input_size, load_model, prefers_channels_last
from workflow.transforms import check_fits, load_pipeline


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
    precision: str = "auto"  # auto | fp32 | bf16 (autocast)
    compile: bool = False  # torch.compile the model

    @classmethod
    def from_params(cls, section) -> "Hyper":
        """The fields a params section (train, or an ablation recipe) has; the rest keep defaults."""
        return cls(**{name: getattr(section, name) for name in cls.__dataclass_fields__ if hasattr(section, name)})


@dataclass(frozen=True)
class Dataset:
    """The labelled images as the split stage left them, their decoded cache, and the pipelines."""

    raw: Path
    classes: list[str]
    train: pd.DataFrame
    val: pd.DataFrame
    pipelines: Path
    cache: ImageCache
    split: Path

    @classmethod
    def load(cls, raw: Path | str, split: Path | str, pipelines: Path | str, cache: Path | str) -> "Dataset":
        raw, split = Path(raw), Path(split)
        read = lambda name: pd.read_csv(split / f"{name}.csv", dtype=str, keep_default_na=False)  # noqa: E731
        classes = json.loads((raw / "competition.json").read_text())["classes"]
        return cls(raw=raw, classes=classes, train=read("train"), val=read("val"), pipelines=Path(pipelines),
                   cache=ImageCache.open(cache, raw), split=split)

    def seeds(self) -> dict[str, int]:
        """The seeds that made this data (the split's), by params key."""
        seed_file = self.split / SPLIT_SEED_FILE
        return json.loads(seed_file.read_text()) if seed_file.is_file() else {}

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
    device: torch.device
    input_size: int  # the side of the square images the model takes
    history: list[dict[str, float]] = field(default_factory=list)
    is_main: bool = True  # the process that writes outputs (rank 0; the only one without a launcher)
    images_per_process: list[int] = field(default_factory=list)  # training images each process saw per epoch

    def row(self) -> dict[str, float]:
        """The measurements every report row carries (screening and ablation alike)."""
        return {
            "val_accuracy": self.scores["accuracy"],
            "val_macro_f1": self.scores["macro_f1"],
            "params_trainable": self.trainable,
            "params_total": self.total,
            "trainable_pct": 100 * self.trainable / self.total,
            "train_seconds": self.train_seconds,
            "input_size": self.input_size,
            **self.peak_memory,
        }


def is_main_process() -> bool:
    """Rank 0 of a launched run (accelerate launch and torchrun set RANK), or the only process."""
    return int(os.environ.get("RANK", "0")) == 0


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


def train_one_epoch(model, loader, optimizer, scheduler, accum: int, compute: Compute,
                    progress) -> tuple[float, int]:
    """One pass; an optimizer step every `accum` micro-batches (and after the last).

    Returns the mean loss (over every process) and the number of images this process saw. No host
    sync inside the loop: the loss is summed on the device and read once at the end. Under several
    processes, accelerate's `accumulate` keeps DDP from syncing gradients on the micro-steps between
    optimizer steps (its group boundaries are these: every `accum` batches and the loader's end).
    """
    model.train()
    total_loss = torch.zeros((), device=compute.device)
    num_batches, images = len(loader), 0
    for i, (pixels, labels) in enumerate(loader):
        group_start = i - i % accum
        group_size = min(accum, num_batches - group_start)  # the last group may be shorter
        with compute.accumulate(model):
            with compute.autocast():
                loss = model(pixel_values=compute.inputs(pixels),
                             labels=labels.to(compute.device, non_blocking=True)).loss
            (loss / group_size).backward()
        total_loss += loss.detach()
        images += len(labels)
        if i + 1 == group_start + group_size:
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
        progress.update(1)
    return compute.mean(total_loss / num_batches).item(), images


def pipelines_for(data: Dataset, size: int, augment: bool, seed: int,
                  resize: bool) -> tuple[A.Compose, A.Compose, A.Normalize | None]:
    """Train and eval pixel pipelines (uint8 in, uint8 out) and the Normalize to run on the device;
    without augmentation, training sees the eval transforms."""
    target = size if resize else None
    train_pipeline, built_size = load_pipeline(data.pipelines, "train" if augment else "eval", size=target)
    train_pipeline, normalize = pixel_transforms(train_pipeline, seed)
    eval_pipeline, _ = pixel_transforms(load_pipeline(data.pipelines, "eval", size=target)[0])
    if built_size != size:
        raise UserError(f"augment.image_size: {built_size}, but the model takes {size}x{size} images; "
                        f"set augment.image_size: {size}")
    if not resize and data.cache.image_size < size:
        raise UserError(f"cache.image_size: {data.cache.image_size} is below the model's {size}x{size} input "
                        f"(images would be upsampled); set cache.image_size: {size} or a little more")
    side = data.cache.image_size
    check_fits(train_pipeline, {"the cached images": (side, side)},
               f"make it smaller or raise cache.image_size (the cache in {data.cache.folder} is {side})")
    return train_pipeline, eval_pipeline, normalize


def compile_if(model: torch.nn.Module, enabled: bool) -> torch.nn.Module:
    """torch.compile'd forward when asked for (train.compile); the eager model otherwise."""
    if not enabled:
        return model
    try:
        return torch.compile(model)
    except RuntimeError as err:  # e.g. no C++ compiler for the CPU backend, or an unsupported Python
        raise UserError(f"train.compile: torch.compile is not available here ({err}); set train.compile: false") from None


@dataclass
class Run:
    """Everything one training run needs, built the same way for fit and the benchmarks."""

    base: torch.nn.Module  # the model as loaded, before the method wrapped it
    model: torch.nn.Module  # the model with the method applied (what is saved)
    forward: torch.nn.Module  # what runs batches: `model`, DDP-wrapped and/or torch.compile'd
    compute: Compute
    train_pipeline: A.Compose
    train_loader: torch.utils.data.DataLoader
    generator: torch.Generator  # the train loader's shuffle order
    val_loader: torch.utils.data.DataLoader
    val_labels: np.ndarray
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    checksum: str  # of the base's backbone, before the method touched it
    channels_last: bool  # a convolutional family: NHWC activations


def build_run(model_name: str, method: MethodSpec, hyper: Hyper, data: Dataset, *, augment: bool = True,
              resize: bool = False, trust_remote_code: bool = False,
              trust_key: str = "model.trust_remote_code") -> Run:
    """The model with `method` applied, its loaders, optimizer and schedule, seeded by hyper.seed.

    One code path for one process and many: launched by `accelerate launch` (or torchrun), accelerate
    wraps the model in DDP and shards both loaders across the processes; alone, it changes nothing.
    """
    from accelerate import Accelerator  # imported here: only the training stages need it

    seed_everything(hyper.seed)
    accelerator = Accelerator(cpu=pick_device(hyper.device).type == "cpu",
                              gradient_accumulation_steps=hyper.grad_accum_steps)
    device = accelerator.device
    base = load_model(model_name, data.classes, seed=hyper.seed, trust_remote_code=trust_remote_code,
                      trust_key=trust_key)
    # Each process augments with its own stream (seed + rank); one process keeps train.seed exactly.
    train_pipeline, eval_pipeline, normalize = pipelines_for(data, input_size(base), augment,
                                                             hyper.seed + accelerator.process_index, resize)
    checksum = backbone_checksum(base)
    conv = prefers_channels_last(base)
    model = prepare(base, method).to(device, memory_format=torch.channels_last if conv else torch.preserve_format)
    compute = Compute(device, DeviceNormalize(normalize, channels_last=conv), pick_precision(hyper.precision, device),
                      accelerator=accelerator)

    train_set = CachedImages(data.cache, data.train["path"], train_pipeline, data.labels(data.train))
    val_labels = data.labels(data.val)
    val_set = CachedImages(data.cache, data.val["path"], eval_pipeline, val_labels)
    pin = device.type == "cuda"
    train_loader = make_loader(train_set, hyper.batch_size, hyper.num_workers, shuffle=True, seed=hyper.seed,
                               pin_memory=pin)
    generator = train_loader.generator  # the shuffle's state, saved in checkpoints
    val_loader = make_loader(val_set, hyper.batch_size, hyper.num_workers, pin_memory=pin)
    distributed = accelerator.prepare_model(model, device_placement=False)
    train_loader = accelerator.prepare_data_loader(train_loader, device_placement=False)
    val_loader = accelerator.prepare_data_loader(val_loader, device_placement=False)

    # The schedule counts this process's optimizer steps, not micro-batches.
    total_steps = hyper.epochs * math.ceil(len(train_loader) / hyper.grad_accum_steps)
    # The fused kernel: one op per step for all the weights, not a few per tensor (5% of the tiny
    # default's epoch on the CPU; benchmarks/b1_data_path.py).
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=hyper.lr,
                                  weight_decay=hyper.weight_decay, fused=device.type in ("cpu", "cuda"))
    scheduler = get_linear_schedule_with_warmup(optimizer, math.ceil(hyper.warmup_ratio * total_steps), total_steps)
    return Run(base=base, model=model, forward=compile_if(distributed, hyper.compile), compute=compute,
               train_pipeline=train_pipeline, train_loader=train_loader, generator=generator,
               val_loader=val_loader, val_labels=val_labels, optimizer=optimizer, scheduler=scheduler,
               checksum=checksum, channels_last=conv)


def fit(model_name: str, method: MethodSpec, hyper: Hyper, data: Dataset, *, augment: bool = True,
        resize: bool = False, desc: str = "train",
        on_epoch: Callable[[dict[str, float]], None] | None = None,
        checkpoint: Path | str | None = None, trust_remote_code: bool = False,
        trust_key: str = "model.trust_remote_code") -> FitResult:
    """Build `model_name` for the data's classes, apply `method`, train, and validate every epoch.

    `resize` fits the declared pipelines to the model's input size instead of insisting they match.
    `checkpoint`: a folder to save the run's state to after every epoch and to resume from when it
    holds the state of this same run (see workflow/checkpoint.py); the caller deletes it once its
    outputs are written. On resume, `on_epoch` is first called again for every restored epoch.
    `trust_remote_code`: run code shipped with a hub model (its params key is `trust_key`).
    """
    rss_before = peak_rss_mib()
    run = build_run(model_name, method, hyper, data, augment=augment, resize=resize,
                    trust_remote_code=trust_remote_code, trust_key=trust_key)
    model, compute, train_loader = run.model, run.compute, run.train_loader
    device, accelerator = compute.device, compute.accelerator
    is_main = accelerator.is_main_process
    trainable, total = count_parameters(model)
    processes = f", {accelerator.num_processes} processes" if accelerator.num_processes > 1 else ""
    accelerator.print(f"{desc}: {type(run.base).__name__} with {method.name}, {trainable:,} of {total:,} parameters "
          f"trainable ({100 * trainable / total:.2f}%) on {device}, {compute.precision}, "
          f"{run.base.config._attn_implementation} attention{', channels_last' if run.channels_last else ''}"
          f"{', compiled' if hyper.compile else ''}{processes}")

    history: list[dict[str, float]] = []
    start, elapsed = 0, 0.0
    if checkpoint is not None:
        run_id = ckpt.fingerprint(
            model=model_name, method=asdict(method), hyper=asdict(hyper), augment=augment, resize=resize,
            device=str(device), backbone=run.checksum, classes=data.classes,
            train=data.train.to_csv(index=False), val=data.val.to_csv(index=False),
            pipelines=data.pipelines.read_text(), cache=data.cache.array_sha256)
        state = ckpt.load(checkpoint, run_id)
        if state is not None:
            start, history, elapsed = ckpt.restore(state, model=model, optimizer=run.optimizer,
                                                   scheduler=run.scheduler, loader_generator=run.generator,
                                                   pipeline=run.train_pipeline)
            caveat = (" (num_workers > 0: augmentations after the resume differ from an uninterrupted run)"
                      if hyper.num_workers > 0 else "")
            accelerator.print(f"{desc}: resuming from {Path(checkpoint) / ckpt.STATE_FILE} after epoch {start} "
                  f"of {hyper.epochs}{caveat}")
            for row in history:
                if on_epoch is not None:
                    on_epoch(row)
    progress = tqdm(total=hyper.epochs * len(train_loader), initial=start * len(train_loader), desc=desc,
                    unit="batch", mininterval=1.0, disable=not is_main)
    started = time.perf_counter()
    seen = 0
    with progress:  # closed on an error too: the error line then starts a line of its own
        for epoch in range(start, hyper.epochs):
            lr = run.scheduler.get_last_lr()[0]
            loss, seen = train_one_epoch(run.forward, train_loader, run.optimizer, run.scheduler,
                                         hyper.grad_accum_steps, compute, progress)
            val_logits = predict_logits(run.forward, run.val_loader, compute)
            scores = classification_scores(run.val_labels, val_logits)
            history.append({"epoch": epoch + 1, "loss": loss, "lr": lr, **scores})
            if on_epoch is not None:
                on_epoch(history[-1])
            if checkpoint is not None and is_main:  # the processes hold the same state: one writes it
                ckpt.save(checkpoint, fingerprint=run_id, epoch=epoch + 1, history=history,
                          elapsed=elapsed + time.perf_counter() - started, model=model, optimizer=run.optimizer,
                          scheduler=run.scheduler, loader_generator=run.generator, pipeline=run.train_pipeline)
            progress.set_postfix(epoch=epoch + 1, loss=f"{loss:.3f}", val_acc=f"{scores['accuracy']:.3f}")
    if start == hyper.epochs:  # resumed after the last epoch: only the outputs were missing
        val_logits = predict_logits(run.forward, run.val_loader, compute)
        scores = classification_scores(run.val_labels, val_logits)
    seconds = elapsed + time.perf_counter() - started
    per_process = accelerator.gather(torch.tensor([seen], device=device)).tolist()
    return FitResult(
        model=model, backbone_sha256=run.checksum, scores=scores, val_logits=val_logits,
        trainable=trainable, total=total, train_seconds=seconds,
        images_per_second=hyper.epochs * len(train_loader.dataset) / seconds,
        peak_memory=peak_memory_mib(device, rss_before), device=device, input_size=input_size(run.base),
        history=history,
        is_main=is_main, images_per_process=per_process,
    )
