"""infer: predict the test images and write the submission in sample_submission's exact format.

Rebuilds the base model the way train built it (and checks it is the same, by checksum), loads the
adapter, merges LoRA into the base weights for plain-speed inference, runs the test images through
the eval transforms, and writes predictions with the ids, order and columns of sample_submission.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from workflow import io
from workflow.cli import run, stage_parser
from workflow.config import load_sections
from workflow.data.dataset import ImageDataset, make_loader
from workflow.errors import UserError
from workflow.models.predict import pick_device, predict_logits
from workflow.methods import META_FILE, MethodSpec, restore
from workflow.models.zoo import backbone_checksum, load_model
from workflow.transforms import load_pipeline

SECTIONS = ("infer",)  # the params sections this stage reads; dvc.yaml lists their keys


def load_trained(adapter_dir: Path | str, device: torch.device) -> tuple[torch.nn.Module, list[str]]:
    """The base model with the trained weights restored (LoRA merged in), and its class names."""
    adapter_dir = Path(adapter_dir)
    meta = json.loads((adapter_dir / META_FILE).read_text())
    base = load_model(meta["model_name"], meta["classes"], seed=meta["init_seed"])
    if backbone_checksum(base) != meta["backbone_sha256"]:
        raise UserError(
            f"{adapter_dir}: the base model rebuilt from '{meta['model_name']}' differs from the one "
            f"the adapter was trained on (changed config, hub revision or torch version); re-run train"
        )
    model = restore(base, MethodSpec(**meta["method"]), adapter_dir)  # LoRA merged into the base
    return model.to(device).eval(), meta["classes"]


def submission(sample: pd.DataFrame, competition: dict, logits: np.ndarray, classes: list[str]) -> pd.DataFrame:
    """A frame with sample's columns and id order, filled with predicted labels or probabilities."""
    out = sample.copy()
    if competition["format"] == "label":
        out[competition["label_column"]] = [classes[i] for i in logits.argmax(axis=1)]
    else:
        probabilities = torch.softmax(torch.from_numpy(logits), dim=1).numpy()
        for i, label in enumerate(classes):
            out[label] = probabilities[:, i]
    return out[sample.columns]


def main(argv=None) -> None:
    args = stage_parser(
        __doc__,
        raw="data/raw",
        pipelines="data/augment/pipelines.json",
        model="models/adapter",
        out="predictions.csv",
    ).parse_args(argv)
    params = load_sections(*SECTIONS, path=args.params)["infer"]

    device = pick_device(params.device)
    model, classes = load_trained(args.model, device)
    raw = Path(args.raw)
    competition = json.loads((raw / "competition.json").read_text())
    sample = pd.read_csv(raw / "sample_submission.csv", dtype=str, keep_default_na=False)
    test = pd.read_csv(raw / "test.csv", dtype=str, keep_default_na=False)
    eval_pipeline, _ = load_pipeline(args.pipelines, "eval")
    loader = make_loader(ImageDataset(raw, test["path"], eval_pipeline), params.batch_size, num_workers=0)
    logits = predict_logits(model, loader, device)

    io.write_csv(args.out, submission(sample, competition, logits, classes))
    print(f"infer: {len(test)} predictions -> {args.out}")


if __name__ == "__main__":
    raise SystemExit(run(main))
