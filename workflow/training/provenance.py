"""What a run was made with: its seeds, the package versions that can change its numbers, the machine.

Recorded beside the results (reports/train/run.json, and the report's "Reproducibility" section) so
two runs that differ can be told apart without guessing.
"""
from __future__ import annotations

import platform
from importlib import metadata

SPLIT_SEED_FILE = "seed.json"  # in data/split: the seed that made the split, by params key

# Everything whose version can change a number in predictions.csv or the reports.
PACKAGES = ("torch", "transformers", "peft", "albumentations", "albucore", "opencv-python-headless",
            "numpy", "pillow", "scikit-learn", "safetensors", "accelerate", "pandas", "dvc", "snakemake")


def package_versions() -> dict[str, str]:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def run_record(seeds: dict[str, int], device: str, images_per_process: list[int] | None = None) -> dict:
    """The record of one training run: `seeds` by params key, e.g. {"train.seed": 0}, and how many
    training images each process saw per epoch (one entry per process of a launched run)."""
    import torch  # only the training stages call this, and they have torch loaded already

    return {
        "seeds": seeds,
        "device": device,
        "processes": len(images_per_process or [1]),
        "train_images_per_process": images_per_process or [],
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "packages": package_versions(),
    }
