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

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = "benchmarks/hf_trainer_reference.py"
REFERENCE_INPUTS = ("data/raw", "data/split", "data/augment/pipelines.json")  # what the reference reads
TARGET = "train"
CHECKPOINTS = ".checkpoints"  # the train stage's default --checkpoint lives under it


# ---------------------------------------------------------------------------------------------
# The copy and its data


def copy_sources(dest: Path) -> int:
    """Copy what git would see (tracked + untracked, not ignored): the sources, not .venv/data/models."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                            cwd=ROOT, check=True, capture_output=True).stdout.decode().split("\0")
    copied = 0
    for rel in filter(None, dict.fromkeys(listed)):
        src = ROOT / rel
        if not src.is_file():  # deleted in the working tree but still tracked
            continue
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dest / rel)
        copied += 1
    # The copy is no git repository: let DVC read dvc.yaml without one.
    (dest / ".dvc").mkdir(exist_ok=True)
    (dest / ".dvc" / "config.local").write_text("[core]\n    no_scm = true\n")
    return copied


def override_params(work: Path, epochs: int | None, settings: list[str]) -> dict:
    """params.yaml of the copy with --epochs and each --set section.key=value (a YAML value)."""
    params_file = work / "params.yaml"
    params = yaml.safe_load(params_file.read_text())
    changes = [f"train.epochs={epochs}"] * (epochs is not None) + list(settings)
    for setting in changes:
        key, _, value = setting.partition("=")
        *sections, name = key.split(".")
        node = params
        for section in sections:
            node = node[section]
        if name not in node:
            raise SystemExit(f"b2: --set {key}: no such key in params.yaml")
        node[name] = yaml.safe_load(value)
    if changes:
        params_file.write_text(yaml.safe_dump(params, sort_keys=False))
    return params


def _overlaps(a: str, b: str) -> bool:
    pa, pb = Path(a), Path(b)
    return pa == pb or pa.is_relative_to(pb) or pb.is_relative_to(pa)


def upstream_stages(work: Path, target: str = TARGET) -> tuple[list, object]:
    """The stages `target` depends on, in an order that runs producers first, and the target."""
    sys.path.insert(0, str(work))
    from workflow.engines.dag import load_stages

    stages = load_stages(work)
    by_name = {s.name: s for s in stages}
    if target not in by_name:
        raise SystemExit(f"error: dvc.yaml has no stage '{target}'")

    def producers(stage) -> list:
        found = []
        for dep in stage.deps:
            found += [s for s in stages if s.name != stage.name and any(_overlaps(dep, o) for o in s.outs)]
        return found

    order: list = []
    seen: set[str] = set()

    def visit(stage) -> None:
        for producer in producers(stage):
            if producer.name not in seen:
                seen.add(producer.name)
                visit(producer)
                order.append(producer)

    visit(by_name[target])
    return order, by_name[target]


# ---------------------------------------------------------------------------------------------
# Running


def environment(threads: int) -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"  # `python` = this one
    env.update({
        "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads),
        "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
        "PYTHONHASHSEED": "0", "TOKENIZERS_PARALLELISM": "false",
    })
    env.pop("PYTHONPATH", None)
    return env


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_logged(cmd: str, cwd: Path, env: dict, log: Path, timeout: float | None = None) -> tuple[float, int, dict]:
    """Run `cmd` with bash in `cwd`, output to `log`: (wall seconds, return code, context), the
    context being its CPU seconds (user + system, children included) and the load average around
    it: other work on the machine slows both sides, and shows there."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("w") as handle:
        load_before, cpu_before = os.getloadavg()[0], cpu_seconds()
        started = time.perf_counter()
        process = subprocess.Popen(["bash", "-c", cmd], cwd=cwd, env=env, stdout=handle,
                                   stderr=subprocess.STDOUT, start_new_session=True)
        try:
            code = process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, 9)  # its own session: the command and anything it started
            process.wait()
            handle.write(f"\nb2: killed after --timeout {timeout:g} s\n")
            code = 124
        wall = time.perf_counter() - started
        context = {"cpu_s": cpu_seconds() - cpu_before, "load_before": load_before,
                   "load_after": os.getloadavg()[0]}
        return wall, code, context


def tail(log: Path, lines: int = 15) -> str:
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])


def summary_value(summary: dict, key: str):
    """A dvclive summary value by 'a/b' key: dvclive nests on '/', older files may be flat."""
    if key in summary:
        return summary[key]
    node = summary
    for part in key.split("/"):
        node = node[part]
    return node


def remove(paths) -> None:
    for path in paths:
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()


def run_ours(work: Path, stage, env: dict, log: Path, timeout: float | None) -> dict:
    remove([work / out for out in stage.outs] + [work / CHECKPOINTS])  # a fresh run, never a resume
    wall, code, context = run_logged(stage.cmd, work, env, log, timeout)
    if code != 0:
        return {"ok": False, "returncode": code, "wall_s": wall, **context, "log": str(log), "tail": tail(log)}
    metrics_file = next((work / o for o in stage.outs if o.endswith("metrics.json")), None)
    summary = json.loads(metrics_file.read_text())
    return {"ok": True, "wall_s": wall, "images_per_s": summary_value(summary, "time/images_per_s"),
            "train_s": summary_value(summary, "time/train_s"),
            "val_accuracy": summary_value(summary, "val/accuracy"), "peak_memory_mib": peak_memory(summary),
            **context, "log": str(log)}


