"""Load and validate params.yaml; each stage asks only for its own sections.

The whole file is validated on every load (it is cheap), so a typo anywhere stops the first stage
that runs, with one line naming the key. Unknown keys are errors, as in nanoGPT's configurator.

    python -m workflow.config            # validate params.yaml and print it resolved
"""
from __future__ import annotations

import argparse
import json
import textwrap
from pathlib import Path
from types import UnionType
from typing import Any, Literal, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator

from workflow.core.cli import stage_parser
from workflow.core.errors import UserError
from workflow.recipe import AblationParams, LoraParams, ModelParams, ScreenParams, Section, TrainParams, did_you_mean

PARAMS_FILE = Path("params.yaml")


class DataParams(Section):
    source: Literal["builtin", "local", "kaggle"] = "builtin"
    path: str = ""  # zip or folder, for source=local
    competition: str = ""  # Kaggle slug, for source=kaggle
    # The built-in competition: digits (images), reviews (text: fresh or rotten), review_pairs
    # (sentence pairs: do two reviews share a label).
    builtin: Literal["digits", "reviews", "review_pairs"] = "digits"
    builtin_rows: int = Field(0, ge=0)  # text builtins: how many labelled rows to write (0 = all)
    builtin_test_fraction: float = Field(0.2, gt=0, lt=1)  # share held out as the unlabelled test set
    # image | text, or auto: text when the competition has train.csv and test.csv and no test image folder.
    task: Literal["auto", "image", "text"] = "auto"
    text_columns: list[str] = Field(default_factory=list, max_length=2)  # text: 1 column, or 2 for pairs; [] = detect
    label_column: str = ""  # text: train.csv's label column; '' = sample_submission's, else the one test.csv lacks
    # Unreadable training images, or training rows with an empty text, skipped before the run fails.
    max_bad_fraction: float = Field(0.01, ge=0, le=1)

    @model_validator(mode="after")
    def _source_needs_its_key(self) -> "DataParams":
        if self.source == "local" and not self.path:
            raise ValueError("data.path: source 'local' needs the path of a zip or folder")
        if self.source == "kaggle" and not self.competition:
            raise ValueError("data.competition: source 'kaggle' needs a competition slug")
        return self


class SplitParams(Section):
    val_fraction: float = Field(0.05, gt=0, lt=1)
    seed: int = 42
    # k-fold cross-validation: one entry per fold, [0, 1, 2] for 3 folds (a list, because dvc.yaml
    # makes one cached job per entry). [0], the default, is no cross-validation: train's holdout split.
    folds: list[int] = Field([0], min_length=1)

    @field_validator("folds", mode="before")
    @classmethod
    def _folds_listed(cls, folds: Any) -> Any:
        if isinstance(folds, int) and not isinstance(folds, bool) and folds >= 1:
            raise ValueError(f"list the folds, one entry each: {list(range(folds))} for {folds} folds (DVC makes "
                             f"one job per entry)")
        return folds

    @field_validator("folds")
    @classmethod
    def _folds_count_from_zero(cls, folds: list[int]) -> list[int]:
        if folds != list(range(len(folds))):
            raise ValueError(f"expected 0, 1, ..., k-1, one entry per fold ([0, 1, 2] for 3 folds), got {folds}")
        return folds

    @property
    def k(self) -> int:
        return len(self.folds)


class NormalizeParams(Section):
    mean: list[float] = Field(min_length=3, max_length=3)
    std: list[float] = Field(min_length=3, max_length=3)

    @field_validator("std")
    @classmethod
    def _positive(cls, std: list[float]) -> list[float]:
        if any(s <= 0 for s in std):
            raise ValueError("every std must be > 0")
        return std


