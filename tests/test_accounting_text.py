"""Parameter accounting and last_layers for the text families (BERT, RoBERTa, DeBERTa-v2), checked against peft."""
from __future__ import annotations

import json

import pytest
import torch
from peft import LoraConfig, get_peft_model

from workflow.core.cli import run
from workflow.models.accounting import account
from workflow.models.lora import count_parameters, quiet_peft
from workflow.models.methods import blocks, prepare, trainable_names
from workflow.models.zoo import architecture, auto_class, build_random
from workflow.recipe import METHODS, Recipe
from workflow.tools.params_count import main as params_count

BERT_BASE = "google-bert/bert-base-uncased"  # the hub's legacy id bert-base-uncased; see params_count.shipped_name
HEAD = 768 * 2 + 2  # BERT-base's new classifier for 2 labels
BERT_BASE_TOTAL = 109_483_778  # the published 109,482,240 of bert-base-uncased (with its pooler) plus the head
BERT_BASE_BIASES = 102_912  # every bias of the backbone (embeddings, 12 layers, pooler)
TINY = {"hidden_size": 32, "num_hidden_layers": 3, "num_attention_heads": 2, "intermediate_size": 64,
        "vocab_size": 100}
# DeBERTa-v2 options the v3 config leaves off: own position projections, absolute positions, segments,
# a narrower embedding, the conv beside the first layer, relative positions without buckets, no rel. norm
DEBERTA_VARIANTS = [
    {"share_att_key": False},
    {"share_att_key": False, "pos_att_type": ["c2p"], "position_biased_input": True, "type_vocab_size": 2},
    {"embedding_size": 16, "conv_kernel_size": 3, "position_buckets": -1, "max_relative_positions": 64},
    {"relative_attention": False, "norm_rel_ebd": "none"},
]


def bert_base(method: str, **options) -> tuple[torch.nn.Module, Recipe]:
    """BERT-base for 2 labels on the meta device (shapes only), prepared by our method."""
    recipe = Recipe.of(BERT_BASE, method, **options)
    config = architecture(BERT_BASE, num_labels=2)
    with torch.device("meta"):
        return prepare(auto_class(config).from_config(config), recipe), recipe


def peft_counts(r: int, bias: str = "none") -> tuple[int, int]:
    """peft's own count of BERT-base with LoRA on query,value and the classifier in modules_to_save,
    built with peft directly (not through our target resolution)."""
    config = architecture(BERT_BASE, num_labels=2)
    with torch.device("meta"), quiet_peft():
        model = get_peft_model(auto_class(config).from_config(config),
                               LoraConfig(r=r, target_modules=["query", "value"], modules_to_save=["classifier"],
                                          bias=bias))
    return model.get_nb_trainable_parameters()


def test_bert_base_total_is_the_published_size():
    config = architecture(BERT_BASE, num_labels=2)
    result = account(config, Recipe.of(BERT_BASE, "full"))
    assert result.agrees and result.trainable == result.total == BERT_BASE_TOTAL == 109_482_240 + 768 * 2 + 2
    assert "pooler[dense(768·768 + 768)]" in result.formula.total_text


@pytest.mark.parametrize("r, adapters", [(8, 294_912), (16, 589_824), (32, 1_179_648)])
def test_bert_base_lora_counts_agree_with_peft(r, adapters):
    assert adapters == 12 * 2 * r * (768 + 768)  # A (r·768) and B (768·r) on query and value of 12 layers
    model, recipe = bert_base("lora", r=r, targets=["query", "value"])
    result = account(architecture(BERT_BASE, num_labels=2), recipe)
    ours = (adapters + HEAD, BERT_BASE_TOTAL + adapters)
    assert count_parameters(model) == (result.trainable, result.total) == (result.formula.trainable,
                                                                            result.formula.total) == ours
    # peft's get_nb_trainable_parameters counts every parameter the wrapper holds: modules_to_save keeps the
    # frozen original classifier beside its trainable copy, so its total is ours plus one head; its
    # trainable count is ours exactly (the pooler stays frozen: only the classifier is new)
    expected = (adapters + HEAD, BERT_BASE_TOTAL + adapters + HEAD)
    assert model.get_nb_trainable_parameters() == peft_counts(r) == expected
    assert expected == {8: (296_450, 109_780_228), 16: (591_362, 110_075_140), 32: (1_181_186, 110_664_964)}[r]


