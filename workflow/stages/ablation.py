"""ablation: train one variant of the ablation recipe and measure what it costs and gives.

dvc.yaml runs this once per entry of ablation.variants (foreach): each variant is ablation.base
with its own overrides, cached on its own, so changing one variant re-runs one job. Writes the
variant's artefact (what reproduces its predictions) and a JSON row: accuracy, macro-F1, trainable
parameters measured and by formula, peak memory, time and artefact size on disk.
"""
from __future__ import annotations

import time

from workflow import io
from workflow.accounting import formula
from workflow.cli import run, stage_parser
from workflow.config import load_sections
from workflow.errors import UserError
from workflow.methods import MethodSpec, artefact_bytes, plain_model, save
from workflow.training import Dataset, Hyper, fit

SECTIONS = ("ablation",)  # dvc.yaml lists ablation.base and ablation.variants.<variant>
FOREACH = "variants"


def main(argv=None) -> None:
    parser = stage_parser(__doc__, raw="data/raw", split="data/split", pipelines="data/augment/pipelines.json",
                          cache="data/cache")
    parser.add_argument("--variant", required=True, help="a key of ablation.variants")
    parser.add_argument("--model-out", required=True, help="folder for the variant's artefact")
    parser.add_argument("--out", required=True, help="the variant's JSON row")
    args = parser.parse_args(argv)
    params = load_sections(*SECTIONS, path=args.params)["ablation"]
    if args.variant not in params.variants:
        raise UserError(f"ablation.variants: no variant '{args.variant}' (have: {', '.join(params.variants)})")
    recipe = params.recipe(args.variant)
    io.check_writable(args.model_out, args.out)  # before training, not after

    started = time.perf_counter()
    method = MethodSpec(name=recipe.method, r=recipe.r, alpha=recipe.alpha, dropout=recipe.dropout,
                        targets=tuple(recipe.targets), last_layers=recipe.last_layers)
    hyper = Hyper.from_params(recipe)
    data = Dataset.load(args.raw, args.split, args.pipelines, args.cache)
    result = fit(recipe.model, method, hyper, data, augment=recipe.augment, desc=f"ablation {args.variant}",
                 trust_remote_code=recipe.trust_remote_code, trust_key="ablation.base.trust_remote_code")
    if not result.is_main:  # under accelerate launch, rank 0 writes
        return
    with io.atomic_path(args.model_out) as out:
        save(result.model, method, out)
    # The formula reads the config of the model actually trained, whatever its source.
    by_formula = formula(plain_model(result.model).config, method)

    io.write_json(args.out, {
        "variant": args.variant,
        "method": method.describe(),
        "augment": recipe.augment,
        "seed": recipe.seed,
        **result.row(),
        "params_trainable_formula": by_formula.trainable,
        "params_total_formula": by_formula.total,
        "formula": by_formula.text,
        "wall_seconds": time.perf_counter() - started,
        "artefact_mib": artefact_bytes(args.model_out) / 2**20,
    })
    print(f"ablation {args.variant}: val accuracy {result.scores['accuracy']:.4f}, "
          f"{result.trainable:,} trainable, {result.train_seconds:.1f} s")


if __name__ == "__main__":
    raise SystemExit(run(main))
