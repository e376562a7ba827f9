"""Fine-tuning methods on every tiny family: what trains, what is saved, and that restoring reproduces it."""
from __future__ import annotations

import pytest
import torch
from pydantic import ValidationError
from safetensors.torch import load_file

from workflow.core.errors import UserError
from workflow.models.lora import resolve_targets
from workflow.models.methods import (BUFFERS_FILE, TENSORS_FILE, artefact_bytes, blocks, prepare, restore, save,
                                     saved_method, trainable_names)
from workflow.models.zoo import (architecture, backbone_checksum, build_random, head_names, load_model,
                                 shipped_architectures, shipped_config_path)
from workflow.recipe import METHODS, Recipe

FAMILIES = ("beit-tiny", "vit-tiny", "swin-tiny", "swinv2-tiny", "resnet-tiny")
CLASSES = ["a", "b", "c", "d"]


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models: a second thread only adds sync overhead, ruinous on a busy 2-core machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def spec_for(family: str, method: str) -> Recipe:
    targets = ["conv"] if family.startswith("resnet") else ["query", "value"]
    return Recipe.of(family, method, r=4, targets=targets, last_layers=3)


def train_a_little(model: torch.nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """Two AdamW steps in train mode (BatchNorm statistics move too); eval logits of a fixed batch, the batch."""
    torch.manual_seed(0)
    pixels, labels = torch.randn(4, 3, 32, 32), torch.tensor([0, 1, 2, 3])
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    model.train()
    for _ in range(2):
        model(pixel_values=pixels, labels=labels).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    with torch.no_grad():
        return model.eval()(pixel_values=pixels).logits, pixels


# -- zoo ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("family", FAMILIES)
def test_tiny_variants_build_fast_and_take_32x32(family):
    model = build_random(family, CLASSES, seed=0)
    assert model(pixel_values=torch.randn(2, 3, 32, 32)).logits.shape == (2, 4)
    assert architecture(family).image_size == 32


def test_build_random_is_load_model_for_a_shipped_config():
    assert backbone_checksum(build_random("vit-tiny", CLASSES, 3)) == backbone_checksum(
        load_model("configs/models/vit-tiny.json", CLASSES, 3))


def test_hub_ids_mean_weights_even_when_their_architecture_ships():
    assert "microsoft/beit-large-patch16-384" in shipped_architectures() and len(shipped_architectures()) >= 9
    assert shipped_config_path("microsoft/beit-large-patch16-384") is None  # load_model -> from_pretrained
    assert architecture("microsoft/beit-large-patch16-384").hidden_size == 1024  # but counting uses the config


def test_unknown_architecture_is_one_line():
    with pytest.raises(UserError, match="model: no architecture config for 'acme/vit-huge'"):
        architecture("acme/vit-huge")


# -- which weights train ------------------------------------------------------------------------

def trained(model: torch.nn.Module) -> list[str]:
    return [n for n, p in model.named_parameters() if p.requires_grad]


@pytest.mark.parametrize("family", FAMILIES)
def test_each_method_trains_what_it_says_and_always_the_head(family):
    for method in METHODS:
        model = prepare(build_random(family, CLASSES, 0), spec_for(family, method))
        names = trained(model)
        assert any(n.startswith("classifier") or ".classifier." in n for n in names), method
        if method == "lora":
            assert all("lora_" in n or "classifier" in n for n in names)
        elif method == "head":
            assert all(n.startswith("classifier") for n in names)
        elif method == "bitfit":
            assert all(n.endswith(".bias") or n.startswith("classifier") for n in names)
            assert len(names) > 2
        elif method == "full":
            assert len(names) == len(list(model.parameters()))


def test_last_layers_counts_blocks_from_the_end_across_swin_stages():
    model = build_random("swin-tiny", CLASSES, 0)  # depths [2, 2]
    assert blocks(model)[-3:] == ["swin.encoder.layers.0.blocks.1", "swin.encoder.layers.1.blocks.0",
                                  "swin.encoder.layers.1.blocks.1"]
    names = trainable_names(model, Recipe.of("swin-tiny", "last_layers", last_layers=3, final_norm=True))
    assert names[0].startswith("swin.encoder.layers.0.blocks.1.")
    assert "swin.encoder.layers.0.downsample.reduction.weight" in names  # between two trained blocks
    assert "swin.layernorm.weight" in names and "classifier.weight" in names
    assert not any(n.startswith(("swin.embeddings", "swin.encoder.layers.0.blocks.0.")) for n in names)


def test_last_layers_one_is_the_last_block_and_head_and_the_final_norm_on_request():
    model = build_random("vit-tiny", CLASSES, 0)
    names = trainable_names(model, Recipe.of("vit-tiny", "last_layers", last_layers=1))
    assert all(n.startswith(("vit.layers.3.", "classifier.")) for n in names)
    with_norm = trainable_names(model, Recipe.of("vit-tiny", "last_layers", last_layers=1, final_norm=True))
    assert sorted(set(with_norm) - set(names)) == ["vit.layernorm.bias", "vit.layernorm.weight"]


def test_last_layers_beyond_the_depth_is_a_clear_error():
    with pytest.raises(UserError, match="train.last_layers: 5, but ViTForImageClassification has 4 encoder blocks"):
        prepare(build_random("vit-tiny", CLASSES, 0), Recipe.of("vit-tiny", "last_layers", last_layers=5))


def test_resnet_lora_adapts_the_residual_convs_not_the_stem_or_shortcuts():
    model = build_random("resnet-tiny", CLASSES, 0)
    assert resolve_targets(model, ["conv"]) == ["layer.0.convolution", "layer.1.convolution", "layer.2.convolution"]
    lora = prepare(model, Recipe.of("resnet-tiny", "lora", targets=["conv"]))
    adapted = {n.split(".lora_A")[0] for n in trained(lora) if ".lora_A." in n}
    assert len(adapted) == 3 * 3  # 3 bottleneck layers x 3 convolutions
    assert not any("embedder" in n or "shortcut" in n for n in adapted)


def test_swinv2_mlp_out_does_not_take_the_attention_output():
    model = build_random("swinv2-tiny", CLASSES, 0)
    resolved = resolve_targets(model, ["mlp_out"])
    assert resolved and all(n.endswith(".output.dense") and "attention" not in n for n in resolved)
    assert resolve_targets(model, ["output"]) == ["attention.output.dense"]
    assert resolve_targets(model, ["query", "value"]) == ["query", "value"]


@pytest.mark.parametrize("bad, message", [
    ({"method": "prefix"}, "train.method"),
    ({"r": 0}, "lora.r"),
    ({"dropout": 1.0}, "lora.dropout"),
    ({"targets": []}, "lora.targets"),
    ({"method": "last_layers", "last_layers": 0}, "train.last_layers"),
])
def test_bad_settings_are_refused_naming_the_key(bad, message):
    with pytest.raises(ValidationError, match=message.replace(".", r"\.")):
        Recipe.of("vit-tiny", **bad)


# -- save and restore ---------------------------------------------------------------------------

@pytest.mark.parametrize("family", FAMILIES)
def test_saved_artefact_reproduces_the_trained_model_exactly(family, tmp_path):
    for method in METHODS:
        spec = spec_for(family, method)
        model = prepare(build_random(family, CLASSES, 0), spec)
        expected, pixels = train_a_little(model)
        folder = tmp_path / method
        save(model, spec, folder)
        assert saved_method(folder) == spec.method_settings() and artefact_bytes(folder) > 0
        restored = restore(build_random(family, CLASSES, 0), spec, folder)
        assert type(restored).__name__ == type(build_random(family, CLASSES, 0)).__name__  # plain, merged
        with torch.no_grad():
            got = restored.eval()(pixel_values=pixels).logits
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5, msg=f"{family} {method}")


