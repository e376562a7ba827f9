"""cache: decode every training and test image once into a memory-mapped uint8 array.

Each image is decoded with its EXIF orientation applied, converted to RGB whatever its mode, and
resized to cache.image_size square; training, screening, ablation and inference then read arrays
instead of decoding files every epoch (workflow/data/cache.py).
"""
from __future__ import annotations

import time

from workflow.config import parse_stage
from workflow.core import io
from workflow.core.cli import run
from workflow.data import cache

SECTIONS = ("cache",)  # the params sections this stage reads; dvc.yaml lists their keys


def main(argv=None) -> None:
    args, sections = parse_stage(__doc__, SECTIONS, argv, raw="data/raw", out="data/cache")
    params = sections["cache"]
    started = time.perf_counter()
    with io.atomic_path(args.out) as out:
        count = cache.build(args.raw, out, params.image_size, workers=params.workers or None)
    print(f"cache: {count} images decoded at {params.image_size}x{params.image_size} in "
          f"{time.perf_counter() - started:.1f} s -> {args.out}")


if __name__ == "__main__":
    raise SystemExit(run(main))
