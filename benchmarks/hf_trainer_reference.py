"""Reference for benchmark B2: the train stage's recipe written the way the PEFT image-classification
guide writes it (https://huggingface.co/docs/peft/task_guides/image_classification_lora).

The guide's structure, kept as it is:

- a dataset that decodes each sample with PIL on access (`image.convert("RGB")`) and transforms it
  there (the guide's `set_transform(preprocess_train)`), and the guide's `collate_fn`;
- `get_peft_model` with `LoraConfig(r, lora_alpha, target_modules, lora_dropout, bias="none",
  modules_to_save=["classifier"])`;
- `transformers.Trainer` with `TrainingArguments(per_device_train_batch_size,
  gradient_accumulation_steps, num_train_epochs, learning_rate, eval_strategy="epoch",
  remove_unused_columns=False, label_names=["labels"])`, a linear schedule with warmup, and
  `compute_metrics` computing accuracy on the validation split.

What it trains is exactly what the train stage trains on the same params.yaml: the same data
(data/raw, data/split), the same model (`model.name`, built by `workflow.models.zoo.load_model` with
the same seed, so the same random init), the same LoRA targets (resolved by
`workflow.models.lora.resolve_targets`, e.g. query -> q_proj), r / alpha / dropout, the head trained
and saved, AdamW with train.lr and train.weight_decay, train.batch_size, train.grad_accum_steps,
train.epochs, train.warmup_ratio, train.num_workers, train.seed.

Differences from the guide, all forced or neutral:
- transforms: the guide uses torchvision; here the same albumentations pipelines the train stage
  uses (data/augment/pipelines.json: `train` for training, `eval` for validation), so the
  augmentation work per image is identical. Applied per sample on a numpy array, as a user of
  albumentations writes it.
- no `fp16` (CPU), no `push_to_hub`, `save_strategy="no"` / no `load_best_model_at_end` (the
  benchmark measures training; the adapter is saved once at the end), `evaluate.load("accuracy")`
  replaced by the same accuracy in numpy (no network), `logging_strategy="epoch"` (the train stage
  also logs per epoch).
- everything else is the Trainer's default (its fused AdamW, `max_grad_norm=1.0`, no weight decay
  on biases and LayerNorm weights): what a user of the guide gets.

Writes <out>/metrics.json (train images/s = epochs x n_train / wall seconds of trainer.train(),
those seconds, the final validation accuracy, ...) and the adapter to <out>/adapter.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import albumentations as A
import numpy as np
import pandas as pd
import torch
from peft import LoraConfig, get_peft_model
from PIL import Image
from transformers import Trainer

# Run from anywhere: the repository root (for workflow.*) is this file's parent's parent; this file's
# folder holds what the two references share.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from trainer_comparison import (  # noqa: E402
    compute_metrics,
    lora_params,
    reference_args,
    train_and_report,
    training_arguments,
)

from workflow.models.lora import resolve_targets  # noqa: E402  the model's own names for query/value
from workflow.models.zoo import head_names, load_model  # noqa: E402  the same model, same random init


class ImageFolderDataset(torch.utils.data.Dataset):
    """(path, label) rows; each access opens the file with PIL and applies the transform."""

    def __init__(self, root: Path, frame: pd.DataFrame, label2id: dict[str, int], transform: A.Compose):
        self.paths = [root / p for p in frame["path"]]
        self.labels = [label2id[label] for label in frame["label"]]
        self.transform = transform

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> dict:
        image = Image.open(self.paths[index]).convert("RGB")
        pixels = self.transform(image=np.asarray(image))["image"]  # HWC float32, normalized
        return {"pixel_values": torch.from_numpy(pixels.transpose(2, 0, 1).copy()), "label": self.labels[index]}


def collate_fn(examples):
    pixel_values = torch.stack([example["pixel_values"] for example in examples])
    labels = torch.tensor([example["label"] for example in examples])
    return {"pixel_values": pixel_values, "labels": labels}


def load_pipelines(path: Path, seed: int) -> tuple[A.Compose, A.Compose]:
    spec = json.loads(path.read_text())
    train_transforms, val_transforms = A.from_dict(spec["train"]), A.from_dict(spec["eval"])
    train_transforms.set_random_seed(seed)  # reproducible augmentation, as the train stage seeds it
    return train_transforms, val_transforms


def main(argv=None) -> None:
    args = reference_args(__doc__, argv, {"--raw": "data/raw", "--split": "data/split",
                                          "--pipelines": "data/augment/pipelines.json"})
    params = lora_params(args.params)
    model_p, lora_p, train_p = params["model"], params["lora"], params["train"]
    model_name, targets = model_p["name"], list(lora_p["targets"])

    raw, split, out = Path(args.raw), Path(args.split), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    classes = json.loads((raw / "competition.json").read_text())["classes"]
    label2id = {label: i for i, label in enumerate(classes)}
    read = lambda name: pd.read_csv(split / f"{name}.csv", dtype=str, keep_default_na=False)  # noqa: E731
    seed = int(train_p["seed"])

    extra = {"trust_remote_code": True} if model_p.get("trust_remote_code") else {}
    model = load_model(model_name, classes, seed=seed, **extra)
    config = LoraConfig(
        r=lora_p["r"],
        lora_alpha=lora_p["alpha"],
        target_modules=resolve_targets(model, targets),
        lora_dropout=lora_p["dropout"],
        bias="none",
        modules_to_save=head_names(model),  # ["classifier"] for BEiT/ViT, as in the guide
    )
    lora_model = get_peft_model(model, config)
    lora_model.print_trainable_parameters()

    train_transforms, val_transforms = load_pipelines(Path(args.pipelines), seed)
    train_ds = ImageFolderDataset(raw, read("train"), label2id, train_transforms)
    val_ds = ImageFolderDataset(raw, read("val"), label2id, val_transforms)

    trainer = Trainer(
        lora_model,
        training_arguments(train_p, out, remove_unused_columns=False),  # as the guide sets it
        train_dataset=train_ds,
        eval_dataset=val_ds,
        compute_metrics=compute_metrics,
        data_collator=collate_fn,
    )
    train_and_report(trainer, config, out, "hf_trainer_reference", "images", len(train_ds))


if __name__ == "__main__":
    main()
