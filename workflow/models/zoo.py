"""One loader for every model spec: a hub id (pretrained weights) or a shipped architecture config.

    configs/models/beit-tiny.json        -> the class from its model_type, random init (offline)
    microsoft/beit-large-patch16-384     -> AutoModelForImageClassification.from_pretrained

Both end in the same transformers class with a fresh classifier for the competition's labels.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch
from transformers import AutoConfig, AutoModelForImageClassification, PreTrainedModel

from workflow.errors import UserError

CONFIG_DIR = Path("configs/models")
HEAD_NAMES = ("classifier", "fc", "head")  # the classification head's attribute, by family


def shipped_config_path(name: str) -> Path | None:
    """The architecture config file `name` refers to, or None when it is a hub id."""
    for candidate in (Path(name), CONFIG_DIR / name, CONFIG_DIR / f"{name}.json"):
        if candidate.suffix == ".json" and candidate.is_file():
            return candidate
    if name.endswith(".json"):
        raise UserError(f"model.name: config file '{name}' not found; the shipped ones are in {CONFIG_DIR}/")
    return None


def _label_kwargs(classes: list[str]) -> dict:
    return {
        "num_labels": len(classes),
        "id2label": dict(enumerate(classes)),
        "label2id": {label: i for i, label in enumerate(classes)},
    }


def load_model(name: str, classes: list[str], seed: int) -> PreTrainedModel:
    """Build `name` for `classes`; `seed` fixes every randomly initialised weight (the head at least)."""
    torch.manual_seed(seed)
    config_path = shipped_config_path(name)
    if config_path is not None:
        spec = json.loads(config_path.read_text())
        model_type = spec.pop("model_type", None)
        if model_type is None:
            raise UserError(f"{config_path}: needs a 'model_type' key (beit, vit, swin, ...)")
        try:
            config = AutoConfig.for_model(model_type, **spec, **_label_kwargs(classes))
        except ValueError as err:
            raise UserError(f"{config_path}: {err}") from None
        return AutoModelForImageClassification.from_config(config)
    try:
        return AutoModelForImageClassification.from_pretrained(
            name, ignore_mismatched_sizes=True, **_label_kwargs(classes)
        )
    except OSError as err:
        reason = str(err).strip().splitlines()[0]
        raise UserError(
            f"model.name: '{name}' is not a shipped config in {CONFIG_DIR}/ and could not be loaded "
            f"from the Hugging Face hub ({reason}); check the id and the network, or use a shipped "
            f"config such as {CONFIG_DIR}/beit-tiny.json"
        ) from None


def head_names(model: torch.nn.Module) -> list[str]:
    """Top-level module names of the classification head (trained and saved with any method)."""
    children = dict(model.named_children())
    found = [name for name in HEAD_NAMES if name in children]
    if not found:
        raise UserError(f"{type(model).__name__}: no classification head among {HEAD_NAMES}")
    return found


def input_size(model: PreTrainedModel) -> int:
    size = getattr(model.config, "image_size", None)
    if isinstance(size, (list, tuple)):
        size = size[0]
    return int(size) if size else 224  # ResNet configs carry no image size; 224 is its pretraining size


def backbone_checksum(model: torch.nn.Module) -> str:
    """sha256 of every non-head weight: infer checks it rebuilt the very backbone train used."""
    heads = tuple(f"{name}." for name in head_names(model))
    digest = hashlib.sha256()
    for key, tensor in sorted(model.state_dict().items()):
        if key.startswith(heads):
            continue
        digest.update(key.encode())
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()
