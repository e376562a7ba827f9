"""The training recipe: one type for the main model, every screening candidate and every ablation variant.

A recipe is a model, a method with its options, and the optimisation:

    model   name (hub id or shipped config), trust_remote_code
    lora    targets, r, alpha, dropout               (the options of method lora)
    train   method, last_layers, final_norm, augment, lr, batch_size, grad_accum_steps, epochs,
            warmup_ratio, weight_decay, seed

params.yaml's `model`, `lora` and `train` sections are the main model's recipe (`train` also holds
where it runs: num_workers, device, precision, compile). `screen.base` and `ablation.base` are
recipes too, and each candidate or variant is a named set of overrides of its base, nested the same
way: `lora-r4: {lora: {r: 4}}`. Only pydantic here: reading a recipe imports no torch.
"""
from __future__ import annotations

import difflib
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

METHODS = ("lora", "full", "head", "last_layers", "bitfit")  # the one list; workflow/models/methods.py implements them
Method = Literal["lora", "full", "head", "last_layers", "bitfit"]


class Section(BaseModel):
    """A params.yaml mapping: strict types, no unknown keys, no silent coercion."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class ModelParams(Section):
    # A hub id (pretrained weights) or a shipped architecture config under configs/models/ (random init).
    name: str = Field(min_length=1)
    # Hub models whose code ships with the weights run it only when this is true: trust the repo first.
    trust_remote_code: bool = False


class LoraParams(Section):
    # Semantic names (query, key, value, output, conv, ...) resolved to the model's own module names.
    targets: list[str] = Field(["query", "value"], min_length=1)
    r: int = Field(8, ge=1)
    alpha: float = Field(16, gt=0)
    dropout: float = Field(0.1, ge=0, lt=1)

    @field_validator("targets", mode="before")
    @classmethod
    def _comma_string(cls, targets: Any) -> Any:
        if isinstance(targets, str):
            return [t.strip() for t in targets.split(",") if t.strip()]
        return targets


class TrainingParams(Section):
    """The method and the optimisation."""

    method: Method = "lora"
    last_layers: int = Field(1, ge=1)  # method last_layers: how many final encoder blocks train
    final_norm: bool = False  # method last_layers: also train the norm after the last block
    augment: bool = True  # the augment stage's train pipeline; false: training sees the eval transforms
    lr: float = Field(0.002, gt=0)
    batch_size: int = Field(16, ge=1)
    grad_accum_steps: int = Field(1, ge=1)  # one optimizer update per batch_size * grad_accum_steps images
    epochs: int = Field(10, ge=1)
    warmup_ratio: float = Field(0.05, ge=0, lt=1)
    weight_decay: float = Field(0.0, ge=0)
    seed: int = 0
    # The weights kept: the last epoch's, or the best epoch's by select_metric on the validation split.
    select: Literal["last", "best"] = "last"
    select_metric: Literal["accuracy", "macro_f1", "log_loss"] = "accuracy"  # log_loss: lower is better
    early_stopping_patience: int = Field(0, ge=0)  # stop after this many epochs without a better select_metric; 0: never


class RuntimeParams(Section):
    """Where and how a run computes; not part of the recipe (the numbers should not depend on it)."""

    num_workers: int = Field(0, ge=0)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    precision: Literal["auto", "fp32", "bf16"] = "auto"  # auto: bf16 autocast on a GPU with bf16, else fp32
    # torch.compile the model; auto: on CUDA for models of 20M parameters or more (runtime.py)
    compile: bool | Literal["auto"] = "auto"
    gradient_checkpointing: bool = False  # recompute activations in the backward: less memory, more time


class TrainParams(TrainingParams, RuntimeParams):
    """params.yaml's `train` section: the main recipe's training part and its runtime."""


class Recipe(Section):
    model: ModelParams
    lora: LoraParams = LoraParams()
    train: TrainingParams = TrainingParams()

    @classmethod
    def of(cls, model: str, method: Method = "lora", **options: Any) -> "Recipe":
        """A recipe from a model and a method's options (r, alpha, dropout, targets, last_layers,
        final_norm), defaults elsewhere: for the tools and benchmarks that take a method by hand."""
        lora = {k: options.pop(k) for k in list(options) if k in LoraParams.model_fields}
        if isinstance(lora.get("targets"), tuple):
            lora["targets"] = list(lora["targets"])
        return cls.model_validate({"model": {"name": model}, "lora": lora, "train": {"method": method, **options}})

    @classmethod
    def from_sections(cls, model: ModelParams, lora: LoraParams, train: TrainingParams) -> "Recipe":
        """The main model's recipe from params.yaml's model, lora and train sections (train's runtime
        keys left out)."""
        return cls(model=model, lora=lora, train=TrainingParams(**train.model_dump(include=set(TrainingParams.model_fields))))

    def override(self, changes: dict[str, Any]) -> "Recipe":
        """This recipe with `changes` (nested like it: {lora: {r: 4}}) merged in, validated."""
        return Recipe.model_validate(_merged(self.model_dump(), changes))

    def method_settings(self) -> dict[str, Any]:
        """The method and only the options it uses: what the saved artefact records (method.json)."""
        settings: dict[str, Any] = {"method": self.train.method}
        if self.train.method == "lora":
            settings["lora"] = self.lora.model_dump()
        if self.train.method == "last_layers":
            settings.update(last_layers=self.train.last_layers, final_norm=self.train.final_norm)
        return settings

    def describe_method(self) -> str:
        """e.g. 'lora r=16 alpha=16 dropout=0.1 targets=query,value', 'last_layers N=1'."""
        if self.train.method == "lora":
            lora = self.lora
            return f"lora r={lora.r} alpha={lora.alpha:g} dropout={lora.dropout:g} targets={','.join(lora.targets)}"
        if self.train.method == "last_layers":
            return f"last_layers N={self.train.last_layers}{' + final norm' if self.train.final_norm else ''}"
        return self.train.method


def _merged(base: dict, changes: dict) -> dict:
    merged = dict(base)
    for key, value in changes.items():
        merged[key] = _merged(base[key], value) if isinstance(value, dict) and isinstance(base.get(key), dict) else value
    return merged


class Study(Section):
    """A base recipe and named overrides of it, each its own cached job (screen, ablation)."""

    SECTION: ClassVar[str]  # its params section
    NAMES: ClassVar[str]  # the field holding the named overrides: candidates or variants
    base: Recipe

    def recipe(self, name: str) -> Recipe:
        return self.base.override(getattr(self, self.NAMES)[name])

    @model_validator(mode="after")
    def _every_override_builds_a_recipe(self) -> "Study":
        for name in getattr(self, self.NAMES):
            try:
                self.recipe(name)
            except ValidationError as err:
                first = sorted(err.errors(), key=lambda e: e["type"] != "extra_forbidden")[0]
                where = ".".join([self.SECTION, self.NAMES, name, *map(str, first["loc"][:-1])])
                key = str(first["loc"][-1])
                if first["type"] == "extra_forbidden":
                    allowed = list(_model_at(Recipe, first["loc"][:-1]).model_fields)
                    raise ValueError(f"{where}.{key}: unknown key" + did_you_mean(where, key, allowed)) from None
                raise ValueError(f"{where}.{key}: {first['msg']}") from None
        return self


def _model_at(model: type[BaseModel], loc: tuple) -> type[BaseModel]:
    for part in loc:
        model = model.model_fields[str(part)].annotation
    return model


def did_you_mean(where: str, key: str, allowed: list[str]) -> str:
    """'; did you mean train.epochs? (allowed here: ...)': the nearest valid key first, for typos."""
    nearest = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)
    hint = f"; did you mean {where + '.' if where else ''}{nearest[0]}?" if nearest else ""
    return f"{hint} (allowed here: {', '.join(allowed)})"


class ScreenParams(Study):
    """Every candidate is screen.base with its overrides (usually the model and its LoRA targets)."""

    SECTION: ClassVar[str] = "screen"
    NAMES: ClassVar[str] = "candidates"
    candidates: dict[str, dict[str, Any]] = Field(min_length=1)


class AblationParams(Study):
    """Every variant is ablation.base with the keys its name says changed, trained once per seed."""

    SECTION: ClassVar[str] = "ablation"
    NAMES: ClassVar[str] = "variants"
    variants: dict[str, dict[str, Any]] = Field(min_length=1)
    # train.seed of every variant: each (variant, seed) is its own cached job (dvc.yaml's matrix), so
    # adding a seed runs only its jobs; the report shows the seeds' mean and spread.
    seeds: list[int] = Field([0], min_length=1)

    def job_recipe(self, variant: str, seed: int) -> Recipe:
        return self.recipe(variant).override({"train": {"seed": seed}})

    def jobs(self) -> list[str]:
        """The jobs' keys as dvc.yaml's matrix names them (variant, then seed): 'lora-r4-0'."""
        return [f"{variant}-{seed}" for variant in self.variants for seed in self.seeds]

    @field_validator("seeds")
    @classmethod
    def _distinct_seeds(cls, seeds: list[int]) -> list[int]:
        if any(seed < 0 for seed in seeds) or len(set(seeds)) != len(seeds):
            raise ValueError(f"expected distinct seeds >= 0, got {seeds}")
        return seeds

    @model_validator(mode="before")
    @classmethod
    def _seeds_only_in_seeds(cls, data: Any) -> Any:
        # One place for the seeds: a train.seed in base or a variant would be silently replaced.
        if isinstance(data, dict):
            places = [("base", data.get("base"))] + [(f"variants.{name}", changes) for name, changes in
                                                      (data.get("variants") or {}).items()]
            for where, recipe in places:
                if isinstance(recipe, dict) and isinstance(recipe.get("train"), dict) and "seed" in recipe["train"]:
                    raise ValueError(f"ablation.{where}.train.seed: the ablation's seeds are ablation.seeds "
                                     f"(one job per variant and seed); move it there")
        return data
