"""dry_run: will it fit? Peak memory and seconds per optimizer step, before any weights are downloaded.

Builds the real architecture at random init from its config in configs/models/ (same class, same
shapes as the pretrained model), prepares it for the fine-tuning method, and runs real AdamW steps
(forward + backward on random images of the configured size) on this machine: one warm-up step,
then --steps timed ones. Each measurement runs in a fresh process, so runs are comparable:

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
from workflow.recipe import Recipe
from workflow.tools.params_count import add_model_and_method_options, config_overrides, recipe_from

COLUMNS = {  # Markdown column -> row key
    "model": "model", "method": "method_text", "image": "image_size", "batch": "batch_size",
    "device": "device", "trainable": "trainable", "% trainable": "trainable_pct",
    "peak MiB": "peak_memory_mib", "s / step": "s_per_step",
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


def memory_breakdown(model, optimizer, pixels, labels) -> dict[str, float]:
    """Where a training step's memory goes, measured on the live tensors (not from a formula).

    weights: every parameter and buffer; gradients: the .grad tensors after a backward;
    optimizer: AdamW's state tensors; activations: the distinct tensors autograd saved during a
    forward for the backward (what the method can save: a frozen layer keeps no input for a weight
    gradient, but still keeps what the backward to earlier trainable layers needs; the weights it
    references are the parameters themselves, counted under weights).
    """
    import torch

    saved = []

    def pack(tensor):
        saved.append(tensor)
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        loss = model(pixel_values=pixels, labels=labels).loss
    weights = {t.untyped_storage().data_ptr() for t in [*model.parameters(), *model.buffers()]}
    # A saved weight (for the backward to the layer's input) is the parameter itself, not a new tensor.
    activations = _tensor_mib(t for t in saved if t.untyped_storage().data_ptr() not in weights)
    loss.backward()
    breakdown = {
        "weights_mib": _tensor_mib([*model.parameters(), *model.buffers()]),
        "gradients_mib": _tensor_mib(p.grad for p in model.parameters() if p.grad is not None),
        "optimizer_state_mib": _tensor_mib(t for state in optimizer.state.values() for t in state.values()
                                           if torch.is_tensor(t) and t.dim() > 0),
        "activations_mib": activations,
    }
    optimizer.zero_grad(set_to_none=True)
    return {key: round(value, 1) for key, value in breakdown.items()}


def measure(recipe: Recipe, batch_size: int, steps: int, device: str, overrides: dict) -> dict:
    """Build, prepare and train for 1 + `steps` optimizer steps here; what it cost. Run it in a fresh process."""
    import torch
    from peft import PeftModel

    from workflow.models.lora import count_parameters
    from workflow.models.methods import prepare
    from workflow.models.zoo import build_random, input_size
    from workflow.training.runtime import pick_device

    model_name = recipe.model.name
    target = pick_device(device)
    at_start = _max_rss_mib() if target.type == "cpu" else 0.0  # interpreter and libraries, before the model
    classes = [str(i) for i in range(overrides["num_labels"])]
    model = build_random(model_name, classes, seed=0, **{k: v for k, v in overrides.items() if k != "num_labels"})
    size = input_size(model)
    model = prepare(model, recipe).to(target).train()
    trainable, total = count_parameters(model)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    generator = torch.Generator().manual_seed(0)
    pixels = torch.randn(batch_size, model.config.num_channels, size, size, generator=generator).to(target)
    labels = torch.randint(len(classes), (batch_size,), generator=generator).to(target)

    def sync() -> None:
        if target.type == "cuda":
            torch.cuda.synchronize(target)

    def step() -> None:
        model(pixel_values=pixels, labels=labels).loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    if target.type == "cuda":
        torch.cuda.reset_peak_memory_stats(target)
        before = torch.cuda.memory_allocated(target) / 2**20
    else:
        before = _max_rss_mib()
    step()  # warm-up: allocates gradients and AdamW's state, picks kernels
    sync()
    started = time.perf_counter()
    for _ in range(steps):
        step()
    sync()
    seconds = (time.perf_counter() - started) / steps
    peak_before_breakdown = _max_rss_mib()  # the breakdown's own pass must not raise the peak reported
    if target.type == "cuda":
        peak, measure_name = torch.cuda.max_memory_allocated(target) / 2**20, "torch.cuda.max_memory_allocated"
        where = torch.cuda.get_device_name(target)
    else:
        peak, measure_name = peak_before_breakdown, "peak RSS of a fresh process"
        where = f"cpu ({torch.get_num_threads()} threads)"
    breakdown = memory_breakdown(model, optimizer, pixels, labels)
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
                        help="default: %(default)s (cuda when torch sees a GPU)")
    parser.add_argument("--out", default=None, help="write the row to this .json and the same name .md")
    args = parser.parse_args(argv)
    if args.batch_size < 1 or args.steps < 1:
        raise UserError(f"--batch-size and --steps: must be >= 1 (got {args.batch_size}, {args.steps})")
    recipe = recipe_from(args)
    overrides = config_overrides(args)
    from workflow.models.accounting import measured
    from workflow.models.zoo import architecture

    measured(architecture(args.model, **overrides), recipe)  # bad input fails here, on meta, before the child starts
    row = measure_isolated(recipe, args.batch_size, args.steps, args.device, overrides)
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