class AugmentParams(Section):
    image_size: int = Field(ge=8)  # the model's input side, in pixels
    # Albumentations transforms by class name, applied in order; RandomResizedCrop/Resize get
    # their size from image_size.
    train: list[dict[str, dict[str, Any]]]
    # auto: the model's own (its image processor's mean and std; each screening candidate and ablation
    # variant its own model's), or fixed values for every model.
    normalize: Literal["auto"] | NormalizeParams = "auto"
    preview_images: int = Field(16, ge=1, le=256)

    @field_validator("train")
    @classmethod
    def _one_transform_per_item(cls, train: list[dict[str, dict[str, Any]]]):
        for i, item in enumerate(train):
            if len(item) != 1:
                raise ValueError(f"item {i} must be one 'TransformName: {{kwargs}}' pair")
        return train


class CacheParams(Section):
    # Side of the cached square images: at or a little above the model's input (256 for 224).
    image_size: int = Field(ge=8)
    workers: int = Field(0, ge=0)  # decoding processes; 0 = one per core
    # Text: tokens per row (longer rows are truncated; the cache reports how many); the tokenizer is model.name's.
    max_length: int = Field(128, ge=8, le=8192)


class InferParams(Section):
    batch_size: int = Field(64, ge=1)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    tta: Literal["none", "hflip"] = "none"  # hflip: average each image's and its mirror's logits
    # Temperature scaling fitted on the validation split: better-calibrated probabilities (log loss), same labels.
    calibrate: bool = False


class SubmitParams(Section):
    # Upload predictions.csv to Kaggle (data.competition) after infer; off, so that a run never uploads by surprise.
    enabled: bool = False
    message: str = ""  # added to the message built from the run (experiment, model, method, val score, git revision)


class Params(Section):
    data: DataParams
    split: SplitParams
    augment: AugmentParams
    cache: CacheParams
    model: ModelParams
    lora: LoraParams
    train: TrainParams
    infer: InferParams
    submit: SubmitParams
    screen: ScreenParams
    ablation: AblationParams


def _unknown_key_message(loc: tuple) -> str:
    """'unknown key; did you mean train.epochs? (allowed here: ...)' for a key no section declares."""
    parent = Params
    for part in loc[:-1]:
        field = parent.model_fields.get(str(part)) if isinstance(parent, type) else None
        parent = field.annotation if field is not None else None
    if not (isinstance(parent, type) and issubclass(parent, BaseModel)):
        return "unknown key (see the repository's params.yaml)"
    return "unknown key" + did_you_mean(".".join(str(p) for p in loc[:-1]), str(loc[-1]), list(parent.model_fields))


def _section_names(cls: type = BaseModel) -> set[str]:
    return {sub.__name__ for sub in cls.__subclasses__()} | {n for sub in cls.__subclasses__() for n in _section_names(sub)}


def _one_branch(errors: list[dict]) -> list[dict]:
    """A key that takes either of two kinds (augment.normalize: auto or {mean, std}) fails once per
    kind; keep the errors of the kind the user wrote (a mapping: the mapping's), without the union's
    tags in their locations."""
    tags = _section_names()
    is_tag = lambda part: isinstance(part, str) and (part.startswith("literal[") or part in tags)  # noqa: E731
    wrote_a_mapping = lambda e: isinstance(e.get("input"), (dict, list))  # noqa: E731
    kept = [e for e in errors if not (any(map(is_tag, e["loc"])) and (
        e["type"] in ("model_type", "dict_type") or (e["type"] == "literal_error" and wrote_a_mapping(e))))]
    return [{**e, "loc": tuple(p for p in e["loc"] if not is_tag(p))} for e in kept or errors]


def _format_error(err: ValidationError, source: Path) -> str:
    # An unknown key usually explains a "missing" one next to it (a typo), so report it first.
    first = sorted(_one_branch(err.errors()), key=lambda e: e["type"] != "extra_forbidden")[0]
    key = ".".join(str(p) for p in first["loc"])
    msg = first["msg"].removeprefix("Value error, ")
    if first["type"] == "extra_forbidden":
        msg = _unknown_key_message(first["loc"])
    elif first["type"] == "missing":
        msg = "missing (python -m workflow.config --help lists every key)"
    elif "input" in first and not isinstance(first["input"], (dict, list)):
        msg = f"{msg} (got {first['input']!r})"
    if msg.startswith(key.rsplit(".", 1)[0] + ".") or msg.startswith(key + ":"):
        return f"{source}: {msg}; fix it in {source}"  # the validator already named the key
    return f"{source}: {key}: {msg}; fix it in {source}"


