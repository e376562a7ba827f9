"""Benchmark B7: our train stage on a text competition vs a Hugging Face Trainer + PEFT script written the
PEFT sequence-classification guide's way, on the same data and model.

    python benchmarks/b7_text_vs_hf_trainer.py                          # 2,000 reviews, MiniLM-L6, 1 epoch
    python benchmarks/b7_text_vs_hf_trainer.py --repeats 3 --threads 1 --json b7.json

B2 (benchmarks/b2_vs_hf_trainer.py) for text, with its helpers. In a temporary copy of the repository it

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

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
import b2_vs_hf_trainer as b2  # the copy, the stages, running and timing: shared with B2

REFERENCE = "benchmarks/hf_trainer_text_reference.py"
BASE = "configs/text.yaml"  # the text demo's recipe (batch 32, lr 1e-3, ...), sized below
TEXT_SETTINGS = [
    "data.source=builtin", "data.builtin=reviews", "data.builtin_rows=2000", "data.task=text",
    "model.name=sentence-transformers/all-MiniLM-L6-v2", "cache.max_length=64", "train.method=lora",
]

# (label, key, digits, direction) as in B2: +1 higher is better, -1 lower is better, 0 a score (difference).
ROWS = [
    ("train tokens/s (training loop, validation included)", "tokens_per_s", 1, +1),
    ("whole-process tokens/s (epochs x train tokens / process wall)", "process_tokens_per_s", 1, +1),
    ("whole-process tokens/s, ours charged its ours-only prep stages", "process_plus_prep_tokens_per_s", 1, +1),
    ("training loop, s", "train_s", 2, -1),
    ("whole process wall, s", "wall_s", 2, -1),
    ("whole process CPU (user + sys), s", "cpu_s", 2, -1),
    ("peak memory MiB (GPU: allocated tensors; CPU: peak RSS)", "peak_memory_mib", 1, -1),
    ("final val accuracy", "val_accuracy", 4, 0),
]


def write_params(work: Path, base: str, epochs: int, settings: list[str]) -> dict:
    """The copy's params.yaml: `base` (a full params file) with the text settings, --epochs and --set."""
    shutil.copy2(work / base, work / "params.yaml")
    return b2.override_params(work, epochs, TEXT_SETTINGS + list(settings))


def train_tokens(work: Path) -> int:
    """Real tokens of the train split in the cache the train stage reads (what its tokens/s counts)."""
    cache = work / "data" / "cache"
    index = pd.read_csv(cache / "index.csv", dtype={"part": str, "id": str}, keep_default_na=False)
    rows = index[index["part"] == "train"].set_index("id")["row"]
    ids = pd.read_csv(work / "data" / "split" / "train.csv", dtype=str, keep_default_na=False)["id"]
    return int(np.load(cache / "lengths.npy")[rows.loc[ids].to_numpy()].sum())


def run_ours(work: Path, stage, env: dict, log: Path, timeout: float | None) -> dict:
    b2.remove([work / out for out in stage.outs] + [work / b2.CHECKPOINTS])  # a fresh run, never a resume
    wall, code, context = b2.run_logged(stage.cmd, work, env, log, timeout)
    if code != 0:
        return {"ok": False, "returncode": code, "wall_s": wall, **context, "log": str(log), "tail": b2.tail(log)}
    summary = json.loads(next(work / o for o in stage.outs if o.endswith("metrics.json")).read_text())
    return {"ok": True, "wall_s": wall, "tokens_per_s": b2.summary_value(summary, "time/tokens_per_s"),
            "train_s": b2.summary_value(summary, "time/train_s"),
            "val_accuracy": b2.summary_value(summary, "val/accuracy"), "peak_memory_mib": b2.peak_memory(summary),
            **context, "log": str(log)}


