"""Exponential moving average of a model's weights, used for sampling (Song & Ermon 2020, sec. 3.3)."""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch
from torch import nn


class ExponentialMovingAverage:
    """shadow <- decay * shadow + (1 - decay) * theta after each optimizer step.

    With `warmup`, the decay at update n is min(decay, (1 + n) / (10 + n)) so the average is not
    dominated by the random initialisation early on (as score_sde and TensorFlow's EMA do).
    The shadow holds every trainable parameter by name; buffers are not averaged.

    Args:
        model: the model whose trainable parameters are averaged.
        decay: in [0, 1).
        warmup: use the warm-up schedule above.
    """

    def __init__(self, model: nn.Module, decay: float = 0.999, warmup: bool = True):
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"EMA decay must lie in [0, 1), got {decay!r}")
        self.decay = float(decay)
        self.warmup = warmup
        self.num_updates = 0
        self.shadow = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}

    def current_decay(self) -> float:
        if not self.warmup:
            return self.decay
        return min(self.decay, (1 + self.num_updates) / (10 + self.num_updates))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Fold the model's current parameters into the average."""
        self.num_updates += 1
        weight = 1.0 - self.current_decay()
        pairs = [(self.shadow[name], p.detach()) for name, p in model.named_parameters() if name in self.shadow]
        if pairs:  # one multi-tensor kernel instead of one per parameter (it matters on GPUs)
            shadows, params = zip(*pairs)
            torch._foreach_lerp_(list(shadows), list(params), weight)

    @torch.no_grad()
    def copy_to(self, model: nn.Module) -> None:
        """Overwrite the model's trainable parameters with the averages."""
        params = dict(model.named_parameters())
        missing = set(self.shadow) - set(params)
        if missing:
            raise ValueError(f"model lacks averaged parameters: {sorted(missing)}")
        for name, value in self.shadow.items():
            params[name].copy_(value)

    @contextlib.contextmanager
    def average_parameters(self, model: nn.Module) -> Iterator[nn.Module]:
        """Temporarily swap the averages into `model`, restoring the live weights afterwards."""
        backup = {n: p.detach().clone() for n, p in model.named_parameters() if n in self.shadow}
        self.copy_to(model)
        try:
            yield model
        finally:
            with torch.no_grad():
                for name, p in model.named_parameters():
                    if name in backup:
                        p.copy_(backup[name])

    def state_dict(self) -> dict:
        return {"decay": self.decay, "num_updates": self.num_updates, "shadow": dict(self.shadow)}

    def load_state_dict(self, state: dict) -> None:
        """Load averages saved by `state_dict`; names and shapes must match exactly."""
        shadow = state["shadow"]
        if set(shadow) != set(self.shadow):
            raise ValueError(
                f"EMA keys differ: missing {sorted(set(self.shadow) - set(shadow))}, "
                f"unexpected {sorted(set(shadow) - set(self.shadow))}"
            )
        for name, value in shadow.items():
            if value.shape != self.shadow[name].shape:
                raise ValueError(f"EMA tensor {name}: shape {tuple(value.shape)} != {tuple(self.shadow[name].shape)}")
            self.shadow[name].copy_(value)
        self.decay = float(state["decay"])
        self.num_updates = int(state["num_updates"])