def load_params(path: Path | str = PARAMS_FILE) -> Params:
    """Read and validate the whole params file, or raise UserError naming the offending key."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise UserError(f"{path}: not found; run from the repository root or pass --params") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise UserError(f"{path}:{where}: not valid YAML ({getattr(err, 'problem', err)})") from None
    if not isinstance(raw, dict):
        raise UserError(f"{path}: must be a mapping of sections (data, split, augment, ...)")
    try:
        params = Params.model_validate(raw)
    except ValidationError as err:
        raise UserError(_format_error(err, path)) from None
    for name in Params.model_fields:
        # dvc.yaml tracks each key of a section, so DVC needs every one present, defaults or not.
        section = getattr(params, name)
        left_out = [key for key in type(section).model_fields if key not in section.model_fields_set]
        if left_out:
            raise UserError(f"{path}: {name}.{left_out[0]}: missing (dvc.yaml tracks every key of a section; "
                            f"python -m workflow.config --help lists them); fix it in {path}")
    return params


def load_sections(*names: str, path: Path | str = PARAMS_FILE) -> dict[str, Any]:
    """Validate the whole file, then hand a stage only the sections it declares in dvc.yaml."""
    params = load_params(path)
    unknown = [n for n in names if n not in Params.model_fields]
    if unknown:
        raise ValueError(f"no params section {unknown}")  # a programming error, not user input
    return {name: getattr(params, name) for name in names}


def parse_stage(doc: str | None, sections: tuple[str, ...], argv=None, **paths: str) -> tuple[Any, dict[str, Any]]:
    """A stage's command line (--params and one --NAME per path) and its own validated sections."""
    args = stage_parser(doc, **paths).parse_args(argv)
    return args, load_sections(*sections, path=args.params)


def section_keys(name: str) -> list[str]:
    """The dotted params keys of one section, as dvc.yaml must list them."""
    return [f"{name}.{key}" for key in Params.model_fields[name].annotation.model_fields]


def _kinds(annotation) -> list[str]:
    """bool | Literal['auto'] -> ['true', 'false', 'auto']: what a user may write."""
    if get_origin(annotation) is Literal:
        return [str(arg) for arg in get_args(annotation)]
    if annotation is bool:
        return ["bool"]
    if get_origin(annotation) in (Union, UnionType):
        return [kind for arg in get_args(annotation) for kind in _kinds(arg)]
    return [annotation.__name__ if isinstance(annotation, type) else str(annotation).replace("typing.", "")]


def describe_keys(model: type[BaseModel] = None, prefix: str = "") -> list[str]:
    """'train.lr: float > 0' lines for every key of the schema, for --help."""
    lines = []
    for name, field in (model or Params).model_fields.items():
        key = f"{prefix}{name}"
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            lines += describe_keys(annotation, key + ".")
            continue
        kind = " | ".join(_kinds(annotation))
        bounds = ", ".join(f"{sym} {getattr(m, attr)}" for m in field.metadata
                           for attr, sym in (("gt", ">"), ("ge", ">="), ("lt", "<"), ("le", "<="))
                           if getattr(m, attr, None) is not None)
        default = "" if field.is_required() else f" (default {field.default!r})"
        lines.append(f"  {key}: {kind}{', ' + bounds if bounds else ''}{default}")
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description="Validate params.yaml and print it resolved.",
        epilog=textwrap.fill("Every key. Unknown keys are errors; each key of a section must be present, since "
                             "dvc.yaml tracks it (nested keys with a default, in ablation.base and "
                             "screen.candidates, may be left out):", 100) + "\n" + "\n".join(describe_keys()),
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--params", default=str(PARAMS_FILE))
    args = parser.parse_args(argv)
    print(json.dumps(load_params(args.params).model_dump(), indent=2))


if __name__ == "__main__":
    from workflow.core.cli import run

    raise SystemExit(run(main))
