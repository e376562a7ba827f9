"""Atomic outputs under SIGKILL: an inference killed at any point leaves the previous predictions.csv
(or none), never a partial file, and the next run cleans up what the killed one left behind."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from helpers import REPO, write_params
from test_stages import run_stages


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    folder = tmp_path_factory.mktemp("infer-kill")
    os.chdir(REPO)
    # Batch size 1 stretches inference over hundreds of forward passes: a wide window to kill in.
    params = write_params(folder, {"train.epochs": 1, "infer.batch_size": 1, "infer.device": "cpu"})
    run_stages(folder, params, "download", "split", "augment", "cache", "train")
    return folder, params


def infer_command(folder: Path, params: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "workflow.stages.infer", "--params", str(params), "--raw", str(folder / "raw"),
            "--pipelines", str(folder / "pipelines.json"), "--cache", str(folder / "cache"), "--model", str(folder / "adapter"), "--out", str(out)]


def kill_after(command: list[str], delay: float) -> int:
    """Start `command`, wait until it says it is predicting, then `delay` seconds more, and SIGKILL it."""
    victim = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    for line in victim.stdout:
        if line.startswith("infer: predicting"):
            break
    time.sleep(delay)
    victim.kill()
    return victim.wait()


@pytest.mark.slow
def test_killed_inference_leaves_the_previous_predictions_or_none(trained, tmp_path):
    folder, params = trained
    out = tmp_path / "predictions.csv"

    # No previous file: a killed run leaves none (not an empty or partial one).
    assert kill_after(infer_command(folder, params, out), 0.2) == -signal.SIGKILL
    assert not out.exists()
    assert list(tmp_path.glob(".predictions.csv.tmp-*")) == []  # killed before it wrote a byte

    finished = subprocess.run(infer_command(folder, params, out), cwd=REPO, capture_output=True, text=True,
                              timeout=300)
    assert finished.returncode == 0, finished.stderr[-2000:]
    previous = out.read_bytes()
    sample = pd.read_csv(folder / "raw/sample_submission.csv", dtype=str)
    assert len(pd.read_csv(out, dtype=str)) == len(sample)

    # A previous file: kills at spread-out points of the run, each leaves it byte for byte.
    killed = 0
    for delay in (0.0, 0.3, 0.8, 1.5):
        code = kill_after(infer_command(folder, params, out), delay)
        killed += code == -signal.SIGKILL
        assert out.read_bytes() == previous
    assert killed >= 3  # most runs were really cut short, not finished before the kill

    # A temporary file a killed writer left behind is removed by the next successful run.
    litter = tmp_path / ".predictions.csv.tmp-999999999"
    litter.write_text("id,label\n1,")
    finished = subprocess.run(infer_command(folder, params, out), cwd=REPO, capture_output=True, text=True,
                              timeout=300)
    assert finished.returncode == 0 and out.read_bytes() == previous
    assert sorted(p.name for p in tmp_path.iterdir()) == ["predictions.csv"]
