"""The stages end to end through their main()s on the built-in competition, in a temp folder."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from helpers import REPO, write_params
from PIL import Image
from safetensors.torch import load_file
from transformers import BeitConfig, BeitForImageClassification, get_linear_schedule_with_warmup

from workflow.core.errors import UserError
from workflow.data.submission_format import submission
from workflow.models.scores import probabilities
from workflow.recipe import Recipe
from workflow.stages import augment, cache, download, infer, kfold, split, train
from workflow.training import loop as training
from workflow.training.runtime import Compute

MODULES = {"download": download, "split": split, "kfold": kfold, "augment": augment, "cache": cache, "train": train,
           "infer": infer}
# Each stage's path options (as dvc.yaml passes them), all pointed inside the test's folder.
FILES = {"raw": "raw", "split": "split", "pipelines": "pipelines.json", "cache": "cache", "model": "adapter",
         "live": "live", "preview": "preview.png", "predictions": "val_predictions.csv",
         "checkpoint": "checkpoint", "run-record": "live/run.json", "folds": "folds"}
OUTS = {"download": "raw", "split": "split", "kfold": "folds", "augment": "pipelines.json", "cache": "cache", "train": "adapter",
        "infer": "predictions.csv"}
INPUTS = {"download": [], "split": ["raw"], "kfold": ["raw"], "augment": ["raw", "split", "preview"], "cache": ["raw"],
          "train": ["raw", "split", "pipelines", "cache", "live", "predictions", "checkpoint",
                    "run-record"], "infer": ["raw", "pipelines", "cache", "model"]}


def run_stages(folder: Path, params: Path, *stages: str) -> None:
    for name in stages:
        argv = ["--params", str(params), "--out", str(folder / OUTS[name])]
        for option in INPUTS[name]:
            argv += [f"--{option}", str(folder / FILES[option])]
        MODULES[name].main(argv)


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pipeline")
    os.chdir(REPO)  # model.name is relative to the repository root, as in dvc.yaml
    params = write_params(folder, {"train.epochs": 2})
    run_stages(folder, params, "download", "split", "augment", "cache", "train", "infer")
    return folder, params


def test_split_is_stratified_and_5_percent(pipeline):
    folder, _ = pipeline
    train_rows = pd.read_csv(folder / "split/train.csv", dtype=str)
    val = pd.read_csv(folder / "split/val.csv", dtype=str)
    counts = pd.read_csv(folder / "split/class_counts.csv", dtype={"class": str})
    assert len(val) == round(0.05 * (len(train_rows) + len(val)))
    assert set(train_rows["path"]).isdisjoint(val["path"])
    assert set(counts["class"]) == {str(i) for i in range(10)} and (counts["val"] >= 6).all()


def test_augment_writes_pipelines_and_a_real_preview(pipeline):
    folder, _ = pipeline
    spec = json.loads((folder / "pipelines.json").read_text())
    names = [t["__class_fullname__"] for t in spec["train"]["transform"]["transforms"]]
    assert names == ["RandomResizedCrop", "HorizontalFlip", "Resize", "Normalize"]
    assert [t["__class_fullname__"] for t in spec["eval"]["transform"]["transforms"]] == ["Resize", "Normalize"]
    with Image.open(folder / "preview.png") as preview:
        assert preview.size == (8 * 96, 2 * 96)
        assert np.asarray(preview).std() > 10  # digits, not a blank canvas


def test_train_saves_adapter_head_and_metrics(pipeline):
    folder, _ = pipeline
    weights = load_file(folder / "adapter/adapter_model.safetensors")
    assert any("lora_A" in key for key in weights) and any("classifier" in key for key in weights)
    assert not any("fc1" in key for key in weights)  # the frozen backbone is not saved
    meta = json.loads((folder / "adapter/model_meta.json").read_text())
    recipe = meta["recipe"]  # the whole recipe train read: infer rebuilds the model from it
    assert meta["classes"] == [str(i) for i in range(10)] and recipe["lora"]["targets"] == ["query", "value"]
    assert recipe["train"]["method"] == "lora" and recipe["model"]["name"].endswith("beit-tiny.json")
    assert "num_workers" not in recipe["train"]  # where it ran is not part of the recipe
    metrics = json.loads((folder / "live/metrics.json").read_text())
    assert metrics["model/trainable_params"] == 8842 and metrics["model/total_params"] == 192586
    assert metrics["step"] == 1 and 0 <= metrics["val"]["accuracy"] <= 1
    assert metrics["memory/peak_rss_mib"] > 0 and metrics["time/train_s"] > 0
    curve = pd.read_csv(folder / "live/plots/metrics/val/accuracy.tsv", sep="\t")
    assert list(curve["step"]) == [0, 1]
    val = pd.read_csv(folder / "val_predictions.csv", dtype=str)
    assert list(val.columns) == ["path", "label", "predicted"] and len(val) == 72


def test_train_records_the_seeds_and_package_versions_of_the_run(pipeline):
    folder, _ = pipeline
    record = json.loads((folder / "live/run.json").read_text())
    assert record["seeds"] == {"split.seed": 42, "train.seed": 0}
    assert record["packages"]["torch"] == torch.__version__ and record["device"] == "cpu"
    assert record["packages"]["transformers"] == __import__("transformers").__version__


def test_predictions_match_sample_submission(pipeline):
    folder, _ = pipeline
    sample = pd.read_csv(folder / "raw/sample_submission.csv", dtype=str)
    predictions = pd.read_csv(folder / "predictions.csv", dtype=str)
    assert list(predictions.columns) == list(sample.columns)
    assert list(predictions["id"]) == list(sample["id"])
    assert set(predictions["label"]) <= {str(i) for i in range(10)}


def test_infer_refuses_an_adapter_trained_on_another_backbone(pipeline, tmp_path):
    folder, params = pipeline
    meta_file = folder / "adapter/model_meta.json"
    meta = json.loads(meta_file.read_text())
    meta_file.write_text(json.dumps({**meta, "backbone_sha256": "0" * 64}))
    try:
        with pytest.raises(UserError, match="differs from the one the adapter was trained on"):
            infer.load_trained(folder / "adapter", torch.device("cpu"))
    finally:
        meta_file.write_text(json.dumps(meta))


def test_probability_submissions_get_one_column_per_class():
    sample = pd.DataFrame({"id": ["b", "a"], "cat": ["0", "0"], "dog": ["0", "0"]})
    competition = {"format": "probabilities"}
    out = submission(sample, competition, probabilities(np.array([[2.0, 0.0], [0.0, 1.0]])), ["cat", "dog"])
    assert list(out.columns) == ["id", "cat", "dog"] and list(out["id"]) == ["b", "a"]
    assert out["cat"][0] > 0.85 and np.allclose(out[["cat", "dog"]].sum(axis=1), 1)
    labels = submission(sample.drop(columns="dog").rename(columns={"cat": "label"}),
                        {"format": "label", "label_column": "label"}, np.array([[0.9, 0.1], [0.4, 0.6]]), ["cat", "dog"])
    assert list(labels["label"]) == ["cat", "dog"]


def test_unknown_transform_names_its_params_item(pipeline, tmp_path):
    folder, _ = pipeline
    params = write_params(tmp_path, {"augment.train": [{"HorizontalFlip": {}}, {"RandomResizeCrop": {}}]})
    with pytest.raises(UserError, match=r"augment.train\[1\]: 'RandomResizeCrop' is not an albumentations transform"):
        run_stages(folder, params, "augment")


def rerun_with(pipeline, tmp_path, override: dict, reused: tuple[str, ...], stage: str):
    """A folder sharing the fixture's outputs `reused`, with `stage` re-run there under `override`."""
    folder, _ = pipeline
    params = write_params(tmp_path, override)
    work = tmp_path / "work"
    work.mkdir()
    for name in reused:
        (work / name).symlink_to(folder / name)
    run_stages(work, params, stage)
    return work, params


