"""Albumentations pipelines declared in params `augment`, serialized once, loaded by train and infer.

The train pipeline is the declared transforms, a resize that pins the model's input size, and the
normalisation; the eval pipeline is the resize and the normalisation.
"""
from __future__ import annotations

import inspect
import json
from pathlib import Path

import albumentations as A
import numpy as np
from albumentations.augmentations.crops.transforms import CropSizeError

from workflow.core.errors import UserError


def _arguments(cls: type) -> list[str] | None:
    """The keyword arguments a transform class takes, or None when it takes any (**kwargs)."""
    parameters = inspect.signature(cls.__init__).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return None
    return [name for name in parameters if name != "self"]


def _build_transform(name: str, kwargs: dict, size: int, where: str) -> A.BasicTransform:
    cls = getattr(A, name, None)
    if not (inspect.isclass(cls) and issubclass(cls, A.BasicTransform)):
        raise UserError(f"{where}: '{name}' is not an albumentations transform; check the spelling (e.g. RandomResizedCrop)")
    arguments = _arguments(cls)
    # albumentations only warns about an unknown argument and drops it: a typo would train without it.
    unknown = sorted(set(kwargs) - set(arguments)) if arguments is not None else []
    if unknown:
        raise UserError(f"{where}: {name} has no argument '{unknown[0]}' (valid: {', '.join(arguments)}); "
                        "fix it in params.yaml")
    kwargs = dict(kwargs)
    if "size" in inspect.signature(cls.__init__).parameters and "size" not in kwargs:
        kwargs["size"] = (size, size)  # crops take the model's input size from augment.image_size
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as err:
        detail = " ".join(str(err).split())[:200]
        raise UserError(f"{where}: {name}({kwargs}) is invalid: {detail}") from None


def check_fits(pipeline: A.Compose, sizes: dict[str, tuple[int, int]], remedy: str) -> None:
    """Run every transform of `pipeline` once, in order, on a blank image of each size (named by
    what has that size).

    A crop larger than the images it will be given fails here, in one line naming its
    augment.train item, the images and `remedy`, instead of in the middle of a run. Runs on a
    copy: the pipeline's random state is left as it was.
    """
    for what, (height, width) in sizes.items():
        image = np.zeros((height, width, 3), dtype=np.uint8)
        for i, transform in enumerate(A.from_dict(A.to_dict(pipeline)).transforms):
            try:
                image = transform(image=image, force_apply=True)["image"]
            except (CropSizeError, ValueError) as err:
                detail = " ".join(str(err).split())[:200]
                raise UserError(f"augment.train[{i}]: {type(transform).__name__} cannot run on {what}, "
                                f"{height}x{width} pixels ({detail}); {remedy}") from None


def build_pipelines(params, normalize: dict) -> dict[str, A.Compose]:
    """{'train': Compose, 'eval': Compose} from an AugmentParams section and the resolved
    normalisation ({'mean', 'std'}: augment.normalize's values, or the model's own for auto)."""
    size = params.image_size
    declared = [
        _build_transform(name, kwargs, size, f"augment.train[{i}]")
        for i, item in enumerate(params.train) for name, kwargs in item.items()
    ]
    resize = A.Resize(height=size, width=size)
    normalization = A.Normalize(mean=normalize["mean"], std=normalize["std"], max_pixel_value=255.0)
    return {"train": A.Compose([*declared, resize, normalization]), "eval": A.Compose([resize, normalization])}


def save_pipelines(pipelines: dict[str, A.Compose], image_size: int, normalize: dict) -> str:
    """The pipelines and how their Normalize was chosen ({'mean', 'std', 'source', 'auto'})."""
    return json.dumps(
        {"image_size": image_size, "normalize": normalize, **{name: A.to_dict(p) for name, p in pipelines.items()}},
        indent=2, sort_keys=True,
    ) + "\n"


def is_auto_normalize(path: Path | str) -> bool:
    """Whether the pipelines take each model's own normalisation (augment.normalize: auto)."""
    return bool(json.loads(Path(path).read_text()).get("normalize", {}).get("auto"))


def load_pipeline(path: Path | str, which: str, seed: int | None = None,
                  size: int | None = None, normalize: dict | None = None) -> tuple[A.Compose, int]:
    """The serialized `which` ('train' or 'eval') pipeline and its image size.

    `size` re-targets every crop and resize to another input size (screening models of several
    sizes with one declared pipeline); `normalize` ({'mean', 'std'}) replaces the Normalize's
    values (a model's own, under augment.normalize: auto).
    """
    spec = json.loads(Path(path).read_text())
    transforms = spec[which]["transform"]["transforms"]
    for transform in transforms:
        if size is not None and "size" in transform:
            transform["size"] = [size, size]
        if size is not None and "height" in transform and "width" in transform:
            transform["height"] = transform["width"] = size
        if normalize is not None and transform.get("__class_fullname__") == "Normalize":
            transform["mean"], transform["std"] = list(normalize["mean"]), list(normalize["std"])
    pipeline = A.from_dict(spec[which])
    if seed is not None:
        pipeline.set_random_seed(seed)
    return pipeline, int(size or spec["image_size"])


def without_normalize(pipeline: A.Compose) -> A.Compose:
    """The same pipeline minus Normalize, to show what the model sees in pixels."""
    return A.Compose([t for t in pipeline.transforms if not isinstance(t, A.Normalize)])

