"""Pluggable samplers behind one entry point, `sample(name, sde, score_fn, ...)`.

`SAMPLERS` maps each name to a loop function `fn(sde, score_fn, x, time_grid, *, generator,
callback, **options) -> x`; `available()` lists the names. Step functions are importable from the
sampler modules for people who build their own loops.
"""

from __future__ import annotations

import inspect
from typing import Callable, Sequence

import torch

from scoresde.samplers.euler_maruyama import euler_maruyama, euler_maruyama_step
from scoresde.samplers.time_grids import TIME_GRIDS, get_time_grid
from scoresde.score import denoise as tweedie_denoise
from scoresde.sde_lib import SDE

SAMPLERS: dict[str, Callable] = {
    "euler_maruyama": euler_maruyama,
}

DEFAULT_EPS = 1e-3


def available() -> list[str]:
    """Names accepted by `sample`."""
    return sorted(SAMPLERS)


class CountingScore:
    """Wraps a score function and counts its evaluations (one per call, whatever the batch)."""

    def __init__(self, score_fn: Callable):
        self.score_fn = score_fn
        self.calls = 0

    def __call__(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return self.score_fn(x, t)


def _sampler_options(fn: Callable) -> set[str]:
    """Keyword-only options a sampler loop accepts besides generator and callback."""
    params = inspect.signature(fn).parameters.values()
    return {p.name for p in params if p.kind == p.KEYWORD_ONLY} - {"generator", "callback"}


def _initial_state(sde, shape, x_T, generator, device) -> torch.Tensor:
    if x_T is not None:
        if shape is not None and tuple(shape) != tuple(x_T.shape):
            raise ValueError(f"shape {tuple(shape)} disagrees with x_T of shape {tuple(x_T.shape)}")
        return x_T.to(device) if device is not None else x_T
    if shape is None:
        raise ValueError("give either shape or x_T")
    return sde.prior_sampling(tuple(shape), generator=generator, device=device)


@torch.no_grad()
def sample(
    name: str,
    sde: SDE,
    score_fn: Callable,
    shape: Sequence[int] | None = None,
    *,
    x_T: torch.Tensor | None = None,
    steps: int | None = None,
    eps: float | None = None,
    denoise: bool = True,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
    time_grid: str | Sequence[float] | torch.Tensor = "uniform",
    callback: Callable[[int, int], None] | None = None,
    **options,
) -> tuple[torch.Tensor, dict]:
    """Draw samples of p_eps (or of p_0 with `denoise`) by reversing `sde`.

    Args:
        name: a sampler from `available()`.
        sde: the forward SDE.
        score_fn: score_fn(x, t) with t of shape (batch,); a network adapter or an exact score.
        shape: (batch, *dims) of the samples; needed when x_T is not given.
        x_T: initial noise at time T (drawn from the prior when omitted). Its dtype is used.
        steps: number of steps (default sde.N); ignored by a custom `time_grid`.
        eps: final time (default 1e-3).
        denoise: finish with Tweedie's formula E[x_0 | x_eps] (one more score evaluation).
        generator: random source for x_T and the sampler's noise.
        device: where x_T is drawn when omitted.
        time_grid: "uniform", "log_snr", "karras", or a decreasing sequence of times.
        callback: called as callback(i, n) after each step i of n (progress bars).
        **options: sampler-specific options.

    Returns:
        (x, info): samples shaped like x_T; info has "nfe" (exact number of score evaluations),
        "time_grid" (the times used), "sampler".

    Raises:
        ValueError: unknown sampler, unknown option, or inconsistent arguments; the message lists
            what is valid.
    """
    if name not in SAMPLERS:
        raise ValueError(f"unknown sampler {name!r}; available: {', '.join(available())}")
    fn = SAMPLERS[name]
    unknown = set(options) - _sampler_options(fn)
    if unknown:
        valid = sorted(_sampler_options(fn))
        raise ValueError(f"unknown options {sorted(unknown)} for sampler {name!r}; valid: {valid or 'none'}")
    eps = DEFAULT_EPS if eps is None else eps
    if steps is None and isinstance(time_grid, str):
        steps = sde.N
    grid = get_time_grid(time_grid, sde, steps, eps)
    x = _initial_state(sde, shape, x_T, generator, device)
    counted = CountingScore(score_fn)
    x = fn(sde, counted, x, grid, generator=generator, callback=callback, **options)
    if denoise:
        x = tweedie_denoise(sde, counted, x, torch.full((x.shape[0],), grid[-1].item(), dtype=x.dtype, device=x.device))
    return x, {"nfe": counted.calls, "time_grid": grid, "sampler": name}


__all__ = [
    "SAMPLERS",
    "TIME_GRIDS",
    "available",
    "euler_maruyama",
    "euler_maruyama_step",
    "get_time_grid",
    "sample",
]
