"""What B2 (images) and B7 (text) share: our train stage vs a Hugging Face Trainer + PEFT reference.

The drivers (benchmarks/b2_vs_hf_trainer.py, benchmarks/b7_text_vs_hf_trainer.py) use the first part: a copy
of the repository, the stages before train run in it, both sides timed as subprocesses in alternation, the
table. The references (benchmarks/hf_trainer_reference.py, benchmarks/hf_trainer_text_reference.py) use the
last: their options, the Trainer's arguments, the timed trainer.train() and metrics.json.
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
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

ROOT = Path(__file__).resolve().parents[1]
TARGET = "train"
CHECKPOINTS = ".checkpoints"  # the train stage's default --checkpoint lives under it


@dataclass(frozen=True)
class Benchmark:
    """What tells B2 and B7 apart in the shared code: their messages' prefix and what they count."""

    prefix: str  # "b2", "b7": starts each message
    unit: str  # "images", "tokens": rates are <unit>/s, under the key <unit>_per_s
    amount: str  # one epoch's worth, as the table's label names it: "n_train", "train tokens"

    @property
    def rate(self) -> str:
        return f"{self.unit}_per_s"

    @property
    def rows(self) -> list[tuple[str, str, int, int]]:
        """(label, key, digits, direction): +1 higher is better (speed-up ours / HF), -1 lower is better
        (speed-up HF / ours), 0 a score (difference ours - HF)."""
        unit, rate = self.unit, self.rate
        return [
            (f"train {unit}/s (training loop, validation included)", rate, 1, +1),
            (f"whole-process {unit}/s (epochs x {self.amount} / process wall)", f"process_{rate}", 1, +1),
            (f"whole-process {unit}/s, ours charged its ours-only prep stages", f"process_plus_prep_{rate}", 1, +1),
            ("training loop, s", "train_s", 2, -1),
            ("whole process wall, s", "wall_s", 2, -1),
            ("whole process CPU (user + sys), s", "cpu_s", 2, -1),
            ("peak memory MiB (GPU: allocated tensors; CPU: peak RSS)", "peak_memory_mib", 1, -1),
            ("final val accuracy", "val_accuracy", 4, 0),
        ]


# ---------------------------------------------------------------------------------------------
# The drivers' options and their copy of the repository


