"""Fine-tuning methods: which weights train, what is saved, and how a saved run is restored.

    lora         LoRA adapters on lora targets (peft); the base frozen
    full         every weight
    head         the classifier only
    last_layers  the last N encoder blocks and everything after them (see below)
    bitfit       every bias (Linear, Conv, LayerNorm, BatchNorm `.bias`) of the backbone

The classification head is trained by every method (it is new: sized for the competition).

An "encoder block", by family: a ViT/BEiT layer; a Swin/Swinv2 block (counted from the end across
stages: N=3 on depths [.., 18, 2] is the last 2 blocks of stage 4 and the last block of stage 3);
a ResNet residual (bottleneck or basic) layer, counted the same way across stages. `last_layers`
trains the network's tail from the Nth-last block on: those blocks, anything between them (Swin's
patch merging at the end of a stage) and the head; with `train.final_norm` also the norm after the
last block (ViT/Swin final LayerNorm, BEiT's pooler LayerNorm). Off by default: the published
"last block + classifier" setting (ViT-base, 101 classes: 7,165,541 parameters) trains no norm.

Text (BERT, RoBERTa, DeBERTa-v2): a block is one `<model>.encoder.layer.N`. Their heads are new
(BERT/DeBERTa `classifier`, RoBERTa's `classifier.dense` + `classifier.out_proj`), but BERT and DeBERTa
put a pretrained pooler (a d -> d Linear) before it: head and lora leave it frozen, as the published
LoRA and BitFit setups do; full, bitfit (its bias) and last_layers train it, the last as part of the
tail whatever final_norm says. They have no final norm, so final_norm changes nothing for BERT and
RoBERTa; for DeBERTa it trains what its encoder registers after the last layer: the relative-position
embeddings and their LayerNorm (shared by every layer).

Saved (the minimum to reproduce predictions): lora -> peft's adapter folder (LoRA weights + head,
safetensors); other methods -> only the trainable tensors in one safetensors file. Both add the
model's persistent buffers when it has any (ResNet's BatchNorm running statistics: training updates
them even in frozen layers) and method.json, naming the method and its settings. Every function
here takes the run's recipe (workflow/recipe.py) and reads only its method part.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import torch
from peft import PeftModel
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from workflow.core import io
from workflow.core.errors import UserError
from workflow.models.lora import quiet_peft, wrap_lora
from workflow.models.zoo import head_names
from workflow.recipe import Recipe

METHOD_FILE = "method.json"
META_FILE = "model_meta.json"  # train: what infer needs to rebuild the base (model, classes, seed, checksum)
TENSORS_FILE = "trainable.safetensors"  # non-LoRA methods: the trained tensors, by parameter name
BUFFERS_FILE = "buffers.safetensors"  # running statistics, when the model has any

# The encoder blocks of each family, by module name, in forward order.
BLOCKS = {
    "vit": r"vit\.(layers|encoder\.layer)\.\d+",
    "beit": r"beit\.(layers|encoder\.layer)\.\d+",
    "swin": r"swin\.encoder\.layers\.\d+\.blocks\.\d+",
    "swinv2": r"swinv2\.encoder\.layers\.\d+\.blocks\.\d+",
    "resnet": r"resnet\.encoder\.stages\.\d+\.layers\.\d+",
    "bert": r"bert\.encoder\.layer\.\d+",
    "roberta": r"roberta\.encoder\.layer\.\d+",
    "deberta-v2": r"deberta\.encoder\.layer\.\d+",
}


def blocks(model: torch.nn.Module) -> list[str]:
    """Module names of the model's encoder blocks, in forward order."""
    model_type = getattr(model.config, "model_type", None)
    if model_type not in BLOCKS:
        raise UserError(f"last_layers: no encoder-block layout for model type '{model_type}'; "
                        f"supported: {', '.join(BLOCKS)}")
    return [name for name, _ in model.named_modules() if re.fullmatch(BLOCKS[model_type], name)]


def trainable_names(model: torch.nn.Module, recipe: Recipe) -> list[str]:
    """Parameter names a non-LoRA method trains (the head always among them)."""
    names = [name for name, _ in model.named_parameters()]
    heads = tuple(f"{h}." for h in head_names(model))
    method = recipe.train.method
    if method == "full":
        return names
    if method == "head":
        return [n for n in names if n.startswith(heads)]
    if method == "bitfit":
        return [n for n in names if n.endswith(".bias") or n.startswith(heads)]
    if method == "last_layers":
        return _last_layers(model, names, heads, recipe.train.last_layers, recipe.train.final_norm)
    raise UserError(f"train.method: '{method}' has no parameter selection (lora is built by peft)")


