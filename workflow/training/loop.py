"""The training loop shared by train, screen and the ablation variants, read top to bottom in `fit`.

AdamW over the trainable weights, a linear schedule with warmup that counts optimizer steps, and
gradient accumulation over `grad_accum_steps` micro-batches; validation after every epoch. What
the recipe trains is workflow/recipe.py; where it runs, workflow/training/runtime.py; resuming after a
kill, workflow/training/checkpoint.py (Resume).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import albumentations as A
import numpy as np
import torch
from tqdm import tqdm
from transformers import get_linear_schedule_with_warmup

from workflow.data.dataset import DeviceNormalize, make_loader
from workflow.data.labelled import LabelledData
from workflow.models.lora import count_parameters
from workflow.models.methods import plain_model, prepare
from workflow.models.predict import predict_logits
from workflow.models.scores import classification_scores
from workflow.models.tokenizers import load_tokenizer
from workflow.models.zoo import backbone_checksum, input_size, load_model, prefers_channels_last
from workflow.recipe import Recipe, RuntimeParams
from workflow.training import checkpoint as ckpt
from workflow.training import runtime as rt
from workflow.training.selection import Selection


@dataclass
class Run:
    """Everything one training run needs, built the same way for fit and the benchmarks."""

    recipe: Recipe
    base: torch.nn.Module  # the model as loaded, before the method wrapped it
    model: torch.nn.Module  # the model with the method applied (what is saved)
    forward: torch.nn.Module  # what runs batches: `model`, DDP-wrapped and/or torch.compile'd
    compute: rt.Compute
    train_pipeline: A.Compose
    train_loader: torch.utils.data.DataLoader
    generator: torch.Generator  # the train loader's shuffle order
    val_loader: torch.utils.data.DataLoader
    val_labels: np.ndarray
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    checksum: str  # of the base's backbone, before the method touched it
    channels_last: bool  # a convolutional family: NHWC activations
    compiled: bool  # torch.compile'd (train.compile, or auto: see workflow/training/runtime.py)
    input_size: int  # the side of the square images the model takes, or a text row's max tokens
    selection: Selection  # which epoch is kept, and when to stop (train.select, early_stopping_patience)
    normalization: str = ""  # images: the mean and std the inputs were normalised with
    device_note: str = ""  # why device auto chose the CPU, when it did
    data_note: str = ""  # text: when the rows were tokenized in memory (another tokenizer than the cache's)

    def state(self) -> dict:
        """What a checkpoint saves and restores (workflow/training/checkpoint.py)."""
        return {"model": self.model, "optimizer": self.optimizer, "scheduler": self.scheduler,
                "loader_generator": self.generator, "pipeline": self.train_pipeline, "selection": self.selection}


@dataclass
class FitResult:
    model: torch.nn.Module
    backbone_sha256: str
    scores: dict[str, float]
    val_logits: np.ndarray
    trainable: int
    total: int
    train_seconds: float
    items_per_second: float  # images/s, or real (unpadded) tokens/s for text
    peak_memory: dict[str, float]
    device: torch.device
    input_size: int  # the side of the square images the model takes, or a text row's max tokens
    unit: str = "image"  # what items_per_second counts: image or token
    history: list[dict[str, float]] = field(default_factory=list)
    is_main: bool = True  # the process that writes outputs (rank 0; the only one without a launcher)
    images_per_process: list[int] = field(default_factory=list)  # training images each process saw per epoch
    kept_epoch: int = 0  # the epoch whose weights the result holds (train.select)
    epochs_trained: int = 0  # fewer than train.epochs after an early stop
    selection_note: str = ""  # which epoch was kept and why, for the report and the model card
    normalization: str = ""  # images: the mean and std of the inputs (augment.normalize: auto: the model's own)

    def row(self) -> dict[str, float]:
        """The measurements every report row carries (screening and ablation alike)."""
        return {
            "val_accuracy": self.scores["accuracy"],
            "val_macro_f1": self.scores["macro_f1"],
            **({"val_f1": self.scores["f1"]} if "f1" in self.scores else {}),  # two classes: binary F1
            "val_log_loss": self.scores["log_loss"],
            "kept_epoch": self.kept_epoch,
            **({"normalize": self.normalization} if self.normalization else {}),
            "epochs_trained": self.epochs_trained,
            "params_trainable": self.trainable,
            "params_total": self.total,
            "trainable_pct": 100 * self.trainable / self.total,
            "train_seconds": self.train_seconds,
            "input_size": self.input_size,
            **self.peak_memory,
        }


def build_run(recipe: Recipe, data: LabelledData, runtime: RuntimeParams = RuntimeParams(), *,
              resize: bool = False, trust_key: str = "model.trust_remote_code") -> Run:
    """The model with the recipe's method applied, its loaders, optimizer and schedule, seeded.

    One code path for one process and many: launched by `accelerate launch` (or torchrun), accelerate
    wraps the model in DDP and shards both loaders across the processes; alone, it changes nothing.
    """
    train = recipe.train
    rt.seed_everything(train.seed)
    base = load_model(recipe.model.name, data.classes, seed=train.seed,
                      trust_remote_code=recipe.model.trust_remote_code, trust_key=trust_key, task=data.task)
    parameters = count_parameters(base)[1]  # device and compile auto go by size
    compute = rt.start(runtime, train.grad_accum_steps, parameters)
    accelerator, device = compute.accelerator, compute.device
    text = data.task == "text"
    # Text batches are padded per batch, so their shapes vary: auto does not compile them.
    compiled = not (text and runtime.compile == "auto") and rt.wants_compile(runtime.compile, device, parameters)
    static = compiled and not text
    # Compiled images: one batch shape. Training drops its last partial batch (as timm does; shuffling
    # changes which images wait for the next epoch), evaluation pads it and drops the padding.
    drop_last = static and len(data.train) >= train.batch_size * accelerator.num_processes
    conv = prefers_channels_last(base)
    checksum = backbone_checksum(base)
    data_note = ""
    if text:
        tokenizer = load_tokenizer(recipe.model.name, recipe.model.trust_remote_code, trust_key.replace(
            "trust_remote_code", "name"))
        train_set, val_set, data_note = data.token_sets(tokenizer, recipe.model.name, train.seed)
        train_pipeline, normalize = A.Compose([]), None  # no augmentation stream: the checkpoint saves an empty one
    else:
        # Each process augments with its own stream (seed + rank); one process keeps train.seed exactly.
        # augment.normalize: auto: each model (a screening candidate, an ablation variant) its own.
        own = data.own_normalization(recipe.model.name, recipe.model.trust_remote_code)
        train_pipeline, eval_pipeline, normalize = data.pipelines_for(input_size(base), train.augment,
                                                                      train.seed + accelerator.process_index, resize,
                                                                      normalize=own)
        train_set, val_set = data.image_sets(train_pipeline, eval_pipeline)
    compute = compute.replace(prepare=DeviceNormalize(normalize, channels_last=conv),
                              pad_to=train.batch_size if static else None)
    model = rt.place(prepare(base, recipe), compute, channels_last=conv,
                     gradient_checkpointing=runtime.gradient_checkpointing)

    pin = device.type == "cuda"
    train_loader = make_loader(train_set, train.batch_size, runtime.num_workers, shuffle=True, seed=train.seed,
                               pin_memory=pin, drop_last=drop_last)
    generator = train_loader.generator  # the shuffle's state, saved in checkpoints
    val_loader = make_loader(val_set, train.batch_size, runtime.num_workers, pin_memory=pin)
    distributed = accelerator.prepare_model(model, device_placement=False)
    train_loader = accelerator.prepare_data_loader(train_loader, device_placement=False)
    val_loader = accelerator.prepare_data_loader(val_loader, device_placement=False)

    # The schedule counts this process's optimizer steps, not micro-batches. The fused AdamW kernel:
    # one op per step for all the weights (5% of the tiny default's epoch on CPU; benchmarks/b1).
    total_steps = train.epochs * math.ceil(len(train_loader) / train.grad_accum_steps)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=train.lr,
                                  weight_decay=train.weight_decay, fused=device.type in ("cpu", "cuda"))
    scheduler = get_linear_schedule_with_warmup(optimizer, math.ceil(train.warmup_ratio * total_steps), total_steps)
    return Run(recipe=recipe, base=base, model=model, forward=rt.compile_if(distributed, compiled, static=static),
               compute=compute, train_pipeline=train_pipeline, train_loader=train_loader, generator=generator,
               val_loader=val_loader, val_labels=data.labels(data.val), optimizer=optimizer, scheduler=scheduler,
               checksum=checksum, channels_last=conv, compiled=compiled,
               device_note=rt.device_reason(runtime.device, device, parameters), data_note=data_note,
               input_size=data.cache.max_length if text else input_size(base), selection=Selection.of(train),
               normalization=describe_normalize(normalize))


def train_one_epoch(run: Run, progress) -> tuple[float, int]:
    """One pass; an optimizer step every grad_accum_steps micro-batches (and after the last).

    Returns the mean loss (over every process) and the number of images this process saw. No host
    sync inside the loop: the loss is summed on the device and read once at the end. Under several
    processes, accelerate's `accumulate` keeps DDP from syncing gradients on the micro-steps between
    optimizer steps (its group boundaries are these: every `accum` batches and the loader's end).
    """
    model, compute, accum = run.forward, run.compute, run.recipe.train.grad_accum_steps
    model.train()
    total_loss = torch.zeros((), device=compute.device)
    num_batches, images = len(run.train_loader), 0
    for i, (features, labels) in enumerate(run.train_loader):
        group_start = i - i % accum
        group_size = min(accum, num_batches - group_start)  # the last group may be shorter
        with compute.accumulate(model):
            with compute.autocast():
                loss = model(**compute.inputs(features), labels=labels.to(compute.device, non_blocking=True)).loss
            (loss / group_size).backward()
        total_loss += loss.detach()
        images += len(labels)
        if i + 1 == group_start + group_size:
            run.optimizer.step()
            run.scheduler.step()
            run.optimizer.zero_grad(set_to_none=True)
        progress.update(1)
    return compute.mean(total_loss / num_batches).item(), images


def validate(run: Run) -> tuple[np.ndarray, dict[str, float]]:
    logits = predict_logits(run.forward, run.val_loader, run.compute)
    return logits, classification_scores(run.val_labels, logits)


def fit(recipe: Recipe, data: LabelledData, runtime: RuntimeParams = RuntimeParams(), *, resize: bool = False,
        desc: str = "train", on_epoch: Callable[[dict[str, float]], None] = lambda row: None,
        checkpoint: Path | str | None = None, trust_key: str = "model.trust_remote_code") -> FitResult:
    """Train the recipe on the data's train rows and validate on its val rows after every epoch.

    `checkpoint`: a folder to save the run's state to after every epoch and to resume from when it
    holds the state of this same run; the caller deletes it once its outputs are written. On
    resume, `on_epoch` is first called again for every restored epoch.
    """
    rss_before = rt.peak_rss_mib()
    run = build_run(recipe, data, runtime, resize=resize, trust_key=trust_key)
    accelerator, epochs = run.compute.accelerator, recipe.train.epochs
    trainable, total = count_parameters(run.model)
    accelerator.print(f"{desc}: {describe(run, trainable, total)}")
    for note in (run.device_note, run.data_note):
        if note:
            accelerator.print(f"{desc}: {note}")

    resume = ckpt.Resume(checkpoint, fingerprint(run, data, runtime, resize), run.state(),
                         writer=accelerator.is_main_process)
    start, history, elapsed = resume.restore()
    if start:
        caveat = " (num_workers > 0: augmentations after the resume differ)" if runtime.num_workers else ""
        accelerator.print(f"{desc}: resuming from {resume.path} after epoch {start} of {epochs}{caveat}")
    for row in history:
        on_epoch(row)

    started, seen, last = time.perf_counter(), 0, start
    selection = run.selection
    batches = len(run.train_loader)
    with tqdm(total=epochs * batches, initial=start * batches, desc=desc, unit="batch", mininterval=1.0,
              disable=not accelerator.is_main_process) as progress:  # closed on an error too
        for epoch in range(start + 1, epochs + 1):
            if selection.should_stop(last):  # early stopping (also when a resumed run had stopped)
                break
            lr = run.scheduler.get_last_lr()[0]
            loss, seen = train_one_epoch(run, progress)
            val_logits, scores = validate(run)
            selection.update(epoch, scores, run.model, val_logits)
            history.append({"epoch": epoch, "loss": loss, "lr": lr, **scores})
            on_epoch(history[-1])
            resume.save(epoch, history, elapsed + time.perf_counter() - started)
            progress.set_postfix(epoch=epoch, loss=f"{loss:.3f}", val_acc=f"{scores['accuracy']:.3f}")
            last = epoch
    if last == start:  # resumed after the last epoch (or an early stop): only the outputs were missing
        val_logits, scores = validate(run)
    kept = selection.kept_epoch(last)
    if kept != last:  # select: best, and the best was an earlier epoch: its weights and its predictions
        selection.put_back(run.model)
        val_logits, scores = selection.best_logits, {k: history[kept - 1][k] for k in scores}
    note = selection.note(last, epochs)
    accelerator.print(f"{desc}: {note}")

    seconds = elapsed + time.perf_counter() - started
    device = run.compute.device
    return FitResult(
        model=run.model, backbone_sha256=run.checksum, scores=scores, val_logits=val_logits,
        trainable=trainable, total=total, train_seconds=seconds,
        items_per_second=last * items(run.train_loader.dataset) / seconds, unit=unit(run.train_loader.dataset),
        peak_memory=rt.peak_memory_mib(device, rss_before), device=device, input_size=run.input_size,
        history=history, is_main=accelerator.is_main_process,
        images_per_process=accelerator.gather(torch.tensor([seen], device=device)).tolist(),
        kept_epoch=kept, epochs_trained=last, selection_note=note, normalization=run.normalization,
    )


def describe_normalize(normalize) -> str:
    """'mean 0.485,0.456,0.406 std 0.229,0.224,0.225' of an A.Normalize; '' for none (text)."""
    if normalize is None:
        return ""
    values = lambda v: ",".join(f"{x:g}" for x in v)  # noqa: E731
    return f"mean {values(normalize.mean)} std {values(normalize.std)}"


def items(dataset) -> int:
    """What throughput counts per epoch: images, or the real tokens of a text set."""
    return dataset.tokens() if hasattr(dataset, "tokens") else len(dataset)


def unit(dataset) -> str:
    return "token" if hasattr(dataset, "tokens") else "image"


def describe(run: Run, trainable: int, total: int) -> str:
    """'BeitForImageClassification with lora, 8,842 of 192,586 parameters trainable (4.59%) on cpu, ...'"""
    processes = run.compute.accelerator.num_processes
    return (f"{type(run.base).__name__} with {run.recipe.train.method}, {trainable:,} of {total:,} parameters "
            f"trainable ({100 * trainable / total:.2f}%) on {run.compute.device}, {run.compute.precision}, "
            f"{run.base.config._attn_implementation} attention{', channels_last' if run.channels_last else ''}"
            f"{', compiled' if run.compiled else ''}"
            f"{', gradient checkpointing' if plain_model(run.model).is_activation_checkpointing else ''}"
            f"{f', {processes} processes' if processes > 1 else ''}")


def fingerprint(run: Run, data: LabelledData, runtime: RuntimeParams, resize: bool) -> str:
    """What determines the run: a checkpoint of another one is not resumed."""
    return ckpt.fingerprint(
        recipe=run.recipe.model_dump(), runtime=runtime.model_dump(), resize=resize, device=str(run.compute.device),
        backbone=run.checksum, classes=data.classes, train=data.train.to_csv(index=False),
        val=data.val.to_csv(index=False), pipelines=data.pipelines.read_text(), cache=data.cache.array_sha256)
