"""B5: orchestration overhead of a no-op `dvc repro` and a no-op `snakemake --cores 1 all`.

    python benchmarks/b5_orchestration.py              # markdown tables, 10-15 min on 2 cores
    python benchmarks/b5_orchestration.py --json       # the same numbers as JSON
    python benchmarks/b5_orchestration.py --keep /tmp/b5 --repeat 9   # make once, then reuse

In two temporary git repositories holding a copy of the project (its tracked and unignored files,
one commit, as a fresh clone has), the default pipeline is run to completion once, one repository
per engine. Then each engine is timed `--repeat` times doing nothing: wall seconds (median, min)
against the targets of issue 5 (3 s and 5 s), and CPU seconds, which other work on a shared
machine does not inflate (the load average is printed). The training budgets are lowered (`--set`,
default train.epochs=2 screen.base.train.epochs=1 ablation.base.train.epochs=1) only to finish the first run
sooner: a no-op run hashes and compares the same files and params whatever the epochs.

Where the time goes: the same timings for the pieces (the interpreter, each engine's own start on
a one-stage pipeline, the Snakefile's Python before its rules), a no-op `dvc repro` taken apart in
one process (import, index, the status of each dep and out), and `python -X importtime` for the
Snakefile and for each stage module (`import workflow.stages.X`): total import time, the heaviest
top-level packages, whether torch got imported, and the wall time of its `--help`.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
TARGETS = {"dvc": 3.0, "snakemake": 5.0}  # wall seconds for a no-op run, issue 5 B5
FAST = ["train.epochs=2", "screen.base.train.epochs=1", "ablation.base.train.epochs=1"]
NEEDS_TORCH = {"train", "infer", "screen", "ablation"}  # stages that build a model; the rest need no torch


def env() -> dict[str, str]:
    bin_dir = str(Path(sys.executable).parent)
    return {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}


def sh(args: list[str], cwd: Path, check: bool = True, **kw) -> subprocess.CompletedProcess:
    result = subprocess.run(args, cwd=cwd, env=env(), capture_output=True, text=True, **kw)
    if check and result.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed in {cwd}:\n{(result.stdout + result.stderr)[-4000:]}")
    return result


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed(args: list[str], cwd: Path, repeat: int, expect: str | None = None) -> dict:
    """Wall seconds of `repeat` runs of a command (median, min, all) and CPU seconds (median, user +
    system: steadier than wall time on a shared machine); `expect` must be in the output."""
    runs, cpu = [], []
    for _ in range(repeat):
        start, start_cpu = time.perf_counter(), cpu_seconds()
        result = sh(args, cwd)
        runs.append(time.perf_counter() - start)
        cpu.append(cpu_seconds() - start_cpu)
        if expect is not None and expect not in result.stdout + result.stderr:
            raise SystemExit(f"{' '.join(args)} in {cwd} was not a no-op ('{expect}' missing):\n"
                             f"{(result.stdout + result.stderr)[-4000:]}")
    return {"command": " ".join(args), "median_s": statistics.median(runs), "min_s": min(runs),
            "cpu_s": statistics.median(cpu), "runs_s": [round(r, 3) for r in runs]}


def set_param(root: Path, assignment: str) -> None:
    dotted, _, value = assignment.partition("=")
    path = root / "params.yaml"
    params = yaml.safe_load(path.read_text())
    node = params
    *parents, last = dotted.split(".")
    for key in parents:
        node = node[key]
    node[last] = yaml.safe_load(value)
    path.write_text(yaml.safe_dump(params, sort_keys=False))


def git_commit(root: Path) -> None:
    for args in (["init", "-q"], ["add", "-A"],
                 ["-c", "user.name=b5", "-c", "user.email=b5@b5", "commit", "-qm", "b5"]):
        sh(["git", *args], root)


def make_project(source: Path, root: Path, overrides: list[str]) -> Path:
    """A fresh clone-like copy of `source`: its tracked and unignored files (no dvc.lock), one commit."""
    listed = sh(["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"], source).stdout
    for name in filter(None, listed.split("\0")):
        if (source / name).is_file() and name != "dvc.lock":
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source / name, root / name)
    for assignment in overrides:
        set_param(root, assignment)
    git_commit(root)
    return root


def snakemake_target() -> str:
    return "all"  # the Snakefile's first rule; checked in finished_project


def finished_project(engine: str, source: Path, root: Path, overrides: list[str], log) -> tuple[Path, float]:
    """`root` holding the finished default pipeline of `engine`; made and run unless it is already."""
    done = root / ".b5-finished"
    if done.is_file():
        log(f"{engine}: reusing the finished project in {root}")
        return root, float(done.read_text())
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    make_project(source, root, overrides)
    if engine == "snakemake":
        assert re.search(rf"^rule {snakemake_target()}:", (root / "Snakefile").read_text(), re.M)
    command = ["dvc", "repro"] if engine == "dvc" else ["snakemake", "--cores", "1", snakemake_target()]
    log(f"{engine}: running the whole pipeline once in {root} ({' '.join(command)}) ...")
    start = time.perf_counter()
    sh(command, root)
    seconds = time.perf_counter() - start
    done.write_text(f"{seconds:.1f}")
    log(f"{engine}: finished in {seconds:.0f} s")
    return root, seconds


def importtime(code: str, cwd: Path, top: int = 4) -> dict:
    """`python -X importtime -c code`: total import ms, the heaviest top-level packages, torch or not."""
    probe = f"{code}\nimport sys\nprint('torch loaded:', 'torch' in sys.modules)"
    result = sh([sys.executable, "-X", "importtime", "-c", probe], cwd)
    by_package: dict[str, int] = {}
    for line in result.stderr.splitlines():
        match = re.match(r"import time:\s+(\d+) \|\s+\d+ \|( *)(\S+)", line)
        if match:
            package = match.group(3).split(".")[0]
            by_package[package] = by_package.get(package, 0) + int(match.group(1))
    heaviest = sorted(by_package.items(), key=lambda item: -item[1])[:top]
    return {"import_ms": round(sum(by_package.values()) / 1000), "torch": "torch loaded: True" in result.stdout,
            "top": [(name, round(us / 1000)) for name, us in heaviest]}


# Where a no-op `dvc repro` spends its time, in one process: DVC's import, loading dvc.yaml and
# dvc.lock into its index, then each stage's deps and outs checked against dvc.lock.
DVC_BREAKDOWN = r"""
import collections, json, time
start = time.perf_counter()
from dvc.dependency import ParamsDependency
from dvc.repo import Repo
seconds = {"import dvc.repo": time.perf_counter() - start}
start = time.perf_counter()
repo = Repo(".")
stages = list(repo.index.stages)
seconds["load dvc.yaml + dvc.lock (index)"] = time.perf_counter() - start
per_path, uses = collections.Counter(), collections.Counter()
for stage in stages:
    for item in stage.deps + stage.outs:
        start = time.perf_counter()
        item.workspace_status()
        path = "params.yaml" if isinstance(item, ParamsDependency) else item.def_path
        per_path[path] += time.perf_counter() - start
        uses[path] += 1