def _last_layers(model: torch.nn.Module, names: list[str], heads: tuple[str, ...], n: int,
                 final_norm: bool) -> list[str]:
    found = blocks(model)
    if n > len(found):
        raise UserError(f"train.last_layers: {n}, but {type(model).__name__} has {len(found)} encoder blocks")
    # Parameters register in forward order: the tail starts at the Nth-last block's first weight,
    # and what follows the last block's last weight, the head and a pooler's Linear aside, is the final norm.
    first = next(i for i, name in enumerate(names) if name.startswith(found[-n] + "."))
    after_last = 1 + max(i for i, name in enumerate(names) if name.startswith(found[-1] + "."))
    # after the last block, a Linear is a pretrained pooler's (BERT, DeBERTa): part of the tail, not a norm
    linear = {f"{m}.{p}" for m, module in model.named_modules() if isinstance(module, torch.nn.Linear)
              for p, _ in module.named_parameters(recurse=False)}
    return [name for i, name in enumerate(names[first:], first)
            if final_norm or i < after_last or name.startswith(heads) or name in linear]


def prepare(model: torch.nn.Module, recipe: Recipe) -> torch.nn.Module:
    """The model to train: a peft model for lora; the same model with requires_grad set otherwise."""
    if recipe.train.method == "lora":
        lora = recipe.lora
        return wrap_lora(model, lora.r, lora.alpha, lora.dropout, list(lora.targets))
    train = set(trainable_names(model, recipe))
    for name, param in model.named_parameters():
        param.requires_grad_(name in train)
    return model


def plain_model(model: torch.nn.Module) -> torch.nn.Module:
    """The transformers model under a peft wrapper (the model itself otherwise)."""
    return model.get_base_model() if isinstance(model, PeftModel) else model


def _buffers(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Persistent buffers (state_dict entries that are not parameters), e.g. BatchNorm statistics."""
    params = {name for name, _ in model.named_parameters(remove_duplicate=False)}
    return {k: v for k, v in model.state_dict().items() if k not in params}


def _cpu(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().contiguous() for k, v in tensors.items()}


def save(model: torch.nn.Module, recipe: Recipe, folder: Path | str) -> None:
    """Write the minimum that reproduces `model`'s predictions on top of its rebuilt base."""
    try:
        _save(model, recipe, Path(folder))
    except SafetensorError as err:  # safetensors reports a full disk as its own error: raise the OSError
        cause = io.wrapped_os_error(err, folder)
        if cause is None:
            raise
        raise cause from None


def _save(model: torch.nn.Module, recipe: Recipe, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    if recipe.train.method == "lora":
        model.save_pretrained(folder)  # adapter_model.safetensors: LoRA weights + the head
        (folder / "README.md").unlink(missing_ok=True)  # peft's model-card stub: not needed to predict
        _sort_lists(folder / "adapter_config.json")
    else:
        trained = {n: p for n, p in model.named_parameters() if p.requires_grad}
        save_file(_cpu(trained), folder / TENSORS_FILE)
    buffers = _buffers(plain_model(model))
    if buffers:
        save_file(_cpu(buffers), folder / BUFFERS_FILE)
    (folder / METHOD_FILE).write_text(json.dumps(recipe.method_settings(), indent=2, sort_keys=True) + "\n")


def _sort_lists(config_file: Path) -> None:
    """peft writes target_modules from a set, in an order that changes with the process's hash
    seed; sorted, two identical runs write identical bytes."""
    config = json.loads(config_file.read_text())
    config = {k: sorted(v) if isinstance(v, list) and all(isinstance(x, str) for x in v) else v
              for k, v in config.items()}
    config_file.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")


def saved_method(folder: Path | str) -> dict:
    """The method settings a folder was saved with (Recipe.method_settings)."""
    path = Path(folder) / METHOD_FILE
    if not path.is_file():
        raise UserError(f"{folder}: no {METHOD_FILE}; it was not written by workflow.models.methods.save")
    return json.loads(path.read_text())


def _shown(settings: dict) -> str:
    """'head', or 'lora' with its options."""
    options = {k: v for k, v in settings.items() if k != "method"}
    return f"'{settings['method']}'" + (f" {options}" if options else "")


def _load_into(model: torch.nn.Module, tensors: dict[str, torch.Tensor], source: Path) -> None:
    unexpected = model.load_state_dict(tensors, strict=False).unexpected_keys
    if unexpected:
        raise UserError(f"{source}: {len(unexpected)} tensors match no weight of {type(model).__name__} "
                        f"(e.g. {unexpected[0]}); it was saved from another architecture")


def restore(base: torch.nn.Module, recipe: Recipe, folder: Path | str) -> torch.nn.Module:
    """`base` (rebuilt as for training) with the saved weights: a plain model ready for inference."""
    folder = Path(folder)
    if saved_method(folder) != recipe.method_settings():
        raise UserError(f"{folder}: saved with {_shown(saved_method(folder))}, not {_shown(recipe.method_settings())}; "
                        f"re-run the stage that trained it")
    if recipe.train.method == "lora":
        with quiet_peft():
            model = PeftModel.from_pretrained(base, folder).merge_and_unload()  # plain-speed inference
    else:
        model = base
        _load_into(model, load_file(folder / TENSORS_FILE), folder / TENSORS_FILE)
    if (folder / BUFFERS_FILE).is_file():
        _load_into(model, load_file(folder / BUFFERS_FILE), folder / BUFFERS_FILE)
    return model


def artefact_bytes(folder: Path | str) -> int:
    """Size on disk of everything `save` wrote."""
    return sum(p.stat().st_size for p in Path(folder).rglob("*") if p.is_file())
