"""Interruption: a train stage killed with SIGKILL mid-run resumes from its last epoch checkpoint
and ends bit-identical to an uninterrupted run (CPU, num_workers 0)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest
import torch
from helpers import REPO, write_params
from test_stages import run_stages

from workflow.data.labelled import LabelledData
from workflow.recipe import Recipe, RuntimeParams
from workflow.training import checkpoint
from workflow.training.loop import fit

EPOCHS = 5


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    folder = tmp_path_factory.mktemp("resume")
    os.chdir(REPO)  # model.name is relative to the repository root, as in dvc.yaml
    params = write_params(folder, {"train.epochs": EPOCHS, "train.num_workers": 0, "train.device": "cpu"})
    run_stages(folder, params, "download", "split", "augment", "cache")
    return folder, params


def train_command(data_folder: Path, params: Path, run: Path) -> list[str]:
    return [sys.executable, "-m", "workflow.stages.train", "--params", str(params),
            "--raw", str(data_folder / "raw"), "--split", str(data_folder / "split"),
            "--pipelines", str(data_folder / "pipelines.json"), "--cache", str(data_folder / "cache"),
            "--out", str(run / "adapter"), "--live", str(run / "live"),
            "--predictions", str(run / "val_predictions.csv"), "--checkpoint", str(run / "checkpoint"),
            "--run-record", str(run / "live/run.json")]


def saved_epoch(folder: Path) -> int:
    try:
        return torch.load(folder / checkpoint.STATE_FILE, weights_only=True)["epoch"]
    except (FileNotFoundError, EOFError, RuntimeError):
        return 0


def same_json(a: Path, b: Path) -> bool:
    """Equal JSON; peft writes target_modules from a set, in string-hash order, so that one is sorted."""
    def norm(obj: dict) -> dict:
        return {**obj, "target_modules": sorted(obj["target_modules"])} if "target_modules" in obj else obj
    return norm(json.loads(a.read_text())) == norm(json.loads(b.read_text()))


def comparable_metrics(run: Path) -> dict:
    metrics = json.loads((run / "live/metrics.json").read_text())
    return {k: v for k, v in metrics.items() if not k.startswith(("time/", "memory/"))}


def curves(run: Path) -> dict[str, pd.DataFrame]:
    plots = run / "live/plots/metrics"
    return {str(p.relative_to(plots)): pd.read_csv(p, sep="\t").drop(columns="timestamp", errors="ignore")
            for p in sorted(plots.rglob("*.tsv"))}


@pytest.mark.slow
def test_killed_training_resumes_bit_identical(data, tmp_path):
    folder, params = data
    clean, killed = tmp_path / "clean", tmp_path / "killed"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    uninterrupted = subprocess.run(train_command(folder, params, clean), cwd=REPO, env=env,
                                   capture_output=True, text=True, timeout=300)
    assert uninterrupted.returncode == 0, uninterrupted.stderr[-2000:]
    assert "resuming" not in uninterrupted.stdout

    victim = subprocess.Popen(train_command(folder, params, killed), cwd=REPO, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while saved_epoch(killed / "checkpoint") < 2:
        assert victim.poll() is None, "training ended before its epoch-2 checkpoint"
        assert time.monotonic() < deadline
        time.sleep(0.02)
    os.kill(victim.pid, signal.SIGKILL)
    assert victim.wait() == -signal.SIGKILL  # it was still training: killed, not finished
    assert not (killed / "adapter").exists()
    at = saved_epoch(killed / "checkpoint")
    assert 2 <= at < EPOCHS

    resumed = subprocess.run(train_command(folder, params, killed), cwd=REPO, env=env,
                             capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f"train: resuming from {killed / 'checkpoint' / checkpoint.STATE_FILE} after epoch {at} of {EPOCHS}" \
        in resumed.stdout

    assert {p.name for p in (killed / "adapter").iterdir()} == {p.name for p in (clean / "adapter").iterdir()}
    for name in sorted(p.name for p in (clean / "adapter").glob("*.safetensors")):
        assert (killed / "adapter" / name).read_bytes() == (clean / "adapter" / name).read_bytes(), name
    for name in sorted(p.name for p in (clean / "adapter").glob("*.json")):
        assert same_json(killed / "adapter" / name, clean / "adapter" / name), name
    assert (killed / "val_predictions.csv").read_bytes() == (clean / "val_predictions.csv").read_bytes()
    metrics = comparable_metrics(killed)
    assert metrics == comparable_metrics(clean) and metrics["step"] == EPOCHS - 1
    clean_curves, killed_curves = curves(clean), curves(killed)
    assert set(killed_curves) == set(clean_curves) == {"train/loss.tsv", "train/learning_rate.tsv", "val/accuracy.tsv",
                                                       "val/macro_f1.tsv", "val/log_loss.tsv"}
    for name, curve in clean_curves.items():
        assert list(curve["step"]) == list(range(EPOCHS))
        pd.testing.assert_frame_equal(killed_curves[name], curve, check_exact=True)
    assert not (killed / "checkpoint").exists() and not (clean / "checkpoint").exists()


def test_a_checkpoint_of_another_run_is_not_resumed(data, tmp_path, capsys):
    folder, _ = data
    dataset = LabelledData.load(folder / "raw", folder / "split", folder / "pipelines.json", folder / "cache")
    dataset = replace(dataset, train=dataset.train.head(64))  # two batches: seconds, not minutes
    recipe = Recipe.of("configs/models/beit-tiny.json", lr=0.002, batch_size=32, epochs=1, warmup_ratio=0.0)
    cpu = RuntimeParams(device="cpu")
    saved = tmp_path / "checkpoint"

    first = fit(recipe, dataset, cpu, checkpoint=saved)
    assert saved_epoch(saved) == 1 and len(first.history) == 1
    run_id = torch.load(saved / checkpoint.STATE_FILE, weights_only=True)["fingerprint"]
    assert checkpoint.load(saved, "another run") is None
    assert checkpoint.load(saved, run_id)["epoch"] == 1

    # Another learning rate: another fingerprint; trained from scratch and the checkpoint overwritten.
    capsys.readouterr()
    other = fit(recipe.override({"train": {"lr": 0.001}}), dataset, cpu, checkpoint=saved)
    out = capsys.readouterr().out
    assert "belongs to another run" in out and "resuming" not in out
    assert len(other.history) == 1 and other.history[0]["loss"] != first.history[0]["loss"]
    assert torch.load(saved / checkpoint.STATE_FILE, weights_only=True)["fingerprint"] != run_id

    # The same run again: resumed after its last epoch, so nothing trains and the result is the same.
    again = fit(recipe.override({"train": {"lr": 0.001}}), dataset, cpu, checkpoint=saved)
    assert "train: resuming from" in capsys.readouterr().out
    assert again.history == other.history and again.scores == other.scores
    checkpoint.remove(saved)
    assert not saved.exists()


def test_the_augmentation_random_state_round_trips():
    import albumentations as A
    import numpy as np

    from workflow.training.checkpoint import _restore_rng_meta, _rng_meta

    pipeline = A.Compose([A.RandomResizedCrop(size=(16, 16)), A.GaussNoise(p=1.0), A.HorizontalFlip()])
    pipeline.set_random_seed(0)
    image = np.random.default_rng(1).integers(0, 255, (32, 32, 3), dtype=np.uint8)
    pipeline(image=image)
    state = json.loads(json.dumps(_rng_meta(pipeline)))  # as saved: through JSON
    expected = [pipeline(image=image)["image"] for _ in range(3)]
    _restore_rng_meta(state, pipeline)
    assert all(np.array_equal(pipeline(image=image)["image"], e) for e in expected)
