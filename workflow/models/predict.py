"""Batched forward passes without autograd (the scores every run logs: workflow/models/scores.py)."""
from __future__ import annotations

import numpy as np
import torch

from workflow.training.runtime import Compute


@torch.inference_mode()
def predict_logits(model: torch.nn.Module, loader, compute: Compute, hflip: bool = False) -> np.ndarray:
    """Logits of every row of `loader`'s data set, in the set's order; with `hflip` (images), the mean
    of each image's and its mirror's."""
    model.eval()
    batches = []
    for features, _ in loader:
        inputs = compute.inputs(features)
        real = len(next(iter(inputs.values())))
        inputs = {name: pad_rows(tensor, compute.pad_to)[0] for name, tensor in inputs.items()}
        with compute.autocast():
            logits = model(**inputs).logits.float()
            if hflip:
                logits = (logits + model(pixel_values=inputs["pixel_values"].flip(-1)).logits.float()) / 2
        batches.append(compute.gather(logits[:real]))
    logits = torch.cat(batches).cpu().numpy()  # one device-to-host copy, not one per batch
    in_set_order = getattr(getattr(loader, "dataset", None), "in_set_order", None)  # text, predicted by length
    return in_set_order(logits) if in_set_order is not None else logits


def pad_rows(batch: torch.Tensor, size: int | None) -> tuple[torch.Tensor, int]:
    """The batch padded to `size` rows with copies of its last row (a compiled model sees one shape;
    in eval mode rows do not affect each other), and how many rows are real."""
    real = len(batch)
    if size is None or real >= size:
        return batch, real
    padded = torch.cat([batch, batch[-1:].expand(size - real, *batch.shape[1:])])
    nhwc = batch.dim() == 4 and not batch.is_contiguous() and batch.is_contiguous(memory_format=torch.channels_last)
    return padded.contiguous(memory_format=torch.channels_last if nhwc else torch.contiguous_format), real
