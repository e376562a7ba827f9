"""Data sources (builtin, local, kaggle), layouts, manifests, image decoding and the image cache."""
