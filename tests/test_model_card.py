"""The model card train writes into the artefact folder: Hub metadata that parses, the run's real numbers,
loading snippets that work, and the same bytes from the same run."""
from __future__ import annotations

import json
import os
import re
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest
import torch
import yaml
from helpers import REPO, write_params
from huggingface_hub import ModelCard
from test_stages import run_stages

from workflow.data.labelled import LabelledData
from workflow.recipe import Recipe
from workflow.reporting import model_card
from workflow.stages.infer import load_trained

# Small and quick: a quarter of the digits labelled, one epoch, one optimizer step per batch.
TINY = {"data.builtin_test_fraction": 0.75, "train.epochs": 1, "train.batch_size": 32, "train.grad_accum_steps": 1}


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    folder = tmp_path_factory.mktemp("card")
    os.chdir(REPO)  # model.name is relative to the repository root, as in dvc.yaml
    run_stages(folder, write_params(folder, TINY), "download", "split", "augment", "cache")
    return folder


def trained(data: Path, name: str, overrides: dict | None = None) -> Path:
    """A train stage run on `data` into its own folder (symlinks to the shared inputs)."""
    run = data / name
    run.mkdir()
    for shared in ("raw", "split", "pipelines.json", "cache"):
        (run / shared).symlink_to(data / shared)
    run_stages(run, write_params(run, {**TINY, **(overrides or {})}), "train")
    return run


@pytest.fixture(scope="module")
def lora(digits):
    return trained(digits, "lora")


@pytest.fixture(scope="module")
def head(digits):
    return trained(digits, "head", {"train.method": "head"})


def card(run: Path) -> tuple[dict, str]:
    """The card's front matter (parsed as the Hub does: YAML between --- lines) and its Markdown body."""
    text = (run / "adapter/README.md").read_text()
    match = re.fullmatch(r"---\n(.*?)\n---\n\n(.*)", text, re.DOTALL)
    assert match, "README.md must open with a YAML block between --- lines"
    return yaml.safe_load(match.group(1)), match.group(2)


def python_blocks(body: str, adapter: Path) -> list[str]:
    return [block.replace('"models/adapter"', repr(str(adapter)))
            for block in re.findall(r"```python\n(.*?)```", body, re.DOTALL)]


def test_lora_card_has_hub_metadata_with_the_runs_numbers(lora):
    meta, body = card(lora)
    metrics = json.loads((lora / "live/metrics.json").read_text())
    assert meta["library_name"] == "peft" and meta["pipeline_tag"] == "image-classification"
    assert {"lora", "image-classification", "beit"} <= set(meta["tags"]) and "kaggle" not in meta["tags"]
    assert meta["metrics"] == ["accuracy", "f1"] and meta["datasets"] == ["builtin:image-demo"]
    assert "base_model" not in meta  # a shipped random-init config, not a Hub id: said in the text instead
    assert "architecture config shipped with the pipeline" in body

    # model-index, in the structure the Hub validates: one model, one result, typed task, dataset and metrics.
    (entry,) = meta["model-index"]
    (result,) = entry["results"]
    assert entry["name"] == "beit-tiny-lora"
    assert result["task"] == {"type": "image-classification", "name": "Image classification"}
    assert result["dataset"] == {"name": "built-in offline demo competition", "type": "builtin:image-demo",
                                 "split": "validation"}
    values = {(m["type"], m.get("config")): m["value"] for m in result["metrics"]}
    val = metrics["val"]  # the kept epoch's scores, exactly as metrics.json has them
    assert values == {("accuracy", None): val["accuracy"], ("f1", "macro"): val["macro_f1"],
                      ("log_loss", None): val["log_loss"]}
    # huggingface_hub reads it back into the same evaluation results
    parsed = ModelCard.load(lora / "adapter/README.md").data
    assert [(r.metric_type, r.metric_value) for r in parsed.eval_results] == [
        ("accuracy", val["accuracy"]), ("f1", val["macro_f1"]), ("log_loss", val["log_loss"])]

    # The body: the recipe, the kept epoch and why, the calibration, the split, from the run's own records.
    saved = json.loads((lora / "adapter/model_meta.json").read_text())
    trainable, total = metrics["model/trainable_params"], metrics["model/total_params"]
    assert f"Trainable parameters: {trainable:,} of {total:,} ({100 * trainable / total:.2f}%)" in body
    assert "`lora r=8 alpha=16 dropout=0.1 targets=query,value`" in body
    assert "learning rate 0.002" in body and "Batch: 32 x 1 gradient accumulation steps = 32 images" in body
    assert f"| accuracy | {val['accuracy']:.4f} |" in body and f"| log loss | {val['log_loss']:.4f} |" in body
    assert f"Which epoch: {saved['selection']}." in body
    calibration = saved["calibration"]
    assert (f"T = {calibration['temperature']:.4f}" in body
            and f"from {calibration['log_loss_before']:.4f} to {calibration['log_loss_after']:.4f}" in body)
    counts = pd.read_csv(lora / "split/class_counts.csv", dtype={"class": str})
    for i, row in counts.iterrows():
        assert f"| {i} | {row['class']} | {row['train']} | {row['val']} |" in body
    assert "split seed: split.seed 42" in body and f"validated on {counts['val'].sum()} " in body
    assert f"torch {torch.__version__}" in body and saved["backbone_sha256"] in body
    assert "PeftModel.from_pretrained(model, folder)" in body


