"""augment: build the albumentations pipelines from params, serialize them, draw a preview grid.

Writes the train and eval pipelines to one JSON file (read by train and infer) and a PNG grid of
augmented training images. augment.normalize: auto takes model.name's own mean and std (its image
processor's; each screening candidate and ablation variant then uses its own model's); the JSON file
records the values and where they came from. The preview makes a change to the augmentation
visible before any training. Both are built first and written together: a failure leaves the
previous two files.

A text competition (data/raw/competition.json) is not augmented: the JSON file says so, the preview
shows training rows as the model will read them (label, text), and augment.* is not used.
"""
from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw

from workflow.config import load_params, parse_stage
from workflow.core import io
from workflow.core.cli import run
from workflow.data.competition_info import competition_task
from workflow.data.images import load_rgb

# albumentations imports its optional PyTorch transforms, and with them torch (1.4 of the 2.6 CPU
# seconds this stage took to start), whenever torch is installed; this stage only builds and
# serializes numpy pipelines.
# The optional module is hidden while albumentations loads (it skips it on ImportError).
_HIDE_TORCH = "albumentations" not in sys.modules and "albumentations.pytorch" not in sys.modules
if _HIDE_TORCH:
    sys.modules["albumentations.pytorch"] = None  # type: ignore[assignment]
try:
    from workflow.data.transforms import build_pipelines, check_fits, save_pipelines, without_normalize
finally:
    if _HIDE_TORCH:
        del sys.modules["albumentations.pytorch"]

SECTIONS = ("augment",)  # the params sections this stage reads; dvc.yaml lists their keys
# and single keys of other sections (dvc.yaml lists them too); model.*: augment.normalize: auto takes its own
KEYS = ("cache.image_size", "model.name", "model.trust_remote_code")

TILE = 96  # preview tile side in pixels, so small inputs stay legible


def preview_grid(images: list[np.ndarray], columns: int = 8) -> Image.Image:
    rows = -(-len(images) // columns)
    grid = Image.new("RGB", (columns * TILE, rows * TILE), "white")
    for i, image in enumerate(images):
        tile = Image.fromarray(image).resize((TILE, TILE), Image.Resampling.NEAREST)
        grid.paste(tile, ((i % columns) * TILE, (i // columns) * TILE))
    return grid


TEXT_NOTE = "text task: no augmentation (augment.* applies to images); rows are tokenized by the cache stage"


def text_preview(rows: pd.DataFrame, width: int = 100) -> Image.Image:
    """Training rows as text: 'label | text [SEP] text_pair', wrapped; what the model will read."""
    lines = []
    for _, row in rows.iterrows():
        shown = row["text"] + (f" [SEP] {row['text_pair']}" if "text_pair" in row else "")
        wrapped = textwrap.wrap(f"{row['label']} | {' '.join(shown.split())}", width)[:4] or [""]
        lines += wrapped + [""]
    image = Image.new("RGB", (8 + 6 * width, 8 + 12 * len(lines)), "white")
    draw = ImageDraw.Draw(image)
    for i, line in enumerate(lines):
        draw.text((4, 4 + 12 * i), line, fill="black")
    return image


def resolve_normalize(params, model) -> dict:
    """augment.normalize's values, or for auto model.name's own; with where they came from."""
    if params.normalize == "auto":
        from workflow.models.preprocessing import own_normalization

        return {**own_normalization(model.name, model.trust_remote_code), "auto": True}
    return {"mean": params.normalize.mean, "std": params.normalize.std, "source": "augment.normalize", "auto": False}


def write_text_preview(args, preview_rows: int) -> None:
    train = pd.read_csv(Path(args.split) / "train.csv", dtype=str, keep_default_na=False)
    grid = text_preview(train.sample(n=min(preview_rows, len(train)), random_state=0))
    with io.atomic_path(args.out) as out, io.atomic_path(args.preview) as preview:
        out.write_text(json.dumps({"task": "text", "note": TEXT_NOTE}, indent=2) + "\n")
        grid.save(preview, format="PNG")
    print(f"augment: {TEXT_NOTE} -> {args.out}; preview -> {args.preview}")


def main(argv=None) -> None:
    args, sections = parse_stage(__doc__, SECTIONS, argv, raw="data/raw", split="data/split",
                                 out="data/augment/pipelines.json", preview="reports/augment_preview.png")
    params = sections["augment"]
    if competition_task(args.raw) == "text":
        write_text_preview(args, params.preview_images)
        return
    # cache.image_size is read only to refuse, before anything is written, a crop larger than the
    # cached images training will get; training checks again against the cache it opens.
    every = load_params(args.params)
    cache_side = every.cache.image_size
    normalize = resolve_normalize(params, every.model)
    pipelines = build_pipelines(params, normalize)
    train = pd.read_csv(Path(args.split) / "train.csv", dtype=str, keep_default_na=False)
    shown = train.sample(n=min(params.preview_images, len(train)), random_state=0)
    originals = {path: load_rgb(Path(args.raw) / path) for path in shown["path"]}
    check_fits(pipelines["train"], {"the cached images": (cache_side, cache_side)},
               f"make it smaller or raise cache.image_size (now {cache_side})")
    check_fits(pipelines["train"], {f"the preview image {path}": image.shape[:2] for path, image in originals.items()},
               "the preview shows the training images as they are: make it smaller")
    pixels = without_normalize(pipelines["train"])
    pixels.set_random_seed(0)
    grid = preview_grid([pixels(image=image)["image"] for image in originals.values()])
    with io.atomic_path(args.out) as out, io.atomic_path(args.preview) as preview:
        out.write_text(save_pipelines(pipelines, params.image_size, normalize))
        grid.save(preview, format="PNG")
    print(f"augment: {len(pipelines['train'].transforms)} train transforms, normalize mean {normalize['mean']} std "
          f"{normalize['std']} ({normalize['source']}) -> {args.out}; preview -> {args.preview}")


if __name__ == "__main__":
    raise SystemExit(run(main))
