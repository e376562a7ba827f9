"""screen: train one model-zoo candidate with the screening budget every candidate shares.

dvc.yaml runs this once per entry of screen.candidates (foreach), so adding a candidate runs only
that candidate's job and the summary. Writes one JSON row: validation accuracy and macro-F1,
trainable/total parameters, peak memory and wall time.
"""
from __future__ import annotations

import time

from workflow import io
from workflow.cli import run, stage_parser
from workflow.config import load_sections
from workflow.errors import UserError
from workflow.methods import MethodSpec
from workflow.training import Dataset, Hyper, fit

SECTIONS = ("screen",)  # dvc.yaml lists screen.<key> and screen.candidates.<candidate>
FOREACH = "candidates"  # the section key a foreach stage is expanded over


def main(argv=None) -> None:
    parser = stage_parser(__doc__, raw="data/raw", split="data/split", pipelines="data/augment/pipelines.json",
                          cache="data/cache")
    parser.add_argument("--candidate", required=True, help="a key of screen.candidates")
    parser.add_argument("--out", required=True, help="the candidate's JSON row")
    args = parser.parse_args(argv)
    params = load_sections(*SECTIONS, path=args.params)["screen"]
    if args.candidate not in params.candidates:
        raise UserError(f"screen.candidates: no candidate '{args.candidate}' (have: {', '.join(params.candidates)})")
    candidate = params.candidates[args.candidate]
    io.check_writable(args.out)  # before training, not after

    started = time.perf_counter()
    method = MethodSpec(name=params.method, targets=tuple(candidate.targets))
    hyper = Hyper(lr=params.lr, batch_size=params.batch_size, grad_accum_steps=1, epochs=params.epochs,
                  warmup_ratio=0.05, weight_decay=0.0, seed=params.seed)
    data = Dataset.load(args.raw, args.split, args.pipelines, args.cache)
    result = fit(candidate.model, method, hyper, data, resize=True, desc=f"screen {args.candidate}",
                 trust_remote_code=params.trust_remote_code, trust_key="screen.trust_remote_code")
    if not result.is_main:  # under accelerate launch, rank 0 writes
        return
    io.write_json(args.out, {
        "candidate": args.candidate,
        "model": candidate.model,
        "targets": list(candidate.targets),
        "method": method.describe(),
        "epochs": params.epochs,
        "seed": params.seed,
        **result.row(),
        "wall_seconds": time.perf_counter() - started,
    })
    print(f"screen {args.candidate}: val accuracy {result.scores['accuracy']:.4f} in {result.train_seconds:.1f} s")


if __name__ == "__main__":
    raise SystemExit(run(main))
