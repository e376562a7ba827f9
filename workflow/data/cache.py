"""The decode-once image cache: every training and test image decoded, made upright RGB and resized
once, stored as one uint8 array that every later epoch, job and worker memory-maps.

    data/cache/images.npy   uint8 [N, S, S, 3], S = cache.image_size (np.load(mmap_mode="r"))
    data/cache/index.csv    path,row: the raw manifest path of each image and its row in the array
    data/cache/cache.json   the size, the count, and the sha256 of the manifests it was built from

Decoding a JPEG costs far more than augmenting the decoded array, and the data set is read once
per epoch by train and by every screening and ablation job: decoding once moves that cost out of
every epoch. Images are squashed to S x S, as the eval transform (Resize) does anyway; set S at or
a little above the model's input size so random crops keep their detail.
"""
from __future__ import annotations

import hashlib
import json
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from workflow.data.images import load_rgb
from workflow.errors import UserError

ARRAY_FILE, INDEX_FILE, META_FILE = "images.npy", "index.csv", "cache.json"
MANIFESTS = ("train.csv", "test.csv")  # in data/raw: every labelled and every test image


def manifest_digest(raw: Path | str) -> str:
    """sha256 of the raw manifests: which images, under which names, the cache must hold."""
    digest = hashlib.sha256()
    for name in MANIFESTS:
        digest.update(name.encode())
        digest.update((Path(raw) / name).read_bytes())
    return digest.hexdigest()


def decode_resized(path: Path, size: int) -> np.ndarray:
    image = load_rgb(path)
    if image.shape[:2] == (size, size):
        return image
    shrinking = image.shape[0] * image.shape[1] > size * size
    # Area averaging when shrinking (no aliasing); bilinear when enlarging.
    return cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)


def _decode_chunk(args: tuple[list[Path], int]) -> np.ndarray:
    paths, size = args
    return np.stack([decode_resized(path, size) for path in paths])


def build(raw: Path | str, out: Path | str, size: int, workers: int | None = None, chunk: int = 256) -> int:
    """Decode every image listed in raw's manifests into `out` (a new folder). Returns the count."""
    raw, out = Path(raw), Path(out)
    paths = pd.concat([pd.read_csv(raw / name, dtype=str, keep_default_na=False)["path"] for name in MANIFESTS])
    paths = list(dict.fromkeys(paths))  # a path listed twice is decoded once
    out.mkdir(parents=True)
    array = np.lib.format.open_memmap(out / ARRAY_FILE, mode="w+", dtype=np.uint8, shape=(len(paths), size, size, 3))
    chunks = [([raw / p for p in paths[i:i + chunk]], size) for i in range(0, len(paths), chunk)]
    workers = workers or min(len(chunks), len(os.sched_getaffinity(0)))  # the CPUs this job was given
    if workers > 1:
        with ProcessPoolExecutor(workers) as pool:  # decoding is CPU-bound: one process per core
            decoded = pool.map(_decode_chunk, chunks)
            for i, block in enumerate(decoded):
                array[i * chunk:i * chunk + len(block)] = block
    else:
        for i, item in enumerate(chunks):
            block = _decode_chunk(item)
            array[i * chunk:i * chunk + len(block)] = block
    array.flush()
    content = hashlib.sha256(memoryview(np.ascontiguousarray(array)).cast("B")).hexdigest()
    del array
    pd.DataFrame({"path": paths, "row": range(len(paths))}).to_csv(out / INDEX_FILE, index=False)
    (out / META_FILE).write_text(json.dumps(
        {"image_size": size, "count": len(paths), "manifests_sha256": manifest_digest(raw),
         "array_sha256": content}, indent=2) + "\n")
    return len(paths)


@dataclass(frozen=True)
class ImageCache:
    """An opened cache: the memory-mapped array and each path's row."""

    folder: Path
    array: np.ndarray
    rows: dict[str, int]
    image_size: int
    array_sha256: str  # identifies the cached pixels (training checkpoints are tied to them)

    @classmethod
    def open(cls, folder: Path | str, raw: Path | str) -> "ImageCache":
        """Open the cache built from `raw`; a stale or missing one is a UserError saying what to run."""
        folder = Path(folder)
        if not (folder / META_FILE).is_file():
            raise UserError(f"{folder}: no image cache here; build it with the cache stage (dvc repro cache)")
        meta = json.loads((folder / META_FILE).read_text())
        if meta["manifests_sha256"] != manifest_digest(raw):
            raise UserError(f"{folder}: the image cache was built from other images than {raw} lists; "
                            f"rebuild it (dvc repro cache)")
        index = pd.read_csv(folder / INDEX_FILE, dtype={"path": str, "row": np.int64}, keep_default_na=False)
        array = np.load(folder / ARRAY_FILE, mmap_mode="r")
        return cls(folder, array, dict(zip(index["path"], index["row"])), int(meta["image_size"]),
                   meta["array_sha256"])

    def rows_of(self, paths) -> np.ndarray:
        try:
            return np.array([self.rows[p] for p in paths], dtype=np.int64)
        except KeyError as err:
            raise UserError(f"{self.folder}: image {err.args[0]} is not in the cache; rebuild it (dvc repro cache)") from None
