"""95% intervals for a variant's validation scores, and whether two variants differ at all.

On a 72-image validation split one image is 1.4 points of accuracy, so a point estimate alone says
little. Accuracy gets the exact Clopper-Pearson interval, which needs only the score and the split's
size. Macro-F1 is not a proportion: it gets a percentile bootstrap over the validation rows, which
needs each row's prediction. Every bootstrap draws the same seeded resamples, so variants are
compared on the same draws (paired) and the report is the same bytes on every run.
"""
from __future__ import annotations

import numpy as np

LEVEL = 0.95
RESAMPLES = 2000
SEED = 0


def clopper_pearson(correct: int, total: int, level: float = LEVEL) -> tuple[float, float]:
    """The exact binomial interval of `correct` successes in `total` trials."""
    from scipy.stats import beta  # ~0.5 s to import: not for --help

    tail = (1 - level) / 2
    low = 0.0 if correct == 0 else float(beta.ppf(tail, correct, total - correct + 1))
    high = 1.0 if correct == total else float(beta.ppf(1 - tail, correct + 1, total - correct))
    return low, high


def resamples(total: int, count: int = RESAMPLES, seed: int = SEED) -> np.ndarray:
    """`count` bootstrap draws of row indices, one draw per row of the result."""
    return np.random.default_rng(seed).integers(0, total, size=(count, total))


def macro_f1(truth: np.ndarray, predicted: np.ndarray, classes: int) -> np.ndarray:
    """Macro-F1 of each row of (draws, rows) class indices, as sklearn's f1_score(average="macro")
    computes it: over the classes present in the truth or the predictions of that draw."""
    truth, predicted = np.atleast_2d(truth), np.atleast_2d(predicted)
    offset = np.arange(len(truth))[:, None] * classes  # one block of counts per draw

    def counts(index: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
        flat = np.bincount(index.ravel(), None if weights is None else weights.ravel(), len(truth) * classes)
        return flat.reshape(len(truth), classes)

    hits, rows = counts(offset + truth, truth == predicted), counts(offset + truth) + counts(offset + predicted)
    present = rows > 0  # F1 = 2 TP / (2 TP + FP + FN) = 2 hits / (true rows + predicted rows)
    f1 = np.divide(2 * hits, rows, out=np.zeros(hits.shape), where=present)
    return f1.sum(axis=1) / present.sum(axis=1)


def percentile_interval(draws: np.ndarray, level: float = LEVEL) -> tuple[float, float]:
    tail = 100 * (1 - level) / 2
    low, high = np.percentile(draws, [tail, 100 - tail])
    return float(low), float(high)


def bootstrap_macro_f1(truth: np.ndarray, predicted: np.ndarray, classes: int,
                       draws: np.ndarray) -> tuple[float, float]:
    """The interval of the seeds' mean macro-F1; `predicted` is (seeds, rows), each seed's rows
    resampled by the same draws."""
    scores = np.mean([macro_f1(truth[draws], seed[draws], classes) for seed in np.atleast_2d(predicted)], axis=0)
    return percentile_interval(scores)


def paired_accuracy_difference(truth: np.ndarray, first: np.ndarray, second: np.ndarray,
                               draws: np.ndarray) -> tuple[float, float]:
    """The interval of accuracy(first) - accuracy(second) over the same resampled rows; each is
    (seeds, rows) of predictions, so a variant with several seeds counts each row's mean correctness."""
    gain = (np.atleast_2d(first) == truth).mean(axis=0) - (np.atleast_2d(second) == truth).mean(axis=0)
    return percentile_interval(gain[draws].mean(axis=1))
