"""The architectures of the model zoo written out as units, from their configs alone (no weights).

Each family (ViT, BEiT, Swin/Swinv2, ResNet; BERT, RoBERTa, DeBERTa-v2) becomes a list of units in
forward order: embeddings, each encoder block, what sits between blocks, the final norm, a pretrained
pooler, the head. Each unit is a sum of named terms (a Linear i->o with bias is i·o + o, a LayerNorm of
width d is 2·d, ...), and lists the layers LoRA can adapt. workflow/models/accounting.py selects units per method.
"""
from __future__ import annotations

from dataclasses import dataclass

from transformers import PretrainedConfig

from workflow.core.errors import UserError


@dataclass(frozen=True)
class Term:
    label: str
    expr: str  # how the config's numbers give `value`, e.g. "768·3072 + 3072"
    value: int
    bias: int = 0  # how much of `value` is bias terms (BitFit trains those)
    bias_expr: str = ""  # how the config gives `bias`, when it is not just the number

    @property
    def bias_shown(self) -> str:
        return self.bias_expr or str(self.bias)


@dataclass(frozen=True)
class Unit:
    kind: str  # embeddings | block | between | tail (a final norm) | pooler (pretrained, before the head) | head
    label: str
    terms: tuple[Term, ...]
    adaptable: tuple[tuple[str, int, int, int], ...] = ()  # LoRA-able layers: (name, in, out, kernel)

    @property
    def params(self) -> int:
        return sum(t.value for t in self.terms)

    @property
    def biases(self) -> int:
        return sum(t.bias for t in self.terms)

    @property
    def expr(self) -> str:
        return " + ".join(f"{t.label}({t.expr})" for t in self.terms)


def _pair(value) -> tuple[int, int]:
    return tuple(value) if isinstance(value, (list, tuple)) else (value, value)


# -- terms ------------------------------------------------------------------------------------

def linear(label: str, i: int, o: int, bias: bool = True) -> Term:
    return Term(label, f"{i}·{o}" + (f" + {o}" if bias else ""), i * o + (o if bias else 0), o if bias else 0)


def conv(label: str, i: int, o: int, k: tuple[int, int], bias: bool) -> Term:
    kernel = "" if k == (1, 1) else f"·{k[0]}²" if k[0] == k[1] else f"·{k[0]}·{k[1]}"
    return Term(label, f"{i}·{o}{kernel}" + (f" + {o}" if bias else ""),
                i * o * k[0] * k[1] + (o if bias else 0), o if bias else 0)


def norm(label: str, d: int, count: int = 1) -> Term:
    """LayerNorm or BatchNorm: a weight and a bias per channel."""
    return Term(label, f"{count}·2·{d}" if count > 1 else f"2·{d}", count * 2 * d, count * d,
                f"{count}·{d}" if count > 1 else "")


def vector(label: str, expr: str, value: int) -> Term:
    return Term(label, expr, value)


def head_unit(d: int, classes: int) -> Unit:
    return Unit("head", "head", (linear("classifier", d, classes),))


# -- families: the architecture as units, read from the config --------------------------------

