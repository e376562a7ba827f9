"""Hand-made inputs of the report stage: every file the stages above it write, small and known.

Four classes, 40 validation rows. Each ablation variant gets `correct` rows right (the first ones),
so its accuracy, macro-F1 and per-row predictions agree as a real job's would.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from sklearn.metrics import f1_score

CLASSES = ["cat", "dog", "fox", "owl"]
ROWS = 40
TRUTH = np.arange(ROWS) % len(CLASSES)
LORA = "lora r={r} alpha=16 dropout=0.1 targets=query,value"
# name: (method, trainable parameters, rows right, train seconds, artefact MiB)
VARIANTS = {
    "head": ("head", 516, 27, 10.0, 0.002),
    "bitfit": ("bitfit", 1_200, 31, 12.0, 0.005),
    "lora-r4": (LORA.format(r=4), 2_052, 34, 14.0, 0.01),
    "lora-r8": (LORA.format(r=8), 3_588, 36, 15.0, 0.02),
    "lora-r16": (LORA.format(r=16), 6_660, 37, 17.0, 0.03),
    "full": ("full", 192_586, 38, 30.0, 0.74),
}


def predicted(correct: int) -> np.ndarray:
    """The first `correct` rows right, the rest one class off."""
    return np.where(np.arange(ROWS) < correct, TRUTH, (TRUTH + 1) % len(CLASSES))


def job_row(variant: str, *, seed: int = 0, with_predictions: bool = True, shift: int = 0) -> dict:
    method, trainable, correct, seconds, mib = VARIANTS[variant]
    guess = predicted(correct + shift)
    row = {"variant": variant, "task": "image", "model": "configs/models/beit-tiny.json", "targets": ["query", "value"],
           "method": method, "augment": True, "epochs": 3, "seed": seed,
           "val_accuracy": float((guess == TRUTH).mean()),
           "val_macro_f1": float(f1_score(TRUTH, guess, average="macro")),
           "val_log_loss": 0.5 + 0.01 * (ROWS - correct), "kept_epoch": 3, "epochs_trained": 3,
           "params_trainable": trainable, "params_total": 192_586, "trainable_pct": 100 * trainable / 192_586,
           "train_seconds": seconds, "input_size": 32, "peak_rss_mib": 900.0, "training_rss_mib": 40.7617,
           "params_trainable_formula": trainable, "params_total_formula": 192_586, "formula": "",
           "artefact_mib": mib, "wall_seconds": seconds + 1}
    if with_predictions:
        row["val_predicted"] = guess.tolist()
    return row


def write_json(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj))


SCREENED = {"vit-tiny": 0.85, "resnet-tiny": 0.6, "beit-tiny": 0.8}  # candidate: validation accuracy


def write_inputs(root: Path, *, with_predictions: bool = True, seeds: tuple[int, ...] = (0,)) -> list[str]:
    """Every input under `root`, each variant's row for seed 0 (the other seeds' rows are the caller's);
    returns the report stage's arguments, outputs under root/out."""
    from helpers import write_params

    from workflow.stages import screen_summary

    params = write_params(root, {
        "screen.candidates": {name: {"model": {"name": f"configs/models/{name}.json"}} for name in SCREENED},
        "ablation.variants": {variant: {} for variant in VARIANTS}, "ablation.seeds": list(seeds)})
    for variant in VARIANTS:
        write_json(root / f"ablation/{variant}-0.json", job_row(variant, with_predictions=with_predictions))
    write_json(root / "raw/competition.json", {"classes": CLASSES})
    main = predicted(35)
    (root / "val_predictions.csv").write_text("path,label,predicted\n" + "".join(
        f"val/{i}.png,{CLASSES[t]},{CLASSES[p]}\n" for i, (t, p) in enumerate(zip(TRUTH, main))))
    write_json(root / "train/metrics.json", {
        "val": {"accuracy": 35 / 40, "macro_f1": float(f1_score(TRUTH, main, average="macro")), "log_loss": 0.41},
        "selection/kept_epoch": 4, "selection/epochs_trained": 5, "calibration/log_loss_before": 0.41,
        "calibration/log_loss_after": 0.38, "calibration/temperature": 1.21, "model/trainable_params": 3_588,
        "model/total_params": 192_586})
    write_json(root / "train/run.json", {"seeds": {"split.seed": 42, "train.seed": 0}, "device": "cpu",
                                         "torch_threads": 2, "python": "3.11.2", "platform": "Linux",
                                         "packages": {"torch": "2.13.0"}})
    curves = {"train/loss": [1.9, 1.2, 0.8, 0.6, 0.5], "train/learning_rate": [2e-3, 1.5e-3, 1e-3, 5e-4, 0.0],
              "val/accuracy": [0.4, 0.6, 0.8, 0.875, 0.85], "val/macro_f1": [0.3, 0.55, 0.78, 0.87, 0.84],
              "val/log_loss": [1.6, 1.0, 0.6, 0.41, 0.45]}
    for name, values in curves.items():
        path = root / f"train/plots/metrics/{name}.tsv"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"step\t{name.split('/')[1]}\n" + "".join(f"{i}\t{v}\n" for i, v in enumerate(values)))
    for candidate, accuracy in SCREENED.items():
        write_json(root / f"screening/{candidate}.json", {
            "candidate": candidate, "task": "image", "model": f"configs/models/{candidate}.json",
            "targets": ["query", "value"], "method": "lora r=8", "epochs": 1, "val_accuracy": accuracy,
            "val_macro_f1": accuracy - 0.02, "params_trainable": 3_000, "params_total": 190_000, "input_size": 32,
            "normalize": "mean 0.5 std 0.5", "train_seconds": 5.0, "peak_rss_mib": 800.0})
    screen_summary.main(["--params", str(params), "--rows", str(root / "screening"), "--csv", str(root / "screening.csv"),
                         "--markdown", str(root / "screening.md"), "--chart", str(root / "screening.png"),
                         "--metrics", str(root / "screening.json"), "--winner", str(root / "screening_winner.json")])
    out = root / "out"
    return ["--params", str(params), "--rows", str(root / "ablation"), "--metrics", str(root / "train/metrics.json"),
            "--run-record", str(root / "train/run.json"), "--predictions", str(root / "val_predictions.csv"),
            "--curves", str(root / "train/plots/metrics"), "--raw", str(root / "raw"),
            "--screening", str(root / "screening.csv"), "--screening-winner", str(root / "screening_winner.json"),
            "--screening-chart", str(root / "screening.png"), "--markdown", str(out / "ablation.md"),
            "--html", str(out / "ablation.html"), "--csv", str(out / "ablation.csv"),
            "--summary", str(out / "ablation.json"), "--chart", str(out / "ablation.png"),
            "--rank-chart", str(out / "ablation_rank.png"), "--cost-chart", str(out / "ablation_cost.png"),
            "--curves-chart", str(out / "train_curves.png"), "--confusion", str(out / "confusion_matrix.png"),
            "--per-class", str(out / "per_class.csv")]
