"""LoRA with peft: semantic target names resolved to the model's own modules, the head trained too."""
from __future__ import annotations

import torch
from peft import LoraConfig, PeftModel, get_peft_model

from workflow.errors import UserError
from workflow.models.zoo import head_names

# transformers 5.x names attention projections q_proj/k_proj/v_proj/o_proj; older releases and
# some families use query/key/value and attention.output.dense. Resolve from the model itself.
SEMANTIC_TARGETS = {
    "query": ("q_proj", "query", "q"),
    "key": ("k_proj", "key", "k"),
    "value": ("v_proj", "value", "v"),
    "output": ("o_proj", "out_proj", "attention.output.dense"),
    "mlp_in": ("fc1", "intermediate.dense"),
    "mlp_out": ("fc2", "output.dense"),
}
ADAPTABLE = (torch.nn.Linear, torch.nn.Conv2d)


def resolve_targets(model: torch.nn.Module, targets: list[str]) -> list[str]:
    """Map names like 'query' to the suffixes peft matches (e.g. 'q_proj'); unknown names fail."""
    heads = tuple(head_names(model))
    layer_names = [
        name for name, module in model.named_modules()
        if isinstance(module, ADAPTABLE) and not name.startswith(heads)
    ]
    resolved = []
    for target in targets:
        for candidate in SEMANTIC_TARGETS.get(target, (target,)):
            if any(name == candidate or name.endswith("." + candidate) for name in layer_names):
                resolved.append(candidate)
                break
        else:
            leaves = sorted({name.rsplit(".", 1)[-1] for name in layer_names})
            raise UserError(
                f"lora.targets: '{target}' matches no Linear/Conv2d layer of {type(model).__name__}; "
                f"use one of {sorted(SEMANTIC_TARGETS)} or a layer name such as {', '.join(leaves[:12])}"
            )
    return resolved


def wrap_lora(model: torch.nn.Module, r: int, alpha: float, dropout: float, targets: list[str]) -> PeftModel:
    config = LoraConfig(
        r=r, lora_alpha=alpha, lora_dropout=dropout, bias="none",
        target_modules=resolve_targets(model, targets),
        modules_to_save=head_names(model),  # the new head is trained and saved with the adapter
    )
    return get_peft_model(model, config)


def count_parameters(model: torch.nn.Module) -> tuple[int, int]:
    """(trainable, total) over unique weights; peft's frozen copy of a saved head is not counted twice."""
    trainable = total = 0
    for name, param in model.named_parameters():
        if ".original_module." in name:
            continue
        total += param.numel()
        trainable += param.numel() if param.requires_grad else 0
    return trainable, total