def test_image_size_must_match_the_model(pipeline, tmp_path):
    work, params = rerun_with(pipeline, tmp_path, {"augment.image_size": 48}, ("raw", "split", "cache"), "augment")
    with pytest.raises(UserError, match="augment.image_size: 48, but the model takes 32x32 images; set augment.image_size: 32"):
        run_stages(work, params, "train")


def test_cache_smaller_than_the_model_input_is_refused(pipeline, tmp_path):
    work, params = rerun_with(pipeline, tmp_path, {"cache.image_size": 16}, ("raw", "split", "pipelines.json"), "cache")
    with pytest.raises(UserError, match=r"cache.image_size: 16 is below the model's 32x32 input .*set cache.image_size: 32"):
        run_stages(work, params, "train")


def tiny_beit() -> BeitForImageClassification:
    torch.manual_seed(0)
    return BeitForImageClassification(BeitConfig(
        image_size=16, patch_size=8, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=32, num_labels=3, drop_path_rate=0.0, hidden_dropout_prob=0.0,
    ))


def accumulated_update(batches, accum: int) -> tuple[dict, int]:
    model = tiny_beit()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    scheduler = get_linear_schedule_with_warmup(optimizer, 0, 100)
    # What train_one_epoch reads of a Run: the model, the batches, the recipe's accumulation, the optimizer.
    run = SimpleNamespace(forward=model, train_loader=batches, compute=Compute(torch.device("cpu")),
                          recipe=Recipe.of("tiny", grad_accum_steps=accum), optimizer=optimizer, scheduler=scheduler)
    training.train_one_epoch(run, _NoProgress())
    return {k: v.clone() for k, v in model.state_dict().items()}, scheduler.last_epoch


