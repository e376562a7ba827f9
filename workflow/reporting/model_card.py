"""The trained artefact's README.md: a Hugging Face model card written from the run that trained it.

With it the artefact folder is ready to publish in one upload (huggingface_hub.upload_folder). The
card is YAML metadata between `---` lines (base_model, library_name, tags, pipeline_tag, datasets,
metrics and a model-index with the validation scores; built with huggingface_hub's own ModelCardData,
so it is in the form the Hub reads) and Markdown sections: the recipe, the validation results and
the kept epoch, the data split, how to load the files, intended use and limits, provenance.

Every value comes from the run's objects; no timestamps, paths of this machine or git revision (two
clones of one commit differ in it), so two identical runs write identical bytes. Plain f-strings, not
the report's document model: train re-runs when its code deps change, and a report-style edit should
not retrain a model.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from huggingface_hub import EvalResult, ModelCardData

from workflow.data.competition_info import read_competition
from workflow.models.methods import BUFFERS_FILE, META_FILE, METHOD_FILE, TENSORS_FILE, plain_model
from workflow.models.names import shipped_config_path
from workflow.recipe import Recipe
from workflow.training.provenance import package_versions

if TYPE_CHECKING:
    from workflow.data.labelled import LabelledData
    from workflow.training.loop import FitResult

CARD_FILE = "README.md"  # the name the Hub renders as the model card
PIPELINE_TAGS = {"image": "image-classification", "text": "text-classification"}
AUTO_CLASSES = {"image": "AutoModelForImageClassification", "text": "AutoModelForSequenceClassification"}
# What each file save() and train write is for, as the card's file list says it.
FILE_ROLES = {
    "adapter_config.json": "peft's LoRA config",
    "adapter_model.safetensors": "the LoRA weights and the classification head",
    TENSORS_FILE: "the trained tensors, by parameter name (nothing else of the base)",
    BUFFERS_FILE: "the model's running statistics (buffers), updated by training",
    METHOD_FILE: "the method and its settings",
    META_FILE: "the recipe, the classes in label order, the base's checksum, the kept epoch, the temperature",
    CARD_FILE: "this card",
}


def write(folder: Path | str, recipe: Recipe, data: LabelledData, result: FitResult,
          calibration: dict[str, float] | None = None) -> None:
    """README.md in the artefact `folder`, after save() wrote the rest (the card lists those files)."""
    folder = Path(folder)
    (folder / CARD_FILE).write_text(render(folder, recipe, data, result, calibration), encoding="utf-8")


def render(folder: Path, recipe: Recipe, data: LabelledData, result: FitResult,
           calibration: dict[str, float] | None = None) -> str:
    competition = read_competition(data.raw)
    base = Base(recipe.model.name)
    dataset_id, dataset_name = dataset(competition)
    body = "\n\n".join([
        f"# {base.short}: {recipe.train.method} on the {dataset_name}",
        intro(recipe, data, base, f"the {dataset_name}"),
        recipe_section(recipe, data, result),
        results_section(result, calibration, data),
        data_section(data, competition, f"The {dataset_name}"),
        loading_section(folder, recipe, data, base),
        limits_section(data, base, f"the {dataset_name}"),
        provenance_section(recipe, data, result),
    ])
    return f"---\n{metadata(recipe, data, result, base, dataset_id, dataset_name)}\n---\n\n{body}\n"


class Base:
    """What model.name is: a Hub id (pretrained weights), a shipped config (random init) or a local folder."""

    def __init__(self, name: str):
        self.name = name
        self.config = shipped_config_path(name) is not None
        self.local = not self.config and Path(name).is_dir()
        self.hub_id = None if self.config or self.local else name
        self.short = Path(name).stem if self.config else Path(name).name


def dataset(competition: dict) -> tuple[str, str]:
    """(identifier, name) of the competition the run learnt from. Not a Hub dataset id (the Hub lists it
    unlinked): the Kaggle slug when competition.json records one, else only the source."""
    source, slug = competition.get("source", "unknown"), competition.get("competition")
    if source == "kaggle" and slug:
        return f"kaggle:{slug}", f"Kaggle competition {slug}"
    if source == "builtin":
        return f"builtin:{competition.get('task', 'image')}-demo", "built-in offline demo competition"
    return f"{source}:competition", f"competition from a {source} source (its name is not recorded)"


def metadata(recipe: Recipe, data: LabelledData, result: FitResult, base: Base, dataset_id: str,
             dataset_name: str) -> str:
    method, pipeline_tag = recipe.train.method, PIPELINE_TAGS[data.task]
    model_type = getattr(plain_model(result.model).config, "model_type", None)
    kaggle = ["kaggle"] if dataset_id.startswith("kaggle") else []
    tags = [method.replace("_", "-"), pipeline_tag, *([model_type] if model_type else []), *kaggle]
    task = {"task_type": pipeline_tag, "task_name": pipeline_tag.replace("-", " ").capitalize(),
            "dataset_type": dataset_id, "dataset_name": dataset_name, "dataset_split": "validation"}
    scores = result.scores
    results = [EvalResult(**task, metric_type="accuracy", metric_value=scores["accuracy"], metric_name="accuracy"),
               EvalResult(**task, metric_type="f1", metric_value=scores["macro_f1"], metric_name="macro-F1",
                          metric_config="macro")]
    if "f1" in scores:  # two classes: the positive (second) class's F1, as GLUE reports it
        results.append(EvalResult(**task, metric_type="f1", metric_value=scores["f1"], metric_name="F1",
                                  metric_config="binary"))
    results.append(EvalResult(**task, metric_type="log_loss", metric_value=scores["log_loss"], metric_name="log loss"))
    card = ModelCardData(base_model=base.hub_id, library_name="peft" if method == "lora" else "transformers",
                         pipeline_tag=pipeline_tag, tags=tags, datasets=[dataset_id], metrics=["accuracy", "f1"],
                         model_name=f"{base.short}-{method.replace('_', '-')}", eval_results=results)
    return card.to_yaml(original_order=["base_model", "library_name", "pipeline_tag", "tags", "datasets", "metrics"])


def intro(recipe: Recipe, data: LabelledData, base: Base, dataset_name: str) -> str:
    what = ("A LoRA adapter and the new classification head" if recipe.train.method == "lora"
            else f"The tensors that method {recipe.train.method} trained (the new classification head among them)")
    lines = [(f"{what} for `{recipe.model.name}`, fine-tuned for {data.task} classification into "
              f"{len(data.classes)} classes on {dataset_name} by this pipeline's train stage. Every number below "
              f"is from the run that wrote these files.")]
    if base.config:
        lines.append(f"The base is not on the Hub: `{base.name}` is an architecture config shipped with the pipeline, "
                     f"built at random initialisation (seed train.seed {recipe.train.seed}), with no pretrained "
                     f"weights, so the metadata names no `base_model`.")
    elif base.local:
        lines.append(f"The base is a local folder (`{base.name}`), not a Hub id, so the metadata names no "
                     f"`base_model`.")
    else:
        lines.append(f"The base is [`{base.hub_id}`](https://huggingface.co/{base.hub_id}), its pretrained weights "
                     f"from the Hub.")
    return "\n\n".join(lines)


def recipe_section(recipe: Recipe, data: LabelledData, result: FitResult) -> str:
    train, count = recipe.train, max(len(result.images_per_process), 1)
    per_update = train.batch_size * train.grad_accum_steps * count
    across = f" x {count} processes" if count > 1 else ""
    stopped = f", stopped early after {result.epochs_trained}" if result.epochs_trained < train.epochs else ""
    inputs = (f"up to {result.input_size} tokens per row" if data.task == "text"
              else f"{result.input_size}x{result.input_size} pixels; augmentation "
                   f"{'on (the augment stage train pipeline)' if train.augment else 'off'}")
    metric = f"val {train.select_metric.replace('_', ' ')}"
    kept = f"the best epoch's by {metric}" if train.select == "best" else "the last epoch's"
    early = (f"; early stopping after {train.early_stopping_patience} epochs without a better {metric}"
             if train.early_stopping_patience else "")
    items = [
        f"Method: `{recipe.describe_method()}`" + ("" if recipe.train.method == "head"
                                                   else "; the classification head is trained and saved too"),
        (f"Trainable parameters: {result.trainable:,} of {result.total:,} "
         f"({100 * result.trainable / result.total:.2f}%)"),
        (f"Optimizer: AdamW, learning rate {train.lr:g}, weight decay {train.weight_decay:g}; linear schedule with "
         f"warmup ratio {train.warmup_ratio:g} of the optimizer steps"),
        (f"Batch: {train.batch_size} x {train.grad_accum_steps} gradient accumulation steps{across} = {per_update} "
         f"{unit(data)} per optimizer update"),
        f"Epochs: {train.epochs}{stopped}",
        f"Kept weights: {kept} (train.select {train.select}){early}",
        f"Input: {inputs}",
        f"Seed: train.seed {train.seed}",
    ]
    return "## Recipe\n\n" + bullets(items)


def results_section(result: FitResult, calibration: dict[str, float] | None, data: LabelledData) -> str:
    scores = result.scores
    rows = [("accuracy", scores["accuracy"]), ("macro-F1", scores["macro_f1"])]
    if "f1" in scores:
        rows.append((f"F1 of {data.classes[1]} (the second class)", scores["f1"]))
    rows.append(("log loss", scores["log_loss"]))
    lines = [f"## Validation results\n\nOn the {len(data.val)} validation {unit(data)}, with the kept epoch's weights:",
             table(["metric", "value"], [(name, f"{value:.4f}") for name, value in rows]),
             f"Which epoch: {result.selection_note}."]
    if calibration:
        lines.append(f"Calibration: a temperature T = {calibration['temperature']:.4f} fitted on the same validation "
                     f"logits takes the log loss from {calibration['log_loss_before']:.4f} to "
                     f"{calibration['log_loss_after']:.4f}; the predicted labels do not change (infer divides the "
                     f"logits by T with `infer.calibrate: true`). Fitted and measured on the same {unit(data)}, "
                     f"the calibrated figure is optimistic.")
    return "\n\n".join(lines)


def data_section(data: LabelledData, competition: dict, dataset_name: str) -> str:
    seeds = ", ".join(f"{key} {value}" for key, value in data.seeds().items()) or "not recorded"
    total = len(data.train) + len(data.val)
    train_counts, val_counts = data.train["label"].value_counts(), data.val["label"].value_counts()
    rows = [(i, name, int(train_counts.get(name, 0)), int(val_counts.get(name, 0)))
            for i, name in enumerate(data.classes)]
    pair = " Each row is a pair of texts." if competition.get("pair") else ""
    return (f"## Data\n\n{dataset_name} (data.source: {competition.get('source')}): "
            f"{total} labelled {unit(data)}, split stratified by class into {len(data.train)} train and "
            f"{len(data.val)} validation {unit(data)} ({100 * len(data.val) / total:.1f}%); split seed: {seeds}."
            f"{pair}\n\n"
            f"The classes, in the model's label order (id2label), with their {unit(data)} in each split:\n\n"
            + table(["id", "class", "train", "val"], rows))


def loading_section(folder: Path, recipe: Recipe, data: LabelledData, base: Base) -> str:
    names = sorted({p.name for p in folder.iterdir() if p.is_file()} | {CARD_FILE})
    files = bullets(f"`{name}`: {FILE_ROLES.get(name, 'written by train')}" for name in names)
    merged = " (LoRA merged in)" if recipe.train.method == "lora" else ""
    in_repo = code([
        "import torch",
        "from workflow.stages.infer import load_trained",
        "",
        "# From the pipeline's repository root: rebuilds the base from model_meta.json, checks its checksum,",
        f"# restores these weights{merged} and returns the model and its class names.",
        'model, classes = load_trained("models/adapter", torch.device("cpu"))',
    ])
    alone = ("Step by step, as `load_trained` does it (its checks left out): the base rebuilt at random init "
             "as train built it, then these files" if base.config else "With transformers and peft alone")
    prepare = ("tokenized by the base model's tokenizer as the cache stage did" if data.task == "text"
               else "resized and normalised by the augment stage's eval pipeline (pipelines.json, not in this folder)")
    return "\n\n".join([f"## How to load it\n\nThe files:\n\n{files}",
                         f"With the pipeline that trained it:\n\n{in_repo}",
                         f"{alone}:\n\n{step_by_step(recipe, data, base, folder)}",
                         f"Inputs are {prepare}."])


def step_by_step(recipe: Recipe, data: LabelledData, base: Base, folder: Path) -> str:
    """What methods.restore does: the base for the classes, then peft's adapter (lora) or the trained tensors."""
    auto, lora = AUTO_CLASSES[data.task], recipe.train.method == "lora"
    buffers = (folder / BUFFERS_FILE).is_file()
    trust = ", trust_remote_code=True" if recipe.model.trust_remote_code else ""
    imports = [*(["from peft import PeftModel"] if lora else []),
               *(["from safetensors.torch import load_file"] if buffers or not lora else []),
               "from workflow.models.zoo import load_model" if base.config else f"from transformers import {auto}"]
    if base.config:  # the shipped config at random init: only the pipeline's loader rebuilds the same weights
        build = [f'model = load_model("{base.name}", classes, seed={recipe.train.seed}, task="{data.task}")']
    else:
        build = [f"model = {auto}.from_pretrained(",
                 f'    "{base.name}", num_labels=len(classes), id2label=dict(enumerate(classes)),',
                 f"    label2id={{c: i for i, c in enumerate(classes)}}, ignore_mismatched_sizes=True{trust})"]
    restore = (["model = PeftModel.from_pretrained(model, folder).merge_and_unload()"] if lora else
               [f'model.load_state_dict(load_file(folder / "{TENSORS_FILE}"), strict=False)  # the trained tensors'])
    if buffers:
        restore.append(f'model.load_state_dict(load_file(folder / "{BUFFERS_FILE}"), strict=False)  # running stats')
    return code([
        "import json",
        "from pathlib import Path",
        "",
        *sorted(imports),
        "",
        'folder = Path("models/adapter")  # or huggingface_hub.snapshot_download(<the repo id>)',
        f'classes = json.loads((folder / "{META_FILE}").read_text())["classes"]',
        *build, *restore, "model.eval()",
    ])


