#!/usr/bin/env bash
# The GPU checks of the real recipe, in one command (about 8 minutes on one H100/H200):
#
#   bash benchmarks/gpu.sh                # results in gpu-results/ (SUMMARY.md and one JSON per check)
#   SKIP_INSTALL=1 bash benchmarks/gpu.sh # where requirements.txt is installed already
#
# 1. B6: BEiT's relative position bias, transformers' module vs the swapped one, base-224 and
#    large-384 (steps/s, host-to-device copies per step).
# 2. The dry run, LoRA r16 q,v vs full fine-tuning, BEiT-large-384, batch 8, as train would run
#    them (bf16, compile auto): peak memory, the ratio, seconds per step.
# 3. B2: our train stage vs Hugging Face Trainer + PEFT, same data, recipe, bf16 and loader workers,
#    BEiT-base-224 at batch 32 and BEiT-large-384 at 8 x 8 (random init from the shipped configs;
#    the digits upscaled), and each stage's images/s over B6's pure compute (stage / compute time).
# 4. The default DAG's train stage on this machine: device auto vs device cpu (B2's own column).
# Each step's output goes to its file as it finishes, so a step that fails or runs out of time
# leaves the others' figures; the exit status is the first failure's.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-gpu-results}
mkdir -p "$OUT"
status=0

step() {  # step NAME COMMAND...: run it, its output to $OUT/NAME.log, and say how it went
    local name=$1
    shift
    local started=$SECONDS
    if "$@" > "$OUT/$name.log" 2>&1; then
        echo "- $name: ok in $((SECONDS - started)) s" | tee -a "$OUT/SUMMARY.md"
    else
        local rc=$?
        echo "- $name: FAILED (exit $rc) after $((SECONDS - started)) s; see $OUT/$name.log" | tee -a "$OUT/SUMMARY.md"
        [ "$status" -eq 0 ] && status=$rc
    fi
}

: > "$OUT/SUMMARY.md"
if [ -z "${SKIP_INSTALL:-}" ]; then
    step install bash -c 'python3 -m venv .venv && . .venv/bin/activate && pip install -q -r requirements.txt'
fi
[ -f .venv/bin/activate ] && . .venv/bin/activate
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
step gpu bash -c "nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv; python -c 'import torch; print(torch.__version__, torch.version.cuda, torch.cuda.get_device_name())'"

BASE=microsoft/beit-base-patch16-224
LARGE=microsoft/beit-large-patch16-384
step b6-base python benchmarks/b6_position_bias.py --model $BASE --batch-size 32 --json "$OUT/b6-base.json"
step b6-large python benchmarks/b6_position_bias.py --model $LARGE --batch-size 8 --json "$OUT/b6-large.json"
for method in lora full; do
    step dry-run-large-$method python -m workflow.tools.dry_run --model $LARGE --method $method --r 16 \
        --targets query,value --num-labels 200 --batch-size 8 --steps 5 --out "$OUT/dry-run-large-$method.json"
done
step b2-base-224 python benchmarks/b2_vs_hf_trainer.py --epochs 2 --json "$OUT/b2-base-224.json" --set \
    model.name=configs/models/$BASE.json augment.image_size=224 cache.image_size=224 train.batch_size=32 \
    train.grad_accum_steps=1 train.num_workers=8
step b2-large-384 python benchmarks/b2_vs_hf_trainer.py --epochs 1 --json "$OUT/b2-large-384.json" --set \
    model.name=configs/models/$LARGE.json augment.image_size=384 cache.image_size=384 train.batch_size=8 \
    train.grad_accum_steps=8 train.num_workers=8 lora.r=16 lora.alpha=16
step default-auto python benchmarks/b2_vs_hf_trainer.py --json "$OUT/default-auto.json"
step default-cpu python benchmarks/b2_vs_hf_trainer.py --json "$OUT/default-cpu.json" --set train.device=cpu

{
    echo
    for log in "$OUT"/b6-*.log "$OUT"/dry-run-*.log "$OUT"/b2-*.log "$OUT"/default-*.log; do
        [ -f "$log" ] || continue
        echo "## $(basename "$log" .log)"
        echo
        grep -E '^\||speed-up|^B6|images/s' "$log" || tail -5 "$log"
        echo
    done
} >> "$OUT/SUMMARY.md"
python - "$OUT" >> "$OUT/SUMMARY.md" <<'SUMMARY_PY' || status=1
import json, sys
from pathlib import Path

out = Path(sys.argv[1])
print("## stage / compute, and the goals")
print()
for size, b6 in (("base-224", "b6-base"), ("large-384", "b6-large")):
    try:
        b2, compute = json.loads((out / f"b2-{size}.json").read_text()), json.loads((out / f"{b6}.json").read_text())
    except FileNotFoundError as missing:
        print(f"- {size}: {missing.filename} is missing")
        continue
    ours, hf = b2["summary"]["ours"]["images_per_s"], b2["summary"]["hf"]["images_per_s"]
    memory = b2["summary"]["ours"]["peak_memory_mib"], b2["summary"]["hf"]["peak_memory_mib"]
    share = compute["peak_share"]
    print(f"- BEiT {size}: ours {ours:.1f} vs HF Trainer {hf:.1f} images/s = {ours / hf:.2f}x (goal >= 2.0); "
          f"peak memory {memory[0]:,.0f} vs {memory[1]:,.0f} MiB; "
          f"stage / compute time {compute['compute_images_per_s'] / ours:.2f} (goal <= 1.05); "
          f"{compute['tflops']:.1f} TFLOP/s" + (f", {100 * share:.1f}% of bf16 peak" if share else ""))
SUMMARY_PY
echo "gpu.sh: results in $OUT/SUMMARY.md"
exit $status