def peak_memory(summary: dict) -> float:
    """The train stage's peak: allocated GPU tensors on a GPU, the process's peak RSS on CPU."""
    for key in ("memory/peak_gpu_mib", "memory/peak_rss_mib"):
        try:
            return summary_value(summary, key)
        except KeyError:
            continue
    raise KeyError("the train stage's metrics.json has no memory/peak_gpu_mib or memory/peak_rss_mib")


def run_reference(work: Path, env: dict, log: Path, timeout: float | None) -> dict:
    out = work / "benchmarks" / "out" / "hf_reference"
    remove([out])
    cmd = (f"python {REFERENCE} --raw data/raw --split data/split --pipelines data/augment/pipelines.json "
           f"--params params.yaml --out {out.relative_to(work)}")
    wall, code, context = run_logged(cmd, work, env, log, timeout)
    if code != 0:
        return {"ok": False, "returncode": code, "wall_s": wall, **context, "log": str(log), "tail": tail(log)}
    metrics = json.loads((out / "metrics.json").read_text())
    return {"ok": True, "wall_s": wall, "images_per_s": metrics["images_per_s"], "train_s": metrics["train_s"],
            "val_accuracy": metrics["val_accuracy"], "torch_threads": metrics["torch_threads"],
            "peak_memory_mib": metrics["peak_memory_mib"],
            "optimizer_steps": metrics["optimizer_steps"], **context, "log": str(log)}


# ---------------------------------------------------------------------------------------------
# Report


def median(runs: list[dict], key: str) -> float | None:
    values = [r[key] for r in runs if r.get("ok")]
    return statistics.median(values) if values else None


# (label, key, digits, direction): +1 higher is better (speed-up ours / HF), -1 lower is better
# (speed-up HF / ours), 0 a score (difference ours - HF).
ROWS = [
    ("train images/s (training loop, validation included)", "images_per_s", 1, +1),
    ("whole-process images/s (epochs x n_train / process wall)", "process_images_per_s", 1, +1),
    ("whole-process images/s, ours charged its ours-only prep stages", "process_plus_prep_images_per_s", 1, +1),
    ("training loop, s", "train_s", 2, -1),
    ("whole process wall, s", "wall_s", 2, -1),
    ("whole process CPU (user + sys), s", "cpu_s", 2, -1),
    ("peak memory MiB (GPU: allocated tensors; CPU: peak RSS)", "peak_memory_mib", 1, -1),
    ("final val accuracy", "val_accuracy", 4, 0),
]


def speedup(ours: float | None, hf: float | None, direction: int) -> float | None:
    if ours is None or hf is None or direction == 0 or min(ours, hf) <= 0:
        return None
    return ours / hf if direction > 0 else hf / ours


def pair_speedups(runs: dict, key: str, direction: int) -> list[float]:
    """Speed-up of each repeat's pair: the two runs next to each other in time, under the same load."""
    pairs = zip(runs["ours"], runs["hf"])
    return [speedup(a[key], b[key], direction) for a, b in pairs if a["ok"] and b["ok"]]


