"""dry_run: will it fit? Peak memory and seconds per optimizer step, before any weights are downloaded.

Builds the real architecture at random init from its config in configs/models/ (same class, same
shapes as the pretrained model), prepares it for the fine-tuning method and places it as the train
stage does (workflow/training/runtime.py: the same precision, bf16 frozen weights, gradient
checkpointing and torch.compile choices, from --precision, --gradient-checkpointing, --compile),
and runs real AdamW steps (forward under the run's autocast, backward, on random images of the
configured size) on this machine: one warm-up step, which also records where the memory goes, then
--steps timed ones. The peak covers them all; nothing runs twice. Each measurement runs in a fresh
process, so runs are comparable:

    cpu   peak RSS of that process (Python, torch, model, gradients, optimizer state, activations)
    cuda  torch.cuda.max_memory_allocated (tensors only; the CUDA context adds a few hundred MiB)

Writes one row as JSON and as Markdown (--out row.json also writes row.md).

    python -m workflow.tools.dry_run --model microsoft/beit-base-patch16-224 --method lora --batch-size 8
    python -m workflow.tools.dry_run --model microsoft/beit-base-patch16-224 --method full --batch-size 8 \\
        --out reports/dry_run/beit-base-full.json
"""
from __future__ import annotations

import argparse
import json
import multiprocessing
import resource
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Sequence

from workflow.core.cli import run
from workflow.core.errors import UserError
from workflow.recipe import Recipe, RuntimeParams
from workflow.tools.params_count import add_model_and_method_options, config_overrides, recipe_from

COLUMNS = {  # Markdown column -> row key
    "model": "model", "method": "method_text", "image": "image_size", "batch": "batch_size",
    "device": "device", "trainable": "trainable", "% trainable": "trainable_pct",
    "precision": "precision", "peak MiB": "peak_memory_mib", "s / step": "s_per_step",
}


