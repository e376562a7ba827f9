"""Benchmark B4: inference images/s of merged LoRA vs the unmerged PEFT model vs the plain base.

    python benchmarks/b4_inference.py                        # tiny default and BEiT-base-224 (~3 min)
    python benchmarks/b4_inference.py --models configs/models/beit-tiny.json:128 --rounds 9 --json b4.json

For each model (built from its config at random init, offline), it makes a LoRA adapter on the
default targets with non-zero weights (so merging changes the weights), saves it with
workflow.models.methods.save and then times, alternating --rounds times over the same batches:

  base      the plain model, no adapter;
  unmerged  the PEFT model with its LoRA layers (what inference would run without merging);
  merged    workflow.models.methods.restore: the adapter loaded and merged into the base (merge_and_unload),
            exactly what the infer stage predicts with.

It checks that merged and unmerged give the same logits, and prints images/s and merged / base
(target >= 0.97).
"""
from __future__ import annotations

import argparse
import copy
import tempfile

from common import markdown, median, seconds, write_json

DEFAULT_MODELS = ("configs/models/beit-tiny.json:128", "microsoft/beit-base-patch16-224:16")


def measure(name: str, batch_size: int, batches: int, rounds: int) -> dict:
    import torch

    from workflow.models.methods import prepare, restore, save
    from workflow.models.predict import predict_logits
    from workflow.models.zoo import build_random, input_size
    from workflow.recipe import Recipe
    from workflow.training.runtime import Compute

    classes = [str(i) for i in range(10)]
    base = build_random(name, classes, seed=0).eval()
    spec = Recipe.of(name, "lora", r=8, alpha=16, dropout=0.0, targets=["query", "value"])
    peft = prepare(copy.deepcopy(base), spec)
    torch.manual_seed(1)
    with torch.no_grad():
        for key, weight in peft.named_parameters():
            if "lora_B" in key:
                weight.normal_(0, 0.02)  # a trained adapter: merging really changes the weights
    with tempfile.TemporaryDirectory() as folder:
        save(peft, spec, folder)
        merged = restore(copy.deepcopy(base), spec, folder).eval()
    peft.eval()
    size = input_size(base)
    generator = torch.Generator().manual_seed(0)
    loader = [(torch.randn(batch_size, 3, size, size, generator=generator), None) for _ in range(batches)]
    compute = Compute(torch.device("cpu"))
    variants = {"base": base, "unmerged": peft, "merged": merged}
    difference = abs(predict_logits(merged, loader[:1], compute) - predict_logits(peft, loader[:1], compute)).max()
    assert difference < 1e-3, f"merged and unmerged logits differ by {difference}"
    for model in variants.values():
        predict_logits(model, loader[:1], compute)  # warm-up
    times = {key: [] for key in variants}
    for _ in range(rounds):
        for key, model in variants.items():
            times[key].append(seconds(lambda: predict_logits(model, loader, compute)))
    images = batch_size * batches
    row = {"model": name, "image": size, "batch": batch_size, "images": images,
           "max |merged - unmerged| logit": float(difference), "all": times}
    for key in variants:
        row[f"{key} img/s"] = images / median(times[key])
    row["merged / base"] = row["merged img/s"] / row["base img/s"]
    row["unmerged / base"] = row["unmerged img/s"] / row["base img/s"]
    row["threads"] = torch.get_num_threads()
    return row


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default=",".join(DEFAULT_MODELS),
                        help="comma-separated model[:batch size] (shipped configs or hub ids with a shipped config)")
    parser.add_argument("--batches", type=int, default=2, help="batches per timed pass")
    parser.add_argument("--rounds", type=int, default=3, help="alternating timed passes per variant")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args(argv)
    rows = []
    for item in args.models.split(","):
        name, _, batch = item.partition(":")
        rows.append(measure(name, int(batch or 32), args.batches, args.rounds))
    print(f"\nB4: inference images/s on the CPU (median of {args.rounds} alternating passes; target merged/base >= 0.97)\n")
    print(markdown(rows, ["model", "image", "batch", "threads", "base img/s", "unmerged img/s", "merged img/s",
                          "merged / base", "unmerged / base"]))
    write_json(args.json, {"benchmark": "B4", "rows": rows})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
