"""Reference for benchmark B7: the train stage's text recipe written the way the PEFT sequence-classification
guide writes it (https://huggingface.co/docs/peft/task_guides/seq_classification and the LoRA
sequence-classification example: tokenize, `DataCollatorWithPadding`, `get_peft_model`, `Trainer`).

The guide's structure, kept as it is:

- the tokenizer called once on the text columns before training (the guide's `dataset.map(tokenize_function,
  batched=True)`): the texts, or the two texts of a pair as a pair, `truncation=True` to `max_length`, no padding;
- `DataCollatorWithPadding(tokenizer, padding="longest")`: each batch padded to its own longest row;
- `get_peft_model` with `LoraConfig(task_type="SEQ_CLS", r, lora_alpha, lora_dropout, target_modules)`
  (SEQ_CLS makes peft train and save the classifier head);
- `transformers.Trainer` with `TrainingArguments(per_device_train_batch_size, gradient_accumulation_steps,
  num_train_epochs, learning_rate, weight_decay, eval_strategy="epoch")`, a linear schedule with warmup,
  and `compute_metrics` computing accuracy on the validation split.

What it trains is what the train stage trains on the same params.yaml: the same rows (data/split's
train.csv and val.csv, which carry the texts), the same tokenizer (`workflow.models.tokenizers.load_tokenizer`
of model.name) and cache.max_length, the same model and random head init (`workflow.models.zoo.load_model`
with train.seed), the same LoRA targets (`workflow.models.lora.resolve_targets`: query -> query for BERT),
r / alpha / dropout, AdamW with train.lr and train.weight_decay, train.batch_size, train.grad_accum_steps,
train.epochs, train.warmup_ratio, train.num_workers, train.seed.

Differences from the guide, all forced or neutral:
- no `datasets` (not a dependency of this project): the same one batched tokenizer call on the column
  lists, kept as a list of feature dicts; `evaluate.load("accuracy")` replaced by the same accuracy in
  numpy (no network); no `push_to_hub`, no fp16 (CPU; bf16 on a GPU as the train stage chooses it).
- `set_seed(train.seed)` before the model is built, so the LoRA weights start as the train stage's do.
- `save_strategy="no"` / no `load_best_model_at_end` (the benchmark measures training; the adapter is
  saved once at the end), `logging_strategy="epoch"`, `report_to="none"`.
- everything else is the Trainer's default (its fused AdamW, `max_grad_norm=1.0`, no weight decay on
  biases and LayerNorm weights, evaluation in the set's order): what a user of the guide gets.

Writes <out>/metrics.json (real tokens/s = epochs x the train set's tokens after truncation / wall seconds
of trainer.train(), those seconds, the final validation accuracy, ...) and the adapter to <out>/adapter.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pandas as pd
from peft import LoraConfig, get_peft_model
from transformers import DataCollatorWithPadding, Trainer, set_seed

# Run from anywhere: the repository root (for workflow.*) is this file's parent's parent; this file's
# folder holds what the two references share.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from trainer_comparison import compute_metrics, lora_params, reference_args, train_and_report, training_arguments

from workflow.models.lora import resolve_targets  # the model's own names for query/value
from workflow.models.tokenizers import load_tokenizer  # AutoTokenizer of model.name, offline
from workflow.models.zoo import load_model  # the same model, same random head init


def tokenize(tokenizer, frame: pd.DataFrame, text_columns: list[str], label2id: dict[str, int],
             max_length: int) -> list[dict]:
    """The guide's tokenize_function over the whole split at once: texts (or pairs), truncated, unpadded."""
    texts = [frame[column].tolist() for column in text_columns]  # one column, or the two of a pair
    encoded = tokenizer(*texts, truncation=True, max_length=max_length)
    labels = [label2id[label] for label in frame["label"]]
    return [{**{key: values[i] for key, values in encoded.items()}, "labels": labels[i]} for i in range(len(frame))]


def read_csv(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, dtype=str, keep_default_na=False)  # texts as written: "NA" is a review too


def main(argv=None) -> None:
    args = reference_args(__doc__, argv, {"--raw": "data/raw", "--split": "data/split"})
    params = lora_params(args.params)
    model_p, lora_p, train_p = params["model"], params["lora"], params["train"]
    max_length, seed = int(params["cache"]["max_length"]), int(train_p["seed"])

    raw, split, out = Path(args.raw), Path(args.split), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    competition = json.loads((raw / "competition.json").read_text())
    if competition.get("task") != "text":
        raise SystemExit(f"error: {raw} holds an {competition.get('task', 'image')} competition; this reference is "
                         f"for text (benchmarks/hf_trainer_reference.py is the image one)")
    classes = competition["classes"]
    label2id = {label: i for i, label in enumerate(classes)}
    # data/raw/train.csv's text columns are named text (and text_pair for a pair); split keeps them.
    text_columns = ["text", "text_pair"] if competition.get("pair") else ["text"]

    trust = bool(model_p.get("trust_remote_code"))
    tokenizer = load_tokenizer(model_p["name"], trust)
    train_ds = tokenize(tokenizer, read_csv(split / "train.csv"), text_columns, label2id, max_length)
    val_ds = tokenize(tokenizer, read_csv(split / "val.csv"), text_columns, label2id, max_length)
    train_tokens = sum(len(row["input_ids"]) for row in train_ds)  # real tokens, as the train stage counts them

    set_seed(seed)
    model = load_model(model_p["name"], classes, seed=seed, trust_remote_code=trust, task="text")
    config = LoraConfig(
        task_type="SEQ_CLS",  # peft adds the classifier head to modules_to_save
        r=lora_p["r"],
        lora_alpha=lora_p["alpha"],
        target_modules=resolve_targets(model, list(lora_p["targets"])),
        lora_dropout=lora_p["dropout"],
        bias="none",
    )
    lora_model = get_peft_model(model, config)
    lora_model.print_trainable_parameters()

    trainer = Trainer(
        lora_model,
        training_arguments(train_p, out),
        train_dataset=train_ds,
        eval_dataset=val_ds,
        processing_class=tokenizer,
        data_collator=DataCollatorWithPadding(tokenizer=tokenizer, padding="longest"),
        compute_metrics=compute_metrics,
    )
    train_and_report(trainer, config, out, "hf_trainer_text_reference", "tokens", train_tokens,
                     train_tokens=train_tokens, max_length=max_length)


if __name__ == "__main__":
    main()