def test_bert_base_bitfit_is_every_bias_and_the_head():
    c = architecture(BERT_BASE, num_labels=2)
    d, i = c.hidden_size, c.intermediate_size
    # embeddings LayerNorm; per layer q, k, v, attention output, 2 LayerNorms, MLP in (i) and out; the pooler
    biases = d + c.num_hidden_layers * (4 * d + 2 * d + i + d) + d
    assert biases == BERT_BASE_BIASES
    model, recipe = bert_base("bitfit")
    result = account(c, recipe)
    assert count_parameters(model) == (result.trainable, result.total) == (result.formula.trainable,
                                                                            result.formula.total)
    assert (result.trainable, result.total) == (BERT_BASE_BIASES + HEAD, BERT_BASE_TOTAL) == (104_450, 109_483_778)
    # peft's own count of the same biases: bias="all" trains every bias of the backbone on top of LoRA (the
    # head's copy already trains; its frozen original's bias stays frozen)
    assert peft_counts(8, bias="all")[0] - peft_counts(8)[0] == BERT_BASE_BIASES
    trained = [n for n, p in model.named_parameters() if p.requires_grad]
    assert "bert.pooler.dense.bias" in trained and "bert.pooler.dense.weight" not in trained


@pytest.mark.parametrize("name, total", [
    # no pooler; the head is new: dense 768 -> 768 and out_proj 768 -> 2
    ("FacebookAI/roberta-base", 50265 * 768 + 514 * 768 + 768 + 2 * 768 + 12 * 7_087_872 + 768 * 769 + HEAD),
    # no absolute positions or segments; 2·256 relative embeddings and their LayerNorm; the pooler
    ("microsoft/deberta-v3-base", 128100 * 768 + 2 * 768 + 12 * 7_087_872 + 512 * 768 + 2 * 768 + 768 * 769 + HEAD),
])
def test_roberta_and_deberta_base_totals(name, total):
    result = account(architecture(name, num_labels=2), Recipe.of(name, "full"))
    assert result.agrees and result.total == total
    assert total == {"FacebookAI/roberta-base": 124_647_170, "microsoft/deberta-v3-base": 184_423_682}[name]


def tiny_text_models() -> list[tuple[str, dict]]:
    return [("bert-tiny", {}), ("FacebookAI/roberta-base", TINY), ("microsoft/deberta-v3-base", TINY),
            *(("microsoft/deberta-v3-base", {**TINY, **variant}) for variant in DEBERTA_VARIANTS)]


@pytest.mark.parametrize("name, overrides", tiny_text_models())
def test_formula_equals_measured_for_every_text_variant_and_method(name, overrides):
    config = architecture(name, num_labels=3, **overrides)
    q, k, v = ("query", "key", "value")  # semantic names: DeBERTa's query_proj/... resolve too
    own = [("pos_key_proj",)] if overrides.get("share_att_key") is False else []  # by its own name only
    recipes = [
        *(Recipe.of(name, "lora", r=r, targets=list(t)) for r in (4, 16)
          for t in [(q, v), (q, k, v, "output"), ("mlp_in", "mlp_out"), *own]),
        *(Recipe.of(name, method) for method in ("full", "head", "bitfit")),
        *(Recipe.of(name, "last_layers", last_layers=n, final_norm=norm) for n in (1, 2) for norm in (False, True)),
    ]
    assert {r.train.method for r in recipes} == set(METHODS)
    for recipe in recipes:
        result = account(config, recipe)
        assert result.agrees, (f"{name} {overrides} {recipe.describe_method()}: measured "
                               f"{result.trainable}/{result.total}, formula {result.formula.trainable}/"
                               f"{result.formula.total}")