def table(summary: dict, runs: dict) -> str:
    ours, hf = summary["ours"], summary["hf"]

    def fmt(value, digits):
        return "failed" if value is None else f"{value:,.{digits}f}"

    lines = ["| median over runs | ours (train stage) | HF Trainer + PEFT | speed-up of ours, medians "
             "| speed-up of ours, per pair: median (min-max) |", "|---|---|---|---|---|"]
    for label, key, digits, direction in ROWS:
        a, b = ours.get(key), hf.get(key)
        if direction == 0:
            cells = ["-" if a is None or b is None else f"{a - b:+.4f} (difference)", ""]
        else:
            ratio, pairs = speedup(a, b, direction), pair_speedups(runs, key, direction)
            cells = ["-" if ratio is None else f"{ratio:.2f}x",
                     f"{statistics.median(pairs):.2f}x ({min(pairs):.2f}-{max(pairs):.2f})" if pairs else "-"]
        lines.append(f"| {label} | {fmt(a, digits)} | {fmt(b, digits)} | {cells[0]} | {cells[1]} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="\n".join(__doc__.splitlines()[1:]))
    parser.add_argument("--repeats", type=int, default=1, help="runs of each, alternating (default 1)")
    parser.add_argument("--epochs", type=int, help="override train.epochs for both (default: params.yaml)")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                        help="more params.yaml overrides for both, e.g. train.batch_size=32 (YAML values)")
    parser.add_argument("--threads", type=int,
                        help="OMP/MKL threads for both (default: torch's default on this machine)")
    parser.add_argument("--timeout", type=float,
                        help="kill a timed run after this many seconds and count it as failed")
    parser.add_argument("--json", help="also write the raw runs and the summary to this JSON file")
    parser.add_argument("--workdir", help="make the copy here instead of a temporary folder (kept)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary copy and its logs")
    args = parser.parse_args(argv)

    if args.threads is None:
        import torch

        args.threads = torch.get_num_threads()
    work = Path(args.workdir).resolve() if args.workdir else Path(tempfile.mkdtemp(prefix="b2-vs-hf-"))
    work.mkdir(parents=True, exist_ok=True)
    keep = args.keep or bool(args.workdir)
    env = environment(args.threads)
    logs = work / "benchmarks" / "out" / "logs"
    try:
        copied = copy_sources(work)
        params = override_params(work, args.epochs, args.set)
        epochs = int(params["train"]["epochs"])
        upstream, stage = upstream_stages(work)
        print(f"b2: copy of {copied} files in {work}; {args.threads} threads; train.epochs {epochs}")
        load, cores = os.getloadavg()[0], os.cpu_count() or 1
        if load > 0.5:
            print(f"b2: warning: load average {load:.2f} on {cores} cores before starting: other work "
                  f"slows both sides (with more than one OpenMP thread, by up to tens of times); "
                  f"compare the ratio, or use --threads 1 on a busy machine", file=sys.stderr)

        prep = {}
        for s in upstream:
            seconds, code, _ = run_logged(s.cmd, work, env, logs / f"prep-{s.name}.log")
            prep[s.name] = seconds
            print(f"b2: prep {s.name}: {seconds:.1f} s  ({s.cmd})")
            if code != 0:
                print(tail(logs / f"prep-{s.name}.log"), file=sys.stderr)
                raise SystemExit(f"error: stage {s.name} failed (exit {code}); log {logs / f'prep-{s.name}.log'}")
        # Stages only our train stage needs (e.g. the decode-once cache): the reference reads none of
        # their outputs, so one table row charges their time to ours.
        ours_only = [s.name for s in upstream
                     if not any(_overlaps(o, i) for o in s.outs for i in REFERENCE_INPUTS)]
        ours_only_s = sum(prep[name] for name in ours_only)
        train_csv = work / "data" / "split" / "train.csv"
        n_train = sum(1 for _ in train_csv.open()) - 1

        runs = {"ours": [], "hf": []}
        for i in range(args.repeats):
            order = ("ours", "hf") if i % 2 == 0 else ("hf", "ours")
            for who in order:
                log = logs / f"{who}-{i + 1}.log"
                result = (run_ours(work, stage, env, log, args.timeout) if who == "ours"
                          else run_reference(work, env, log, args.timeout))
                result["process_images_per_s"] = epochs * n_train / result["wall_s"]
                result["process_plus_prep_images_per_s"] = epochs * n_train / (
                    result["wall_s"] + (ours_only_s if who == "ours" else 0.0))
                runs[who].append(result)
                if result["ok"]:
                    print(f"b2: run {i + 1} {who:4s}: {result['images_per_s']:.1f} images/s "
                          f"({result['train_s']:.2f} s loop, {result['wall_s']:.2f} s process, "
                          f"{result['cpu_s']:.1f} s CPU), val accuracy {result['val_accuracy']:.4f}; "
                          f"load average {result['load_before']:.2f} -> {result['load_after']:.2f}")
                else:
                    print(f"b2: run {i + 1} {who}: FAILED (exit {result['returncode']}), log {log}:\n"
                          f"{result['tail']}", file=sys.stderr)

        summary = {who: {key: median(rs, key) for _, key, _, _ in ROWS} for who, rs in runs.items()}
        summary["speedup_of_medians"] = {key: speedup(summary["ours"][key], summary["hf"][key], d)
                                         for _, key, _, d in ROWS if d}
        summary["speedup_per_pair"] = {key: pair_speedups(runs, key, d) for _, key, _, d in ROWS if d}
        headline = summary["speedup_of_medians"]["images_per_s"]

        print()
        print(f"B2: train stage vs HF Trainer + PEFT, {epochs} epochs x {n_train} training images, "
              f"{args.repeats} run(s) each, alternating, {args.threads} threads")
        if ours_only:
            print(f"Stages only ours needs (built once, outside the train stage): "
                  f"{', '.join(f'{n} {prep[n]:.1f} s' for n in ours_only)}")
        print()
        print(table(summary, runs))
        print()
        print(f"ratio (training loop images/s, ours / HF): {headline:.2f}x" if headline else "ratio: n/a")
        if args.json:
            Path(args.json).write_text(json.dumps({
                "epochs": epochs, "n_train": n_train, "repeats": args.repeats, "threads": args.threads,
                "train_cmd": stage.cmd, "prep_stages": [s.name for s in upstream], "prep_s": prep,
                "ours_only_prep_stages": ours_only,
                "runs": runs, "summary": summary, "workdir": str(work) if keep else None,
            }, indent=2) + "\n")
        failed = any(not r["ok"] for rs in runs.values() for r in rs)
        return 1 if failed else 0
    finally:
        if keep:
            print(f"b2: kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
