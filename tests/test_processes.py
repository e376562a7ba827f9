"""Killed processes, for real (SIGKILL): nothing outlives its run, no two trainers share a checkpoint,
no kill leaves a truncated metrics file, and the next run completes equal to an uninterrupted one.

Cases 15 and 18-20 of issue 12. Process trees are read from /proc (Linux, as the stages' own
PR_SET_PDEATHSIG is).
"""
from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers import REPO, write_params
from PIL import Image
from test_engines import make_project, set_param, sh
from test_resume import same_json, saved_epoch, train_command
from test_stages import run_stages

from workflow.core import runlock

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads process trees from /proc")


# ---------------------------------------------------------------------------------------------------------------
# Process trees from /proc
# ---------------------------------------------------------------------------------------------------------------

def _stat(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2:].split()  # [state, ppid, ...]


def alive(pid: int) -> bool:
    """Running (a zombie has ended: it only waits for a parent to collect its status)."""
    stat = _stat(pid)
    return stat is not None and stat[0] not in ("Z", "X")


def children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            stat = _stat(int(entry.name))
            if stat is not None and int(stat[1]) == pid and alive(int(entry.name)):
                found.append(int(entry.name))
    return found


def descendants(pid: int) -> list[int]:
    found, todo = [], [pid]
    while todo:
        kids = children(todo.pop())
        found += kids
        todo += kids
    return found


def running(module: str, under: int) -> list[int]:
    """`under` or its live descendants that run `python -m <module>`."""
    found = []
    for pid in [under, *descendants(under)]:
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv[1:3] == [b"-m", module.encode()] and alive(pid):  # python -m <module>, not a parent naming it
            found.append(pid)
    return found


