"""Exact parameter accounting: trainable and total parameters, measured and by formula.

Measured: the real transformers class built from the config on the meta device (no memory, no
weights), prepared by workflow.models.methods, counted by count_parameters (unique weights).

Formula: the architecture written out from its config as units (workflow/models/architectures.py), and a
method as a selection over them:

    full         every unit                      total = Σ units
    head         the head                        d·C + C (RoBERTa's: d·d + d + d·C + C)
    bitfit       the bias terms of every unit, plus the whole head
    last_layers  the units from the Nth-last block on (blocks, patch merging, a pretrained pooler, head;
                 the final norm with train.final_norm)
    lora         Σ over blocks and targets of r·(in·k² + out), plus the head; total = base + that
                 (A is in·k²·r for a k×k conv or k=1 Linear, B is r·out; bias="none")

so that for ViT-base with LoRA r=8 on query,value and C classes: 12·2·8·(768 + 768) + 768·C + C.
BERT-base is the same with its 12 layers; its pooler (pretrained) is frozen by head and lora, as in
the published LoRA/BitFit setups, and trained by full, bitfit (its bias) and last_layers.
A test checks formula == measured, exactly, for every family × method.
"""
from __future__ import annotations

from dataclasses import dataclass
from itertools import groupby

import torch
from transformers import PretrainedConfig

from workflow.core.errors import UserError
from workflow.models.architectures import OWN_NAMES, Unit, architecture_units
from workflow.models.lora import SEMANTIC_TARGETS, count_parameters
from workflow.models.methods import prepare
from workflow.models.zoo import auto_class
from workflow.recipe import Recipe

# -- methods: a selection over the units --------------------------------------------------------

@dataclass(frozen=True)
class Formula:
    trainable: int
    total: int
    text: str  # the trainable count written out, e.g. "LoRA 12 × 2 × 8·(768 + 768) + head(768·101 + 101)"
    total_text: str  # the architecture written out, unit by unit


def _grouped(units: list[Unit], show=lambda u: u.expr) -> str:
    """Consecutive identical units once, with their count: '12 × layer[...]'."""
    parts = []
    for (label, shown), run in groupby(units, key=lambda u: (u.label, show(u))):
        count = len(list(run))
        parts.append(f"{count} × {label}[{shown}]" if count > 1 else f"{label}[{shown}]")
    return " + ".join(parts)


def _names(target: str) -> tuple[str, ...]:
    """The formula's names for a LoRA target, as resolve_targets reads it: 'q_proj' -> ('query',),
    'conv' -> ('layer.0.convolution', 'layer.1.convolution', 'layer.2.convolution'); a layer's own name
    otherwise ('query_proj' -> ('query',), 'pos_key_proj' -> itself)."""
    for semantic, alternatives in SEMANTIC_TARGETS.items():
        groups = [g for g in alternatives if not isinstance(g, str)]
        if target == semantic:
            return tuple(name for g in groups for name in g) or (semantic,)
        if target in alternatives:
            return (semantic,)
        if any(target in g for g in groups):
            return (target,)
    return (OWN_NAMES.get(target, target),)  # not a layer of the architecture: _lora says so


def _lora(units: list[Unit], recipe: Recipe) -> tuple[int, str]:
    available = {a[0] for u in units for a in u.adaptable}
    targets: list[str] = []
    for target in recipe.lora.targets:
        names = [n for n in _names(target) if n in available]
        if not names:
            raise UserError(f"lora.targets: '{target}' is not a layer of this architecture; "
                            f"it has {', '.join(sorted(available))}")
        targets += [n for n in names if n not in targets]  # deduplicated, as peft does
    r = recipe.lora.r

    def layers(unit: Unit) -> list[tuple[str, int, int, int]]:
        return [a for a in unit.adaptable if a[0] in targets]

    def one(i: int, o: int, k: int) -> str:
        return f"{r}·({i} + {o})" if k == 1 else f"{r}·({i}·{k}² + {o})"

    def shown(unit: Unit) -> str:  # identical adapters grouped: "2 × 16·(1024 + 1024)"
        shapes = [one(i, o, k) for _, i, o, k in layers(unit)]
        runs = [(s, len(list(g))) for s, g in groupby(shapes)]
        text = " + ".join(f"{n} × {s}" if n > 1 else s for s, n in runs)
        return text if len(runs) == 1 else f"({text})"

    blocks = [u for u in units if u.kind == "block"]
    value = sum(r * (i * k * k + o) for u in blocks for _, i, o, k in layers(u))
    text = " + ".join(f"{n} × {s}" if n > 1 else s
                      for s, n in ((s, len(list(g))) for s, g in groupby(shown(u) for u in blocks)))
    return value, f"LoRA {text} = {value:,}"


def formula(config: PretrainedConfig, recipe: Recipe) -> Formula:
    """Trainable and total parameters of `config` (its num_labels classes) under the recipe's method."""
    units = architecture_units(config)
    head = units[-1]
    base = sum(u.params for u in units)
    shown = head.terms[0].expr if len(head.terms) == 1 else head.expr  # RoBERTa's has two Linears
    head_text = f"head({shown}) = {head.params:,}"
    method, train = recipe.train.method, recipe.train
    if method == "lora":
        adapters, text = _lora(units, recipe)
        return Formula(adapters + head.params, base + adapters, f"{text}; {head_text}", _grouped(units))
    if method == "full":
        return Formula(base, base, f"all weights = {base:,}", _grouped(units))
    if method == "head":
        return Formula(head.params, base, head_text, _grouped(units))
    if method == "bitfit":
        body = units[:-1]
        biases = sum(u.biases for u in body)
        shown = _grouped(body, show=lambda u: " + ".join(t.bias_shown for t in u.terms if t.bias))
        return Formula(biases + head.params, base, f"biases {shown} = {biases:,}; {head_text}", _grouped(units))
    if method == "last_layers":
        starts = [k for k, u in enumerate(units) if u.kind == "block"]
        if train.last_layers > len(starts):
            raise UserError(f"train.last_layers: {train.last_layers}, but the architecture has {len(starts)} "
                            f"encoder blocks")
        tail = [u for u in units[starts[-train.last_layers]:] if u.kind != "tail" or train.final_norm]
        trainable = sum(u.params for u in tail)
        return Formula(trainable, base, f"last {train.last_layers}: {_grouped(tail)} = {trainable:,}",
                       _grouped(units))
    raise UserError(f"train.method: no formula for '{method}'")


# -- measured ----------------------------------------------------------------------------------

def measured(config: PretrainedConfig, recipe: Recipe) -> tuple[int, int]:
    """(trainable, total) of the real class built from `config` and prepared by the recipe, on meta."""
    with torch.device("meta"):  # shapes only: beit-large counts in a fraction of a second
        model = prepare(auto_class(config).from_config(config), recipe)  # image or sequence classification
    return count_parameters(model)


@dataclass(frozen=True)
class Accounting:
    trainable: int
    total: int
    formula: Formula

    @property
    def agrees(self) -> bool:
        return (self.trainable, self.total) == (self.formula.trainable, self.formula.total)

    @property
    def trainable_pct(self) -> float:
        return 100 * self.trainable / self.total


def account(config: PretrainedConfig, recipe: Recipe) -> Accounting:
    trainable, total = measured(config, recipe)
    return Accounting(trainable, total, formula(config, recipe))
