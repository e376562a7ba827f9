"""The offline demo competition: scikit-learn's bundled handwritten digits as a Kaggle competition.

It is written in the labels-CSV layout (train/<id>.png, train.csv, test/<id>.png,
sample_submission.csv) and then read by the same code as a user's local competition, so every
offline run exercises the real path. Deterministic: same inputs, byte-identical files.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

SEED = 0
SIDE = 32  # the 8x8 digits are upscaled so that patch-based models have something to cut
PLACEHOLDER_LABEL = "0"


def digit_image(pixels: np.ndarray) -> Image.Image:
    """One 8x8 digit (values 0..16) as a SIDE x SIDE 8-bit grayscale image."""
    gray = np.round(pixels * 255.0 / 16.0).astype(np.uint8)
    return Image.fromarray(gray).resize((SIDE, SIDE), Image.Resampling.BILINEAR)


def write_digits_competition(folder: Path, test_fraction: float) -> Path:
    """Write the digits competition into `folder` (created) and return it."""
    # Imported here: scikit-learn (and SciPy) take ~1 s to import, and only this source needs them.
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    ids = [f"digit_{i + 1:04d}" for i in range(len(digits.target))]
    train_idx, test_idx = train_test_split(
        np.arange(len(ids)), test_size=test_fraction, stratify=digits.target, random_state=SEED
    )
    for split, indices in (("train", train_idx), ("test", test_idx)):
        (folder / split).mkdir(parents=True)
        for i in indices:
            digit_image(digits.images[i]).save(folder / split / f"{ids[i]}.png")
    # Ids without the extension, as many Kaggle labels files give them.
    train = pd.DataFrame({"id": [ids[i] for i in sorted(train_idx)],
                          "label": [str(digits.target[i]) for i in sorted(train_idx)]})
    train.to_csv(folder / "train.csv", index=False)
    # Left in the split's shuffled order, not sorted: later stages must follow sample_submission.
    submission = pd.DataFrame({"id": [ids[i] for i in test_idx], "label": PLACEHOLDER_LABEL})
    submission.to_csv(folder / "sample_submission.csv", index=False)
    return folder