seconds["status of every dep and out"] = sum(per_path.values())
top = [(path, s, uses[path]) for path, s in per_path.most_common(3)]
print(json.dumps({"stages": len(stages), "seconds": seconds, "top": top}))
"""


def snakefile_prelude(root: Path) -> str:
    """The Snakefile's Python before its first rule: imports, params check, DAG resolution and the
    plan from dvc.lock (`dvc status`), with the two globals Snakemake gives it."""
    head = re.split(r"^rule ", (root / "Snakefile").read_text(), maxsplit=1, flags=re.M)[0]
    return "import types\nconfig = {}\nworkflow = types.SimpleNamespace(is_main_process=True)\n" + head


def stage_modules(root: Path) -> list[str]:
    """The stage modules dvc.yaml runs (`python -m workflow.stages.X`), in declaration order."""
    stages = yaml.safe_load((root / "dvc.yaml").read_text())["stages"]
    modules = []
    for stage in stages.values():
        cmd = stage.get("cmd") or stage.get("do", {}).get("cmd", "")
        match = re.search(r"-m workflow\.stages\.(\w+)", str(cmd))
        if match and match.group(1) not in modules:
            modules.append(match.group(1))
    return modules


def empty_engines(scratch: Path, repeat: int) -> dict:
    """Each engine's own start: a no-op on a one-stage pipeline with no deps to hash."""
    root = scratch / "empty"
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    (root / "dvc.yaml").write_text("stages:\n  one:\n    cmd: echo one > one.txt\n    outs:\n      - one.txt\n")
    (root / "Snakefile").write_text("rule all:\n    input: 'one.txt'\n\nrule one:\n    output: 'one.txt'\n"
                                    "    shell: 'echo one > {output}'\n")
    (root / ".gitignore").write_text("/one.txt\n/.snakemake/\n")
    git_commit(root)
    sh(["dvc", "init", "-q"], root)
    sh(["dvc", "config", "core.analytics", "false"], root)
    sh(["dvc", "repro"], root)
    sh(["snakemake", "--cores", "1", "all"], root)
    return {
        "dvc": timed(["dvc", "repro"], root, repeat, expect="up to date"),
        "snakemake": timed(["snakemake", "--cores", "1", "all"], root, repeat, expect="Nothing to be done"),
    }