class _NoProgress:
    def update(self, _):
        pass


def test_gradient_accumulation_equals_the_large_batch_and_counts_optimizer_steps():
    torch.manual_seed(1)
    pixels, labels = torch.randn(8, 3, 16, 16), torch.randint(0, 3, (8,))
    micro = [(pixels[i:i + 4], labels[i:i + 4]) for i in (0, 4)]
    accumulated, steps = accumulated_update(micro, accum=2)
    whole, whole_steps = accumulated_update([(pixels, labels)], accum=1)
    assert steps == whole_steps == 1
    for key in whole:
        assert torch.allclose(accumulated[key], whole[key], atol=1e-6), key
    # Five micro-batches with accum 2: steps after the 2nd, 4th and the short last group.
    _, steps = accumulated_update([(pixels[:2], labels[:2])] * 5, accum=2)
    assert steps == 3


def test_screen_ablation_and_report_stages_on_the_tiny_data(pipeline, tmp_path, capsys):
    from workflow.stages import ablation, report, screen, screen_summary

    folder, _ = pipeline
    candidates, variants = ("resnet-tiny", "vit-tiny"), ("head", "lora-r4")
    defaults = yaml.safe_load((REPO / "params.yaml").read_text())
    params = write_params(tmp_path, {
        "screen.base.train.epochs": 1, "ablation.base.train.epochs": 1, "ablation.seeds": [0, 1],
        "screen.candidates": {c: defaults["screen"]["candidates"][c] for c in candidates},
        "ablation.variants": {v: defaults["ablation"]["variants"][v] for v in variants}})
    common = ["--params", str(params), "--raw", str(folder / "raw"), "--split", str(folder / "split"),
              "--pipelines", str(folder / "pipelines.json"), "--cache", str(folder / "cache")]
    for candidate in candidates:
        screen.main([*common, "--candidate", candidate, "--out", str(tmp_path / f"screening/{candidate}.json"),
                     "--live", str(tmp_path / f"screening/{candidate}")])
    shutil.copy(tmp_path / "screening/vit-tiny.json", tmp_path / "screening/removed-candidate.json")  # left out
    screen_summary.main(["--params", str(params), "--rows", str(tmp_path / "screening"), "--csv", str(tmp_path / "s.csv"),
                         "--markdown", str(tmp_path / "s.md"), "--chart", str(tmp_path / "s.png"),
                         "--metrics", str(tmp_path / "s.json"), "--winner", str(tmp_path / "winner.json")])
    winner = json.loads((tmp_path / "winner.json").read_text())
    ranked = pd.read_csv(tmp_path / "s.csv")
    assert winner["candidate"] == ranked["candidate"][0]
    assert ranked["val_accuracy"].is_monotonic_decreasing
    # The one step that trains the winner: its model, LoRA targets and input size (tiny configs: 32).
    targets = "conv" if winner["candidate"] == "resnet-tiny" else "query,value"
    assert winner["train_command"] == (f"dvc exp run -S model.name={winner['model']} "
                                       f"-S 'lora.targets=[{targets}]' -S augment.image_size=32")
    assert winner["train_command"] in (tmp_path / "s.md").read_text()
    assert f"Winner: **{winner['candidate']}**" in (tmp_path / "s.md").read_text()
    scores = json.loads((tmp_path / "s.json").read_text())["screening"]
    assert set(scores) == {"resnet-tiny", "vit-tiny"} and scores[winner["candidate"]]["accuracy"] == ranked["val_accuracy"][0]

    for job in ("head-0", "lora-r4-0", "lora-r4-1"):  # head with seed 1 comes after a first report
        variant, seed = job.rsplit("-", 1)
        ablation.main([*common, "--variant", variant, "--seed", seed, "--model-out", str(tmp_path / f"m/{job}"),
                       "--live", str(tmp_path / f"ablation/{job}"), "--out", str(tmp_path / f"ablation/{job}.json")])
    row = json.loads((tmp_path / "ablation/lora-r4-0.json").read_text())
    assert (row["variant"], row["seed"]) == ("lora-r4", 0)
    assert json.loads((tmp_path / "ablation/lora-r4-1.json").read_text())["seed"] == 1
    assert row["params_trainable"] == row["params_trainable_formula"] == 4 * 2 * 4 * (64 + 64) + 650
    assert row["artefact_mib"] > 0 and row["method"].startswith("lora r=4")
    # Each job logs through dvclive like train: its curves for `dvc plots`, its summary.
    live = json.loads((tmp_path / "ablation/lora-r4-0/metrics.json").read_text())
    assert live["val"]["accuracy"] == row["val_accuracy"] and live["model/trainable_params"] == row["params_trainable"]
    assert (tmp_path / "screening/vit-tiny/plots/metrics/val/accuracy.tsv").is_file()
    with pytest.raises(UserError, match="ablation.variants: no variant 'nope'"):
        ablation.main([*common, "--variant", "nope", "--seed", "0", "--model-out", str(tmp_path / "x"),
                       "--out", str(tmp_path / "x.json"), "--live", str(tmp_path / "x")])
    with pytest.raises(UserError, match=r"ablation.seeds: no seed 7 \(have: 0, 1\)"):
        ablation.main([*common, "--variant", "head", "--seed", "7", "--model-out", str(tmp_path / "x"),
                       "--out", str(tmp_path / "x.json"), "--live", str(tmp_path / "x")])

    report_args = ["--params", str(params), "--rows", str(tmp_path / "ablation"),
                   "--metrics", str(folder / "live/metrics.json"),
                   "--run-record", str(folder / "live/run.json"), "--curves", str(folder / "live/plots/metrics"),
                   "--predictions", str(folder / "val_predictions.csv"), "--raw", str(folder / "raw"),
                   "--screening", str(tmp_path / "s.csv"), "--screening-winner", str(tmp_path / "winner.json"),
                   "--screening-chart", str(tmp_path / "s.png"),
                   "--markdown", str(tmp_path / "a.md"), "--html", str(tmp_path / "a.html"),
                   "--csv", str(tmp_path / "a.csv"), "--summary", str(tmp_path / "a.json"),
                   "--chart", str(tmp_path / "a.png"), "--rank-chart", str(tmp_path / "rank.png"), "--cost-chart", str(tmp_path / "cost.png"),
                   "--curves-chart", str(tmp_path / "curves.png"),
                   "--confusion", str(tmp_path / "cm.png"), "--per-class", str(tmp_path / "pc.csv")]
    # A seed's job not run yet: one line naming its row and the command that writes it.
    with pytest.raises(UserError, match=r"ablation/head-1.json: missing \(1 of 4 result rows\); run its job first: "
                                        r"dvc repro ablation@head-1"):
        report.main(report_args)
    ablation.main([*common, "--variant", "head", "--seed", "1", "--model-out", str(tmp_path / "m/head-1"),
                   "--live", str(tmp_path / "ablation/head-1"), "--out", str(tmp_path / "ablation/head-1.json")])
    shutil.copy(tmp_path / "ablation/head-0.json", tmp_path / "ablation/bitfit-0.json")  # a variant since removed
    capsys.readouterr()
    report.main(report_args)
    assert "left out 1 result rows of ablation jobs no longer in params.yaml: bitfit-0.json" in capsys.readouterr().out
    table = pd.read_csv(tmp_path / "a.csv")
    assert list(table["variant"]) == ["head", "lora-r4"]  # cheapest first
    summary = json.loads((tmp_path / "a.json").read_text())["ablations"]
    assert summary["lora-r4"]["trainable_params"] == row["params_trainable"]
    # Two seeds each: the mean of the two rows, and their spread.
    seeds = [json.loads((tmp_path / f"ablation/lora-r4-{seed}.json").read_text()) for seed in (0, 1)]
    assert summary["lora-r4"]["accuracy"] == pytest.approx(np.mean([r["val_accuracy"] for r in seeds]))
    assert list(table["seeds"]) == [2, 2]
    assert table.loc[1, "accuracy sd"] == pytest.approx(np.std([r["val_accuracy"] for r in seeds], ddof=1))
    assert len(pd.read_csv(tmp_path / "pc.csv")) == 10
    markdown = (tmp_path / "a.md").read_text()
    assert "## Main model" in markdown
    assert "Seeds: split.seed 42, train.seed 0, ablation seeds 0, 1." in markdown
    page = (tmp_path / "a.html").read_text()
    assert f"torch {torch.__version__}" in markdown and "Reproducibility" in page
    # Embedded: screening, curves, ablation bars, rank sweep (or none: one LoRA rank here), cost, confusion.
    assert page.count("data:image/png;base64") == 5
    with Image.open(tmp_path / "cm.png") as confusion:
        assert confusion.size[0] > 300