def test_meta_counts_equal_counts_on_real_tensors():
    for method in METHODS:
        recipe = Recipe.of("bert-tiny", method, last_layers=1)
        built = prepare(build_random("bert-tiny", ["a", "b"], seed=0), recipe)
        result = account(architecture("bert-tiny", num_labels=2), recipe)
        assert count_parameters(built) == (result.trainable, result.total) == (result.formula.trainable,
                                                                                result.formula.total)


# -- which weights train --------------------------------------------------------------------------

def trained(model: torch.nn.Module) -> list[str]:
    return [n for n, p in model.named_parameters() if p.requires_grad]


def test_last_layers_on_bert_tiny_trains_the_last_layers_the_pooler_and_the_head():
    torch.manual_seed(0)
    model = build_random("bert-tiny", ["a", "b"], seed=0)
    assert blocks(model) == ["bert.encoder.layer.0", "bert.encoder.layer.1"]
    model = prepare(model, Recipe.of("bert-tiny", "last_layers", last_layers=1))
    names = trained(model)
    assert names[0].startswith("bert.encoder.layer.1.") and names[-4:] == [
        "bert.pooler.dense.weight", "bert.pooler.dense.bias", "classifier.weight", "classifier.bias"]
    assert all(n.startswith(("bert.encoder.layer.1.", "bert.pooler.", "classifier.")) for n in names)
    # BERT has no final norm: final_norm changes nothing
    assert trainable_names(model, Recipe.of("bert-tiny", "last_layers", last_layers=1, final_norm=True)) == names
    # a training step reaches exactly those weights
    ids = torch.randint(0, 30522, (4, 12))
    model(input_ids=ids, attention_mask=torch.ones_like(ids), labels=torch.tensor([0, 1, 0, 1])).loss.backward()
    assert sorted(n for n, p in model.named_parameters() if p.grad is not None) == sorted(names)


def test_head_and_lora_leave_bert_pooler_frozen():
    head = prepare(build_random("bert-tiny", ["a", "b"], seed=0), Recipe.of("bert-tiny", "head"))
    assert trained(head) == ["classifier.weight", "classifier.bias"]
    lora = prepare(build_random("bert-tiny", ["a", "b"], seed=0), Recipe.of("bert-tiny", "lora", r=4))
    assert all(".lora_" in n or ".classifier.modules_to_save." in n for n in trained(lora))
    assert sum(".lora_A." in n for n in trained(lora)) == 2 * 2  # query and value of 2 layers


@pytest.mark.parametrize("name, prefix", [("FacebookAI/roberta-base", "roberta"),
                                          ("microsoft/deberta-v3-base", "deberta")])
def test_blocks_of_roberta_and_deberta(name, prefix):
    model = build_random(name, ["a", "b"], seed=0, **TINY)
    assert blocks(model) == [f"{prefix}.encoder.layer.{i}" for i in range(3)]
    names = trainable_names(model, Recipe.of(name, "last_layers", last_layers=2))
    assert names[0].startswith(f"{prefix}.encoder.layer.1.")
    with_norm = trainable_names(model, Recipe.of(name, "last_layers", last_layers=2, final_norm=True))
    # RoBERTa: nothing after the last layer but its head; DeBERTa: the relative embeddings and their norm
    extra = [] if prefix == "roberta" else ["deberta.encoder.rel_embeddings.weight", "deberta.encoder.LayerNorm.weight",
                                            "deberta.encoder.LayerNorm.bias"]
    assert sorted(set(with_norm) - set(names)) == sorted(extra)
    if prefix == "deberta":
        assert "pooler.dense.weight" in names  # the pretrained pooler trains with the tail


# -- params_count -----------------------------------------------------------------------------------

def test_params_count_on_bert_base_uncased(capsys):
    argv = ["--model", "bert-base-uncased", "--method", "bitfit", "--num-labels", "2"]
    assert run(params_count, argv) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"{BERT_BASE} (bert), 2 classes, bitfit")
    assert "measured         104,450     109,483,778       0.095%" in out
    assert run(params_count, ["--model", "bert-base-uncased", "--r", "16", "--num-labels", "2", "--json"]) == 0
    row = json.loads(capsys.readouterr().out)
    assert row["trainable"] == row["formula_trainable"] == 589_824 + HEAD and row["total"] == BERT_BASE_TOTAL + 589_824
