"""Benchmark B3: LoRA vs full fine-tuning on BEiT-base-224 (random init from its config), batch 8, CPU.

    python benchmarks/b3_lora_vs_full.py                   # 2 alternating rounds of each
    python benchmarks/b3_lora_vs_full.py --rounds 3 --steps 5 --json b3.json

Each measurement is workflow.tools.dry_run's: a fresh process builds the real architecture, applies the
method, runs one warm-up and --steps timed AdamW steps on random 224x224 images, and reports its
peak RSS, seconds per step and a breakdown measured on the live tensors (weights, gradients,
optimizer state, activations saved for the backward). Rounds alternate LoRA and full.

Ratios (LoRA / full) are given for the process's peak RSS (which includes ~0.4 GiB of interpreter
and libraries both share) and for the training's own memory (peak minus the process before the
model was built); targets: memory <= 0.55x, time <= 0.8x.
"""
from __future__ import annotations

import argparse

from common import markdown, median, write_json

MODEL = "microsoft/beit-base-patch16-224"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=MODEL)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args(argv)

    from workflow.recipe import Recipe, RuntimeParams
    from workflow.tools.dry_run import measure_isolated

    specs = {"lora": Recipe.of(args.model, "lora", r=8, alpha=16, dropout=0.0, targets=["query", "value"]),
             "full": Recipe.of(args.model, "full")}
    runs = {name: [] for name in specs}
    for _ in range(args.rounds):
        for name, spec in specs.items():
            runs[name].append(measure_isolated(spec, args.batch_size, args.steps, RuntimeParams(device="cpu"),
                                                    {"num_labels": 1000}))
    rows = []
    for name, measured in runs.items():
        last = measured[-1]
        rows.append({
            "method": last["method_text"], "trainable": f"{last['trainable']:,}",
            "peak RSS MiB": median([m["peak_memory_mib"] for m in measured]),
            "training MiB": median([m["peak_memory_mib"] - m["memory_at_start_mib"] for m in measured]),
            "s / step": median([m["s_per_step"] for m in measured]),
            **{key.removesuffix("_mib").replace("_", " ") + " MiB": value for key, value in last["breakdown"].items()},
        })
    lora, full = rows
    ratios = {"peak RSS": lora["peak RSS MiB"] / full["peak RSS MiB"],
              "training memory": lora["training MiB"] / full["training MiB"],
              "s / step": lora["s / step"] / full["s / step"]}
    print(f"\nB3: {args.model}, batch {args.batch_size}, {runs['lora'][-1]['device']}, median of {args.rounds} rounds\n")
    print(markdown(rows, list(rows[0])))
    print("\nLoRA / full: " + ", ".join(f"{key} {value:.3f}x" for key, value in ratios.items())
          + "  (targets: memory <= 0.55x, time <= 0.8x)")
    write_json(args.json, {"benchmark": "B3", "model": args.model, "rows": rows, "ratios": ratios, "runs": runs})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