def test_partial_methods_save_only_their_trainable_tensors(tmp_path):
    spec = Recipe.of("vit-tiny", "bitfit")
    model = prepare(build_random("vit-tiny", CLASSES, 0), spec)
    save(model, spec, tmp_path)
    assert set(load_file(tmp_path / TENSORS_FILE)) == set(trained(model))
    assert not (tmp_path / BUFFERS_FILE).exists()  # transformers: no running statistics
    assert artefact_bytes(tmp_path) < 30_000


def test_lora_saves_adapter_and_head_only(tmp_path):
    spec = Recipe.of("vit-tiny", "lora", r=4)
    model = prepare(build_random("beit-tiny", CLASSES, 0), spec)
    save(model, spec, tmp_path)
    keys = load_file(tmp_path / "adapter_model.safetensors")
    assert all("lora_" in k or "classifier" in k for k in keys)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adapter_config.json", "adapter_model.safetensors",
                                                          "method.json"]


def test_resnet_saves_its_batchnorm_statistics_which_training_moves(tmp_path):
    spec = Recipe.of("vit-tiny", "head")
    model = prepare(build_random("resnet-tiny", CLASSES, 0), spec)
    train_a_little(model)
    save(model, spec, tmp_path)
    stats = load_file(tmp_path / BUFFERS_FILE)
    fresh = build_random("resnet-tiny", CLASSES, 0).state_dict()
    moved = [k for k in stats if k.endswith("running_mean") and not torch.equal(stats[k], fresh[k])]
    assert moved  # the frozen backbone's statistics changed: predictions need them


def test_restore_refuses_another_method(tmp_path):
    spec = Recipe.of("vit-tiny", "head")
    save(prepare(build_random("vit-tiny", CLASSES, 0), spec), spec, tmp_path)
    with pytest.raises(UserError, match="saved with 'head', not 'bitfit'; re-run the stage that trained it"):
        restore(build_random("vit-tiny", CLASSES, 0), Recipe.of("vit-tiny", "bitfit"), tmp_path)


def test_head_is_found_for_every_family():
    for family in FAMILIES:
        assert head_names(build_random(family, CLASSES, 0)) == ["classifier"]