def parse_args(doc: str, argv, epochs: dict, set_help: str, extra: dict[str, dict] | None = None):
    """The options both drivers take, in their order; `epochs` is --epochs' add_argument keywords and `extra`
    ({flag: keywords}) a driver's own options, listed after --set. --threads defaults to torch's count."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="\n".join(doc.splitlines()[1:]))
    parser.add_argument("--repeats", type=int, default=1, help="runs of each, alternating (default 1)")
    parser.add_argument("--epochs", type=int, **epochs)
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help=set_help)
    for flag, keywords in (extra or {}).items():
        parser.add_argument(flag, **keywords)
    parser.add_argument("--threads", type=int,
                        help="OMP/MKL threads for both (default: torch's default on this machine)")
    parser.add_argument("--timeout", type=float, help="kill a timed run after this many seconds and count it as failed")
    parser.add_argument("--json", help="also write the raw runs and the summary to this JSON file")
    parser.add_argument("--workdir", help="make the copy here instead of a temporary folder (kept)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary copy and its logs")
    args = parser.parse_args(argv)
    if args.threads is None:
        import torch  # only here: --help and runs with --threads start without it

        args.threads = torch.get_num_threads()
    return args


@contextmanager
def work_copy(args, bench: Benchmark, temp_prefix: str):
    """The folder the copy goes to (--workdir, or a temporary one) and whether to keep it; removed at the end
    unless kept, whatever happened."""
    work = Path(args.workdir).resolve() if args.workdir else Path(tempfile.mkdtemp(prefix=temp_prefix))
    work.mkdir(parents=True, exist_ok=True)
    keep = args.keep or bool(args.workdir)
    try:
        yield work, keep
    finally:
        if keep:
            print(f"{bench.prefix}: kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


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


def override_params(work: Path, epochs: int | None, settings: list[str], bench: Benchmark) -> dict:
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
            raise SystemExit(f"{bench.prefix}: --set {key}: no such key in params.yaml")
        node[name] = yaml.safe_load(value)
    if changes:
        params_file.write_text(yaml.safe_dump(params, sort_keys=False))
    return params


def overlaps(a: str, b: str) -> bool:
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
            found += [s for s in stages if s.name != stage.name and any(overlaps(dep, o) for o in s.outs)]
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


def count_rows(csv: Path) -> int:
    """Rows of a CSV as pandas reads them: a quoted cell (a text) may span lines."""
    return len(pd.read_csv(csv, dtype=str))


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


def run_logged(cmd: str, cwd: Path, env: dict, log: Path, bench: Benchmark,
               timeout: float | None = None) -> tuple[float, int, dict]:
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
            handle.write(f"\n{bench.prefix}: killed after --timeout {timeout:g} s\n")
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


def build_data(upstream: list, work: Path, env: dict, logs: Path, bench: Benchmark) -> dict[str, float]:
    """Run the stages before train, producers first; their seconds by name. A failure ends the benchmark."""
    prep = {}
    for s in upstream:
        log = logs / f"prep-{s.name}.log"
        seconds, code, _ = run_logged(s.cmd, work, env, log, bench)
        prep[s.name] = seconds
        print(f"{bench.prefix}: prep {s.name}: {seconds:.1f} s  ({s.cmd})")
        if code != 0:
            print(tail(log), file=sys.stderr)
            raise SystemExit(f"error: stage {s.name} failed (exit {code}); log {log}")
    return prep


def failed_run(code: int, wall: float, context: dict, log: Path) -> dict:
    return {"ok": False, "returncode": code, "wall_s": wall, **context, "log": str(log), "tail": tail(log)}


def run_ours(work: Path, stage, env: dict, log: Path, timeout: float | None, bench: Benchmark) -> dict:
    """The train stage's command, fresh; its time/<unit>_per_s, time/train_s and val/accuracy."""
    remove([work / out for out in stage.outs] + [work / CHECKPOINTS])  # a fresh run, never a resume
    wall, code, context = run_logged(stage.cmd, work, env, log, bench, timeout)
    if code != 0:
        return failed_run(code, wall, context, log)
    summary = json.loads(next(work / o for o in stage.outs if o.endswith("metrics.json")).read_text())
    return {"ok": True, "wall_s": wall, bench.rate: summary_value(summary, f"time/{bench.rate}"),
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


def run_reference(cmd: str, out: Path, keys: tuple[str, ...], work: Path, env: dict, log: Path,
                  timeout: float | None, bench: Benchmark) -> dict:
    """A reference's command writing <out>/metrics.json, fresh; the `keys` of that file."""
    remove([out])
    wall, code, context = run_logged(cmd, work, env, log, bench, timeout)
    if code != 0:
        return failed_run(code, wall, context, log)
    metrics = json.loads((out / "metrics.json").read_text())
    return {"ok": True, "wall_s": wall, **{key: metrics[key] for key in keys}, **context, "log": str(log)}


def alternate(bench: Benchmark, repeats: int, logs: Path, sides: dict[str, Callable[[Path], dict]],
              per_run: float, ours_only_s: float, check: Callable[[str, dict], None] | None = None) -> dict:
    """Each side `repeats` times, `sides[who](log)` running one, ours first then HF with the order flipped
    every repeat, so that neither side always runs first. Each result gains the whole-process rates (`per_run`
    images or tokens over the process wall, ours also charged `ours_only_s`) and is printed; `check(who,
    result)` is a driver's own look at each successful run."""
    runs: dict[str, list[dict]] = {"ours": [], "hf": []}
    for i in range(repeats):
        for who in ("ours", "hf") if i % 2 == 0 else ("hf", "ours"):
            log = logs / f"{who}-{i + 1}.log"
            result = sides[who](log)
            result[f"process_{bench.rate}"] = per_run / result["wall_s"]
            result[f"process_plus_prep_{bench.rate}"] = per_run / (
                result["wall_s"] + (ours_only_s if who == "ours" else 0.0))
            runs[who].append(result)
            print_run(bench, i, who, log, result)
            if result["ok"] and check:
                check(who, result)
    return runs


def print_run(bench: Benchmark, i: int, who: str, log: Path, result: dict) -> None:
    if not result["ok"]:
        print(f"{bench.prefix}: run {i + 1} {who}: FAILED (exit {result['returncode']}), log {log}:\n"
              f"{result['tail']}", file=sys.stderr)
        return
    print(f"{bench.prefix}: run {i + 1} {who:4s}: {result[bench.rate]:.1f} {bench.unit}/s "
          f"({result['train_s']:.2f} s loop, {result['wall_s']:.2f} s process, "
          f"{result['cpu_s']:.1f} s CPU), val accuracy {result['val_accuracy']:.4f}; "
          f"load average {result['load_before']:.2f} -> {result['load_after']:.2f}")


# ---------------------------------------------------------------------------------------------
# Report


def median(runs: list[dict], key: str) -> float | None:
    values = [r[key] for r in runs if r.get("ok")]
    return statistics.median(values) if values else None


def speedup(ours: float | None, hf: float | None, direction: int) -> float | None:
    if ours is None or hf is None or direction == 0 or min(ours, hf) <= 0:
        return None
    return ours / hf if direction > 0 else hf / ours


def pair_speedups(runs: dict, key: str, direction: int) -> list[float]:
    """Speed-up of each repeat's pair: the two runs next to each other in time, under the same load."""
    pairs = zip(runs["ours"], runs["hf"])
    return [speedup(a[key], b[key], direction) for a, b in pairs if a["ok"] and b["ok"]]


def summarize(runs: dict, rows: list[tuple]) -> dict:
    """Each side's medians of the rows, and the speed-ups of ours from the medians and per pair."""
    summary = {who: {key: median(rs, key) for _, key, _, _ in rows} for who, rs in runs.items()}
    summary["speedup_of_medians"] = {key: speedup(summary["ours"][key], summary["hf"][key], d)
                                     for _, key, _, d in rows if d}
    summary["speedup_per_pair"] = {key: pair_speedups(runs, key, d) for _, key, _, d in rows if d}
    return summary


def table(summary: dict, runs: dict, rows: list[tuple]) -> str:
    ours, hf = summary["ours"], summary["hf"]

    def fmt(value, digits):
        return "failed" if value is None else f"{value:,.{digits}f}"

    lines = [("| median over runs | ours (train stage) | HF Trainer + PEFT | speed-up of ours, medians "
              "| speed-up of ours, per pair: median (min-max) |"), "|---|---|---|---|---|"]
    for label, key, digits, direction in rows:
        a, b = ours.get(key), hf.get(key)
        if direction == 0:
            cells = ["-" if a is None or b is None else f"{a - b:+.4f} (difference)", ""]
        else:
            ratio, pairs = speedup(a, b, direction), pair_speedups(runs, key, direction)
            cells = ["-" if ratio is None else f"{ratio:.2f}x",
                     f"{statistics.median(pairs):.2f}x ({min(pairs):.2f}-{max(pairs):.2f})" if pairs else "-"]
        lines.append(f"| {label} | {fmt(a, digits)} | {fmt(b, digits)} | {cells[0]} | {cells[1]} |")
    return "\n".join(lines)


def report(bench: Benchmark, title: str, ours_only: list[str], prep: dict, runs: dict, summary: dict) -> None:
    """The title, the stages only ours needs, the table and the headline ratio."""
    print()
    print(title)
    if ours_only:
        print(f"Stages only ours needs (built once, outside the train stage): "
              f"{', '.join(f'{n} {prep[n]:.1f} s' for n in ours_only)}")
    print()
    print(table(summary, runs, bench.rows))
    print()
    headline = summary["speedup_of_medians"][bench.rate]
    print(f"ratio (training loop {bench.unit}/s, ours / HF): {headline:.2f}x" if headline else "ratio: n/a")


def finish(json_path: str | None, record: dict) -> int:
    """`record` (with its "runs") written to --json's file if given; the exit status: 1 if a run failed."""
    if json_path:
        Path(json_path).write_text(json.dumps(record, indent=2) + "\n")
    return 1 if any(not r["ok"] for rs in record["runs"].values() for r in rs) else 0


# ---------------------------------------------------------------------------------------------
# The references. Each runs in its own process, which has loaded torch and transformers by the time it
# calls these; they are imported here, not above, so that the drivers never load them.


def reference_args(doc: str, argv, inputs: dict[str, str]) -> argparse.Namespace:
    """A reference's options: its `inputs` ({flag: default}), --params and --out."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    for flag, default in inputs.items():
        parser.add_argument(flag, default=default)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--out", required=True, help="folder for metrics.json, the adapter and Trainer's files")
    return parser.parse_args(argv)


def lora_params(path: str) -> dict:
    """params.yaml, which must ask for LoRA: what the references train."""
    params = yaml.safe_load(Path(path).read_text())
    method = params["train"].get("method", "lora")
    if method != "lora":
        raise SystemExit(f"error: this reference trains LoRA; train.method is {method}")
    return params


def compute_metrics(eval_pred):
    predictions = np.argmax(eval_pred.predictions, axis=1)
    return {"accuracy": float((predictions == eval_pred.label_ids).mean())}


def training_arguments(train_p: dict, out: Path, **extra):
    """TrainingArguments from params.yaml's train section, as the guides write them: evaluation and logging
    every epoch, no checkpoints, a linear schedule with warmup; `extra` adds a guide's own."""
    import torch
    from transformers import TrainingArguments

    device = train_p.get("device", "auto")
    # The same precision as ours (train.precision; auto: bf16 on a GPU that has it), so a GPU run
    # compares like with like: the Trainer's own bf16 autocast.
    precision = train_p.get("precision", "auto")
    on_gpu = device != "cpu" and torch.cuda.is_available()
    bf16 = precision == "bf16" or (precision == "auto" and on_gpu and torch.cuda.is_bf16_supported())
    return TrainingArguments(
        bf16=bf16,
        output_dir=str(out / "trainer"),
        eval_strategy="epoch",
        save_strategy="no",
        logging_strategy="epoch",
        learning_rate=train_p["lr"],
        weight_decay=train_p["weight_decay"],
        per_device_train_batch_size=train_p["batch_size"],
        per_device_eval_batch_size=train_p["batch_size"],
        gradient_accumulation_steps=train_p["grad_accum_steps"],
        num_train_epochs=train_p["epochs"],
        lr_scheduler_type="linear",
        warmup_steps=train_p["warmup_ratio"],  # transformers 5: a float in [0, 1) is the warmup ratio
        dataloader_num_workers=train_p["num_workers"],
        seed=int(train_p["seed"]),
        use_cpu=device == "cpu",
        label_names=["labels"],  # a peft model's forward hides `labels` from the Trainer's signature check
        report_to="none",
        **extra,
    )


def train_and_report(trainer, config, out: Path, name: str, unit: str, per_epoch: int, **extra) -> dict:
    """trainer.train(), timed alone; then the adapter to <out>/adapter and <out>/metrics.json: <unit>_per_s
    (epochs x `per_epoch` / those seconds), the seconds, the final validation accuracy, `extra`, ..."""
    import torch

    started = time.perf_counter()
    train_result = trainer.train()
    train_seconds = time.perf_counter() - started

    evals = [row for row in trainer.state.log_history if "eval_accuracy" in row]
    trainer.model.save_pretrained(out / "adapter")
    epochs, device = int(trainer.args.num_train_epochs), trainer.args.device
    metrics = {
        f"{unit}_per_s": epochs * per_epoch / train_seconds,
        "train_s": train_seconds,
        "val_accuracy": evals[-1]["eval_accuracy"],
        "epochs": epochs,
        "n_train": len(trainer.train_dataset),
        "n_val": len(trainer.eval_dataset),
        **extra,
        "optimizer_steps": trainer.state.global_step,
        "trainer_train_samples_per_second": train_result.metrics.get("train_samples_per_second"),
        "torch_threads": torch.get_num_threads(),
        "device": str(device),
        # As the train stage reports it: allocated tensors on a GPU, the process's peak RSS on CPU.
        "peak_memory_mib": (torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda"
                            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "target_modules": sorted(config.target_modules),
        "pid": os.getpid(),
    }
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    print(f"{name}: {metrics[f'{unit}_per_s']:.1f} {unit}/s, {train_seconds:.1f} s of trainer.train(), "
          f"val accuracy {metrics['val_accuracy']:.4f} -> {out / 'metrics.json'}")
    return metrics
