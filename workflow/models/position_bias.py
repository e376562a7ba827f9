"""BEiT's relative position bias without host work in the forward, and computed once while frozen.

transformers builds BEiT's relative-position index on the CPU and indexes the (CUDA) bias table
with it, and re-interpolates the table, on every forward of every layer: dozens of small
synchronous host-to-device copies per step. `speed_up_position_bias` swaps each such module, after
loading, for a subclass of transformers' own class (the model classes stay transformers'; the
parameter keeps its name, so state dicts, LoRA targets and saved artefacts are unchanged):
- the index is built once per window size and kept on the table's device;
- while the table is frozen (lora, head, bitfit), the bias is computed once per window size,
  interpolation, device and autocast setting, and reused until the table's values change
  (load_state_dict, an optimizer step: torch's version counter says so).
The values are transformers' own: the forward is theirs, only the index comes from here.
"""
from __future__ import annotations

import torch
from torch import nn
from transformers.models.beit.modeling_beit import BeitRelativePositionBias
from transformers.models.data2vec.modeling_data2vec_vision import Data2VecVisionRelativePositionBias

ORIGINALS = (BeitRelativePositionBias, Data2VecVisionRelativePositionBias)  # the same code in both families


class DeviceIndexAndCache:
    """Mixed in before transformers' class: see the module docstring."""

    def _start_caches(self) -> None:
        self._indices: dict[tuple, torch.Tensor] = {}
        self._biases: dict[tuple, torch.Tensor] = {}

    def generate_relative_position_index(self, window_size) -> torch.Tensor:
        # transformers' forward calls this through self; theirs is a CPU tensor per call.
        device = self.relative_position_bias_table.device
        key = (tuple(window_size), device)
        if key not in self._indices:
            cpu_index = super().generate_relative_position_index(tuple(window_size))  # transformers' own
            self._indices[key] = cpu_index.to(device)
        return self._indices[key]

    def forward(self, window_size, interpolate_pos_encoding: bool = False, dim_size=None) -> torch.Tensor:
        table = self.relative_position_bias_table
        if table.requires_grad or torch.compiler.is_compiling():
            return super().forward(window_size, interpolate_pos_encoding, dim_size)
        device = table.device.type
        # An inference-mode tensor may not be saved for a later backward: one cache entry per mode.
        key = (tuple(window_size), interpolate_pos_encoding, dim_size, table.device, table.dtype, table._version,
               torch.is_autocast_enabled(device) and torch.get_autocast_dtype(device),
               torch.is_inference_mode_enabled())
        bias = self._biases.get(key)
        if bias is None:
            with torch.no_grad():
                bias = super().forward(window_size, interpolate_pos_encoding, dim_size)
            self._biases = {key: bias}  # one resolution at a time: an older entry is stale or unused
        return bias


_SUBCLASSES = {original: type(f"Cached{original.__name__}", (DeviceIndexAndCache, original), {})
               for original in ORIGINALS}


def speed_up_position_bias(model: nn.Module) -> int:
    """Swap every relative-position-bias module of `model` in place; returns how many were swapped."""
    swapped = 0
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            subclass = _SUBCLASSES.get(type(child))
            if subclass is None:
                continue
            fast = subclass.__new__(subclass)
            fast.__dict__ = child.__dict__  # the same parameter object, window size and hooks
            fast._start_caches()
            setattr(parent, name, fast)
            swapped += 1
    return swapped