def run_reference(work: Path, env: dict, log: Path, timeout: float | None) -> dict:
    out = work / "benchmarks" / "out" / "hf_text_reference"
    b2.remove([out])
    cmd = f"python {REFERENCE} --raw data/raw --split data/split --params params.yaml --out {out.relative_to(work)}"
    wall, code, context = b2.run_logged(cmd, work, env, log, timeout)
    if code != 0:
        return {"ok": False, "returncode": code, "wall_s": wall, **context, "log": str(log), "tail": b2.tail(log)}
    metrics = json.loads((out / "metrics.json").read_text())
    return {"ok": True, "wall_s": wall, **{key: metrics[key] for key in (
        "tokens_per_s", "train_s", "val_accuracy", "peak_memory_mib", "train_tokens", "torch_threads",
        "optimizer_steps")}, **context, "log": str(log)}


def table(summary: dict, runs: dict) -> str:
    ours, hf = summary["ours"], summary["hf"]

    def fmt(value, digits):
        return "failed" if value is None else f"{value:,.{digits}f}"

    lines = [("| median over runs | ours (train stage) | HF Trainer + PEFT | speed-up of ours, medians "
              "| speed-up of ours, per pair: median (min-max) |"), "|---|---|---|---|---|"]
    for label, key, digits, direction in ROWS:
        a, b = ours.get(key), hf.get(key)
        if direction == 0:
            cells = ["-" if a is None or b is None else f"{a - b:+.4f} (difference)", ""]
        else:
            ratio, pairs = b2.speedup(a, b, direction), b2.pair_speedups(runs, key, direction)
            cells = ["-" if ratio is None else f"{ratio:.2f}x",
                     f"{statistics.median(pairs):.2f}x ({min(pairs):.2f}-{max(pairs):.2f})" if pairs else "-"]
        lines.append(f"| {label} | {fmt(a, digits)} | {fmt(b, digits)} | {cells[0]} | {cells[1]} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="\n".join(__doc__.splitlines()[1:]))
    parser.add_argument("--repeats", type=int, default=1, help="runs of each, alternating (default 1)")
    parser.add_argument("--epochs", type=int, default=1, help="train.epochs for both (default 1)")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                        help="more params overrides for both, e.g. data.builtin_rows=4000 (YAML values)")
    parser.add_argument("--base", default=BASE, help=f"params file the text settings start from (default {BASE})")
    parser.add_argument("--threads", type=int,
                        help="OMP/MKL threads for both (default: torch's default on this machine)")
    parser.add_argument("--timeout", type=float, help="kill a timed run after this many seconds and count it as failed")
    parser.add_argument("--json", help="also write the raw runs and the summary to this JSON file")
    parser.add_argument("--workdir", help="make the copy here instead of a temporary folder (kept)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary copy and its logs")
    args = parser.parse_args(argv)

    if args.threads is None:
        import torch

        args.threads = torch.get_num_threads()
    work = Path(args.workdir).resolve() if args.workdir else Path(tempfile.mkdtemp(prefix="b7-text-vs-hf-"))
    work.mkdir(parents=True, exist_ok=True)
    keep = args.keep or bool(args.workdir)
    env = b2.environment(args.threads)
    logs = work / "benchmarks" / "out" / "logs"
    try:
        copied = b2.copy_sources(work)
        params = write_params(work, args.base, args.epochs, args.set)
        epochs, model_name = int(params["train"]["epochs"]), params["model"]["name"]
        upstream, stage = b2.upstream_stages(work)
        load, cores = os.getloadavg()[0], os.cpu_count() or 1
        print(f"b7: copy of {copied} files in {work}; {args.threads} threads; {model_name}, train.epochs {epochs}; "
              f"load average {load:.2f} on {cores} cores")
        if load > 0.5:
            print("b7: warning: other work on the machine slows both sides; compare the per-pair ratios, "
                  "or use --threads 1 on a busy machine", file=sys.stderr)

        prep = {}
        for s in upstream:
            seconds, code, _ = b2.run_logged(s.cmd, work, env, logs / f"prep-{s.name}.log")
            prep[s.name] = seconds
            print(f"b7: prep {s.name}: {seconds:.1f} s  ({s.cmd})")
            if code != 0:
                print(b2.tail(logs / f"prep-{s.name}.log"), file=sys.stderr)
                raise SystemExit(f"error: stage {s.name} failed (exit {code}); log {logs / f'prep-{s.name}.log'}")
        # The reference reads data/raw and data/split: the stages behind those it needs too; the rest
        # (the cache's tokenization, augment) only ours needs, and one row charges their time to ours.
        shared = {s.name for s in b2.upstream_stages(work, "split")[0]} | {"split"}
        ours_only = [s.name for s in upstream if s.name not in shared]
        ours_only_s = sum(prep[name] for name in ours_only)
        tokens = train_tokens(work)
        n_train = len(pd.read_csv(work / "data" / "split" / "train.csv", dtype=str))  # texts may span lines

        runs = {"ours": [], "hf": []}
        for i in range(args.repeats):
            order = ("ours", "hf") if i % 2 == 0 else ("hf", "ours")
            for who in order:
                log = logs / f"{who}-{i + 1}.log"
                result = (run_ours(work, stage, env, log, args.timeout) if who == "ours"
                          else run_reference(work, env, log, args.timeout))
                result["process_tokens_per_s"] = epochs * tokens / result["wall_s"]
                result["process_plus_prep_tokens_per_s"] = epochs * tokens / (
                    result["wall_s"] + (ours_only_s if who == "ours" else 0.0))
                runs[who].append(result)
                if not result["ok"]:
                    print(f"b7: run {i + 1} {who}: FAILED (exit {result['returncode']}), log {log}:\n"
                          f"{result['tail']}", file=sys.stderr)
                    continue
                print(f"b7: run {i + 1} {who:4s}: {result['tokens_per_s']:.1f} tokens/s "
                      f"({result['train_s']:.2f} s loop, {result['wall_s']:.2f} s process, "
                      f"{result['cpu_s']:.1f} s CPU), val accuracy {result['val_accuracy']:.4f}; "
                      f"load average {result['load_before']:.2f} -> {result['load_after']:.2f}")
                if who == "hf" and result["train_tokens"] != tokens:  # the two would not count alike
                    print(f"b7: warning: the reference counts {result['train_tokens']} train tokens, the cache "
                          f"{tokens}", file=sys.stderr)

        summary = {who: {key: b2.median(rs, key) for _, key, _, _ in ROWS} for who, rs in runs.items()}
        summary["speedup_of_medians"] = {key: b2.speedup(summary["ours"][key], summary["hf"][key], d)
                                         for _, key, _, d in ROWS if d}
        summary["speedup_per_pair"] = {key: b2.pair_speedups(runs, key, d) for _, key, _, d in ROWS if d}
        headline = summary["speedup_of_medians"]["tokens_per_s"]

        print()
        print(f"B7: train stage vs HF Trainer + PEFT on text, {model_name}, {epochs} epoch(s) x {n_train} training "
              f"rows ({tokens:,} real tokens, max_length {params['cache']['max_length']}), {args.repeats} run(s) "
              f"each, alternating, {args.threads} threads")
        if ours_only:
            print(f"Stages only ours needs (built once, outside the train stage): "
                  f"{', '.join(f'{n} {prep[n]:.1f} s' for n in ours_only)}")
        print()
        print(table(summary, runs))
        print()
        print(f"ratio (training loop tokens/s, ours / HF): {headline:.2f}x" if headline else "ratio: n/a")
        if args.json:
            Path(args.json).write_text(json.dumps({
                "epochs": epochs, "n_train": n_train, "train_tokens": tokens, "repeats": args.repeats,
                "threads": args.threads, "params_base": args.base, "settings": TEXT_SETTINGS + list(args.set),
                "train_cmd": stage.cmd, "prep_stages": [s.name for s in upstream], "prep_s": prep,
                "ours_only_prep_stages": ours_only, "runs": runs, "summary": summary,
                "workdir": str(work) if keep else None,
            }, indent=2) + "\n")
        failed = any(not r["ok"] for rs in runs.values() for r in rs)
        return 1 if failed else 0
    finally:
        if keep:
            print(f"b7: kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
