"""Batched forward passes without autograd, and the scores every run logs."""
from __future__ import annotations

import numpy as np
import torch
from sklearn.metrics import accuracy_score, f1_score

from workflow.training.runtime import Compute


@torch.inference_mode()
def predict_logits(model: torch.nn.Module, loader, compute: Compute, hflip: bool = False) -> np.ndarray:
    """Logits of every batch in `loader`; with `hflip`, the mean of each image's and its mirror's."""
    model.eval()
    batches = []
    for pixels, _ in loader:
        pixels, real = pad_rows(compute.inputs(pixels), compute.pad_to)
        with compute.autocast():
            logits = model(pixel_values=pixels).logits.float()
            if hflip:
                logits = (logits + model(pixel_values=pixels.flip(-1)).logits.float()) / 2
        batches.append(compute.gather(logits[:real]))
    return torch.cat(batches).cpu().numpy()  # one device-to-host copy, not one per batch


def pad_rows(batch: torch.Tensor, size: int | None) -> tuple[torch.Tensor, int]:
    """The batch padded to `size` rows with copies of its last row (a compiled model sees one shape;
    in eval mode rows do not affect each other), and how many rows are real."""
    real = len(batch)
    if size is None or real >= size:
        return batch, real
    padded = torch.cat([batch, batch[-1:].expand(size - real, *batch.shape[1:])])
    nhwc = batch.dim() == 4 and not batch.is_contiguous() and batch.is_contiguous(memory_format=torch.channels_last)
    return padded.contiguous(memory_format=torch.channels_last if nhwc else torch.contiguous_format), real


def classification_scores(labels: np.ndarray, logits: np.ndarray) -> dict[str, float]:
    predicted = logits.argmax(axis=1)
    return {
        "accuracy": float(accuracy_score(labels, predicted)),
        "macro_f1": float(f1_score(labels, predicted, average="macro", zero_division=0)),
    }