def limits_section(data: LabelledData, base: Base, dataset_name: str) -> str:
    items = [
        f"Made for: predicting the {len(data.classes)} classes of {dataset_name}, on inputs prepared as in training.",
        (f"Trained on {len(data.train)} {unit(data)} of that competition's labelled data and validated on "
         f"{len(data.val)} (each is {100 / len(data.val):.2f} points of accuracy); not evaluated on its test set "
         f"or on any other data, where it may do worse."),
        "No license is set: the competition's data rules apply to these weights; add `license` before publishing.",
    ]
    if base.config:
        items.append("The base had no pretrained weights: these scores show the pipeline working, not what the "
                     "architecture reaches from a pretrained checkpoint.")
    return "## Intended use and limits\n\n" + bullets(items)


def provenance_section(recipe: Recipe, data: LabelledData, result: FitResult) -> str:
    seeds = data.seeds() | {"train.seed": recipe.train.seed}
    items = [
        f"Base checksum (sha256 of its backbone before training; infer refuses another): `{result.backbone_sha256}`",
        "Seeds: " + ", ".join(f"{key} {value}" for key, value in seeds.items()),
        f"Trained on: {result.device}, {processes(result)}",
        "Packages: " + ", ".join(f"{name} {version}" for name, version in package_versions().items()),
        "The run's full record: the train stage's run.json (reports/train/run.json in the pipeline)",
    ]
    return "## Provenance\n\n" + bullets(items)


def processes(result: FitResult) -> str:
    count = len(result.images_per_process)
    return f"{count} processes" if count > 1 else "one process"


def unit(data: LabelledData) -> str:
    return "rows" if data.task == "text" else "images"


def bullets(items) -> str:
    return "\n".join(f"- {item}" for item in items)


def code(lines: list[str]) -> str:
    return "```python\n" + "\n".join(lines) + "\n```"


def table(header: list[str], rows: list[tuple]) -> str:
    """A Markdown pipe table; a | in a class name is escaped so the row keeps its columns."""
    def cell(value) -> str:
        return str(value).replace("|", "\\|")
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return "\n".join(lines + ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows])
