"""Gaussian noise for samplers, from one generator or from one generator per sample.

With a single `torch.Generator` the noise of sample j depends on the batch it is drawn in. With a
list of generators (one per sample, as Karras et al.'s `StackedRandomGenerator`), sample j draws
only from generator j, so its whole trajectory is the same in any batch, of any size.
"""

from __future__ import annotations

from typing import Sequence, Union

import torch

Generators = Union[torch.Generator, Sequence[torch.Generator], None]


def per_sample_generators(seeds: Sequence[int], device: torch.device | str = "cpu") -> list[torch.Generator]:
    """One seeded generator per sample."""
    return [torch.Generator(device).manual_seed(int(s)) for s in seeds]


def randn(shape: Sequence[int], generator: Generators, *, device=None, dtype=torch.float32) -> torch.Tensor:
    """Standard normal noise of `shape` = (batch, *dims).

    Raises:
        ValueError: if a list of generators does not have one generator per sample.
    """
    shape = tuple(shape)
    if generator is None or isinstance(generator, torch.Generator):
        if device is None and generator is not None:
            device = generator.device
        return torch.randn(shape, generator=generator, device=device, dtype=dtype)
    if len(generator) != shape[0]:
        raise ValueError(f"got {len(generator)} generators for a batch of {shape[0]} samples; give one per sample")
    return torch.stack([torch.randn(shape[1:], generator=g, device=g.device, dtype=dtype) for g in generator]).to(device)


def randn_like(x: torch.Tensor, generator: Generators) -> torch.Tensor:
    """Noise shaped like x, on x's device and dtype."""
    return randn(x.shape, generator, device=x.device, dtype=x.dtype)
