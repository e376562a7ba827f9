"""A model's own image normalisation, for augment.normalize: auto.

Pretrained families normalise differently (ViT and BEiT with mean 0.5 and std 0.5, Swin and ResNet
with ImageNet's statistics); feeding one the other's inputs costs accuracy for nothing. A hub id
(or a local model folder) gives its image processor's image_mean and image_std (AutoImageProcessor,
the files that came with the weights); a shipped random-init config gives its "image_processor" key.
"""
from __future__ import annotations

import json

from workflow.core.errors import UserError
from workflow.models.names import IMAGE_PROCESSOR_KEY, shipped_config_path

SET_IT = "or set augment.normalize: {mean: [...], std: [...]} for every model"


def own_normalization(name: str, trust_remote_code: bool = False) -> dict:
    """{'mean': [...], 'std': [...], 'source': where they came from} for model `name`."""
    config_path = shipped_config_path(name)
    if config_path is not None:
        stats = json.loads(config_path.read_text()).get(IMAGE_PROCESSOR_KEY) or {}
        if not {"image_mean", "image_std"} <= set(stats):
            raise UserError(f"{config_path}: augment.normalize is auto, but the config has no \"{IMAGE_PROCESSOR_KEY}\" "
                            f"with image_mean and image_std; add them {SET_IT}")
        return {"mean": list(stats["image_mean"]), "std": list(stats["image_std"]),
                "source": f"{config_path.name} {IMAGE_PROCESSOR_KEY}"}
    from transformers import AutoImageProcessor  # ~1 s: only for a hub model

    try:
        processor = AutoImageProcessor.from_pretrained(name, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as err:
        reason = str(err).strip().splitlines()[0]
        raise UserError(f"augment.normalize: auto, but no image processor config for '{name}' ({reason}); check the "
                        f"id and the network, {SET_IT}") from None
    return {"mean": [float(v) for v in processor.image_mean], "std": [float(v) for v in processor.image_std],
            "source": f"{name}'s image processor"}
