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
