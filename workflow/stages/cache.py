"""cache: decode every image, or tokenize every text row, once, into arrays later stages memory-map.

Images: each is decoded with its EXIF orientation applied, converted to RGB whatever its mode, and
resized to cache.image_size square (workflow/data/cache.py). Text (data/raw/competition.json says
which): every row is tokenized by model.name's own tokenizer to at most cache.max_length tokens,
and the share of truncated rows is printed and recorded (workflow/data/token_cache.py). Training,
screening, ablation and inference then read arrays instead of decoding or tokenizing every epoch.
model.name is read only for text; an image cache does not depend on it (it comes out the same).
"""
from __future__ import annotations

import time

from workflow.config import load_params, parse_stage
from workflow.core import io
from workflow.core.cli import run
from workflow.data import cache
from workflow.data.competition_info import competition_task

SECTIONS = ("cache",)  # the params sections this stage reads; dvc.yaml lists their keys
KEYS = ("model.name", "model.trust_remote_code")  # text: the tokenizer is the model's


def main(argv=None) -> None:
    args, sections = parse_stage(__doc__, SECTIONS, argv, raw="data/raw", out="data/cache")
    params = sections["cache"]
    started = time.perf_counter()
    task = competition_task(args.raw)
    if task == "text":
        tokenize(args, params.max_length, started)
        return
    with io.atomic_path(args.out) as out:
        count = cache.build(args.raw, out, params.image_size, workers=params.workers or None)
    print(f"cache: {count} images decoded at {params.image_size}x{params.image_size} in "
          f"{time.perf_counter() - started:.1f} s -> {args.out}")


def tokenize(args, max_length: int, started: float) -> None:
    from workflow.data.token_cache import TokenCache  # transformers' tokenizers: only for text
    from workflow.models.tokenizers import load_tokenizer

    model = load_params(args.params).model
    tokens = TokenCache.tokenize(args.raw, load_tokenizer(model.name, model.trust_remote_code), model.name,
                                 max_length)
    with io.atomic_path(args.out) as out:
        tokens.write(out)
    meta = tokens.meta
    print(f"cache: {meta['count']} rows tokenized by {model.name}'s tokenizer to at most {max_length} tokens, "
          f"{meta['truncated']} truncated ({100 * meta['truncated_share']:.1f}%; the longest has "
          f"{meta['longest_tokens']}), in {time.perf_counter() - started:.1f} s -> {args.out}")


if __name__ == "__main__":
    raise SystemExit(run(main))
