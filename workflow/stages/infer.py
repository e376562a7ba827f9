"""infer: predict the test rows and write the submission in sample_submission's exact format.

Rebuilds the base model the way train built it (and checks it is the same, by checksum), loads the
adapter, merges LoRA into the base weights for plain-speed inference (merge_and_unload), runs the
cached test images through the eval transforms in batches of infer.batch_size (with infer.tta: hflip,
the mean logits of each image and its mirror), or the cached test tokens in length order, and writes
predictions with the ids, order and columns of sample_submission. With infer.calibrate, the logits are
divided by the temperature train fitted on the validation split before the softmax (probability
submissions: a lower log loss; label submissions do not change).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from workflow.config import parse_stage
from workflow.core import io
from workflow.core.cli import run
from workflow.core.errors import UserError
from workflow.data.cache import ImageCache
from workflow.data.competition_info import read_competition
from workflow.data.dataset import CachedImages, DeviceNormalize, make_loader, pixel_transforms
from workflow.data.submission_format import submission
from workflow.data.token_cache import TokenCache
from workflow.data.tokens import CachedTokens
from workflow.data.transforms import load_pipeline
from workflow.models.lora import count_parameters
from workflow.models.methods import META_FILE, restore
from workflow.models.predict import predict_logits
from workflow.models.scores import probabilities
from workflow.models.tokenizers import load_tokenizer
from workflow.models.zoo import backbone_checksum, load_model, prefers_channels_last
from workflow.recipe import Recipe
from workflow.training.runtime import Compute, device_reason, pick_device

SECTIONS = ("infer",)  # the params sections this stage reads; dvc.yaml lists their keys


def load_trained(adapter_dir: Path | str, device: torch.device) -> tuple[torch.nn.Module, list[str]]:
    """The base model with the trained weights restored (LoRA merged in), and its class names."""
    adapter_dir = Path(adapter_dir)
    meta = json.loads((adapter_dir / META_FILE).read_text())
    recipe = Recipe.model_validate(meta["recipe"])  # what train trained
    # Code shipped with the model runs here only if the user allowed it for training.
    base = load_model(recipe.model.name, meta["classes"], seed=recipe.train.seed,
                      trust_remote_code=recipe.model.trust_remote_code, task=meta.get("task", "image"))
    if backbone_checksum(base) != meta["backbone_sha256"]:
        raise UserError(
            f"{adapter_dir}: the base model rebuilt from '{recipe.model.name}' differs from the one "
            f"the adapter was trained on (changed config, hub revision or torch version); re-run train"
        )
    model = restore(base, recipe, adapter_dir)  # LoRA merged into the base
    return model.to(device).eval(), meta["classes"]


def image_test_set(args, test: pd.DataFrame, model: torch.nn.Module,
                   device: torch.device) -> tuple[CachedImages, Compute]:
    eval_pipeline, normalize = pixel_transforms(load_pipeline(args.pipelines, "eval")[0])
    compute = Compute(device, DeviceNormalize(normalize, channels_last=prefers_channels_last(model)))
    return CachedImages(ImageCache.open(args.cache, args.raw), test["path"], eval_pipeline), compute


def text_test_set(args, test: pd.DataFrame, name: str) -> CachedTokens:
    """The cached test tokens (re-tokenized in memory if the model's tokenizer is not the cache's)."""
    tokens, note = TokenCache.open(args.cache, args.raw).for_tokenizer(args.raw, load_tokenizer(name), name)
    if note:
        print(f"infer: {note}")
    return CachedTokens(tokens, test["id"], "test", by_length=True)


def test_logits(args, model: torch.nn.Module, name: str, device: torch.device, batch_size: int, *,
                hflip: bool = False, stage: str) -> np.ndarray:
    """The logits of every row of raw/test.csv, in its order, from the cached images or tokens
    (args: raw, cache, pipelines); `name` is the model's (its tokenizer, for text)."""
    test = pd.read_csv(Path(args.raw) / "test.csv", dtype=str, keep_default_na=False)
    text = read_competition(args.raw).get("task") == "text"
    if text:
        test_set, compute = text_test_set(args, test, name), Compute(device)
    else:
        test_set, compute = image_test_set(args, test, model, device)
        model = model.to(memory_format=torch.channels_last) if prefers_channels_last(model) else model
    loader = make_loader(test_set, batch_size, num_workers=0, pin_memory=device.type == "cuda")
    print(f"{stage}: predicting {len(test)} test {'rows' if text else 'images'} on {device}"
          f"{' with horizontal-flip TTA' if hflip else ''}", flush=True)
    return predict_logits(model, loader, compute, hflip=hflip)


def model_name(adapter_dir: Path | str) -> str:
    return json.loads((Path(adapter_dir) / META_FILE).read_text())["recipe"]["model"]["name"]


def main(argv=None) -> None:
    args, sections = parse_stage(__doc__, SECTIONS, argv, raw="data/raw", pipelines="data/augment/pipelines.json",
                                 cache="data/cache", model="models/adapter", out="predictions.csv")
    params = sections["infer"]

    model, classes = load_trained(args.model, torch.device("cpu"))
    parameters = count_parameters(model)[1]
    device = pick_device(params.device, parameters)  # auto: a tiny model predicts faster on the CPU
    model = model.to(device)
    if note := device_reason(params.device, device, parameters):
        print(f"infer: {note}")
    raw = Path(args.raw)
    competition = read_competition(raw)
    sample = pd.read_csv(raw / "sample_submission.csv", dtype=str, keep_default_na=False)
    text = competition.get("task") == "text"
    if text and params.tta != "none":
        print("infer: infer.tta applies to images only; text rows are predicted as they are")
    logits = test_logits(args, model, model_name(args.model), device, params.batch_size,
                         hflip=params.tta == "hflip" and not text, stage="infer")

    if params.calibrate:  # divides the logits: the same labels, calibrated probabilities
        temperature = json.loads((Path(args.model) / META_FILE).read_text())["calibration"]["temperature"]
        logits = logits / temperature
        print(f"infer: probabilities calibrated with the temperature fitted on the validation split, T = "
              f"{temperature:.3f}")
    io.write_csv(args.out, submission(sample, competition, probabilities(logits), classes))
    print(f"infer: {len(logits)} predictions -> {args.out}")


if __name__ == "__main__":
    raise SystemExit(run(main))
