"""Resumable training: everything a run needs to go on as if it had never stopped, in one file.

Saved at the end of every epoch (atomically: a kill leaves the previous checkpoint or the new one):
the trainable weights and persistent buffers, the optimizer and scheduler, every random state the
loop draws from (python, numpy, torch CPU and CUDA, the DataLoader's shuffle generator and the
albumentations train pipeline's generators), the epoch number, the history, the elapsed time and
the best epoch so far (workflow/training/selection.py), under a fingerprint of everything that determines the run. A checkpoint with another fingerprint
is ignored (and overwritten by the next save). Loaded with torch.load(weights_only=True): tensors,
plain containers and a JSON string, no pickled objects.

The training loop sees one object, Resume: `restore()` once before the first epoch, `save()` after
each one.
"""
from __future__ import annotations

import hashlib
import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import albumentations as A
import numpy as np
import torch

from workflow.core import io
from workflow.training.selection import Selection, trained_weights

STATE_FILE = "state.pt"


def fingerprint(**parts: Any) -> str:
    """sha256 over the JSON of `parts` (str() for anything JSON does not know)."""
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def _random_owners(pipeline: A.BaseCompose) -> list:
    """The pipeline and every transform inside it, depth first: each holds its own generators."""
    owners = [pipeline]
    for transform in getattr(pipeline, "transforms", []):
        owners += _random_owners(transform) if isinstance(transform, A.BaseCompose) else [transform]
    return owners


def _rng_meta(pipeline: A.BaseCompose) -> dict:
    numpy_state = np.random.get_state(legacy=False)
    numpy_state["state"]["key"] = numpy_state["state"]["key"].tolist()
    return {
        "python": random.getstate(),
        "numpy": numpy_state,
        "albumentations": [{"numpy": owner.random_generator.bit_generator.state,
                            "python": owner.py_random.getstate()} for owner in _random_owners(pipeline)],
    }


def _as_tuples(value):
    return tuple(_as_tuples(v) for v in value) if isinstance(value, list) else value


def _restore_rng_meta(meta: dict, pipeline: A.BaseCompose) -> None:
    random.setstate(_as_tuples(meta["python"]))
    numpy_state = meta["numpy"]
    numpy_state["state"]["key"] = np.array(numpy_state["state"]["key"], dtype=np.uint32)
    np.random.set_state(numpy_state)
    owners = _random_owners(pipeline)
    if len(owners) != len(meta["albumentations"]):
        raise ValueError("the checkpoint's train pipeline has another number of transforms")
    for owner, state in zip(owners, meta["albumentations"]):
        owner.random_generator.bit_generator.state = state["numpy"]
        owner.py_random.setstate(_as_tuples(state["python"]))


def save(folder: Path | str, *, fingerprint: str, epoch: int, history: list[dict], elapsed: float,
         model: torch.nn.Module, optimizer, scheduler, loader_generator: torch.Generator,
         pipeline: A.BaseCompose, selection: Selection) -> Path:
    meta = {"history": history, "elapsed": elapsed, "rng": _rng_meta(pipeline)}
    state = {
        "fingerprint": fingerprint,
        "epoch": epoch,
        "meta": json.dumps(meta),
        "weights": trained_weights(model),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "torch_rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "loader_rng": loader_generator.get_state(),
        "selection": selection.state(),  # the best epoch so far (and its weights, for select: best)
    }
    path = Path(folder) / STATE_FILE
    with io.atomic_path(path) as tmp, open(tmp, "wb") as handle:
        try:
            torch.save(state, handle)
        except RuntimeError as err:  # torch wraps the file's OSError (a full disk): raise that one
            cause = io.wrapped_os_error(err, tmp)
            if cause is None:
                raise
            raise cause from None
    return path


def load(folder: Path | str, fingerprint: str) -> dict | None:
    """The checkpoint in `folder` if there is one for this fingerprint, else None."""
    path = Path(folder) / STATE_FILE
    if not path.is_file():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # unreadable (another torch, a foreign file): start over, say why
        print(f"checkpoint {path} is unreadable ({type(err).__name__}); starting from scratch")
        return None
    if state.get("fingerprint") != fingerprint:
        print(f"checkpoint {path} belongs to another run (params, data or code differ); starting from scratch")
        return None
    return state


def restore(state: dict, *, model: torch.nn.Module, optimizer, scheduler, loader_generator: torch.Generator,
            pipeline: A.BaseCompose, selection: Selection) -> tuple[int, list[dict], float]:
    """Put the saved weights, optimizer, scheduler and random states back; (epoch, history, elapsed)."""
    missing_or_unexpected = model.load_state_dict(state["weights"], strict=False).unexpected_keys
    if missing_or_unexpected:
        raise ValueError(f"checkpoint weights not in the model: {missing_or_unexpected[:3]}")
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    meta = json.loads(state["meta"])
    torch.set_rng_state(state["torch_rng"])
    if state["cuda_rng"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda_rng"])
    loader_generator.set_state(state["loader_rng"])
    _restore_rng_meta(meta["rng"], pipeline)
    selection.restore(state["selection"])
    return int(state["epoch"]), meta["history"], float(meta["elapsed"])


def remove(folder: Path | str) -> None:
    """Delete the checkpoint, and its folder when that is left empty."""
    folder = Path(folder)
    (folder / STATE_FILE).unlink(missing_ok=True)
    try:
        folder.rmdir()
    except OSError:
        pass


@dataclass
class Resume:
    """A run's checkpoint in `folder` (None: no checkpointing), under the run's fingerprint.

    `parts` are what the state is made of: model, optimizer, scheduler, loader_generator, pipeline,
    selection.
    Only the process that writes (`writer`) saves; every process restores.
    """

    folder: Path | str | None
    fingerprint: str
    parts: dict[str, Any]
    writer: bool = True

    def restore(self) -> tuple[int, list[dict], float]:
        """(epochs done, their history, seconds spent) of a matching checkpoint; (0, [], 0.0) if none."""
        state = load(self.folder, self.fingerprint) if self.folder is not None else None
        if state is None:
            return 0, [], 0.0
        return restore(state, **self.parts)

    @property
    def path(self) -> Path | None:
        return Path(self.folder) / STATE_FILE if self.folder is not None else None

    def save(self, epoch: int, history: list[dict], elapsed: float) -> None:
        if self.folder is not None and self.writer:  # the processes hold the same state: one writes it
            save(self.folder, fingerprint=self.fingerprint, epoch=epoch, history=history, elapsed=elapsed,
                 **self.parts)
