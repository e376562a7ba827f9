"""dvclive's Live with its metrics file written atomically.

dvclive rewrites metrics.json in place at every step, so a kill during that write leaves it
truncated, and `dvc exp show` and `dvc metrics show` then fail on it. Here it is written to a
temporary file and renamed (workflow/core/io.py): a kill leaves the previous summary or the new one.
Same file, same format, same keys.

EpochLog is what a training run logs through it: train, and every screening and ablation job.
"""
from __future__ import annotations

import json
from pathlib import Path

from dvclive import Live
from dvclive.plots import NumpyEncoder

from workflow.core import io


class AtomicLive(Live):
    def make_summary(self):
        # dvclive 3.49's make_summary, with the write made atomic.
        if self._step is not None:
            self.summary["step"] = self.step
        io.write_text(self.metrics_file, json.dumps(self.summary, indent=4, cls=NumpyEncoder) + "\n")


class EpochLog:
    """dvclive for a training run: loss, learning rate and validation scores per epoch, the summary
    at the end. Opened at the first epoch's results, so a run that fails before one keeps the
    previous run's metrics. Only the process that writes (rank 0) is given epochs to log."""

    def __init__(self, folder: Path | str):
        self.folder, self.live = folder, None

    def log(self, row: dict) -> None:
        from workflow.training.runtime import is_main_process

        if not is_main_process():
            return
        if self.live is None:
            self.live = AtomicLive(self.folder, save_dvc_exp=False, dvcyaml=None)
        self.live.log_metric("train/loss", row["loss"])
        self.live.log_metric("train/learning_rate", row["lr"])  # not train/lr: that names a param
        self.live.log_metric("val/accuracy", row["accuracy"])
        self.live.log_metric("val/macro_f1", row["macro_f1"])
        if "f1" in row:  # two classes: binary F1 too
            self.live.log_metric("val/f1", row["f1"])
        self.live.log_metric("val/log_loss", row["log_loss"])
        self.live.next_step()

    def close(self, result, artefact_mib: float | None = None, extra: dict | None = None) -> None:
        """The summary (train's metrics.json: what `dvc exp show` lists), then the files closed.
        Its val scores are the kept epoch's (train.select), not necessarily the last one logged."""
        self.live.summary["val"] = dict(result.scores)
        self.live.summary.update({
            "selection/kept_epoch": result.kept_epoch,
            "selection/epochs_trained": result.epochs_trained,
            **(extra or {}),
            "model/trainable_params": result.trainable,
            "model/total_params": result.total,
            "model/trainable_pct": 100 * result.trainable / result.total,
            "time/train_s": result.train_seconds,
            f"time/{result.unit}s_per_s": result.items_per_second,  # images/s, or real tokens/s for text
            **({"artefact/mib": artefact_mib} if artefact_mib is not None else {}),
            **{f"memory/{key}": value for key, value in result.peak_memory.items()},
        })
        self.live.end()
