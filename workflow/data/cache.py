"""The decode-once image cache: every training and test image decoded, made upright RGB and resized
once, stored as one uint8 array that every later epoch, job and worker memory-maps.

    data/cache/images.npy   uint8 [N, S, S, 3], S = cache.image_size (np.load(mmap_mode="r"))
    data/cache/index.csv    path,row: the raw manifest path of each image and its row in the array
    data/cache/cache.json   the size, the count, the sha256 of the manifests it was built from and
                            of the array itself (checked on every open: a damaged cache is refused)

Decoding a JPEG costs far more than augmenting the decoded array, and the data set is read once
per epoch by train and by every screening and ablation job: decoding once moves that cost out of
every epoch. Images are squashed to S x S, as the eval transform (Resize) does anyway; set S at or
a little above the model's input size so random crops keep their detail.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from workflow.core import io
from workflow.core.errors import UserError
from workflow.core.lifetime import worker_initializer
from workflow.data.images import load_rgb

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
    io.reserve(out / ARRAY_FILE, array.offset + array.nbytes)  # a full disk: an error now, not SIGBUS later
    chunks = [([raw / p for p in paths[i:i + chunk]], size) for i in range(0, len(paths), chunk)]
    workers = workers or min(len(chunks), len(os.sched_getaffinity(0)))  # the CPUs this job was given
    if workers > 1:
        # Decoding is CPU-bound: one process per core. Forked, so each is this process's own child and
        # dies with it (a killed stage would otherwise leave them decoding).
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork"),
                                 initializer=worker_initializer, initargs=(os.getpid(),)) as pool:
            decoded = pool.map(_decode_chunk, chunks)
            for i, block in enumerate(decoded):
                array[i * chunk:i * chunk + len(block)] = block
    else:
        for i, item in enumerate(chunks):
            block = _decode_chunk(item)
            array[i * chunk:i * chunk + len(block)] = block
    array.flush()
    content = array_digest(array)
    del array
    pd.DataFrame({"path": paths, "row": range(len(paths))}).to_csv(out / INDEX_FILE, index=False)
    (out / META_FILE).write_text(json.dumps(
        {"image_size": size, "count": len(paths), "manifests_sha256": manifest_digest(raw),
         "array_sha256": content}, indent=2) + "\n")
    return len(paths)


def array_digest(array: np.ndarray, block: int = 64 * 2**20) -> str:
    """sha256 of the array's bytes, read in blocks (a memory map is not loaded whole)."""
    flat = array.reshape(-1)
    digest = hashlib.sha256()
    for start in range(0, flat.size, block):
        digest.update(memoryview(np.ascontiguousarray(flat[start:start + block])))
    return digest.hexdigest()


REBUILD = "rebuild it (dvc repro cache, or python -m workflow.stages.cache)"


def _read_meta(folder: Path) -> dict:
    try:
        meta = json.loads((folder / META_FILE).read_text())
        return {key: meta[key] for key in ("image_size", "count", "manifests_sha256", "array_sha256")}
    except (json.JSONDecodeError, KeyError, TypeError) as err:
        raise UserError(f"{folder / META_FILE}: not a readable cache record ({type(err).__name__}: {err}); "
                        f"{REBUILD}") from None


def _open_array(folder: Path, meta: dict) -> np.ndarray:
    """The memory-mapped array, after checking its header and size (a truncated file would fail in
    numpy) and its bytes against the recorded sha256 (a changed one would be used silently). The
    hash is taken once per version of the file: a record beside the folder keeps the file's inode,
    size and mtime when its bytes last matched, so later opens (every epoch's job, every screening
    and ablation job) cost a stat, not a read of the whole array."""
    path = folder / ARRAY_FILE
    shape = (meta["count"], meta["image_size"], meta["image_size"], 3)
    try:
        with path.open("rb") as handle:
            version = np.lib.format.read_magic(handle)
            read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                           else np.lib.format.read_array_header_2_0)
            header = read_header(handle)  # (shape, fortran_order, dtype)
            offset = handle.tell()
    except (ValueError, EOFError) as err:
        raise UserError(f"{path}: not a readable cache array ({err}); {REBUILD}") from None
    expected = offset + int(np.prod(shape))
    if header[0] != shape or header[2] != np.uint8 or path.stat().st_size != expected:
        raise UserError(f"{path}: {path.stat().st_size:,} bytes of shape {header[0]}, but cache.json records "
                        f"{meta['count']:,} images of {meta['image_size']}x{meta['image_size']} ({expected:,} bytes): "
                        f"the cache is truncated or damaged; {REBUILD}")
    array = np.load(path, mmap_mode="r")
    verified = {"file": _file_identity(path), "sha256": meta["array_sha256"]}
    if _read_verified(folder) != verified:  # hash the bytes only when the file changed since the last time
        if array_digest(array) != meta["array_sha256"]:
            raise UserError(f"{path}: its content differs from the sha256 recorded in {META_FILE} (changed after "
                            f"it was built); {REBUILD}")
        with contextlib.suppress(OSError):  # a read-only place only costs the next open a re-hash
            io.write_json(_verified_file(folder), verified)
    return array


def _file_identity(path: Path) -> list[int]:
    """What changes when a file is written or replaced (as DVC's own state records it): inode, size, mtime."""
    stat = path.stat()
    return [stat.st_ino, stat.st_size, stat.st_mtime_ns]


def _verified_file(folder: Path) -> Path:
    # Beside the cache folder, not in it: the folder is a DVC output, hashed as it is.
    return folder.parent / f".{folder.name}.verified.json"


def _read_verified(folder: Path) -> dict | None:
    try:
        return json.loads(_verified_file(folder).read_text())
    except (OSError, ValueError):
        return None


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
        meta = _read_meta(folder)
        if meta["manifests_sha256"] != manifest_digest(raw):
            raise UserError(f"{folder}: the image cache was built from other images than {raw} lists; "
                            f"rebuild it (dvc repro cache)")
        index = pd.read_csv(folder / INDEX_FILE, dtype={"path": str, "row": np.int64}, keep_default_na=False)
        if len(index) != meta["count"] or not index["row"].between(0, meta["count"] - 1).all():
            raise UserError(f"{folder / INDEX_FILE}: {len(index)} rows for a cache of {meta['count']} images; {REBUILD}")
        array = _open_array(folder, meta)
        return cls(folder, array, dict(zip(index["path"], index["row"])), int(meta["image_size"]),
                   meta["array_sha256"])

    def rows_of(self, paths) -> np.ndarray:
        try:
            return np.array([self.rows[p] for p in paths], dtype=np.int64)
        except KeyError as err:
            raise UserError(f"{self.folder}: image {err.args[0]} is not in the cache; rebuild it (dvc repro cache)") from None
