"""One loader for every model spec: a hub id (pretrained weights) or a shipped architecture config.

    configs/models/beit-tiny.json        -> the class from its model_type, random init (offline)
    beit-tiny                            -> the same file, by its short name
    microsoft/beit-large-patch16-384     -> AutoModelForImageClassification.from_pretrained
    bert-base-uncased                    -> AutoModelForSequenceClassification.from_pretrained (text)
    sentence-transformers/all-MiniLM-L6-v2
                                         -> the same, from an installed package holding that hub
                                            repository's files (PACKAGED_MODELS) when there is one

All end in the same transformers class with a fresh classifier for the competition's labels: an
image task takes an image-classification model, a text task a sequence-classification one (TASKS).

The real zoo's architectures also ship as configs, laid out by hub id
(configs/models/microsoft/beit-large-patch16-384.json). `load_model` never uses them for a hub id:
a hub id always means the pretrained weights. `architecture` and `build_random` do use them, to
count parameters and measure memory and speed of a real architecture without its weights.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch
from transformers import (
    AutoConfig,
    AutoModelForImageClassification,
    AutoModelForSequenceClassification,
    PretrainedConfig,
    PreTrainedModel,
)
from transformers.models.auto.modeling_auto import (
    MODEL_FOR_IMAGE_CLASSIFICATION_MAPPING_NAMES,
    MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES,
)

from workflow.core.errors import UserError
from workflow.models.names import (
    CONFIG_DIR,
    IMAGE_PROCESSOR_KEY,
    SHIPPED_DIR,
    TOKENIZER_KEY,
    packaged_dir,
    shipped_architectures,
    shipped_config_path,
)
from workflow.models.position_bias import speed_up_position_bias

HEAD_NAMES = ("classifier", "fc", "head")  # the classification head's attribute, by family


# task -> (the Auto class that builds its models, the model types it builds, what to call them)
TASKS = {
    "image": (AutoModelForImageClassification, MODEL_FOR_IMAGE_CLASSIFICATION_MAPPING_NAMES, "an image-classification"),
    "text": (AutoModelForSequenceClassification, MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES,
             "a text-classification (sequence-classification)"),
}
IMAGE_MODEL_TYPES = sorted(MODEL_FOR_IMAGE_CLASSIFICATION_MAPPING_NAMES)  # what AutoModelForImageClassification builds


def not_a_task_model(model_type: str, where: str, task: str = "image") -> UserError:
    _, types, what = TASKS[task]
    shown = ", ".join(sorted(types)[:30]) + (", ..." if len(types) > 30 else "")
    return UserError(f"{where}: model_type '{model_type}' is not {what} model, which this {task} task needs; "
                     f"use one of: {shown}")


def not_an_image_model(model_type: str, where: str) -> UserError:
    return not_a_task_model(model_type, where, "image")


def task_of(model_type: str) -> str:
    """The task a model type is built for: image before text (a type that does both is a vision model)."""
    return next((task for task, (_, types, _) in TASKS.items() if model_type in types), "image")


def _config_from_file(path: Path, task: str | None = None, **kwargs) -> PretrainedConfig:
    try:
        spec = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise UserError(f"{path}: not valid JSON ({err}); fix the file or set model.name to another config") from None
    if not isinstance(spec, dict):
        raise UserError(f"{path}: expected a JSON object of config keys (model_type, hidden_size, ...)")
    model_type = spec.pop("model_type", None)
    spec.pop(TOKENIZER_KEY, None)
    spec.pop(IMAGE_PROCESSOR_KEY, None)
    if "num_labels" in kwargs:  # a hub config.json names its own (e.g. ImageNet's 1000) labels
        for key in ("id2label", "label2id", "num_labels"):
            spec.pop(key, None)
    if model_type is None:
        raise UserError(f"{path}: needs a 'model_type' key (beit, vit, swin, bert, ...)")
    if model_type not in TASKS[task or task_of(model_type)][1]:
        raise not_a_task_model(model_type, str(path), task or "image")
    try:
        return AutoConfig.for_model(model_type, **{**spec, **kwargs})
    except (ValueError, TypeError) as err:
        raise UserError(f"{path}: {err}") from None


def auto_class(config: PretrainedConfig):
    """AutoModelForImageClassification or AutoModelForSequenceClassification, by the config's model type."""
    return TASKS[task_of(config.model_type)][0]