def vit_units(c: PretrainedConfig) -> list[Unit]:
    d, i = c.hidden_size, c.intermediate_size
    (h, w), (ph, pw) = _pair(c.image_size), _pair(c.patch_size)
    n = (h // ph) * (w // pw)
    embeddings = Unit("embeddings", "embeddings", (
        vector("cls", f"{d}", d),
        vector("position", f"({n} + 1)·{d}", (n + 1) * d),
        conv("patch", c.num_channels, d, (ph, pw), bias=True),
    ))
    layer = Unit("block", "layer", (
        *(linear(p, d, d, c.qkv_bias) for p in ("q", "k", "v")),
        linear("o", d, d),
        norm("2 norms", d, 2),
        linear("fc1", d, i), linear("fc2", i, d),
    ), adaptable=(("query", d, d, 1), ("key", d, d, 1), ("value", d, d, 1), ("output", d, d, 1),
                  ("mlp_in", d, i, 1), ("mlp_out", i, d, 1)))
    final = Unit("tail", "final norm", (norm("layernorm", d),))
    return [embeddings, *[layer] * c.num_hidden_layers, final, head_unit(d, c.num_labels)]


def beit_units(c: PretrainedConfig) -> list[Unit]:
    d, i, heads = c.hidden_size, c.intermediate_size, c.num_attention_heads
    (h, w), (ph, pw) = _pair(c.image_size), _pair(c.patch_size)
    gh, gw = h // ph, w // pw
    # one row per relative offset in the (gh x gw) window, plus cls->token, token->cls, cls->cls
    table = vector("relative position table", f"((2·{gh} - 1)·(2·{gw} - 1) + 3)·{heads}",
                   ((2 * gh - 1) * (2 * gw - 1) + 3) * heads)
    embeddings = [vector("cls", f"{d}", d), conv("patch", c.num_channels, d, (ph, pw), bias=True)]
    if c.use_mask_token:
        embeddings.append(vector("mask token", f"{d}", d))
    if c.use_absolute_position_embeddings:
        embeddings.append(vector("position", f"({gh * gw} + 1)·{d}", (gh * gw + 1) * d))
    units = [Unit("embeddings", "embeddings", tuple(embeddings))]
    if c.use_shared_relative_position_bias:
        units.append(Unit("embeddings", "shared position bias", (table,)))
    layer = [
        linear("q", d, d), linear("k", d, d, bias=False), linear("v", d, d), linear("o", d, d),
        norm("2 norms", d, 2), linear("fc1", d, i), linear("fc2", i, d),
    ]
    if c.layer_scale_init_value > 0:
        layer.append(vector("layer scale λ1, λ2", f"2·{d}", 2 * d))
    if c.use_relative_position_bias:
        layer.append(table)
    units += [Unit("block", "layer", tuple(layer),
                   adaptable=(("query", d, d, 1), ("key", d, d, 1), ("value", d, d, 1), ("output", d, d, 1),
                              ("mlp_in", d, i, 1), ("mlp_out", i, d, 1)))] * c.num_hidden_layers
    # mean pooling: no final norm on the tokens, a LayerNorm on their mean (BeitPooler) instead
    units.append(Unit("tail", "pooler norm" if c.use_mean_pooling else "final norm", (norm("layernorm", d),)))
    return units + [head_unit(d, c.num_labels)]


def swin_units(c: PretrainedConfig) -> list[Unit]:
    """Swin and Swinv2: the same skeleton; the attention and the patch-merging norm differ."""
    v2 = c.model_type == "swinv2"
    e = c.embed_dim
    (h, w), (ph, pw) = _pair(c.image_size), _pair(c.patch_size)
    n = (h // ph) * (w // pw)
    embeddings = [conv("patch", c.num_channels, e, (ph, pw), bias=True), norm("norm", e)]
    if c.use_absolute_embeddings:  # Swinv2 keeps one extra row
        embeddings.append(vector("position", f"({n} + 1)·{e}" if v2 else f"{n}·{e}", (n + int(v2)) * e))
    units = [Unit("embeddings", "embeddings", tuple(embeddings))]
    ws = c.window_size
    for stage, (depth, heads) in enumerate(zip(c.depths, c.num_heads)):
        dim = e * 2 ** stage
        hidden = int(c.mlp_ratio * dim)
        if v2:  # log-spaced continuous position bias: an MLP 2 -> 512 -> heads, and a logit scale
            attention = [vector("logit scale", f"{heads}", heads),
                         linear("cpb fc1", 2, 512), linear("cpb fc2", 512, heads, bias=False),
                         linear("q", dim, dim, c.qkv_bias), linear("k", dim, dim, bias=False),
                         linear("v", dim, dim, c.qkv_bias), linear("o", dim, dim)]
        else:
            attention = [*(linear(p, dim, dim, c.qkv_bias) for p in ("q", "k", "v")), linear("o", dim, dim),
                         vector("relative position table", f"(2·{ws} - 1)²·{heads}", (2 * ws - 1) ** 2 * heads)]
        block = Unit("block", f"stage {stage + 1} block", (
            *attention, norm("2 norms", dim, 2), linear("fc1", dim, hidden), linear("fc2", hidden, dim),
        ), adaptable=(("query", dim, dim, 1), ("key", dim, dim, 1), ("value", dim, dim, 1),
                      ("output", dim, dim, 1), ("mlp_in", dim, hidden, 1), ("mlp_out", hidden, dim, 1)))
        units += [block] * depth
        if stage < len(c.depths) - 1:  # patch merging: 2x2 neighbours concatenated (4·dim) -> 2·dim
            units.append(Unit("between", f"patch merging {stage + 1}", (
                linear("reduction", 4 * dim, 2 * dim, bias=False),
                norm("norm", 2 * dim if v2 else 4 * dim),  # Swinv2 normalises after the reduction
            )))
    last = e * 2 ** (len(c.depths) - 1)
    return units + [Unit("tail", "final norm", (norm("layernorm", last),)), head_unit(last, c.num_labels)]


def resnet_units(c: PretrainedConfig) -> list[Unit]:
    """Convolutions have no bias (a BatchNorm follows each); `conv` LoRA adapts the main path."""
    stem = c.embedding_size
    units = [Unit("embeddings", "stem", (conv("conv", c.num_channels, stem, (7, 7), bias=False),
                                         norm("batchnorm", stem)))]
    ins = [stem, *c.hidden_sizes[:-1]]
    for stage, (cin, out, depth) in enumerate(zip(ins, c.hidden_sizes, c.depths)):
        stride = 2 if stage > 0 or c.downsample_in_first_stage else 1
        for j in range(depth):
            i = cin if j == 0 else out
            terms = []
            if i != out or (j == 0 and stride != 1):  # a projection shortcut
                terms += [conv("shortcut", i, out, (1, 1), bias=False), norm("bn", out)]
            if c.layer_type == "bottleneck":
                m = out // 4  # the bottleneck's reduced width
                shapes = ((i, m, 1), (m, m, 3), (m, out, 1))
            else:
                shapes = ((i, out, 3), (out, out, 3))
            for k, (a, b, size) in enumerate(shapes, 1):
                terms += [conv(f"conv{k}", a, b, (size, size), bias=False), norm("bn", b)]
            units.append(Unit("block", f"stage {stage + 1} {c.layer_type}", tuple(terms),
                              adaptable=tuple((f"layer.{k}.convolution", a, b, size)
                                              for k, (a, b, size) in enumerate(shapes))))
    return units + [head_unit(c.hidden_sizes[-1], c.num_labels)]


# -- text: BERT-family sequence classification -----------------------------------------------

def _text_layer(c: PretrainedConfig, heads_width: int, extra: tuple[Term, ...] = (),
                extra_adaptable: tuple[tuple[str, int, int, int], ...] = ()) -> Unit:
    """A post-norm transformer layer: q, k, v (d -> heads_width), attention output, 2 LayerNorms, the MLP."""
    d, i, a = c.hidden_size, c.intermediate_size, heads_width
    return Unit("block", "layer", (
        *(linear(p, d, a) for p in ("q", "k", "v")), *extra, linear("o", d, d),
        norm("2 norms", d, 2), linear("fc1", d, i), linear("fc2", i, d),
    ), adaptable=(("query", d, a, 1), ("key", d, a, 1), ("value", d, a, 1), *extra_adaptable,
                  ("output", d, d, 1), ("mlp_in", d, i, 1), ("mlp_out", i, d, 1)))


def bert_units(c: PretrainedConfig) -> list[Unit]:
    """BERT and RoBERTa. BERT's head is one Linear behind a pretrained pooler (a d -> d Linear on the
    first token); RoBERTa has no pooler, its head is new from end to end: dense d -> d, out_proj d -> C."""
    d, v, p, t = c.hidden_size, c.vocab_size, c.max_position_embeddings, c.type_vocab_size
    units = [Unit("embeddings", "embeddings", (
        vector("word", f"{v}·{d}", v * d), vector("position", f"{p}·{d}", p * d),
        vector("token type", f"{t}·{d}", t * d), norm("layernorm", d),
    ))]
    units += [_text_layer(c, d)] * c.num_hidden_layers
    if c.model_type == "roberta":
        return units + [Unit("head", "head", (linear("dense", d, d), linear("out_proj", d, c.num_labels)))]
    return units + [Unit("pooler", "pooler", (linear("dense", d, d),)), head_unit(d, c.num_labels)]


# DeBERTa-v2's own names for its attention projections, as lora.targets may name them
OWN_NAMES = {"query_proj": "query", "key_proj": "key", "value_proj": "value"}


def deberta_units(c: PretrainedConfig) -> list[Unit]:
    """DeBERTa-v2/v3: no absolute positions by default; relative-position embeddings shared by every
    layer, registered after the last one; a pretrained pooler (ContextPooler's dense) before the head."""
    d, v = c.hidden_size, c.vocab_size
    # read as the model reads them: these are not config fields, and a config without them takes these defaults
    e = getattr(c, "embedding_size", d)
    buckets, shared = getattr(c, "position_buckets", -1), getattr(c, "share_att_key", False)
    norm_rel = [x.strip() for x in getattr(c, "norm_rel_ebd", "none").lower().split("|")]
    a = c.num_attention_heads * getattr(c, "attention_head_size", d // c.num_attention_heads)
    embeddings = [vector("word", f"{v}·{e}", v * e)]
    if c.position_biased_input:
        embeddings.append(vector("position", f"{c.max_position_embeddings}·{e}", c.max_position_embeddings * e))
    if c.type_vocab_size > 0:
        embeddings.append(vector("token type", f"{c.type_vocab_size}·{e}", c.type_vocab_size * e))
    if e != d:
        embeddings.append(linear("projection", e, d, bias=False))
    units = [Unit("embeddings", "embeddings", (*embeddings, norm("layernorm", d)))]
    # without shared keys, content->position and position->content attention have their own projections
    own = [(name, kind) for name, kind in (("pos_key_proj", "c2p"), ("pos_query_proj", "p2c"))
           if c.relative_attention and not shared and kind in (c.pos_att_type or [])]
    units += [_text_layer(c, a, tuple(linear(name, d, a) for name, _ in own),
                          tuple((name, d, a, 1) for name, _ in own))] * c.num_hidden_layers
    after = []  # what the encoder registers after its last layer
    if c.relative_attention:
        rows = buckets if buckets > 0 else (
            c.max_relative_positions if c.max_relative_positions >= 1 else c.max_position_embeddings)
        after.append(vector("relative embeddings", f"2·{rows}·{d}", 2 * rows * d))
    if "layer_norm" in norm_rel:
        after.append(norm("relative layernorm", d))
    kernel = getattr(c, "conv_kernel_size", 0)
    if kernel > 0:  # a Conv1d beside the first layer, registered after the last one
        groups = getattr(c, "conv_groups", 1)
        after += [Term("conv", f"{d}·{d // groups}·{kernel} + {d}", d * (d // groups) * kernel + d, d),
                  norm("conv layernorm", d)]
    if after:
        units.append(Unit("tail", "relative positions", tuple(after)))
    hp = c.pooler_hidden_size
    return units + [Unit("pooler", "pooler", (linear("dense", hp, hp),)), head_unit(hp, c.num_labels)]


FAMILIES = {"vit": vit_units, "beit": beit_units, "swin": swin_units, "swinv2": swin_units, "resnet": resnet_units,
            "bert": bert_units, "roberta": bert_units, "deberta-v2": deberta_units}


def architecture_units(config: PretrainedConfig) -> list[Unit]:
    if config.model_type not in FAMILIES:
        raise UserError(f"accounting: no formula for model type '{config.model_type}'; "
                        f"supported: {', '.join(FAMILIES)}")
    return FAMILIES[config.model_type](config)
