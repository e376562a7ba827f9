"""params_count: trainable and total parameters of an architecture under a fine-tuning method.

Counts twice and checks they agree exactly: measured on the real transformers class built from
the architecture config (on the meta device: no weights, no memory), and by the analytic formula
written out from the config (workflow/models/accounting.py). Works offline from configs/models/.

    python -m workflow.tools.params_count --model microsoft/beit-large-patch16-384 --method lora \\
        --r 16 --targets query,value --num-labels 200
    python -m workflow.tools.params_count --model google/vit-base-patch16-224 --method last_layers \\
        --last-layers 1 --num-labels 101 --json
    python -m workflow.tools.params_count --model bert-base-uncased --method bitfit --num-labels 2
"""
from __future__ import annotations

import argparse
import json
from typing import Sequence

from pydantic import ValidationError

from workflow.core.cli import run
from workflow.core.errors import UserError
from workflow.models.accounting import account
from workflow.recipe import METHODS, Recipe


def add_model_and_method_options(parser: argparse.ArgumentParser) -> None:
    """--model and the method's options, shared with workflow.tools.dry_run."""
    parser.add_argument("--model", required=True,
                        help="a hub id whose config ships in configs/models/ (e.g. microsoft/resnet-50), "
                             "a config path, or a short name (vit-tiny)")
    parser.add_argument("--method", default="lora", help=f"one of {', '.join(METHODS)} (default: %(default)s)")
    parser.add_argument("--r", type=int, default=8, help="LoRA rank (default: %(default)s)")
    parser.add_argument("--alpha", type=float, default=16.0, help="LoRA alpha (default: %(default)s)")
    parser.add_argument("--dropout", type=float, default=0.0, help="LoRA dropout (default: %(default)s)")
    parser.add_argument("--targets", default="query,value",
                        help="LoRA targets, comma-separated: query, key, value, output, mlp_in, mlp_out, "
                             "conv (ResNet) or layer names (default: %(default)s)")
    parser.add_argument("--last-layers", type=int, default=1,
                        help="encoder blocks trained by last_layers (default: %(default)s)")
    parser.add_argument("--final-norm", action="store_true",
                        help="last_layers: also train the norm after the last block")
    parser.add_argument("--num-labels", type=int, default=1000,
                        help="classes of the new head (default: %(default)s, ImageNet's)")
    parser.add_argument("--image-size", type=int, default=None,
                        help="build the architecture for this input side (default: its config's)")


def recipe_from(args: argparse.Namespace) -> Recipe:
    """The recipe of --model with the method and options given; one line naming a bad option."""
    targets = [t.strip() for t in args.targets.split(",") if t.strip()]
    try:
        return Recipe.of(args.model, args.method, r=args.r, alpha=args.alpha, dropout=args.dropout,
                         targets=targets, last_layers=args.last_layers, final_norm=args.final_norm)
    except ValidationError as err:
        first = err.errors()[0]
        option = "--" + str(first["loc"][-1]).replace("_", "-")
        raise UserError(f"{option}: {first['msg']} (got {first.get('input')!r})") from None


def config_overrides(args: argparse.Namespace) -> dict:
    if args.num_labels < 1:
        raise UserError(f"--num-labels: must be >= 1 (got {args.num_labels})")
    if args.image_size is not None and args.image_size < 8:
        raise UserError(f"--image-size: must be >= 8 (got {args.image_size})")
    return {"num_labels": args.num_labels, **({"image_size": args.image_size} if args.image_size else {})}


def shipped_name(name: str) -> str:
    """The hub's legacy short ids name their owner's shipped config: bert-base-uncased ->
    google-bert/bert-base-uncased. (A top-level configs/models/bert-base-uncased.json would make
    load_model build that hub id at random init, so short ids never ship there.)"""
    from workflow.models.zoo import SHIPPED_DIR, shipped_config_path

    if "/" in name or name.endswith(".json") or shipped_config_path(name) is not None:
        return name
    owners = sorted(p.parent.name for p in SHIPPED_DIR.glob(f"*/{name}.json"))
    return f"{owners[0]}/{name}" if len(owners) == 1 else name


def count(recipe: Recipe, **overrides) -> dict:
    """The measured and formula counts of the recipe's model and method, as one JSON-ready row."""
    from workflow.models.zoo import architecture

    model = shipped_name(recipe.model.name)
    config = architecture(model, **overrides)
    result = account(config, recipe)
    if not result.agrees:  # a bug in a formula or a transformers change: never print it as fine
        raise UserError(
            f"accounting: {model} {recipe.describe_method()}: measured {result.trainable:,}/{result.total:,} "
            f"but the formula gives {result.formula.trainable:,}/{result.formula.total:,}; "
            f"workflow/models/accounting.py needs updating for this transformers version"
        )
    return {
        "model": model,
        "model_type": config.model_type,
        "num_labels": config.num_labels,
        "method": recipe.method_settings(),
        "method_text": recipe.describe_method(),
        "trainable": result.trainable,
        "total": result.total,
        "trainable_pct": result.trainable_pct,
        "formula_trainable": result.formula.trainable,
        "formula_total": result.formula.total,
        "formula": result.formula.text,
        "formula_total_text": result.formula.total_text,
    }


def table(row: dict) -> str:
    pct = f"{row['trainable_pct']:.3f}%"
    return "\n".join([
        f"{row['model']} ({row['model_type']}), {row['num_labels']} classes, {row['method_text']}",
        f"{'':10}{'trainable':>14}{'total':>16}{'% trainable':>13}",
        f"{'measured':10}{row['trainable']:>14,}{row['total']:>16,}{pct:>13}",
        f"{'formula':10}{row['formula_trainable']:>14,}{row['formula_total']:>16,}{pct:>13}   (equal)",
        f"trainable = {row['formula']}",
    ])


def main(argv: Sequence[str] | None = None) -> None:
    summary, _, rest = (__doc__ or "").partition("\n")
    parser = argparse.ArgumentParser(prog="python -m workflow.tools.params_count", description=summary, epilog=rest,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_and_method_options(parser)
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    parser.add_argument("--explain", action="store_true", help="also print the total written out, unit by unit")
    args = parser.parse_args(argv)
    row = count(recipe_from(args), **config_overrides(args))
    if args.json:
        print(json.dumps(row, indent=2))
        return
    print(table(row))
    if args.explain:
        print(f"total = {row['formula_total_text']}")


if __name__ == "__main__":
    raise SystemExit(run(main))