def measure(args, log) -> dict:
    load_average = os.getloadavg()[0]  # other work on the machine slows every wall time
    scratch = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="b5-"))
    source = Path(args.source).resolve()
    try:
        projects = {engine: finished_project(engine, source, scratch / engine, args.set, log)
                    for engine in ("dvc", "snakemake")}
        dvc_root, snake_root = projects["dvc"][0], projects["snakemake"][0]
        log("timing the no-op runs ...")
        noop = {
            "dvc": timed(["dvc", "repro"], dvc_root, args.repeat, expect="Data and pipelines are up to date"),
            "snakemake": timed(["snakemake", "--cores", "1", snakemake_target()], snake_root, args.repeat,
                               expect="Nothing to be done"),
        }
        log("timing the pieces ...")
        python = [sys.executable, "-c"]
        prelude = snakefile_prelude(snake_root)
        pieces = {
            "python -c pass": timed([*python, "pass"], dvc_root, args.repeat),
            "dvc --version": timed(["dvc", "--version"], dvc_root, args.repeat),
            "import dvc.repo": timed([*python, "import dvc.repo"], dvc_root, args.repeat),
            "Snakefile's Python before its rules (imports, params check, stages)": timed(
                [*python, prelude], snake_root, args.repeat),
            "dvc status": timed(["dvc", "status"], dvc_root, args.repeat),
            "snakemake --dry-run": timed(["snakemake", "--cores", "1", snakemake_target(), "--dry-run"],
                                         snake_root, args.repeat),
        }
        empty = empty_engines(scratch, args.repeat)
        pieces["dvc repro, one-stage pipeline"] = empty["dvc"]
        pieces["snakemake, one-rule Snakefile"] = empty["snakemake"]
        dvc_breakdown = json.loads(sh([*python, DVC_BREAKDOWN], dvc_root).stdout)
        log("profiling imports ...")
        imports = {"Snakefile": importtime(prelude, snake_root)}
        help_s = {}
        for module in stage_modules(snake_root):
            imports[module] = importtime(f"import workflow.stages.{module}", snake_root)
            help_s[module] = timed([sys.executable, "-m", f"workflow.stages.{module}", "--help"],
                                   snake_root, 1)["median_s"]
        return {
            "source": str(source), "overrides": args.set, "repeat": args.repeat, "targets_s": TARGETS,
            "full_run_s": {engine: round(seconds, 1) for engine, (_, seconds) in projects.items()},
            "noop": noop, "pieces": pieces, "dvc_breakdown": dvc_breakdown, "imports": imports, "help_s": help_s,
            "cpus": os.cpu_count(), "load_average": load_average,
        }
    finally:
        if not args.keep:
            shutil.rmtree(scratch, ignore_errors=True)


def markdown(result: dict) -> str:
    lines = [
        f"B5 orchestration overhead: {result['repeat']} runs each, {result['cpus']} CPUs (load average "
        f"{result['load_average']:.1f} at the start), source {result['source']}. First run with "
        f"{' '.join(result['overrides']) or 'the default budgets'} (a no-op run's cost does not depend on "
        "epochs): " + ", ".join(f"{e} {s:.0f} s" for e, s in result["full_run_s"].items()) + ".", "",
        "| no-op run | median s | min s | CPU s (median) | target s | met (median) |", "|---|---|---|---|---|---|",
    ]
    for engine, row in result["noop"].items():
        target = result["targets_s"][engine]
        lines.append(f"| `{row['command']}` | {row['median_s']:.2f} | {row['min_s']:.2f} | {row['cpu_s']:.2f} | "
                     f"{target:.0f} | {'yes' if row['median_s'] <= target else 'NO'} |")
    lines += ["", "| piece | median s | min s | CPU s (median) |", "|---|---|---|---|"]
    for name, row in result["pieces"].items():
        lines.append(f"| {name} | {row['median_s']:.2f} | {row['min_s']:.2f} | {row['cpu_s']:.2f} |")
    breakdown = result["dvc_breakdown"]
    lines += ["", f"A no-op `dvc repro` in one process ({breakdown['stages']} stages): "
              + ", ".join(f"{name} {s:.2f} s" for name, s in breakdown["seconds"].items())
              + "; the costliest paths: "
              + ", ".join(f"{path} {s:.2f} s ({uses} checks)" for path, s, uses in breakdown["top"]) + "."]
    lines += ["", "| import | import ms (-X importtime) | torch | `--help` s | heaviest packages (ms, self) |",
              "|---|---|---|---|---|"]
    for name, row in result["imports"].items():
        what = "the Snakefile's Python before its rules" if name == "Snakefile" else f"`workflow.stages.{name}`"
        help_s = f"{result['help_s'][name]:.2f}" if name in result["help_s"] else ""
        top = ", ".join(f"{package} {ms}" for package, ms in row["top"])
        lines.append(f"| {what} | {row['import_ms']} | {'yes' if row['torch'] else 'no'} | {help_s} | {top} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=5, help="no-op runs per engine (default: %(default)s)")
    parser.add_argument("--set", nargs="*", default=FAST, metavar="KEY=VALUE",
                        help="params overrides for the first run (default: %(default)s)")
    parser.add_argument("--source", default=str(REPO), help="the project to copy (a git work tree)")
    parser.add_argument("--keep", help="make (or reuse) the finished projects here instead of a temporary folder")
    parser.add_argument("--json", action="store_true", help="print JSON instead of markdown tables")
    args = parser.parse_args(argv)
    result = measure(args, log=lambda msg: print(msg, file=sys.stderr, flush=True))
    print(json.dumps(result, indent=2) if args.json else markdown(result))
    light = [m for m, row in result["imports"].items() if m != "Snakefile" and m not in NEEDS_TORCH and row["torch"]]
    if light:
        print(f"note: {', '.join(light)} import torch but build no model", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
