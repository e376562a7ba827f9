"""Where and how a run computes: device, precision, torch.compile, processes (DDP), seeds, memory.

The training loop (workflow/training/loop.py) and inference ask this module and nothing else about the
machine: `start(runtime, grad_accum_steps)` gives a Compute, which moves batches to the device,
runs the forward pass under the autocast precision and, under `accelerate launch`, syncs gradients
only on optimizer steps and gathers evaluation across processes.
"""
from __future__ import annotations

import contextlib
import os
import resource
from dataclasses import dataclass
from typing import Any, Callable

import torch

from workflow.core.errors import UserError
from workflow.recipe import RuntimeParams

PRECISIONS = {"fp32": None, "bf16": torch.bfloat16}


def pick_device(requested: str) -> torch.device:
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if requested == "cuda" and not torch.cuda.is_available():
        raise UserError("device: 'cuda' requested but torch sees no GPU; set it to auto or cpu")
    return torch.device(requested)


def pick_precision(requested: str, device: torch.device) -> str:
    """auto: bf16 autocast on a GPU that supports it, fp32 elsewhere (CPU bf16 is slow without AMX)."""
    if requested == "auto":
        return "bf16" if device.type == "cuda" and torch.cuda.is_bf16_supported() else "fp32"
    if requested == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise UserError("precision: bf16 requested but this GPU does not support it; set it to auto or fp32")
    return requested


@dataclass(frozen=True)
class Compute:
    """Where and how the model runs: the device, how a loader's batch becomes model input (uint8 to
    normalised float on the device, see workflow/data/dataset.py), and the autocast precision."""

    device: torch.device
    prepare: Callable[[torch.Tensor], torch.Tensor] = torch.Tensor.float
    precision: str = "fp32"
    accelerator: Any = None  # accelerate.Accelerator of a (possibly multi-process) run

    def inputs(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.prepare(pixels.to(self.device, non_blocking=True))

    def autocast(self):
        dtype = PRECISIONS[self.precision]
        return torch.autocast(self.device.type, dtype=dtype) if dtype is not None else contextlib.nullcontext()

    def accumulate(self, model: torch.nn.Module):
        """accelerate's accumulate: across processes, gradients sync only on an optimizer step."""
        return self.accelerator.accumulate(model) if self.accelerator is not None else contextlib.nullcontext()

    def gather(self, tensor: torch.Tensor) -> torch.Tensor:
        """Every process's rows of a sharded evaluation batch, in loader order, padding dropped."""
        return self.accelerator.gather_for_metrics(tensor) if self.accelerator is not None else tensor

    def mean(self, value: torch.Tensor) -> torch.Tensor:
        return self.accelerator.reduce(value, reduction="mean") if self.accelerator is not None else value

    def with_input(self, prepare: Callable[[torch.Tensor], torch.Tensor]) -> "Compute":
        return Compute(self.device, prepare, self.precision, self.accelerator)


def start(runtime: RuntimeParams, grad_accum_steps: int = 1) -> Compute:
    """The run's Compute: one process, or this process's share under `accelerate launch` (DDP)."""
    from accelerate import Accelerator  # imported here: only the training stages need it

    accelerator = Accelerator(cpu=pick_device(runtime.device).type == "cpu",
                              gradient_accumulation_steps=grad_accum_steps)
    return Compute(accelerator.device, precision=pick_precision(runtime.precision, accelerator.device),
                   accelerator=accelerator)


def compile_if(model: torch.nn.Module, enabled: bool) -> torch.nn.Module:
    """torch.compile'd forward when asked for (train.compile); the eager model otherwise."""
    if not enabled:
        return model
    try:
        return torch.compile(model)
    except RuntimeError as err:  # e.g. no C++ compiler for the CPU backend, or an unsupported Python
        raise UserError(f"train.compile: torch.compile is not available here ({err}); set train.compile: false") from None


def is_main_process() -> bool:
    """Rank 0 of a launched run (accelerate launch and torchrun set RANK), or the only process."""
    return int(os.environ.get("RANK", "0")) == 0


def seed_everything(seed: int) -> None:
    """Python, NumPy and torch (CPU and every GPU) seeded by transformers' own helper."""
    from transformers import set_seed

    set_seed(seed)


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def peak_memory_mib(device: torch.device, rss_before: float) -> dict[str, float]:
    """Peak memory of the run; on CPU also its growth over what the process held before training
    (interpreter, libraries, data), which is the part that differs between methods."""
    if device.type == "cuda":
        return {"peak_gpu_mib": torch.cuda.max_memory_allocated(device) / 2**20}
    peak = peak_rss_mib()
    return {"peak_rss_mib": peak, "training_rss_mib": peak - rss_before}
