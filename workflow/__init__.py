"""Reproducible Kaggle image-classification pipeline: stages, data sources, models and methods."""
import os

# albumentations asks PyPI for a newer version on every import: a network call per stage, offline
# a timeout. Every module of this package imports albumentations after this line.
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
