"""Which epoch a run keeps (train.select) and when it stops (train.early_stopping_patience).

After every epoch the validation scores are compared with the best so far on train.select_metric
(accuracy or macro-F1: higher is better; log loss: lower is better; ties keep the earlier epoch).
With select: best, the best epoch's trained weights and validation logits are copied aside (to the
CPU: only the weights that train) and put back at the end; with last, the last epoch's are kept.
With a patience of N, training stops once N epochs in a row have not beaten the best. The whole
state goes into the run's checkpoint, so a resumed run keeps and stops exactly as an uninterrupted one.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from workflow.recipe import TrainingParams

LOWER_IS_BETTER = {"log_loss"}


def trained_weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The weights training changes (trainable parameters and persistent buffers), copied to the CPU."""
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    buffers = {name for name, _ in model.named_buffers()}
    return {name: t.detach().to("cpu", copy=True) for name, t in model.state_dict().items()
            if name in trainable | buffers}


@dataclass
class Selection:
    select: str = "last"
    metric: str = "accuracy"
    patience: int = 0
    best_epoch: int = 0
    best_value: float | None = None
    best_weights: dict[str, torch.Tensor] = field(default_factory=dict)  # select: best only
    best_logits: np.ndarray | None = None

    @classmethod
    def of(cls, train: TrainingParams) -> "Selection":
        return cls(select=train.select, metric=train.select_metric, patience=train.early_stopping_patience)

    def _better(self, value: float) -> bool:
        if self.best_value is None:
            return True
        return value < self.best_value if self.metric in LOWER_IS_BETTER else value > self.best_value

    def update(self, epoch: int, scores: dict[str, float], model: torch.nn.Module, logits: np.ndarray) -> None:
        """Record epoch `epoch` if it beats the best so far."""
        if self._better(scores[self.metric]):
            self.best_epoch, self.best_value = epoch, float(scores[self.metric])
            if self.select == "best":
                self.best_weights, self.best_logits = trained_weights(model), logits.copy()

    def should_stop(self, epoch: int) -> bool:
        return self.patience > 0 and epoch - self.best_epoch >= self.patience

    def kept_epoch(self, last_epoch: int) -> int:
        return self.best_epoch if self.select == "best" else last_epoch

    def note(self, last_epoch: int, epochs: int) -> str:
        """'kept epoch 7 of 10 trained (best val accuracy 0.9310); stopped early: 3 epochs without improvement'."""
        kept = self.kept_epoch(last_epoch)
        why = (f"best val {self.metric.replace('_', ' ')} {self.best_value:.4f}" if self.select == "best"
               else f"the last; by {self.metric.replace('_', ' ')} the best was epoch {self.best_epoch}")
        stopped = (f"; stopped early after epoch {last_epoch} of {epochs}: {self.patience} epochs without a better "
                   f"val {self.metric.replace('_', ' ')}" if last_epoch < epochs else "")
        return f"kept epoch {kept} of {last_epoch} trained ({why}){stopped}"

    def state(self) -> dict:
        """For the checkpoint (torch.save with weights_only: tensors, numbers, strings)."""
        return {"best_epoch": self.best_epoch, "best_value": self.best_value, "best_weights": self.best_weights,
                "best_logits": torch.from_numpy(self.best_logits) if self.best_logits is not None else None}

    def restore(self, state: dict) -> None:
        self.best_epoch, self.best_value = int(state["best_epoch"]), state["best_value"]
        self.best_weights = state["best_weights"]
        logits = state["best_logits"]
        self.best_logits = logits.numpy() if logits is not None else None

    def put_back(self, model: torch.nn.Module) -> None:
        """select: best: load the best epoch's weights into the model (on its device)."""
        if self.select == "best" and self.best_weights:
            unexpected = model.load_state_dict(self.best_weights, strict=False).unexpected_keys
            assert not unexpected, unexpected  # the same model saved them
