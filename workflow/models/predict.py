"""Where and how the model runs (Compute), batched forward passes without autograd, and the scores
train logs."""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch
from sklearn.metrics import accuracy_score, f1_score

PRECISIONS = {"fp32": None, "bf16": torch.bfloat16}


def pick_device(requested: str) -> torch.device:
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if requested == "cuda" and not torch.cuda.is_available():
        from workflow.errors import UserError

        raise UserError("device: 'cuda' requested but torch sees no GPU; set it to auto or cpu")
    return torch.device(requested)


def pick_precision(requested: str, device: torch.device) -> str:
    """auto: bf16 autocast on a GPU that supports it, fp32 elsewhere (CPU bf16 is slow without AMX)."""
    if requested == "auto":
        return "bf16" if device.type == "cuda" and torch.cuda.is_bf16_supported() else "fp32"
    if requested == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        from workflow.errors import UserError

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


@torch.inference_mode()
def predict_logits(model: torch.nn.Module, loader, compute: Compute, hflip: bool = False) -> np.ndarray:
    """Logits of every batch in `loader`; with `hflip`, the mean of each image's and its mirror's."""
    model.eval()
    batches = []
    for pixels, _ in loader:
        pixels = compute.inputs(pixels)
        with compute.autocast():
            logits = model(pixel_values=pixels).logits.float()
            if hflip:
                logits = (logits + model(pixel_values=pixels.flip(-1)).logits.float()) / 2
        batches.append(compute.gather(logits))
    return torch.cat(batches).cpu().numpy()  # one device-to-host copy, not one per batch


def classification_scores(labels: np.ndarray, logits: np.ndarray) -> dict[str, float]:
    predicted = logits.argmax(axis=1)
    return {
        "accuracy": float(accuracy_score(labels, predicted)),
        "macro_f1": float(f1_score(labels, predicted, average="macro", zero_division=0)),
    }
