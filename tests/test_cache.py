"""The decode-once cache: real image files in, upright RGB arrays at the cached size out; a stale
cache is refused; DVC re-runs the cache stage when the images or the size change."""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from PIL import Image
from test_engines import make_project, sh

from workflow.core.errors import UserError
from workflow.data import cache
from workflow.data.cache import ImageCache
from workflow.data.images import load_rgb


def image(path: Path, size: tuple[int, int], mode: str = "RGB", seed: int = 0, **save) -> Path:
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).convert(mode).save(path, **save)
    return path


@pytest.fixture
def raw(tmp_path):
    """A raw folder as download leaves it: manifests of labelled and test images of mixed kinds."""
    folder = tmp_path / "raw"
    image(folder / "train/a.png", (40, 30))
    image(folder / "train/b.JPG", (64, 64), mode="CMYK", seed=1)
    image(folder / "train/c.png", (20, 20), mode="L", seed=2)
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways: must be turned upright
    image(folder / "train/d.jpg", (48, 24), seed=3, exif=exif)
    image(folder / "test/e.png", (32, 32), mode="RGBA", seed=4)
    pd.DataFrame({"path": ["train/a.png", "train/b.JPG", "train/c.png", "train/d.jpg"],
                  "label": ["x", "y", "x", "y"]}).to_csv(folder / "train.csv", index=False)
    pd.DataFrame({"id": ["e"], "path": ["test/e.png"]}).to_csv(folder / "test.csv", index=False)
    return folder


def test_every_image_is_decoded_once_upright_and_resized(raw, tmp_path):
    assert cache.build(raw, tmp_path / "cache", size=32, workers=2, chunk=2) == 5
    opened = ImageCache.open(tmp_path / "cache", raw)
    assert opened.array.shape == (5, 32, 32, 3) and opened.array.dtype == np.uint8
    assert isinstance(opened.array, np.memmap)  # mapped, not read into memory
    for path in ["train/a.png", "train/b.JPG", "train/c.png", "train/d.jpg", "test/e.png"]:
        expected = cache.decode_resized(raw / path, 32)
        assert np.array_equal(opened.array[opened.rows_of([path])[0]], expected), path
    # The EXIF-rotated photo is stored upright: its decoded 48x24 pixels turned to 24 wide, 48 high.
    assert load_rgb(raw / "train/d.jpg").shape == (48, 24, 3)
    meta = json.loads((tmp_path / "cache/cache.json").read_text())
    assert meta["image_size"] == 32 and meta["count"] == 5 and len(meta["array_sha256"]) == 64


def test_the_array_is_hashed_once_per_version_of_the_file(raw, tmp_path, monkeypatch):
    cache.build(raw, tmp_path / "cache", size=16, workers=1)
    hashed = []
    real = cache.array_digest
    monkeypatch.setattr(cache, "array_digest", lambda array: hashed.append(1) or real(array))
    ImageCache.open(tmp_path / "cache", raw)
    ImageCache.open(tmp_path / "cache", raw)
    assert len(hashed) == 1  # the second open costs a stat
    array = tmp_path / "cache/images.npy"
    data = bytearray(array.read_bytes())
    data[-1] ^= 0x01
    array.write_bytes(bytes(data))  # a new version of the file: hashed again, and refused
    with pytest.raises(UserError, match="its content differs from the sha256 recorded"):
        ImageCache.open(tmp_path / "cache", raw)
    assert len(hashed) == 2


def test_parallel_and_serial_builds_are_identical(raw, tmp_path):
    cache.build(raw, tmp_path / "one", size=24, workers=1)
    cache.build(raw, tmp_path / "two", size=24, workers=2, chunk=1)
    for name in ("images.npy", "index.csv", "cache.json"):
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "two" / name).read_bytes(), name


def test_a_cache_of_other_images_is_refused(raw, tmp_path):
    cache.build(raw, tmp_path / "cache", size=16, workers=1)
    with pytest.raises(UserError, match=r"cache: the image cache was built from other images .*dvc repro cache"):
        labels = pd.read_csv(raw / "train.csv")
        labels.drop(index=0).to_csv(raw / "train.csv", index=False)
        ImageCache.open(tmp_path / "cache", raw)
    with pytest.raises(UserError, match=r"no image cache here; build it with the cache stage"):
        ImageCache.open(tmp_path / "nothing", raw)
    cache.build(raw, tmp_path / "rebuilt", size=16, workers=1)
    with pytest.raises(UserError, match=r"image train/zzz.png is not in the cache"):
        ImageCache.open(tmp_path / "rebuilt", raw).rows_of(["train/zzz.png"])


def changed_stages(root: Path) -> set[str]:
    status = json.loads(sh(["dvc", "status", "--json"], root).strip().splitlines()[-1])
    return set(status)


@pytest.mark.slow
def test_dvc_rebuilds_the_cache_when_the_images_or_the_size_change(tmp_path):
    root = make_project(tmp_path / "project")
    sh(["dvc", "repro", "cache"], root)
    assert np.load(root / "data/cache/images.npy", mmap_mode="r").shape[1:] == (32, 32, 3)

    params = yaml.safe_load((root / "params.yaml").read_text())
    params["cache"]["image_size"] = 40
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    assert "cache" in changed_stages(root) and "download" not in changed_stages(root)
    output = sh(["dvc", "repro", "cache"], root)
    assert set(re.findall(r"Running stage '([\w@-]+)'", output)) == {"check_params", "cache"}
    assert np.load(root / "data/cache/images.npy", mmap_mode="r").shape[1:] == (40, 40, 3)

    # An image edited in place: DVC sees data/raw changed under the cache stage.
    first = pd.read_csv(root / "data/raw/train.csv")["path"][0]
    image(root / "data/raw" / first, (32, 32), seed=99)
    status = json.loads(sh(["dvc", "status", "--json", "cache"], root).strip().splitlines()[-1])
    assert {"changed deps": {"data/raw": "modified"}} in status["cache"]
