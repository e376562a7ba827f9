"""Reproducible Kaggle image-classification pipeline: stages, data sources, models and methods."""