def _max_rss_mib() -> float:
    """This process's peak resident memory so far (ru_maxrss: KiB on Linux, bytes on macOS)."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 2**20 if sys.platform == "darwin" else rss / 2**10


def _tensor_mib(tensors) -> float:
    """MiB of distinct storages among `tensors` (views of one storage are counted once)."""
    seen: dict[int, int] = {}
    for tensor in tensors:
        storage = tensor.untyped_storage()
        seen[storage.data_ptr()] = storage.nbytes()
    return sum(seen.values()) / 2**20


def recorded_step(model, optimizer, step) -> dict[str, float]:
    """Run `step` (the first, warm-up step) and say where its memory went, from the live tensors.

    weights: every parameter and buffer; gradients: the .grad tensors after the backward;
    optimizer: AdamW's state tensors; activations: the distinct tensors autograd saved during the
    forward for the backward (what the method can save: a frozen layer keeps no input for a weight
    gradient, but still keeps what the backward to earlier trainable layers needs; the weights it
    references are the parameters themselves, counted under weights). Only sizes are recorded, never
    a reference, so the step frees what it frees in training and the peak is the step's own.
    """
    import torch

    weights = {t.untyped_storage().data_ptr() for t in [*model.parameters(), *model.buffers()]}
    saved: dict[int, int] = {}  # storage -> bytes; all of the forward's saved tensors are alive at once

    def pack(tensor):
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in weights:  # a saved weight is the parameter itself, not a new tensor
            saved[storage.data_ptr()] = storage.nbytes()
        return tensor

    gradients = {}

    def before_update() -> None:  # called by `step` between the backward and the optimizer step
        gradients["mib"] = _tensor_mib(p.grad for p in model.parameters() if p.grad is not None)

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        step(before_update)
    breakdown = {
        "weights_mib": _tensor_mib([*model.parameters(), *model.buffers()]),
        "gradients_mib": gradients["mib"],
        "optimizer_state_mib": _tensor_mib(t for state in optimizer.state.values() for t in state.values()
                                           if torch.is_tensor(t) and t.dim() > 0),
        "activations_mib": sum(saved.values()) / 2**20,
    }
    return {key: round(value, 1) for key, value in breakdown.items()}


def measure(recipe: Recipe, batch_size: int, steps: int, runtime: RuntimeParams, overrides: dict) -> dict:
    """Build, prepare and train for 1 + `steps` optimizer steps here; what it cost. Run it in a fresh process."""
    import torch
    from peft import PeftModel

    from workflow.models.lora import count_parameters
    from workflow.models.methods import prepare
    from workflow.models.zoo import build_random, input_size, prefers_channels_last
    from workflow.training import runtime as rt

    model_name = recipe.model.name
    classes = [str(i) for i in range(overrides["num_labels"])]
    at_start = _max_rss_mib()  # interpreter and libraries, before the model (on CPU; 0 on a GPU below)
    base = build_random(model_name, classes, seed=0, **{k: v for k, v in overrides.items() if k != "num_labels"})
    parameters = count_parameters(base)[1]
    target = rt.pick_device(runtime.device, parameters)  # as the train stage chooses them
    compute = rt.Compute(target, precision=rt.pick_precision(runtime.precision, target))
    compiled = rt.wants_compile(runtime.compile, target, parameters)
    at_start = at_start if target.type == "cpu" else 0.0
    size = input_size(base)
    conv = prefers_channels_last(base)
    model = rt.place(prepare(base, recipe), compute, channels_last=conv,
                     gradient_checkpointing=runtime.gradient_checkpointing).train()
    forward = rt.compile_if(model, compiled)
    trainable, total = count_parameters(model)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4,
                                  fused=target.type in ("cpu", "cuda"))
    generator = torch.Generator().manual_seed(0)
    pixels = torch.randn(batch_size, model.config.num_channels, size, size, generator=generator).to(target)
    pixels = pixels.contiguous(memory_format=torch.channels_last) if conv else pixels
    labels = torch.randint(len(classes), (batch_size,), generator=generator).to(target)

    def sync() -> None:
        if target.type == "cuda":
            torch.cuda.synchronize(target)

    def step(before_update=lambda: None) -> None:  # the train loop's step (workflow/training/loop.py)
        with compute.autocast():
            loss = forward(pixel_values=pixels, labels=labels).loss
        loss.backward()
        before_update()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    if target.type == "cuda":
        torch.cuda.reset_peak_memory_stats(target)
        before = torch.cuda.memory_allocated(target) / 2**20
    else:
        before = _max_rss_mib()
    breakdown = recorded_step(model, optimizer, step)  # warm-up: gradients, AdamW's state, kernels
    sync()
    started = time.perf_counter()
    for _ in range(steps):
        step()
    sync()
    seconds = (time.perf_counter() - started) / steps
    if target.type == "cuda":
        peak, measure_name = torch.cuda.max_memory_allocated(target) / 2**20, "torch.cuda.max_memory_allocated"
        where = torch.cuda.get_device_name(target)
    else:
        peak, measure_name = _max_rss_mib(), "peak RSS of a fresh process"
        where = f"cpu ({torch.get_num_threads()} threads)"
    return {
        "model": model_name,
        "model_class": type(model.get_base_model() if isinstance(model, PeftModel) else model).__name__,
        "method": recipe.method_settings(),
        "method_text": recipe.describe_method(),
        "image_size": size,
        "batch_size": batch_size,
        "num_labels": len(classes),
        "steps": steps,
        "device": where,
        "precision": compute.precision,
        "compiled": compiled,
        "gradient_checkpointing": runtime.gradient_checkpointing,
        "trainable": trainable,
        "total": total,
        "trainable_pct": round(100 * trainable / total, 4),
        "peak_memory_mib": round(peak, 1),
        "memory_before_steps_mib": round(before, 1),
        "memory_at_start_mib": round(at_start, 1),
        "breakdown": breakdown,
        "memory_measure": measure_name,
        "s_per_step": round(seconds, 4),
        "torch": torch.__version__,
    }


def measure_isolated(*args) -> dict:
    """`measure` in a fresh interpreter: its peak is this run's alone, not an earlier model's."""
    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(measure, *args).result()


def markdown(rows: list[dict]) -> str:
    def cell(row: dict, key: str) -> str:
        value = row[key]
        if key == "trainable_pct":
            return f"{value:.3f}%"
        return f"{value:,}" if isinstance(value, int) else f"{value:.3f}" if key == "s_per_step" else str(value)

    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(cell(row, key) for key in COLUMNS.values()) + " |" for row in rows]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    summary, _, rest = (__doc__ or "").partition("\n")
    parser = argparse.ArgumentParser(prog="python -m workflow.tools.dry_run", description=summary, epilog=rest,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_and_method_options(parser)
    parser.add_argument("--batch-size", type=int, default=8, help="images per step (default: %(default)s)")
    parser.add_argument("--steps", type=int, default=3, help="timed steps after the warm-up (default: %(default)s)")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"),
                        help="default: %(default)s (as train.device: cuda when torch sees a GPU, for a model "
                             "of 1M parameters or more)")
    parser.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16"),
                        help="default: %(default)s (as train.precision: bf16 autocast on a GPU that has it)")
    parser.add_argument("--compile", default="auto", choices=("auto", "true", "false"),
                        help="default: %(default)s (as train.compile: on CUDA for 20M parameters or more)")
    parser.add_argument("--gradient-checkpointing", action="store_true", help="as train.gradient_checkpointing")
    parser.add_argument("--out", default=None, help="write the row to this .json and the same name .md")
    args = parser.parse_args(argv)
    if args.batch_size < 1 or args.steps < 1:
        raise UserError(f"--batch-size and --steps: must be >= 1 (got {args.batch_size}, {args.steps})")
    recipe = recipe_from(args)
    overrides = config_overrides(args)
    from workflow.models.accounting import measured
    from workflow.models.zoo import architecture

    measured(architecture(args.model, **overrides), recipe)  # bad input fails here, on meta, before the child starts
    runtime = RuntimeParams(device=args.device, precision=args.precision,
                            compile={"true": True, "false": False}.get(args.compile, "auto"),
                            gradient_checkpointing=args.gradient_checkpointing)
    row = measure_isolated(recipe, args.batch_size, args.steps, runtime, overrides)
    table = markdown([row])
    print(table)
    if args.out:
        out = Path(args.out).with_suffix(".json")
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(row, indent=2) + "\n")
        out.with_suffix(".md").write_text(table + "\n")
        print(f"dry_run: -> {out} and {out.with_suffix('.md')}")


if __name__ == "__main__":
    raise SystemExit(run(main))
