"""Where and how a run computes: device, precision, torch.compile, processes (DDP), seeds, memory.

The training loop (workflow/training/loop.py) and inference ask this module and nothing else about the
machine: `start(runtime, grad_accum_steps)` gives a Compute, which moves batches to the device,
runs the forward pass under the autocast precision and, under `accelerate launch`, syncs gradients
only on optimizer steps and gathers evaluation across processes.
"""
from __future__ import annotations

import contextlib
import dataclasses
import os
import resource
from dataclasses import dataclass
from typing import Any, Callable

import torch

from workflow.core.errors import UserError
from workflow.recipe import RuntimeParams

PRECISIONS = {"fp32": None, "bf16": torch.bfloat16}
# device auto: a model under this many parameters runs on the CPU even where there is a GPU. At that
# size a step is a few hundred tiny kernels, and launching them and syncing with the host cost more
# than the CPU's compute (the 192,586-parameter default trained 2.7x slower on an H100 machine than
# on its CPU). Every real model of the zoo has over 20 million.
SMALL_MODEL_PARAMETERS = 1_000_000
# compile auto: torch.compile on CUDA from this size. Compiling costs about a minute; below this a
# step is too short for the fused kernels to pay that back within a run, and on the CPU it rarely pays.
COMPILE_MIN_PARAMETERS = 20_000_000


def pick_device(requested: str, parameters: int | None = None) -> torch.device:
    """auto: the GPU if torch sees one, unless the model (`parameters`) is too small to gain from it."""
    if requested == "auto":
        small = parameters is not None and parameters < SMALL_MODEL_PARAMETERS
        return torch.device("cuda" if torch.cuda.is_available() and not small else "cpu")
    if requested == "cuda" and not torch.cuda.is_available():
        raise UserError("device: 'cuda' requested but torch sees no GPU; set it to auto or cpu")
    return torch.device(requested)


def device_reason(requested: str, device: torch.device, parameters: int) -> str:
    """Why auto chose the CPU on a machine with a GPU ('' otherwise): printed with the run's setup."""
    if requested != "auto" or device.type != "cpu" or not torch.cuda.is_available():
        return ""
    return (f"device auto: the CPU, not the GPU, for a model of {parameters:,} parameters (under "
            f"{SMALL_MODEL_PARAMETERS:,}); set device: cuda to use the GPU")


def wants_compile(requested: bool | str, device: torch.device, parameters: int) -> bool:
    """train.compile: true, false, or auto (CUDA and a model of COMPILE_MIN_PARAMETERS or more)."""
    if requested == "auto":
        return device.type == "cuda" and parameters >= COMPILE_MIN_PARAMETERS
    return bool(requested)


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
    # Compiled runs pad every evaluation batch to this size, so the compiled graph sees one shape.
    pad_to: int | None = None

    def inputs(self, batch: torch.Tensor | dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """A loader's batch as the model's keyword arguments on the device: images (uint8 pixels)
        become normalised pixel_values; text batches (token ids, masks) only move."""
        if isinstance(batch, dict):
            return {name: tensor.to(self.device, non_blocking=True) for name, tensor in batch.items()}
        return {"pixel_values": self.prepare(batch.to(self.device, non_blocking=True))}

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

    def replace(self, **changes: Any) -> "Compute":
        return dataclasses.replace(self, **changes)


def start(runtime: RuntimeParams, grad_accum_steps: int = 1, parameters: int | None = None) -> Compute:
    """The run's Compute: one process, or this process's share under `accelerate launch` (DDP)."""
    from accelerate import Accelerator  # imported here: only the training stages need it

    accelerator = Accelerator(cpu=pick_device(runtime.device, parameters).type == "cpu",
                              gradient_accumulation_steps=grad_accum_steps)
    return Compute(accelerator.device, precision=pick_precision(runtime.precision, accelerator.device),
                   accelerator=accelerator)


def place(model: torch.nn.Module, compute: Compute, *, channels_last: bool = False,
          gradient_checkpointing: bool = False) -> torch.nn.Module:
    """The prepared model (its method applied) on the run's device, as the run computes with it.

    - channels_last: NHWC activations for convolutional families.
    - Under bf16 precision, the weights that never update (the frozen base of lora, head, bitfit,
      last_layers) are held in bf16: autocast computes in bf16 anyway, so an fp32 copy is dead
      memory. Trained weights stay fp32 for AdamW.
    - gradient_checkpointing: each block's activations are recomputed in the backward instead of
      kept (transformers' own, non-reentrant); less memory for about a third more compute.
    """
    model = model.to(compute.device, memory_format=torch.channels_last if channels_last else torch.preserve_format)
    if compute.precision == "bf16":
        for parameter in model.parameters():
            if not parameter.requires_grad:
                parameter.data = parameter.data.to(torch.bfloat16)
    if gradient_checkpointing:
        from workflow.models.methods import plain_model

        transformers_model = plain_model(model)
        if not transformers_model.supports_gradient_checkpointing:
            raise UserError(f"train.gradient_checkpointing: {type(transformers_model).__name__} does not support "
                            f"it in transformers; set train.gradient_checkpointing: false")
        transformers_model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    return model


def compile_if(model: torch.nn.Module, enabled: bool, static: bool = True) -> torch.nn.Module:
    """torch.compile'd forward when asked for (train.compile); the eager model otherwise.

    Static shapes (dynamic=False) for images: the loaders give every batch the same size when
    compiled (training drops its last partial batch, evaluation pads it), so one graph per mode
    serves the whole run; the switch between training and evaluation selects between the two cached
    graphs. Text batches vary in length (padded per batch): dynamic shapes.
    """
    if not enabled:
        return model
    try:
        return torch.compile(model, dynamic=not static)
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