def test_k_fold_trains_each_fold_apart_and_pools_out_of_fold_predictions(pipeline, tmp_path):
    from workflow.stages import cv, fold

    folder, _ = pipeline
    params = write_params(tmp_path, {"train.epochs": 1, "split.folds": [0, 1, 2]})
    kfold.main(["--params", str(params), "--raw", str(folder / "raw"), "--out", str(tmp_path / "folds")])
    labelled = pd.read_csv(folder / "raw/train.csv", dtype=str)
    assigned = pd.read_csv(tmp_path / "folds/folds.csv", dtype={"path": str, "label": str})
    assert sorted(assigned["path"]) == sorted(labelled["path"]) and set(assigned["fold"]) == {0, 1, 2}
    per_class = assigned.groupby(["label", "fold"]).size().unstack()
    assert (per_class.max(axis=1) - per_class.min(axis=1) <= 1).all()  # stratified
    for index in range(3):
        held_out = pd.read_csv(tmp_path / f"folds/{index}/val.csv", dtype=str)
        assert set(held_out["path"]) == set(assigned.loc[assigned["fold"] == index, "path"])
        fold.main(["--params", str(params), "--fold", str(index), "--raw", str(folder / "raw"),
                   "--folds", str(tmp_path / "folds"), "--pipelines", str(folder / "pipelines.json"),
                   "--cache", str(folder / "cache"), "--model-out", str(tmp_path / f"models/{index}"),
                   "--out", str(tmp_path / f"results/{index}")])
    cv.main(["--raw", str(folder / "raw"), "--folds", str(tmp_path / "folds"), "--fold-results",
             str(tmp_path / "results"), "--out", str(tmp_path / "cv"), "--metrics", str(tmp_path / "cv.json")])

    oof = pd.read_csv(tmp_path / "cv/oof_predictions.csv", dtype={"path": str, "label": str, "predicted": str})
    assert list(oof["path"]) == sorted(labelled["path"])  # every labelled row once
    assert (oof.set_index("path")["fold"] == assigned.set_index("path")["fold"]).all()  # by the model without it
    scores = json.loads((tmp_path / "cv.json").read_text())["cv"]
    assert scores["folds"] == 3 and scores["oof_accuracy"] == pytest.approx((oof["predicted"] == oof["label"]).mean())
    fold_accuracy = [json.loads((tmp_path / f"results/{i}/metrics.json").read_text())["val"]["accuracy"]
                     for i in range(3)]
    assert scores["fold_accuracy_mean"] == pytest.approx(np.mean(fold_accuracy))
    assert scores["fold_accuracy_std"] == pytest.approx(np.std(fold_accuracy, ddof=1))
    # The submission: sample_submission's format, the argmax of the folds' mean test probabilities.
    sample = pd.read_csv(folder / "raw/sample_submission.csv", dtype=str)
    submission = pd.read_csv(tmp_path / "cv/submission.csv", dtype=str)
    assert list(submission.columns) == list(sample.columns) and list(submission["id"]) == list(sample["id"])
    probabilities = [pd.read_csv(tmp_path / f"results/{i}/test_probabilities.csv", dtype={"id": str}) for i in range(3)]
    mean = sum(frame.drop(columns="id").to_numpy() for frame in probabilities) / 3
    classes = [column.removeprefix("p_") for column in probabilities[0].columns[1:]]
    assert list(submission["label"]) == [classes[i] for i in mean.argmax(axis=1)]
    assert "out-of-fold" in (tmp_path / "cv/cv.md").read_text().lower()
    assert (tmp_path / "models/0/adapter_model.safetensors").is_file()


def test_one_fold_is_no_cross_validation_and_trains_nothing(pipeline, tmp_path, capsys):
    from workflow.stages import cv, fold

    folder, params = pipeline
    kfold.main(["--params", str(params), "--raw", str(folder / "raw"), "--out", str(tmp_path / "folds")])
    assert sorted(p.name for p in (tmp_path / "folds").iterdir()) == ["folds.json"]
    fold.main(["--params", str(params), "--fold", "0", "--raw", str(folder / "raw"), "--folds", str(tmp_path / "folds"),
               "--pipelines", str(folder / "pipelines.json"), "--cache", str(folder / "cache"),
               "--model-out", str(tmp_path / "models/0"), "--out", str(tmp_path / "results/0")])
    cv.main(["--raw", str(folder / "raw"), "--folds", str(tmp_path / "folds"), "--fold-results",
             str(tmp_path / "results"), "--out", str(tmp_path / "cv"), "--metrics", str(tmp_path / "cv.json")])
    assert "no cross-validation" in capsys.readouterr().out.lower()
    assert [p.name for p in (tmp_path / "models/0").iterdir()] == ["fold.json"]
    assert json.loads((tmp_path / "cv.json").read_text()) == {"cv": {"folds": 1}}
