"""Batched forward passes without autograd: logits for a loader, and the scores train logs."""
from __future__ import annotations

import numpy as np
import torch
from sklearn.metrics import accuracy_score, f1_score


def pick_device(requested: str) -> torch.device:
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if requested == "cuda" and not torch.cuda.is_available():
        from workflow.errors import UserError

        raise UserError("device: 'cuda' requested but torch sees no GPU; set it to auto or cpu")
    return torch.device(requested)


@torch.inference_mode()
def predict_logits(model: torch.nn.Module, loader, device: torch.device) -> np.ndarray:
    model.eval()
    batches = [model(pixel_values=pixels.to(device)).logits.float().cpu() for pixels, _ in loader]
    return torch.cat(batches).numpy()


def classification_scores(labels: np.ndarray, logits: np.ndarray) -> dict[str, float]:
    predicted = logits.argmax(axis=1)
    return {
        "accuracy": float(accuracy_score(labels, predicted)),
        "macro_f1": float(f1_score(labels, predicted, average="macro", zero_division=0)),
    }
