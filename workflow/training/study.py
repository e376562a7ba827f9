"""One job of a study: a screening candidate or an ablation variant, trained and measured the same way.

A study is a base recipe and named overrides of it (workflow/recipe.py); dvc.yaml runs one job per
name. The job trains its recipe (workflow/training/loop.py), logs every epoch through dvclive like train
does (`dvc plots show` draws its curves), optionally saves its artefact and writes one JSON row:
validation accuracy and macro-F1, trainable and total parameters (and, for the ablation, the same
by formula), peak memory, time and artefact size on disk.
"""
from __future__ import annotations

import time
from pathlib import Path

from workflow.core import io
from workflow.data.labelled import LabelledData
from workflow.recipe import Recipe
from workflow.training.live import EpochLog
from workflow.training.loop import fit

ROW_KEY = {"screen": "candidate", "ablation": "variant"}  # what the summaries call a job


def run_job(study: str, name: str, recipe: Recipe, data: LabelledData, *, row_out: Path | str,
            live: Path | str, model_out: Path | str | None = None, resize: bool = False) -> dict | None:
    """Train `recipe` as job `name` of `study` (screen or ablation) and write its row; None on a rank > 0."""
    outputs = [row_out, Path(live) / "metrics.json", *([model_out] if model_out else [])]
    io.check_writable(*outputs)  # before training, not after
    started = time.perf_counter()
    logger = EpochLog(live)
    result = fit(recipe, data, resize=resize, desc=f"{study} {name}", on_epoch=logger.log,
                 trust_key=f"{study}.base.model.trust_remote_code")
    if not result.is_main:  # under accelerate launch, rank 0 writes
        return None
    row = {ROW_KEY[study]: name, "task": data.task, "model": recipe.model.name, "targets": recipe.lora.targets,
           "method": recipe.describe_method(), "augment": recipe.train.augment, "epochs": recipe.train.epochs,
           "seed": recipe.train.seed, **result.row(),
           # each validation row's predicted class (val.csv order): the report's bootstrap intervals
           "val_predicted": result.val_logits.argmax(axis=1).tolist()}
    if model_out is not None:
        from workflow.models.accounting import formula  # the formulas cover the zoo's families: ablation only
        from workflow.models.methods import artefact_bytes, plain_model, save

        with io.atomic_path(model_out) as out:
            save(result.model, recipe, out)
        # The formula reads the config of the model actually trained, whatever its source.
        by_formula = formula(plain_model(result.model).config, recipe)
        row |= {"params_trainable_formula": by_formula.trainable, "params_total_formula": by_formula.total,
                "formula": by_formula.text, "artefact_mib": artefact_bytes(model_out) / 2**20}
    logger.close(result, row.get("artefact_mib"))
    row["wall_seconds"] = time.perf_counter() - started
    io.write_json(row_out, row)
    print(f"{study} {name}: val accuracy {result.scores['accuracy']:.4f}, macro-F1 {result.scores['macro_f1']:.4f}, "
          f"{result.trainable:,} trainable, {result.train_seconds:.1f} s")
    return row


def job_main(doc: str, study: str, argv=None, *, saves_model: bool, resize: bool) -> None:
    """The whole main() of a study's stage (screen, ablation): its arguments, its recipe, its job."""
    from workflow.config import load_sections
    from workflow.core.cli import stage_parser
    from workflow.core.errors import UserError

    parser = stage_parser(doc, raw="data/raw", split="data/split", pipelines="data/augment/pipelines.json",
                          cache="data/cache")
    names = {"screen": "candidates", "ablation": "variants"}[study]
    parser.add_argument(f"--{ROW_KEY[study]}", dest="name", required=True, help=f"a key of {study}.{names}")
    parser.add_argument("--out", required=True, help="the job's JSON row")
    parser.add_argument("--live", required=True, help="folder for the job's dvclive metrics and curves")
    if saves_model:
        parser.add_argument("--model-out", required=True, help="folder for the job's artefact")
    if study == "ablation":
        parser.add_argument("--seed", type=int, required=True, help="the job's train.seed, one of ablation.seeds")
    args = parser.parse_args(argv)
    section = load_sections(study, path=args.params)[study]
    if args.name not in getattr(section, names):
        raise UserError(f"{study}.{names}: no {ROW_KEY[study]} '{args.name}' (have: {', '.join(getattr(section, names))})")
    if study == "ablation" and args.seed not in section.seeds:
        raise UserError(f"ablation.seeds: no seed {args.seed} (have: {', '.join(map(str, section.seeds))})")
    recipe = section.job_recipe(args.name, args.seed) if study == "ablation" else section.recipe(args.name)
    data = LabelledData.load(args.raw, args.split, args.pipelines, args.cache)
    run_job(study, args.name, recipe, data, row_out=args.out, live=args.live,
            model_out=args.model_out if saves_model else None, resize=resize)
