"""BEiT's relative position bias, swapped after loading: transformers' values exactly, computed once while frozen."""
from __future__ import annotations

import copy

import pytest
import torch
from helpers import REPO
from transformers import AutoModelForImageClassification
from transformers.models.beit.modeling_beit import BeitRelativePositionBias

from workflow.models.position_bias import speed_up_position_bias
from workflow.models.zoo import _config_from_file, load_model
from workflow.recipe import Recipe

CONFIG = REPO / "configs/models/beit-tiny.json"
CLASSES = [str(i) for i in range(10)]


def beit_pair(**config) -> tuple[torch.nn.Module, torch.nn.Module]:
    """transformers' BEiT with random position-bias tables, and a copy with the tables swapped."""
    torch.manual_seed(0)
    plain = AutoModelForImageClassification.from_config(_config_from_file(CONFIG, num_labels=10, **config))
    for name, parameter in plain.named_parameters():
        if "relative_position_bias_table" in name:  # zeros at init would hide a wrong index
            torch.nn.init.normal_(parameter, std=1.0)
    fast = copy.deepcopy(plain)
    return plain.eval(), fast.eval(), speed_up_position_bias(fast)


def bias_modules(model) -> list:
    return [m for m in model.modules() if isinstance(m, BeitRelativePositionBias)]


SHARED = {"use_relative_position_bias": False, "use_shared_relative_position_bias": True}  # one table for all layers


@pytest.mark.parametrize("config", [{}, SHARED], ids=["per layer", "shared"])
def test_the_swapped_model_gives_transformers_own_logits_exactly(config):
    plain, fast, swapped = beit_pair(**config)
    assert swapped == (4 if not config else 1)
    assert [n for n, _ in plain.named_parameters()] == [n for n, _ in fast.named_parameters()]  # names kept
    assert plain.state_dict().keys() == fast.state_dict().keys()
    images = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(plain(images).logits, fast(images).logits)
        # Another resolution: a new window size, the table interpolated, the index built for it.
        big = torch.randn(2, 3, 64, 64)
        assert torch.equal(plain(big, interpolate_pos_encoding=True).logits,
                           fast(big, interpolate_pos_encoding=True).logits)
        assert torch.equal(plain(images).logits, fast(images).logits)  # and back


def test_a_frozen_table_is_computed_once_and_its_index_kept_on_its_device(monkeypatch):
    _, fast, _ = beit_pair()
    fast.requires_grad_(False)
    module = bias_modules(fast)[0]
    calls = []
    original = BeitRelativePositionBias.forward
    monkeypatch.setattr(BeitRelativePositionBias, "forward",
                        lambda self, *a, **k: calls.append(1) or original(self, *a, **k))
    first = module((2, 2))
    assert module((2, 2)) is first and len(calls) == 1  # reused, not recomputed
    assert all(index.device == module.relative_position_bias_table.device for index in module._indices.values())
    assert module((4, 4)) is not first and len(calls) == 2  # a new resolution is computed


def test_a_new_value_of_a_frozen_table_is_seen(monkeypatch):
    plain, fast, _ = beit_pair()
    for model in (plain, fast):
        model.requires_grad_(False)
    images = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        fast(images)  # fills the cache
        new = {key: torch.randn_like(value) if "relative_position_bias_table" in key else value
               for key, value in plain.state_dict().items()}
        plain.load_state_dict(new)
        fast.load_state_dict(new)  # copies into the same parameter: its version counter moves
        assert torch.equal(plain(images).logits, fast(images).logits)


def test_a_trained_table_gets_transformers_own_gradients():
    plain, fast, _ = beit_pair()
    images, labels = torch.randn(4, 3, 32, 32), torch.tensor([0, 1, 2, 3])
    for model in (plain, fast):
        model.train()
        torch.nn.functional.cross_entropy(model(images).logits, labels).backward()
    for (name, a), (_, b) in zip(plain.named_parameters(), fast.named_parameters()):
        assert torch.equal(a.grad, b.grad), name
    module = bias_modules(fast)[0]
    assert module((2, 2)) is not module((2, 2))  # trainable: never cached


def test_every_model_the_pipeline_loads_is_swapped():
    model = load_model(str(CONFIG), CLASSES, seed=0)
    assert len(bias_modules(model)) == 4
    assert all(type(m).__name__ == "CachedBeitRelativePositionBias" for m in bias_modules(model))
    # LoRA on query and value freezes the table: the cached path is the one training takes.
    from workflow.models.methods import prepare

    prepared = prepare(model, Recipe.of(str(CONFIG), "lora", targets=["query", "value"]))
    assert not any(m.relative_position_bias_table.requires_grad for m in bias_modules(prepared))


def test_a_bias_first_computed_in_inference_mode_is_not_reused_for_training():
    # An inference tensor cannot be saved for a backward (SDPA's CUDA kernels save their mask).
    _, fast, _ = beit_pair()
    fast.requires_grad_(False)
    module = bias_modules(fast)[0]
    with torch.inference_mode():
        assert module((2, 2)).is_inference()
    assert not module((2, 2)).is_inference()
    images = torch.randn(2, 3, 32, 32)
    fast.classifier.requires_grad_(True)
    torch.nn.functional.cross_entropy(fast.train()(images).logits, torch.tensor([0, 1])).backward()
    assert fast.classifier.weight.grad is not None
