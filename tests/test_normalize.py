"""augment.normalize: auto: every model is fed the inputs it was pretrained on (its own mean and std)."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from helpers import REPO, write_params
from test_stages import run_stages

from workflow.core.errors import UserError
from workflow.data.labelled import LabelledData
from workflow.models.preprocessing import own_normalization
from workflow.recipe import Recipe, RuntimeParams
from workflow.training.loop import fit

HALF = [0.5, 0.5, 0.5]
IMAGENET_MEAN, IMAGENET_STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]


def test_shipped_configs_carry_their_familys_normalisation():
    assert own_normalization("beit-tiny")["mean"] == HALF and own_normalization("vit-tiny")["std"] == HALF
    for family in ("swin-tiny", "swinv2-tiny", "resnet-tiny"):
        stats = own_normalization(family)
        assert (stats["mean"], stats["std"]) == (IMAGENET_MEAN, IMAGENET_STD), family


def test_a_config_without_them_names_the_key(tmp_path):
    config = json.loads((REPO / "configs/models/vit-tiny.json").read_text())
    del config["image_processor"]
    (tmp_path / "vit.json").write_text(json.dumps(config))
    with pytest.raises(UserError, match='has no "image_processor" with image_mean and image_std'):
        own_normalization(str(tmp_path / "vit.json"))


def test_a_model_folder_gives_its_image_processors_values(tmp_path):
    # The path a hub id takes: AutoImageProcessor.from_pretrained on the files that came with the weights.
    from transformers import ViTImageProcessor

    ViTImageProcessor(image_mean=[0.1, 0.2, 0.3], image_std=[0.4, 0.5, 0.6]).save_pretrained(tmp_path / "mine")
    stats = own_normalization(str(tmp_path / "mine"))
    assert stats["mean"] == pytest.approx([0.1, 0.2, 0.3]) and stats["std"] == pytest.approx([0.4, 0.5, 0.6])


def test_a_hub_model_offline_is_a_clear_error():
    code = ("from workflow.core.cli import run; from workflow.models.preprocessing import own_normalization; "
            "raise SystemExit(run(lambda argv: own_normalization('microsoft/swin-base-patch4-window7-224')))")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                            env={**os.environ, "HF_HUB_OFFLINE": "1"}, timeout=120)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1, result.stderr
    assert lines[0].startswith("error: augment.normalize: auto, but no image processor config for "
                               "'microsoft/swin-base-patch4-window7-224' (")


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    folder = tmp_path_factory.mktemp("normalize")
    os.chdir(REPO)
    params = write_params(folder, {"data.builtin_test_fraction": 0.8, "model.name": "configs/models/swin-tiny.json"})
    run_stages(folder, params, "download", "split", "augment", "cache")
    return folder


def test_augment_records_model_names_own_values_and_where_they_came_from(digits, tmp_path):
    recorded = json.loads((digits / "pipelines.json").read_text())["normalize"]
    assert recorded == {"mean": IMAGENET_MEAN, "std": IMAGENET_STD, "source": "swin-tiny.json image_processor",
                        "auto": True}
    fixed = write_params(tmp_path, {"augment.normalize": {"mean": HALF, "std": [0.25, 0.25, 0.25]}})
    for name in ("raw", "split"):
        (tmp_path / name).symlink_to(digits / name)
    run_stages(tmp_path, fixed, "augment")
    assert json.loads((tmp_path / "pipelines.json").read_text())["normalize"] == {
        "mean": HALF, "std": [0.25, 0.25, 0.25], "source": "augment.normalize", "auto": False}


@pytest.mark.parametrize("candidate, expected", [
    ("configs/models/beit-tiny.json", "mean 0.5,0.5,0.5 std 0.5,0.5,0.5"),
    ("configs/models/resnet-tiny.json", "mean 0.485,0.456,0.406 std 0.229,0.224,0.225"),
])
def test_each_screening_candidate_is_normalised_its_own_way(digits, candidate, expected):
    data = LabelledData.load(digits / "raw", digits / "split", digits / "pipelines.json", digits / "cache")
    data = data.__class__(**{**data.__dict__, "train": data.train.head(32)})  # one batch: seconds
    recipe = Recipe.of(candidate, "head", batch_size=32, epochs=1)
    result = fit(recipe, data, RuntimeParams(device="cpu"), resize=True)
    assert result.normalization == expected and result.row()["normalize"] == expected