def wait_for(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def still_alive_after(pids: list[int], seconds: float) -> list[int]:
    """The processes of `pids` still running after `seconds` (sooner, when all have ended)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and any(alive(pid) for pid in pids):
        time.sleep(0.05)
    return [pid for pid in pids if alive(pid)]


# ---------------------------------------------------------------------------------------------------------------
# The cache stage and its decoding workers (cases 18 and 20)
# ---------------------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def slow_raw(tmp_path_factory) -> Path:
    """A raw folder whose decoding takes seconds: 512 hard links to one large JPEG."""
    raw = tmp_path_factory.mktemp("slow-raw")
    pixels = np.random.default_rng(0).integers(0, 256, (1600, 1600, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(raw / "0.jpg", quality=90)
    names = [f"{i}.jpg" for i in range(512)]
    for name in names[1:]:
        os.link(raw / "0.jpg", raw / name)
    pd.DataFrame({"path": names, "label": ["a", "b"] * 256}).to_csv(raw / "train.csv", index=False)
    pd.DataFrame({"id": [], "path": []}).to_csv(raw / "test.csv", index=False)
    (raw / "competition.json").write_text(json.dumps({"task": "image", "classes": ["a", "b"]}))  # as download
    return raw


def cache_command(params: Path, raw: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "workflow.stages.cache", "--params", str(params), "--raw", str(raw), "--out", str(out)]


def start_cache_stage(command: list[str], tmp_path: Path) -> tuple[subprocess.Popen, int, list[int]]:
    """Start `command` (the cache stage, maybe under a wrapper); (process, stage pid, its workers)
    once both decoding workers run."""
    started = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    stage = wait_for(lambda: running("workflow.stages.cache", started.pid), 60, "the cache stage")[0]
    workers = wait_for(lambda: len(children(stage)) == 2 and children(stage), 60, "two decoding workers")
    time.sleep(0.5)  # well into decoding
    return started, stage, workers


@pytest.mark.slow
def test_a_killed_cache_stage_takes_its_workers_and_the_next_run_equals_an_uninterrupted_one(slow_raw, tmp_path):
    params = write_params(tmp_path, {"cache.workers": 2, "cache.image_size": 64})
    out = tmp_path / "cache"
    stage, pid, workers = start_cache_stage(cache_command(params, slow_raw, out), tmp_path)
    assert pid == stage.pid
    stage.kill()
    assert stage.wait() == -signal.SIGKILL
    assert still_alive_after(workers, 5) == [], "decoding workers outlived the killed cache stage"
    assert not out.exists()

    rerun = subprocess.run(cache_command(params, slow_raw, out), cwd=REPO, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    clean = subprocess.run(cache_command(params, slow_raw, tmp_path / "clean"), cwd=REPO, capture_output=True,
                           text=True, timeout=300)
    assert clean.returncode == 0, clean.stderr[-2000:]
    for name in ("images.npy", "index.csv", "cache.json"):
        assert (out / name).read_bytes() == (tmp_path / "clean" / name).read_bytes(), name
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache", "clean", "params.yaml"]  # no temporaries left


def engine(command: list[str]) -> list[str]:
    """A stand-in for dvc or snakemake: a Python process that runs `command` and waits for it."""
    return [sys.executable, "-c", "import subprocess, sys; subprocess.run(sys.argv[1:])", *command]


WRAPPERS = {
    "run directly (dvc with SHELL=bash: bash execs the command)": lambda cmd, log: cmd,
    "under dash -c (dvc with /bin/sh)": lambda cmd, log: ["dash", "-c", subprocess.list2cmdline(cmd)],
    "under bash -c 'set -euo pipefail; (cmd) | tee' (snakemake)":
        lambda cmd, log: ["bash", "-c", f"set -euo pipefail; ({subprocess.list2cmdline(cmd)}) 2>&1 | tee {log}"],
}


@pytest.mark.slow
@pytest.mark.parametrize("wrap", WRAPPERS.values(), ids=WRAPPERS.keys())
def test_a_stage_dies_with_its_engine(slow_raw, tmp_path, wrap):
    if shutil.which("dash") is None and wrap is WRAPPERS["under dash -c (dvc with /bin/sh)"]:
        pytest.skip("dash is not installed")
    params = write_params(tmp_path, {"cache.workers": 2, "cache.image_size": 64})
    command = engine(wrap(cache_command(params, slow_raw, tmp_path / "cache"), tmp_path / "log"))
    parent, stage, workers = start_cache_stage(command, tmp_path)
    parent.kill()  # kill -9 of the engine: it can pass nothing on
    parent.wait()
    assert still_alive_after([stage, *workers], 5) == [], "the stage or its workers outlived the engine"
    assert not (tmp_path / "cache").exists()


@pytest.mark.slow
def test_a_stage_typed_in_an_interactive_shell_is_left_to_the_terminal(slow_raw, tmp_path):
    """Not tied to the shell: `nohup python -m workflow.stages.train &` must survive the logout."""
    params = write_params(tmp_path, {"cache.workers": 2, "cache.image_size": 64})
    command = subprocess.list2cmdline(cache_command(params, slow_raw, tmp_path / "cache"))
    shell = subprocess.Popen(["bash", "--norc", "-i"], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, cwd=REPO, text=True)
    shell.stdin.write(f"{command} &\n")
    shell.stdin.flush()
    stage = wait_for(lambda: running("workflow.stages.cache", shell.pid), 60, "the cache stage")[0]
    wait_for(lambda: len(children(stage)) == 2, 60, "two decoding workers")  # long past its start-up
    shell.kill()
    shell.wait()
    try:
        time.sleep(2)
        assert alive(stage), "a stage started by hand died with its shell"
    finally:
        workers = children(stage)
        os.kill(stage, signal.SIGKILL)
        assert still_alive_after([stage, *workers], 5) == []


# ---------------------------------------------------------------------------------------------------------------
# The trainer: killed with `dvc repro`, and never two on one checkpoint (cases 19 and 20)
# ---------------------------------------------------------------------------------------------------------------

def outputs(folder: Path, adapter: str = "adapter", live: str = "live",
            predictions: str = "val_predictions.csv") -> tuple[Path, Path, Path]:
    """A training run's adapter folder, metrics file and validation predictions."""
    return folder / adapter, folder / live / "metrics.json", folder / predictions


def same_training_result(run: tuple[Path, Path, Path], clean: tuple[Path, Path, Path]) -> None:
    (adapter, metrics, predictions), (clean_adapter, clean_metrics, clean_predictions) = run, clean
    names = sorted(p.name for p in clean_adapter.iterdir())
    assert sorted(p.name for p in adapter.iterdir()) == names
    for name in names:
        if name.endswith(".json"):
            assert same_json(adapter / name, clean_adapter / name), name
        else:
            assert (adapter / name).read_bytes() == (clean_adapter / name).read_bytes(), name
    assert predictions.read_bytes() == clean_predictions.read_bytes()
    comparable = lambda path: {k: v for k, v in json.loads(path.read_text()).items()  # noqa: E731
                               if not k.startswith(("time/", "memory/"))}
    assert comparable(metrics) == comparable(clean_metrics)


EPOCHS = 20  # seconds of training left after the kill: a trainer that goes on is seen going on


@pytest.mark.slow
def test_kill_9_of_dvc_repro_takes_the_trainer_and_the_next_repro_resumes_to_the_same_result(tmp_path):
    root = make_project(tmp_path / "project")
    # A longer training: time to kill it there (screening is upstream of nothing trained).
    set_param(root, ("train", "epochs"), EPOCHS)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}", "SHELL": "/bin/bash"}
    with (tmp_path / "first.log").open("w") as log:
        dvc = subprocess.Popen(["dvc", "repro", "train"], cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT)
        trainer = wait_for(lambda: running("workflow.stages.train", dvc.pid) or dvc.poll() is not None, 600,
                           "the trainer")
        assert dvc.poll() is None, (tmp_path / "first.log").read_text()[-3000:]
        trainer = trainer[0]
        wait_for(lambda: saved_epoch(root / ".checkpoints/train") >= 1 or dvc.poll() is not None, 600,
                 "the first epoch's checkpoint")
        assert dvc.poll() is None, (tmp_path / "first.log").read_text()[-3000:]
        os.kill(dvc.pid, signal.SIGKILL)
        dvc.wait()
    assert still_alive_after([trainer], 5) == [], "the trainer outlived kill -9 of dvc repro"
    assert not (root / "models/adapter").exists(), "the trainer went on to the end after kill -9 of dvc repro"
    at = saved_epoch(root / ".checkpoints/train")
    assert 1 <= at < EPOCHS
    # Its lock is left behind naming a dead process: the next run takes it over.
    assert runlock.lock_file(root / ".checkpoints/train").read_text().strip() == str(trainer)

    output = sh(["dvc", "repro", "train"], root)
    assert f"train: resuming from .checkpoints/train/state.pt after epoch {at} of {EPOCHS}" in output
    assert not (root / ".checkpoints/train").exists() and not runlock.lock_file(root / ".checkpoints/train").exists()

    # An uninterrupted run of the same stage on the same inputs.
    clean = tmp_path / "clean"
    command = [sys.executable, "-m", "workflow.stages.train", "--out", str(clean / "adapter"),
               "--live", str(clean / "live"), "--predictions", str(clean / "val_predictions.csv"),
               "--run-record", str(clean / "live/run.json"), "--checkpoint", str(clean / "checkpoint")]
    finished = subprocess.run(command, cwd=root, env=env, capture_output=True, text=True, timeout=600)
    assert finished.returncode == 0, finished.stderr[-3000:]
    same_training_result(outputs(root, "models/adapter", "reports/train", "reports/val_predictions.csv"),
                         outputs(clean))


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    folder = tmp_path_factory.mktemp("processes")
    os.chdir(REPO)  # model.name is relative to the repository root, as in dvc.yaml
    params = write_params(folder, {"train.epochs": 3, "train.num_workers": 0, "train.device": "cpu"})
    run_stages(folder, params, "download", "split", "augment", "cache")
    return folder, params


