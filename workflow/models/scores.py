"""The scores every run logs, from logits: accuracy, macro-F1, log loss (and binary F1), with numpy
and scikit-learn only, so that a stage pooling saved probabilities (cv) needs no torch."""
from __future__ import annotations

import numpy as np
from sklearn.metrics import accuracy_score, f1_score


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
