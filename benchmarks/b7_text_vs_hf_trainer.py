"""Benchmark B7: our train stage on a text competition vs a Hugging Face Trainer + PEFT script written the
PEFT sequence-classification guide's way, on the same data and model.

    python benchmarks/b7_text_vs_hf_trainer.py                          # 2,000 reviews, MiniLM-L6, 1 epoch
    python benchmarks/b7_text_vs_hf_trainer.py --repeats 3 --threads 1 --json b7.json

B2 (benchmarks/b2_vs_hf_trainer.py) for text, with the helpers both share (benchmarks/trainer_comparison.py).
In a temporary copy of the repository it

1. writes params.yaml for a text run: --base (the text demo, configs/text.yaml) with TEXT_SETTINGS (the
   built-in Rotten Tomatoes reviews, data.builtin_rows of them, sentence-transformers/all-MiniLM-L6-v2,
   cache.max_length 64, LoRA, 1 epoch), then --epochs and each --set;
2. builds what the train stage needs with the commands of dvc.yaml (download, split, augment, cache);
3. times, alternating and each --repeats times, (a) the train stage's command from dvc.yaml, reading
   time/tokens_per_s and time/train_s from reports/train/metrics.json, and (b)
   benchmarks/hf_trainer_text_reference.py, which reports the same for trainer.train(); both are
   subprocesses with the same environment (threads, offline Hugging Face), their whole wall time measured too;
4. prints a markdown table: real (unpadded) tokens/s of the training loop (validation every epoch
   included, as both do it) and of the whole process (also with ours charged the stages only it
   needs: the cache stage's tokenization, augment), wall and CPU seconds, peak memory, validation
   accuracy, and the speed-up of ours over HF from the medians and per adjacent pair of runs.

Both count the same tokens: the train split's rows tokenized by model.name's tokenizer, truncated to
cache.max_length. The table says how many; a mismatch between the two is printed as a warning.
"""
from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
import trainer_comparison as tc  # the copy, the stages, running, timing and the table: shared with B2

B7 = tc.Benchmark(prefix="b7", unit="tokens", amount="train tokens")
REFERENCE = "benchmarks/hf_trainer_text_reference.py"
REFERENCE_KEYS = ("tokens_per_s", "train_s", "val_accuracy", "peak_memory_mib", "train_tokens", "torch_threads",
                  "optimizer_steps")
BASE = "configs/text.yaml"  # the text demo's recipe (batch 32, lr 1e-3, ...), sized below
TEXT_SETTINGS = [
    "data.source=builtin", "data.builtin=reviews", "data.builtin_rows=2000", "data.task=text",
    "model.name=sentence-transformers/all-MiniLM-L6-v2", "cache.max_length=64", "train.method=lora",
]


def write_params(work: Path, base: str, epochs: int, settings: list[str]) -> dict:
    """The copy's params.yaml: `base` (a full params file) with the text settings, --epochs and --set."""
    shutil.copy2(work / base, work / "params.yaml")
    return tc.override_params(work, epochs, TEXT_SETTINGS + list(settings), B7)


def train_tokens(work: Path) -> int:
    """Real tokens of the train split in the cache the train stage reads (what its tokens/s counts)."""
    cache = work / "data" / "cache"
    index = pd.read_csv(cache / "index.csv", dtype={"part": str, "id": str}, keep_default_na=False)
    rows = index[index["part"] == "train"].set_index("id")["row"]
    ids = pd.read_csv(work / "data" / "split" / "train.csv", dtype=str, keep_default_na=False)["id"]
    return int(np.load(cache / "lengths.npy")[rows.loc[ids].to_numpy()].sum())


def run_reference(work: Path, env: dict, log: Path, timeout: float | None) -> dict:
    out = work / "benchmarks" / "out" / "hf_text_reference"
    cmd = f"python {REFERENCE} --raw data/raw --split data/split --params params.yaml --out {out.relative_to(work)}"
    return tc.run_reference(cmd, out, REFERENCE_KEYS, work, env, log, timeout, B7)


def check_tokens(tokens: int):
    """A check of each HF run: the reference must count the train tokens the cache holds."""
    def check(who: str, result: dict) -> None:
        if who == "hf" and result["train_tokens"] != tokens:  # the two would not count alike
            print(f"b7: warning: the reference counts {result['train_tokens']} train tokens, the cache "
                  f"{tokens}", file=sys.stderr)
    return check


def main(argv=None) -> int:
    args = tc.parse_args(
        __doc__, argv, epochs={"default": 1, "help": "train.epochs for both (default 1)"},
        set_help="more params overrides for both, e.g. data.builtin_rows=4000 (YAML values)",
        extra={"--base": {"default": BASE, "help": f"params file the text settings start from (default {BASE})"}})
    with tc.work_copy(args, B7, "b7-text-vs-hf-") as (work, keep):
        env, logs = tc.environment(args.threads), work / "benchmarks" / "out" / "logs"
        copied = tc.copy_sources(work)
        params = write_params(work, args.base, args.epochs, args.set)
        epochs, model_name = int(params["train"]["epochs"]), params["model"]["name"]
        upstream, stage = tc.upstream_stages(work)
        load, cores = os.getloadavg()[0], os.cpu_count() or 1
        print(f"b7: copy of {copied} files in {work}; {args.threads} threads; {model_name}, train.epochs {epochs}; "
              f"load average {load:.2f} on {cores} cores")
        if load > 0.5:
            print("b7: warning: other work on the machine slows both sides; compare the per-pair ratios, "
                  "or use --threads 1 on a busy machine", file=sys.stderr)

        prep = tc.build_data(upstream, work, env, logs, B7)
        # The reference reads data/raw and data/split: the stages behind those it needs too; the rest
        # (the cache's tokenization, augment) only ours needs, and one row charges their time to ours.
        shared = {s.name for s in tc.upstream_stages(work, "split")[0]} | {"split"}
        ours_only = [s.name for s in upstream if s.name not in shared]
        tokens = train_tokens(work)
        n_train = tc.count_rows(work / "data" / "split" / "train.csv")

        sides = {"ours": lambda log: tc.run_ours(work, stage, env, log, args.timeout, B7),
                 "hf": lambda log: run_reference(work, env, log, args.timeout)}
        runs = tc.alternate(B7, args.repeats, logs, sides, epochs * tokens, sum(prep[n] for n in ours_only),
                            check_tokens(tokens))
        summary = tc.summarize(runs, B7.rows)
        title = (f"B7: train stage vs HF Trainer + PEFT on text, {model_name}, {epochs} epoch(s) x {n_train} "
                 f"training rows ({tokens:,} real tokens, max_length {params['cache']['max_length']}), "
                 f"{args.repeats} run(s) each, alternating, {args.threads} threads")
        tc.report(B7, title, ours_only, prep, runs, summary)
        return tc.finish(args.json, {
            "epochs": epochs, "n_train": n_train, "train_tokens": tokens, "repeats": args.repeats,
            "threads": args.threads, "params_base": args.base, "settings": TEXT_SETTINGS + list(args.set),
            "train_cmd": stage.cmd, "prep_stages": [s.name for s in upstream], "prep_s": prep,
            "ours_only_prep_stages": ours_only, "runs": runs, "summary": summary,
            "workdir": str(work) if keep else None,
        })


if __name__ == "__main__":
    raise SystemExit(main())