@pytest.mark.slow
def test_a_second_trainer_on_the_same_checkpoint_is_refused_and_a_dead_ones_lock_is_taken_over(data, tmp_path):
    folder, params = data
    first_run, second_run = tmp_path / "first", tmp_path / "second"
    command = train_command(folder, params, first_run)
    lock = runlock.lock_file(first_run / "checkpoint")

    first = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for(lambda: saved_epoch(first_run / "checkpoint") >= 1, 300, "the first trainer's first checkpoint")
    os.kill(first.pid, signal.SIGSTOP)  # mid-run, however long the second takes to start
    holder = lock.read_text().strip() if lock.is_file() else None
    try:
        # The same checkpoint, other outputs: refused before it writes anything.
        second_command = train_command(folder, params, second_run)
        second_command[second_command.index("--checkpoint") + 1] = str(first_run / "checkpoint")
        second = subprocess.run(second_command, cwd=REPO, capture_output=True, text=True, timeout=300)
    finally:
        os.kill(first.pid, signal.SIGCONT)
    assert second.returncode == 2, second.stderr[-3000:]
    assert second.stderr.strip() == (f"error: {first_run / 'checkpoint'}: another training run (PID {first.pid}) is "
                                     f"using this checkpoint; wait for it to finish or stop it (kill {first.pid}), "
                                     "then run again")
    assert not second_run.exists()
    assert holder == str(first.pid)
    assert first.wait(timeout=600) == 0
    assert not lock.exists()

    # A lock file left by a process that is gone (killed before it could remove it) stops nobody.
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    clean = tmp_path / "clean"
    stale = runlock.lock_file(clean / "checkpoint")
    stale.parent.mkdir(parents=True)
    stale.write_text(f"{dead.pid}\n")
    finished = subprocess.run(train_command(folder, params, clean), cwd=REPO, capture_output=True, text=True,
                              timeout=600)
    assert finished.returncode == 0, finished.stderr[-3000:]
    assert not stale.exists()
    same_training_result(outputs(first_run), outputs(clean))


