"""Model loading and LoRA on real (tiny) transformers models: targets, head, parameter counts."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
from helpers import REPO
from safetensors.torch import save_file

from workflow.core.errors import UserError
from workflow.models.lora import count_parameters, resolve_targets, wrap_lora
from workflow.models.zoo import backbone_checksum, head_names, input_size, load_model

TINY = str(REPO / "configs/models/beit-tiny.json")
CLASSES = [str(i) for i in range(10)]


@pytest.fixture
def beit():
    return load_model(TINY, CLASSES, seed=0)


def test_shipped_config_builds_the_real_class(beit):
    assert type(beit).__name__ == "BeitForImageClassification"
    assert beit.config.id2label[3] == "3" and beit.config.label2id["9"] == 9
    assert input_size(beit) == 32 and head_names(beit) == ["classifier"]


def test_semantic_targets_resolve_to_the_models_module_names(beit):
    names = {name.rsplit(".", 1)[-1] for name, _ in beit.named_modules()}
    resolved = resolve_targets(beit, ["query", "value"])
    assert set(resolved) <= names
    # transformers 5.x: q_proj/v_proj; older releases: query/value. Either way, the model's own names.
    assert resolved in (["q_proj", "v_proj"], ["query", "value"])


def test_unknown_target_is_a_clear_error(beit):
    with pytest.raises(UserError, match="lora.targets: 'attn_qkv' matches no Linear/Conv2d layer of BeitForImageClassification"):
        resolve_targets(beit, ["attn_qkv"])


def test_lora_trains_adapters_and_head_only_and_counts_match_the_formula(beit):
    config = json.loads((REPO / "configs/models/beit-tiny.json").read_text())
    base_total = sum(p.numel() for p in beit.parameters())
    model = wrap_lora(beit, r=8, alpha=16, dropout=0.0, targets=["query", "value"])
    trainable, total = count_parameters(model)
    layers, width, rank, classes = config["num_hidden_layers"], config["hidden_size"], 8, len(CLASSES)
    lora = layers * 2 * (width * rank + rank * width)  # A (d x r) and B (r x d) on q and v per layer
    head = width * classes + classes
    assert trainable == lora + head
    assert total == base_total + lora
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    assert all("lora_" in n or "classifier" in n for n in names)
    assert any("q_proj.lora_A" in n or "query.lora_A" in n for n in names)


def test_same_seed_same_backbone_other_seed_other_backbone():
    a, b, c = (load_model(TINY, CLASSES, seed=s) for s in (0, 0, 1))
    assert backbone_checksum(a) == backbone_checksum(b) != backbone_checksum(c)


def test_hub_path_loads_through_the_same_loader(tmp_path, beit):
    # from_pretrained is the hub code path; a saved folder exercises it without the network.
    beit.save_pretrained(tmp_path / "pretrained")
    loaded = load_model(str(tmp_path / "pretrained"), ["cat", "dog"], seed=0)
    assert loaded.config.num_labels == 2 and loaded.classifier.out_features == 2
    assert torch.equal(loaded.beit.embeddings.patch_embeddings.projection.weight,
                       beit.beit.embeddings.patch_embeddings.projection.weight)


CUSTOM_CODE = """
import torch
from safetensors.torch import save_file
from transformers import PretrainedConfig, PreTrainedModel
from transformers.modeling_outputs import ImageClassifierOutput

class MeanConfig(PretrainedConfig):
    model_type = "mean-pool-test"

class MeanForImageClassification(PreTrainedModel):
    config_class = MeanConfig

    def __init__(self, config):
        super().__init__(config)
        self.classifier = torch.nn.Linear(3, config.num_labels)
        self.post_init()

    def forward(self, pixel_values, labels=None, **kwargs):
        return ImageClassifierOutput(logits=self.classifier(pixel_values.mean(dim=(2, 3))))
"""


@pytest.fixture
def custom_code_model(tmp_path):
    """A model folder laid out like a hub repo whose architecture ships as Python code (auto_map)."""
    folder = tmp_path / "custom"
    folder.mkdir()
    (folder / "mean_model.py").write_text(CUSTOM_CODE)
    (folder / "config.json").write_text(json.dumps({
        "model_type": "mean-pool-test", "num_labels": 2,
        "auto_map": {"AutoConfig": "mean_model.MeanConfig",
                     "AutoModelForImageClassification": "mean_model.MeanForImageClassification"}}))
    save_file({"classifier.weight": torch.zeros(2, 3), "classifier.bias": torch.zeros(2)},
              folder / "model.safetensors")
    return folder


def test_code_shipped_with_a_model_runs_only_when_trusted(custom_code_model):
    with pytest.raises(UserError, match=r"ships its own Python code.*set model.trust_remote_code: true"):
        load_model(str(custom_code_model), CLASSES, seed=0)
    with pytest.raises(UserError, match="set screen.trust_remote_code: true"):
        load_model(str(custom_code_model), CLASSES, seed=0, trust_key="screen.trust_remote_code")
    trusted = load_model(str(custom_code_model), CLASSES, seed=0, trust_remote_code=True)
    assert type(trusted).__name__ == "MeanForImageClassification"
    assert trusted(pixel_values=torch.zeros(1, 3, 4, 4)).logits.shape == (1, len(CLASSES))


def test_trust_remote_code_is_off_by_default_in_every_section():
    from workflow.config import load_params
    params = load_params(REPO / "params.yaml")
    assert params.model.trust_remote_code is False
    assert params.screen.base.model.trust_remote_code is False
    assert params.ablation.base.model.trust_remote_code is False
    assert all(params.screen.recipe(name).model.trust_remote_code is False for name in params.screen.candidates)


def test_unknown_model_offline_is_a_clear_error():
    # The hub client reads HF_HUB_OFFLINE at import, so this runs in a fresh interpreter.
    code = ("from workflow.core.cli import run; from workflow.models.zoo import load_model; "
            "raise SystemExit(run(lambda argv: load_model('no-such-org/no-such-model', ['a', 'b'], seed=0)))")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                            env={**os.environ, "HF_HUB_OFFLINE": "1"}, timeout=120)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        "error: model.name: 'no-such-org/no-such-model' is not a shipped config in configs/models/")


def test_missing_config_file_is_a_clear_error():
    with pytest.raises(UserError, match="model.name: config file 'configs/models/nope.json' not found"):
        load_model("configs/models/nope.json", CLASSES, seed=0)
