"""Batched forward passes without autograd, and the scores every run logs."""
from __future__ import annotations

import numpy as np
import torch
from sklearn.metrics import accuracy_score, f1_score

from workflow.training.runtime import Compute


@torch.inference_mode()
def predict_logits(model: torch.nn.Module, loader, compute: Compute, hflip: bool = False) -> np.ndarray:
    """Logits of every row of `loader`'s data set, in the set's order; with `hflip` (images), the mean
    of each image's and its mirror's."""
    model.eval()
    batches = []
    for features, _ in loader:
        inputs = compute.inputs(features)
        real = len(next(iter(inputs.values())))
        inputs = {name: pad_rows(tensor, compute.pad_to)[0] for name, tensor in inputs.items()}
        with compute.autocast():
            logits = model(**inputs).logits.float()
            if hflip:
                logits = (logits + model(pixel_values=inputs["pixel_values"].flip(-1)).logits.float()) / 2
        batches.append(compute.gather(logits[:real]))
    logits = torch.cat(batches).cpu().numpy()  # one device-to-host copy, not one per batch
    in_set_order = getattr(getattr(loader, "dataset", None), "in_set_order", None)  # text, predicted by length
    return in_set_order(logits) if in_set_order is not None else logits


def pad_rows(batch: torch.Tensor, size: int | None) -> tuple[torch.Tensor, int]:
    """The batch padded to `size` rows with copies of its last row (a compiled model sees one shape;
    in eval mode rows do not affect each other), and how many rows are real."""
    real = len(batch)
    if size is None or real >= size:
        return batch, real
    padded = torch.cat([batch, batch[-1:].expand(size - real, *batch.shape[1:])])
    nhwc = batch.dim() == 4 and not batch.is_contiguous() and batch.is_contiguous(memory_format=torch.channels_last)
    return padded.contiguous(memory_format=torch.channels_last if nhwc else torch.contiguous_format), real


def probabilities(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """softmax(logits / temperature) per row, in float64 (a log loss of confident rows needs it)."""
    scaled = logits.astype(np.float64) / temperature
    scaled -= scaled.max(axis=1, keepdims=True)
    exp = np.exp(scaled)
    return exp / exp.sum(axis=1, keepdims=True)


def multiclass_log_loss(labels: np.ndarray, logits: np.ndarray, temperature: float = 1.0) -> float:
    """Mean negative log-probability of the true class, as Kaggle's multi-class log loss scores it
    (probabilities clipped to [1e-15, 1 - 1e-15])."""
    p_true = probabilities(logits, temperature)[np.arange(len(labels)), labels]
    return float(-np.log(np.clip(p_true, 1e-15, 1 - 1e-15)).mean())


def classification_scores(labels: np.ndarray, logits: np.ndarray) -> dict[str, float]:
    """Accuracy, macro-F1 and log loss; for two classes also binary F1 of the second class (as
    GLUE's MRPC reports it: the positive class is the second in sorted order, e.g. 1 of 0/1)."""
    predicted = logits.argmax(axis=1)
    scores = {
        "accuracy": float(accuracy_score(labels, predicted)),
        "macro_f1": float(f1_score(labels, predicted, average="macro", zero_division=0)),
        "log_loss": multiclass_log_loss(labels, logits),
    }
    if logits.shape[1] == 2:
        scores["f1"] = float(f1_score(labels, predicted, average="binary", pos_label=1, zero_division=0))
    return scores