# ---------------------------------------------------------------------------------------------------------------
# dvclive's metrics file under kills (case 15)
# ---------------------------------------------------------------------------------------------------------------

WRITER = """
import sys
from workflow.training.live import AtomicLive

live = AtomicLive(sys.argv[1], save_dvc_exp=False, dvcyaml=None)
live.summary.update({f"metric/{i}": i / 7 for i in range(20000)})  # a few hundred KB: long writes
live.make_summary()
print("written", flush=True)
while True:
    live.make_summary()
"""


def test_metrics_json_survives_kills_during_its_writes(tmp_path):
    live = tmp_path / "live"
    rng = random.Random(0)
    for kill in range(8):
        writer = subprocess.Popen([sys.executable, "-c", WRITER, str(live)], cwd=REPO, stdout=subprocess.PIPE,
                                  text=True)
        assert writer.stdout.readline() == "written\n"
        time.sleep(rng.uniform(0.0, 0.2))  # almost all of the writer's time is spent writing the file
        writer.kill()
        writer.wait()
        metrics = json.loads((live / "metrics.json").read_text())  # complete: the previous or the new one
        assert len(metrics) == 20000, kill
    leftovers = [p.name for p in live.iterdir() if ".tmp-" in p.name]
    assert len(leftovers) <= 1  # at most the last killed writer's temporary; the next writer removes it


def test_metrics_json_is_written_as_dvclive_writes_it(tmp_path):
    from dvclive import Live

    from workflow.training.live import AtomicLive

    for cls, folder in ((Live, tmp_path / "dvclive"), (AtomicLive, tmp_path / "atomic")):
        live = cls(str(folder), save_dvc_exp=False, dvcyaml=None)
        for step in range(3):
            live.log_metric("train/loss", 1 / (step + 1))
            live.log_metric("val/accuracy", np.float32(step / 3))
            live.next_step()
        live.summary.update({"params/trainable": 8842})
        live.end()
    assert (tmp_path / "atomic/metrics.json").read_bytes() == (tmp_path / "dvclive/metrics.json").read_bytes()
