"""B6: BEiT's relative position bias, transformers' module vs the swapped one (workflow/models/position_bias.py).

One LoRA training step (q,v; the bias tables frozen, as in the recipe) of a random-init BEiT from a
shipped config, on the machine's device (bf16 autocast on a GPU that has it), both models side by
side in one run and interleaved, so load and clocks hit both alike. Prints steps/s of each and
the ratio, the host-to-device copies per step on CUDA (torch.profiler), and the achieved TFLOP/s of
the swapped model's step (FLOPs counted by torch.utils.flop_counter on one step; on a GPU of the
table below, also as a share of its dense bf16 peak). This is pure compute: no data loading, no
validation; benchmarks/gpu.sh divides the train stage's images/s by it.

    python benchmarks/b6_position_bias.py                                  # beit-base-224, batch 8
    python benchmarks/b6_position_bias.py --model microsoft/beit-large-patch16-384 --batch-size 8
"""
from __future__ import annotations

import argparse
import contextlib
import copy

from common import ROOT, markdown, median, seconds, write_json

# Dense bf16 tensor-core peak, TFLOP/s, from the vendors' data sheets (SXM parts; no sparsity).
BF16_PEAK_TFLOPS = {"H200": 989.0, "H100": 989.0, "A100": 312.0, "L40S": 362.0, "A10G": 70.0, "L4": 121.0}


def peak_tflops(device_name: str) -> float | None:
    return next((peak for key, peak in BF16_PEAK_TFLOPS.items() if key in device_name), None)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="microsoft/beit-base-patch16-224", help="a config in configs/models/")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--json", help="also write the result here")
    args = parser.parse_args(argv)

    import torch
    from transformers import AutoModelForImageClassification

    from workflow.models.methods import prepare
    from workflow.models.position_bias import speed_up_position_bias
    from workflow.models.zoo import _config_from_file, input_size, shipped_config_path
    from workflow.recipe import Recipe
    from workflow.training.runtime import pick_device, pick_precision

    device = pick_device("auto")
    precision = pick_precision("auto", device)
    torch.manual_seed(0)
    config = _config_from_file(shipped_config_path(f"{args.model}.json"), num_labels=10)
    plain = AutoModelForImageClassification.from_config(config)
    fast = copy.deepcopy(plain)
    swapped = speed_up_position_bias(fast)
    recipe = Recipe.of(args.model, "lora", targets=["query", "value"])
    models = {"transformers": prepare(plain, recipe).to(device), "swapped": prepare(fast, recipe).to(device)}
    side = input_size(plain)
    images = torch.randn(args.batch_size, 3, side, side, device=device)
    labels = torch.randint(0, 10, (args.batch_size,), device=device)

    def step(model) -> None:
        autocast = (torch.autocast(device.type, dtype=torch.bfloat16) if precision == "bf16"
                    else contextlib.nullcontext())
        with autocast:
            loss = torch.nn.functional.cross_entropy(model(pixel_values=images).logits, labels)
        loss.backward()
        if device.type == "cuda":
            torch.cuda.synchronize()

    for model in models.values():  # warm-up: allocator, kernels, the swapped module's caches
        step(model)
    times = {name: [] for name in models}
    for _ in range(args.repeat):
        for name, model in models.items():
            times[name].append(seconds(lambda: step(model)))
    rows = [{"module": name, "s/step (median)": median(t), "steps/s": 1 / median(t)} for name, t in times.items()]
    copies = {}
    if device.type == "cuda":
        from torch.profiler import ProfilerActivity, profile

        for name, model in models.items():
            with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
                step(model)
            copies[name] = sum(e.count for e in prof.key_averages() if "Memcpy HtoD" in e.key)
        for row in rows:
            row["HtoD copies/step"] = copies[row["module"]]
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        step(models["swapped"])
    flops = counter.get_total_flops()
    tflops = flops / median(times["swapped"]) / 1e12
    peak = peak_tflops(torch.cuda.get_device_name(device)) if device.type == "cuda" else None
    ratio = median(times["transformers"]) / median(times["swapped"])
    print(f"B6 {args.model}, batch {args.batch_size}, {device} {precision}, {swapped} bias modules swapped")
    print(markdown(rows, list(rows[0])))
    print(f"speed-up (transformers s/step / swapped s/step): {ratio:.2f}x")
    share = f", {100 * tflops / peak:.1f}% of the {peak:.0f} TFLOP/s bf16 peak" if peak else ""
    print(f"swapped: {flops / 1e9:,.1f} GFLOP per step, {tflops:.2f} TFLOP/s achieved{share}; "
          f"{args.batch_size / median(times['swapped']):.1f} images/s of pure compute")
    write_json(args.json, {"model": args.model, "device": str(device), "precision": precision, "rows": rows,
                           "speedup": ratio, "gflop_per_step": flops / 1e9, "tflops": tflops,
                           "peak_share": tflops / peak if peak else None,
                           "compute_images_per_s": args.batch_size / median(times["swapped"]), "root": str(ROOT)})


if __name__ == "__main__":
    main()
