"""Euler–Maruyama integration of the reverse-time SDE (Song et al. 2021, eq. 6).

From t to t - h (h > 0), with drift b = f(x, t) - g(t)^2 s(x, t) of the reverse SDE:

    x_mean = x - b h,    x <- x_mean + g(t) sqrt(h) z,    z ~ N(0, I).
"""

from __future__ import annotations

import math
from typing import Callable

import torch

from scoresde.samplers.noise import randn_like
from scoresde.samplers.registry import report_step
from scoresde.sde_lib import SDE, ReverseSDE, broadcast_to_data, time_vector


def euler_maruyama_step(
    reverse_sde: ReverseSDE, x: torch.Tensor, t: float, t_next: float, noise: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """One Euler–Maruyama step of `reverse_sde` (= sde.reverse(score_fn)) from t to t_next < t.

    Returns:
        (x_next, x_mean): the sample after the step and its noiseless mean.
    """
    h = t - t_next
    t_vec = time_vector(t, x)
    drift, diffusion = reverse_sde.sde(x, t_vec)
    x_mean = x - drift * h
    return x_mean + broadcast_to_data(diffusion, x) * math.sqrt(h) * noise, x_mean


def euler_maruyama(
    sde: SDE,
    score_fn: Callable,
    x: torch.Tensor,
    time_grid: torch.Tensor,
    *,
    generator: torch.Generator | None = None,
    callback: Callable[[dict], None] | None = None,
) -> torch.Tensor:
    """Integrate the reverse SDE over `time_grid` (decreasing) from x = x(t_0).

    Args:
        sde: forward SDE.
        score_fn: score_fn(x, t).
        x: initial state at time_grid[0], shape (batch, *dims).
        time_grid: decreasing times, shape (n + 1,).
        generator: source of the Brownian increments.
        callback: called after step i with a `registry.StepInfo` dict (no data prediction: "denoised" None).

    Returns:
        x at time_grid[-1] (with its last noise increment).
    """
    reverse_sde = sde.reverse(score_fn)
    times = time_grid.tolist()
    n = len(times) - 1
    for i in range(n):
        noise = randn_like(x, generator)
        x, _ = euler_maruyama_step(reverse_sde, x, times[i], times[i + 1], noise)
        report_step(callback, i, n, times[i], x, None)
    return x