@pytest.mark.filterwarnings("ignore:.*is_gradient_checkpointing")  # peft 0.21 on transformers 5
def test_the_cards_loading_snippets_restore_the_trained_weights(lora, head):
    for run in (lora, head):
        adapter = run / "adapter"
        expected, classes = load_trained(adapter, torch.device("cpu"))
        _, body = card(run)
        in_repo, step_by_step = python_blocks(body, adapter)
        for snippet in (in_repo, step_by_step):
            scope: dict = {}
            exec(snippet, scope)  # noqa: S102 - the card's own code, as a reader would paste it
            model = scope["model"]
            assert [model.config.id2label[i] for i in range(len(classes))] == classes
            got = model.state_dict()
            for name, tensor in expected.state_dict().items():
                assert torch.equal(got[name], tensor), (run.name, name)


def test_a_non_lora_card_says_which_files_to_load(head):
    meta, body = card(head)
    assert meta["library_name"] == "transformers" and "head" in meta["tags"]
    assert "`trainable.safetensors`: the trained tensors" in body and "adapter_model" not in body
    assert 'model.load_state_dict(load_file(folder / "trainable.safetensors"), strict=False)' in body
    assert "PeftModel" not in body and "Method: `head`\n" in body


def test_the_same_run_writes_the_same_card(digits, lora):
    again = trained(digits, "lora-again")
    assert (again / "adapter/README.md").read_bytes() == (lora / "adapter/README.md").read_bytes()


def test_a_hub_base_is_named_and_loaded_from_the_hub(lora):
    """A Hub id (not downloaded here): base_model in the metadata, from_pretrained in the snippet."""
    saved = json.loads((lora / "adapter/model_meta.json").read_text())
    metrics = json.loads((lora / "live/metrics.json").read_text())
    recipe = Recipe.model_validate(saved["recipe"]).override({"model": {"name": "microsoft/beit-base-patch16-224"}})
    data = LabelledData.load(lora / "raw", lora / "split", lora / "pipelines.json", lora / "cache")
    result = SimpleNamespace(  # what the card reads of a FitResult, from the run's records
        model=SimpleNamespace(config=SimpleNamespace(model_type="beit")), scores=metrics["val"],
        trainable=metrics["model/trainable_params"], total=metrics["model/total_params"],
        selection_note=saved["selection"], epochs_trained=1, input_size=32, images_per_process=[1],
        device="cpu", backbone_sha256=saved["backbone_sha256"])
    text = model_card.render(lora / "adapter", recipe, data, result, saved["calibration"])
    meta = yaml.safe_load(text.split("---\n")[1])
    assert meta["base_model"] == "microsoft/beit-base-patch16-224"
    assert "[`microsoft/beit-base-patch16-224`](https://huggingface.co/microsoft/beit-base-patch16-224)" in text
    assert '"microsoft/beit-base-patch16-224", num_labels=len(classes)' in text and "load_model" not in text
    assert "no pretrained weights" not in text


def test_the_dataset_is_named_only_as_far_as_competition_json_says():
    assert model_card.dataset({"source": "kaggle", "competition": "dog-breed-identification"}) == (
        "kaggle:dog-breed-identification", "Kaggle competition dog-breed-identification")
    assert model_card.dataset({"source": "local"}) == (
        "local:competition", "competition from a local source (its name is not recorded)")


def test_a_text_card_is_text_classification_with_binary_f1(tmp_path):
    os.chdir(REPO)
    params = write_params(tmp_path, {"data.builtin": "reviews", "data.builtin_rows": 120, "cache.max_length": 24,
                                     "model.name": "configs/models/bert-tiny.json", "train.epochs": 1})
    run_stages(tmp_path, params, "download", "split", "augment", "cache", "train")
    meta, body = card(tmp_path)
    metrics = json.loads((tmp_path / "live/metrics.json").read_text())
    assert meta["pipeline_tag"] == "text-classification" and "text-classification" in meta["tags"]
    assert meta["datasets"] == ["builtin:text-demo"] and meta["library_name"] == "peft"
    (result,) = meta["model-index"][0]["results"]
    assert result["task"]["type"] == "text-classification"
    values = {(m["type"], m.get("config")): m["value"] for m in result["metrics"]}
    assert values[("f1", "binary")] == metrics["val"]["f1"] and values[("f1", "macro")] == metrics["val"]["macro_f1"]
    assert "| F1 of rotten (the second class) |" in body and "up to 24 tokens per row" in body
