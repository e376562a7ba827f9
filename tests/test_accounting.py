"""Parameter accounting: the written-out formula equals the count on the built model, exactly."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest
from helpers import REPO

from workflow.core.cli import run
from workflow.models.accounting import account, formula
from workflow.models.lora import count_parameters
from workflow.models.methods import prepare
from workflow.models.zoo import architecture, build_random, shipped_architectures
from workflow.recipe import METHODS, Recipe
from workflow.tools.params_count import main as params_count

TINY = ("beit-tiny", "vit-tiny", "swin-tiny", "swinv2-tiny", "resnet-tiny", "bert-tiny")
TRANSFORMER_TARGETS = [("query", "value"), ("query", "key", "value", "output"), ("mlp_in", "mlp_out")]
OWN_NAME = {"swinv2": ("query",), "bert": ("query",), "roberta": ("query",)}  # else q_proj (transformers 5)
# lora.py's semantic query/key/value do not (yet) resolve DeBERTa's query_proj/key_proj/value_proj: its own names do
DEBERTA_TARGETS = [("query_proj", "value_proj"), ("query_proj", "key_proj", "value_proj", "output"),
                   ("mlp_in", "mlp_out")]


def specs(model: str) -> list[Recipe]:
    """Every method; LoRA with several target sets (and a layer's own name) and ranks; last_layers at 1
    and across stages."""
    model_type = architecture(model).model_type
    if model_type == "resnet":
        targets = [("conv",), ("layer.1.convolution",)]
    elif model_type == "deberta-v2":
        targets = DEBERTA_TARGETS
    else:
        targets = [*TRANSFORMER_TARGETS, OWN_NAME.get(model_type, ("q_proj",))]
    lasts = (1, 2) if model == "bert-tiny" else (1, 3)  # bert-tiny has 2 layers
    return [
        *(Recipe.of(model, "lora", r=r, targets=list(t)) for t in targets for r in (4, 16)),
        *(Recipe.of(model, method) for method in ("full", "head", "bitfit")),
        *(Recipe.of(model, "last_layers", last_layers=n, final_norm=norm) for n in lasts for norm in (False, True)),
    ]


def method(name: str, **options) -> Recipe:
    """A recipe for its method alone: accounting takes the architecture separately."""
    return Recipe.of("(any model)", name, **options)


def check(model: str, spec: Recipe, num_labels: int) -> None:
    result = account(architecture(model, num_labels=num_labels), spec)
    assert (result.trainable, result.total) == (result.formula.trainable, result.formula.total), (
        f"{model} {spec.describe_method()}: measured {result.trainable}/{result.total}, "
        f"formula {result.formula.trainable}/{result.formula.total}")


@pytest.mark.parametrize("model", TINY)
def test_formula_equals_measured_for_every_tiny_family_and_method(model):
    for spec in specs(model):
        check(model, spec, num_labels=10)
    assert {s.train.method for s in specs(model)} == set(METHODS)


@pytest.mark.parametrize("model", shipped_architectures())
def test_formula_equals_measured_for_every_real_architecture(model):
    for spec in specs(model):
        check(model, spec, num_labels=200)


def test_meta_counts_equal_counts_on_real_tensors():
    # The real architectures are counted on the meta device; the same class with real weights agrees.
    for model, spec in [("google/vit-base-patch16-224", Recipe.of("google/vit-base-patch16-224", "lora", r=8)),
                        ("microsoft/resnet-50", Recipe.of("microsoft/resnet-50", "lora", targets=["conv"])),
                        ("swinv2-tiny", Recipe.of("swinv2-tiny", "bitfit"))]:
        built = prepare(build_random(model, [str(i) for i in range(101)], seed=0), spec)
        result = account(architecture(model, num_labels=101), spec)
        assert count_parameters(built) == (result.trainable, result.total)


def test_known_figures_of_the_real_zoo():
    def counts(model, spec, classes):
        result = account(architecture(model, num_labels=classes), spec)
        return result.trainable, result.total

    # the users' recipe: BEiT-large-384, LoRA r=16 on query and value, 200 classes -> ~0.58% trainable
    trainable, total = counts("microsoft/beit-large-patch16-384", method("lora", r=16), 200)
    assert trainable == 24 * 2 * (1024 * 16 + 16 * 1024) + 1024 * 200 + 200 == 1_777_864
    assert round(100 * trainable / total, 2) == 0.58
    # well-known sizes with the 1000-class ImageNet head
    assert counts("google/vit-base-patch16-224", method("full"), 1000)[1] == 86_567_656
    assert counts("microsoft/resnet-50", method("full"), 1000)[1] == 25_557_032
    assert counts("microsoft/resnet-50", method("head"), 1000)[0] == 2048 * 1000 + 1000
    # ViT-base LoRA r=8 on q,k,v (a users' report), 101 classes
    assert counts("google/vit-base-patch16-224", method("lora", r=8, targets=["query", "key", "value"]),
                  101)[0] == 12 * 3 * 8 * (768 + 768) + 768 * 101 + 101


def test_last_layers_matches_the_published_count_and_trains_the_final_norm_only_on_request():
    # "ViT-base, last encoder block + classifier": 7,165,541 trainable is the count with a 101-class
    # head (Food-101); 100 classes give 7,164,772. The final LayerNorm (2·768) is an explicit option.
    for classes, published in ((101, 7_165_541), (100, 7_164_772)):
        config = architecture("google/vit-base-patch16-224", num_labels=classes)
        result = account(config, method("last_layers", last_layers=1))
        assert result.trainable == result.formula.trainable == published
        with_norm = account(config, method("last_layers", last_layers=1, final_norm=True))
        assert with_norm.trainable == with_norm.formula.trainable == published + 2 * 768


def test_formula_is_written_out_from_the_config():
    text = formula(architecture("microsoft/beit-large-patch16-384", num_labels=200), method("lora", r=16)).text
    assert text == "LoRA 24 × 2 × 16·(1024 + 1024) = 1,572,864; head(1024·200 + 200) = 205,000"
    resnet = formula(architecture("microsoft/resnet-50", num_labels=10), method("head"))
    assert resnet.text == "head(2048·10 + 10) = 20,490" and "stem[conv(3·64·7²)" in resnet.total_text


def test_params_count_prints_a_table_and_json(capsys):
    argv = ["--model", "microsoft/beit-large-patch16-384", "--method", "lora", "--r", "16",
            "--targets", "query,value", "--num-labels", "200"]
    assert run(params_count, argv) == 0
    out = capsys.readouterr().out
    assert "measured       1,777,864     305,751,752       0.581%" in out
    assert "trainable = LoRA 24 × 2 × 16·(1024 + 1024)" in out
    assert run(params_count, [*argv, "--json"]) == 0
    row = json.loads(capsys.readouterr().out)
    assert row["trainable"] == row["formula_trainable"] == 1_777_864 and row["total"] == 305_751_752


@pytest.mark.parametrize("argv, message", [
    (["--model", "microsoft/resnet-50", "--method", "lora", "--targets", "query"],
     "error: lora.targets: 'query' matches no Linear/Conv2d layer of ResNetForImageClassification"),
    (["--model", "vit-tiny", "--method", "prefix"], "error: --method: Input should be 'lora', 'full', 'head'"),
    (["--model", "acme/nope"], "error: model: no architecture config for 'acme/nope'"),
    (["--model", "vit-tiny", "--num-labels", "0"], "error: --num-labels: must be >= 1"),
])
def test_params_count_bad_input_is_one_line(argv, message, capsys):
    assert run(params_count, argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(message)


def test_params_count_help_runs_offline():
    result = subprocess.run([sys.executable, "-m", "workflow.tools.params_count", "--help"], cwd=REPO,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and "--num-labels" in result.stdout
