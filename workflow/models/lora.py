"""LoRA with peft: semantic target names resolved to the model's own modules, the head trained too."""
from __future__ import annotations

import warnings
from contextlib import contextmanager

import torch
from peft import LoraConfig, PeftModel, get_peft_model

from workflow.core.errors import UserError
from workflow.models.zoo import head_names

# transformers 5.x names attention projections q_proj/k_proj/v_proj/o_proj (ViT, BEiT, Swin);
# Swinv2, BERT, RoBERTa and older releases use query/key/value and attention.output.dense; DeBERTa
# query_proj/key_proj/value_proj. Resolve from the model
# itself: the first alternative that names a layer of the model wins. A tuple is one alternative
# made of several names, all used.
SEMANTIC_TARGETS = {
    "query": ("q_proj", "query", "q", "query_proj"),  # query_proj: DeBERTa-v2/v3
    "key": ("k_proj", "key", "k", "key_proj"),
    "value": ("v_proj", "value", "v", "value_proj"),
    "output": ("o_proj", "out_proj", "attention.output.dense"),
    "mlp_in": ("fc1", "intermediate.dense"),
    "mlp_out": ("fc2", "output.dense"),
    # ResNet has no attention: LoRA on the Conv2d layers of each residual block's main path (its 1x1
    # and 3x3 `convolution`s). The stem (7x7 on RGB) and the shortcut projections stay frozen, the
    # usual choice: they are few, and the stem sees raw pixels.
    "conv": (("layer.0.convolution", "layer.1.convolution", "layer.2.convolution"),),
}
# Names an alternative must not take: Swinv2's MLP output 'output.dense' is also the suffix of
# its attention output 'attention.output.dense'.
NOT_TARGETS = {"mlp_out": ("attention.output.dense",)}
ADAPTABLE = (torch.nn.Linear, torch.nn.Conv2d)


def _matches(name: str, suffix: str) -> bool:
    """peft's rule for a target name in a list: the full module name or a dotted suffix of it."""
    return name == suffix or name.endswith("." + suffix)


def _resolve_one(target: str, layer_names: list[str], model_name: str) -> list[str]:
    for alternative in SEMANTIC_TARGETS.get(target, (target,)):
        suffixes = (alternative,) if isinstance(alternative, str) else alternative
        excluded = NOT_TARGETS.get(target, ())
        chosen = [n for n in layer_names
                  if any(_matches(n, s) for s in suffixes) and not any(_matches(n, e) for e in excluded)]
        if not chosen:
            continue
        used = [s for s in suffixes if any(_matches(n, s) for n in chosen)]
        peft_would_take = [n for n in layer_names if any(_matches(n, s) for s in used)]
        # The short names when peft's suffix matching picks exactly these layers, else the full names.
        return used if peft_would_take == chosen else chosen
    leaves = sorted({name.rsplit(".", 1)[-1] for name in layer_names})
    raise UserError(
        f"lora.targets: '{target}' matches no Linear/Conv2d layer of {model_name}; "
        f"use one of {sorted(SEMANTIC_TARGETS)} or a layer name such as {', '.join(leaves[:12])}"
    )


def resolve_targets(model: torch.nn.Module, targets: list[str]) -> list[str]:
    """Map names like 'query' to the names peft matches (e.g. 'q_proj'); unknown names fail."""
    heads = tuple(head_names(model))
    layer_names = [
        name for name, module in model.named_modules()
        if isinstance(module, ADAPTABLE) and not name.startswith(heads)
    ]
    resolved: list[str] = []
    for target in targets:
        names = _resolve_one(target, layer_names, type(model).__name__)
        resolved += [n for n in names if n not in resolved]
    return resolved


def wrap_lora(model: torch.nn.Module, r: int, alpha: float, dropout: float, targets: list[str]) -> PeftModel:
    config = LoraConfig(
        r=r, lora_alpha=alpha, lora_dropout=dropout, bias="none",
        target_modules=resolve_targets(model, targets),
        modules_to_save=head_names(model),  # the new head is trained and saved with the adapter
    )
    with quiet_peft():
        return get_peft_model(model, config)


@contextmanager
def quiet_peft():
    """peft 0.21 reads transformers 5's deprecated is_gradient_checkpointing: a warning nobody can act on."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        yield


def count_parameters(model: torch.nn.Module) -> tuple[int, int]:
    """(trainable, total) over unique weights; peft's frozen copy of a saved head is not counted twice."""
    trainable = total = 0
    for name, param in model.named_parameters():
        if ".original_module." in name:
            continue
        total += param.numel()
        trainable += param.numel() if param.requires_grad else 0
    return trainable, total
