"""Training across processes: the train stage under `accelerate launch` (DDP, gloo on CPU) with 2
processes on the default config, against the same stage in one process."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from helpers import REPO, write_params
from test_stages import run_stages

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ddp")
    os.chdir(REPO)
    params = write_params(folder, {"train.device": "cpu"})  # the default recipe: 30 epochs, LoRA r=8
    run_stages(folder, params, "download", "split", "augment", "cache")
    return folder, params


def train_args(folder: Path, params: Path, run: Path) -> list[str]:
    return ["-m", "workflow.stages.train", "--params", str(params), "--raw", str(folder / "raw"),
            "--split", str(folder / "split"), "--pipelines", str(folder / "pipelines.json"),
            "--cache", str(folder / "cache"), "--out", str(run / "adapter"),
            "--live", str(run / "live"), "--predictions", str(run / "val.csv"),
            "--run-record", str(run / "run.json"), "--checkpoint", str(run / "checkpoint")]


def run(command: list[str]) -> str:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    return result.stdout


def test_two_processes_train_on_half_the_data_each_and_match_one(data, tmp_path):
    folder, params = data
    single, double = tmp_path / "single", tmp_path / "double"
    run([sys.executable, *train_args(folder, params, single)])
    launcher = shutil.which("accelerate", path=str(Path(sys.executable).parent))
    output = run([launcher, "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
                  "--mixed_precision", "no", "--dynamo_backend", "no", *train_args(folder, params, double)])
    assert "2 processes" in output

    images = len(pd.read_csv(folder / "split/train.csv"))
    one, two = (json.loads((run_dir / "run.json").read_text()) for run_dir in (single, double))
    assert one["processes"] == 1 and one["train_images_per_process"] == [images]
    assert two["processes"] == 2
    batch = 16
    for seen in two["train_images_per_process"]:  # half each, up to the last batch's padding
        assert images / 2 <= seen < images / 2 + batch
    # Only rank 0 wrote: one adapter, one metrics file, and its checkpoint was removed.
    assert sorted(p.name for p in double.iterdir()) == ["adapter", "live", "run.json", "val.csv"]

    # The adapter the two processes trained loads and predicts through the infer stage.
    run_stages_args = ["--params", str(params), "--raw", str(folder / "raw"), "--pipelines",
                       str(folder / "pipelines.json"), "--cache", str(folder / "cache"), "--model",
                       str(double / "adapter"), "--out", str(double / "predictions.csv")]
    run([sys.executable, "-m", "workflow.stages.infer", *run_stages_args])
    sample = pd.read_csv(folder / "raw/sample_submission.csv", dtype=str)
    predictions = pd.read_csv(double / "predictions.csv", dtype=str)
    assert list(predictions["id"]) == list(sample["id"]) and predictions["label"].nunique() >= 8

    # Validation accuracy within noise of one process: 72 images, and seeds alone move it by ~0.05.
    accuracy = [json.loads((d / "live/metrics.json").read_text())["val"]["accuracy"] for d in (single, double)]
    assert accuracy[0] > 0.8 and abs(accuracy[0] - accuracy[1]) <= 0.1, accuracy