def architecture(name: str, **overrides) -> PretrainedConfig:
    """The transformers config of `name`: a hub id with a shipped config, a config path or a short name.

    Offline and without weights. `overrides` replace config values, e.g. num_labels=200 or
    image_size=448. Another architecture: save its hub config.json as configs/models/<hub id>.json.
    """
    path = shipped_config_path(name)
    if path is None and (SHIPPED_DIR / f"{name}.json").is_file():
        path = SHIPPED_DIR / f"{name}.json"  # a hub id whose architecture ships here
    if path is None:
        raise UserError(
            f"model: no architecture config for '{name}' in {CONFIG_DIR}/ (shipped: "
            f"{', '.join(shipped_architectures())}); for another hub model save its config.json "
            f"as {CONFIG_DIR}/{name}.json"
        )
    return _config_from_file(path, **overrides)


def _label_kwargs(classes: list[str]) -> dict:
    return {
        "num_labels": len(classes),
        "id2label": dict(enumerate(classes)),
        "label2id": {label: i for i, label in enumerate(classes)},
    }


def build_random(name: str, classes: list[str], seed: int, **overrides) -> PreTrainedModel:
    """The real class of `name` at random init, from its shipped config: no weights, no network.

    Build inside `with torch.device("meta"):` to count parameters without allocating them.
    """
    config = architecture(name, **_label_kwargs(classes), **overrides)
    torch.manual_seed(seed)
    return auto_class(config).from_config(config)


def load_model(name: str, classes: list[str], seed: int, trust_remote_code: bool = False,
               trust_key: str = "model.trust_remote_code", task: str = "image") -> PreTrainedModel:
    """Build `name` for `classes` and `task` (image or text); `seed` fixes every randomly initialised
    weight (the head at least).

    Code that ships with a hub model runs only with `trust_remote_code` (the params key `trust_key`).
    """
    model = _load(name, classes, seed, trust_remote_code, trust_key, task)
    speed_up_position_bias(model)  # BEiT: no host work per forward (workflow/models/position_bias.py)
    return model


def _load(name: str, classes: list[str], seed: int, trust_remote_code: bool, trust_key: str,
          task: str) -> PreTrainedModel:
    torch.manual_seed(seed)
    auto, _, _ = TASKS[task]
    config_path = shipped_config_path(name)
    if config_path is not None:
        return auto.from_config(_config_from_file(config_path, task, **_label_kwargs(classes)))
    source = packaged_dir(name) or name  # an installed copy of the hub repository: the same files, offline
    try:
        return auto.from_pretrained(
            source, ignore_mismatched_sizes=True, trust_remote_code=trust_remote_code, **_label_kwargs(classes)
        )
    except ValueError as err:
        if str(err).startswith("Unrecognized configuration class"):  # a hub model of another task
            model_type = AutoConfig.from_pretrained(source, trust_remote_code=trust_remote_code).model_type
            raise not_a_task_model(model_type, f"model.name: '{name}'", task) from None
        if "trust_remote_code" not in str(err):
            raise
        raise UserError(
            f"model.name: '{name}' ships its own Python code, which is not run by default; read it, "
            f"and if you trust it set {trust_key}: true"
        ) from None
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


def prefers_channels_last(model: PreTrainedModel) -> bool:
    """Convolutional networks run faster with NHWC activations (channels_last); transformers do not
    gain (one convolution, the patch embedding), so they keep the default layout."""
    return model.config.model_type in ("resnet", "convnext", "convnextv2", "regnet", "efficientnet", "mobilenet_v2")


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
