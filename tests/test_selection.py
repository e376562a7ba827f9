"""Training that keeps its best: train.select, early stopping, log loss and temperature scaling."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from test_text_data import TINY, reviews  # noqa: F401  (the fixture: the small reviews competition)

from workflow.data.labelled import LabelledData
from workflow.models.calibration import calibration_record, fit_temperature
from workflow.models.scores import classification_scores, multiclass_log_loss
from workflow.recipe import Recipe, RuntimeParams, TrainingParams
from workflow.training.loop import fit
from workflow.training.selection import Selection

CPU = RuntimeParams(device="cpu")


def test_best_is_kept_ties_keep_the_earlier_epoch_and_patience_stops():
    model = torch.nn.Linear(2, 2)
    selection = Selection.of(TrainingParams(select="best", select_metric="accuracy", early_stopping_patience=2))
    weights = {}
    for epoch, accuracy in enumerate([0.5, 0.7, 0.7, 0.6], start=1):
        with torch.no_grad():
            model.weight.fill_(epoch)
        weights[epoch] = model.weight.clone()
        selection.update(epoch, {"accuracy": accuracy}, model, np.full((1, 2), epoch, dtype=float))
        assert selection.should_stop(epoch) == (epoch == 4)  # epochs 3 and 4 did not beat epoch 2
    assert selection.best_epoch == 2 and selection.kept_epoch(4) == 2 and selection.best_logits[0, 0] == 2
    selection.put_back(model)
    assert torch.equal(model.weight, weights[2])
    assert selection.note(4, 10) == ("kept epoch 2 of 4 trained (best val accuracy 0.7000); stopped early after "
                                     "epoch 4 of 10: 2 epochs without a better val accuracy")


def test_log_loss_is_better_when_lower_and_last_keeps_the_last():
    selection = Selection.of(TrainingParams(select="last", select_metric="log_loss"))
    for epoch, loss in enumerate([0.9, 0.4, 0.6], start=1):
        selection.update(epoch, {"log_loss": loss}, torch.nn.Linear(1, 1), np.zeros((1, 2)))
    assert selection.best_epoch == 2 and selection.kept_epoch(3) == 3 and not selection.best_weights
    assert "the last; by log loss the best was epoch 2" in selection.note(3, 3)


def test_log_loss_is_kaggles_and_the_temperature_recovers_an_overconfident_model():
    rng = np.random.default_rng(0)
    true_logits = rng.normal(size=(4000, 5))
    probabilities = np.exp(true_logits) / np.exp(true_logits).sum(1, keepdims=True)
    labels = np.array([rng.choice(5, p=p) for p in probabilities])
    from sklearn.metrics import log_loss

    assert multiclass_log_loss(labels, true_logits) == pytest.approx(log_loss(labels, probabilities, labels=range(5)))
    overconfident = 4 * true_logits
    assert fit_temperature(labels, overconfident) == pytest.approx(4, rel=0.1)
    record = calibration_record(labels, overconfident)
    assert record["log_loss_after"] < record["log_loss_before"]
    assert (np.argmax(overconfident / record["temperature"], 1) == np.argmax(overconfident, 1)).all()


def load(folder) -> LabelledData:
    return LabelledData.load(folder / "raw", folder / "split", folder / "pipelines.json", folder / "cache")


def test_a_run_that_stops_improving_stops_and_keeps_its_best_epoch(reviews):  # noqa: F811
    # lr 1e-12: the weights do not move, so no epoch beats the first one's accuracy.
    recipe = Recipe.of(TINY, "lora", lr=1e-12, batch_size=32, epochs=10, select="best", early_stopping_patience=2)
    result = fit(recipe, load(reviews), CPU)
    assert [row["epoch"] for row in result.history] == [1, 2, 3]
    assert (result.kept_epoch, result.epochs_trained) == (1, 3)
    assert "stopped early after epoch 3 of 10" in result.selection_note


def test_the_kept_epochs_scores_are_those_of_its_weights_and_logits(reviews):  # noqa: F811
    data = load(reviews)
    recipe = Recipe.of(TINY, "full", lr=0.01, batch_size=16, epochs=4, select="best", select_metric="log_loss")
    result = fit(recipe, data, CPU)
    best = min(result.history, key=lambda row: row["log_loss"])
    assert result.kept_epoch == best["epoch"]
    assert result.scores == {k: best[k] for k in result.scores}
    assert classification_scores(data.labels(data.val), result.val_logits) == result.scores
    # The weights handed back are the kept epoch's: predicting again gives its logits.
    from workflow.data.dataset import make_loader
    from workflow.models.predict import predict_logits
    from workflow.models.tokenizers import load_tokenizer
    from workflow.training.runtime import Compute

    val = data.token_sets(load_tokenizer(TINY), TINY, 0)[1]
    again = predict_logits(result.model, make_loader(val, 16, 0), Compute(torch.device("cpu")))
    np.testing.assert_allclose(again, result.val_logits, atol=1e-5)


def test_the_train_stage_records_the_kept_epoch_and_infer_calibrates_without_changing_labels(reviews, tmp_path):  # noqa: F811
    from helpers import write_params
    from test_stages import run_stages

    folder = tmp_path
    for name in ("raw", "split", "cache"):
        (folder / name).symlink_to(reviews / name)
    (folder / "pipelines.json").symlink_to(reviews / "pipelines.json")
    overrides = {"data.builtin": "reviews", "data.builtin_rows": 120, "cache.max_length": 24, "model.name": TINY,
                 "train.epochs": 3, "train.select": "best", "train.select_metric": "log_loss"}
    params = write_params(folder / "a", overrides)
    run_stages(folder, params, "train", "infer")
    metrics = json.loads((folder / "live/metrics.json").read_text())
    meta = json.loads((folder / "adapter/model_meta.json").read_text())
    assert metrics["selection/kept_epoch"] == meta["kept_epoch"] and metrics["selection/epochs_trained"] == 3
    assert meta["selection"].startswith(f"kept epoch {meta['kept_epoch']} of 3 trained (best val log loss")
    assert metrics["val"]["log_loss"] == pytest.approx(metrics["calibration/log_loss_before"])
    assert metrics["calibration/log_loss_after"] <= metrics["calibration/log_loss_before"]
    plain = pd.read_csv(folder / "predictions.csv")
    run_stages(folder, write_params(folder / "b", {**overrides, "infer.calibrate": True}), "infer")
    assert pd.read_csv(folder / "predictions.csv").equals(plain)  # a label submission: the same labels
