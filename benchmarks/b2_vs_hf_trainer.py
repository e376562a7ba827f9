"""Benchmark B2: our train stage vs a Hugging Face Trainer + PEFT script written the PEFT guide's way.

    python benchmarks/b2_vs_hf_trainer.py                       # params.yaml as it is (30 epochs)
    python benchmarks/b2_vs_hf_trainer.py --epochs 3 --repeats 2 --json b2.json

In a temporary copy of the repository (the tracked and untracked-but-not-ignored files: no .venv,
no data, no models) it

1. builds the data the train stage needs by running, in dependency order, the stages train depends
   on, with the commands of dvc.yaml as DVC resolves them (`workflow.engines.dag.load_stages`): download,
   split, augment, and any new one such as a decode cache (train never depends on the screening);
2. times, alternating and each --repeats times, (a) the train stage's command from dvc.yaml, reading
   time/images_per_s and time/train_s from reports/train/metrics.json, and (b)
   benchmarks/hf_trainer_reference.py, which reports the same measures for trainer.train(); both
   are subprocesses whose whole wall time is measured too, with the same environment (the same
   torch/OpenMP thread count, offline Hugging Face);
3. prints a markdown table: images/s of the training loop (validation every epoch included, as
   both do it) and of the whole process (also with ours charged the stages only it needs, such as
   the cache), wall and CPU seconds, peak memory, validation accuracy, and the speed-up of ours over HF, both
   from the medians and per adjacent pair of runs (the two runs that saw the same machine load).

On a busy machine (load average above the core count) wall times swing by 2x and, with more than
one OpenMP thread, by tens of times for both sides: use --threads 1 there and read the per-pair
and CPU columns.

--epochs overrides train.epochs, and --set any key (e.g. a real model on a GPU), for both by
rewriting params.yaml in the copy (the stage command in dvc.yaml reads params.yaml; the reference
gets the same file with --params).
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import trainer_comparison as tc  # the copy, the stages, running, timing and the table: shared with B7

B2 = tc.Benchmark(prefix="b2", unit="images", amount="n_train")
REFERENCE = "benchmarks/hf_trainer_reference.py"
REFERENCE_INPUTS = ("data/raw", "data/split", "data/augment/pipelines.json")  # what the reference reads
REFERENCE_KEYS = ("images_per_s", "train_s", "val_accuracy", "torch_threads", "peak_memory_mib", "optimizer_steps")


def run_reference(work: Path, env: dict, log: Path, timeout: float | None) -> dict:
    out = work / "benchmarks" / "out" / "hf_reference"
    cmd = (f"python {REFERENCE} --raw data/raw --split data/split --pipelines data/augment/pipelines.json "
           f"--params params.yaml --out {out.relative_to(work)}")
    return tc.run_reference(cmd, out, REFERENCE_KEYS, work, env, log, timeout, B2)


def warn_if_busy() -> None:
    load, cores = os.getloadavg()[0], os.cpu_count() or 1
    if load > 0.5:
        print(f"b2: warning: load average {load:.2f} on {cores} cores before starting: other work "
              f"slows both sides (with more than one OpenMP thread, by up to tens of times); "
              f"compare the ratio, or use --threads 1 on a busy machine", file=sys.stderr)


def main(argv=None) -> int:
    args = tc.parse_args(__doc__, argv, epochs={"help": "override train.epochs for both (default: params.yaml)"},
                         set_help="more params.yaml overrides for both, e.g. train.batch_size=32 (YAML values)")
    with tc.work_copy(args, B2, "b2-vs-hf-") as (work, keep):
        env, logs = tc.environment(args.threads), work / "benchmarks" / "out" / "logs"
        copied = tc.copy_sources(work)
        params = tc.override_params(work, args.epochs, args.set, B2)
        epochs = int(params["train"]["epochs"])
        upstream, stage = tc.upstream_stages(work)
        print(f"b2: copy of {copied} files in {work}; {args.threads} threads; train.epochs {epochs}")
        warn_if_busy()

        prep = tc.build_data(upstream, work, env, logs, B2)
        # Stages only our train stage needs (e.g. the decode-once cache): the reference reads none of
        # their outputs, so one table row charges their time to ours.
        ours_only = [s.name for s in upstream
                     if not any(tc.overlaps(o, i) for o in s.outs for i in REFERENCE_INPUTS)]
        n_train = tc.count_rows(work / "data" / "split" / "train.csv")

        sides = {"ours": lambda log: tc.run_ours(work, stage, env, log, args.timeout, B2),
                 "hf": lambda log: run_reference(work, env, log, args.timeout)}
        runs = tc.alternate(B2, args.repeats, logs, sides, epochs * n_train, sum(prep[n] for n in ours_only))
        summary = tc.summarize(runs, B2.rows)
        title = (f"B2: train stage vs HF Trainer + PEFT, {epochs} epochs x {n_train} training images, "
                 f"{args.repeats} run(s) each, alternating, {args.threads} threads")
        tc.report(B2, title, ours_only, prep, runs, summary)
        return tc.finish(args.json, {
            "epochs": epochs, "n_train": n_train, "repeats": args.repeats, "threads": args.threads,
            "train_cmd": stage.cmd, "prep_stages": [s.name for s in upstream], "prep_s": prep,
            "ours_only_prep_stages": ours_only,
            "runs": runs, "summary": summary, "workdir": str(work) if keep else None,
        })


if __name__ == "__main__":
    raise SystemExit(main())
