"""Time grids for samplers: decreasing sequences T = t_0 > t_1 > ... > t_n = eps.

Every sampler integrates over an explicit grid; `N` of the SDE is only a default step count.

    uniform   t_i = T + i/n (eps - T)                                   (Song et al. 2021)
    log_snr   lambda(t_i) uniform between lambda(T) and lambda(eps)     (Lu et al. 2022, DPM-Solver)
    karras    s_i = (s_max^(1/rho) + i/n (s_min^(1/rho) - s_max^(1/rho)))^rho in s = sigma/alpha,
              rho = 7, mapped back to t through the log-SNR lambda = -2 log s (Karras et al. 2022, eq. 5)
    time_quadratic  sqrt(t_i) uniform between sqrt(T) and sqrt(eps)  (Song et al. 2021a, DDIM's
              "quadratic" timesteps)
"""

from __future__ import annotations

import math
from typing import Sequence

import torch

from scoresde.sde_lib import SDE

MAX_STEPS = 1_000_000  # more is a typo (10**9 steps would allocate an 8 GB grid before the first step)


def _check_steps(steps: int, eps: float, sde: SDE) -> None:
    if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1:
        raise ValueError(f"steps must be an integer >= 1, got {steps!r}")
    if steps > MAX_STEPS:
        raise ValueError(f"steps={steps} exceeds the limit of {MAX_STEPS:,} steps (samplers.MAX_STEPS)")
    if not 0 < eps < sde.T:
        raise ValueError(f"eps (the final time) must lie in (0, T={sde.T}), got {eps!r}")


def uniform_grid(sde: SDE, steps: int, eps: float) -> torch.Tensor:
    """n + 1 times equally spaced from T down to eps (float64)."""
    _check_steps(steps, eps, sde)
    return torch.linspace(sde.T, eps, steps + 1, dtype=torch.float64)


def log_snr_grid(sde: SDE, steps: int, eps: float) -> torch.Tensor:
    """n + 1 times whose log-SNR values are equally spaced (float64)."""
    _check_steps(steps, eps, sde)
    ends = sde.log_snr(torch.tensor([sde.T, eps], dtype=torch.float64))
    grid = sde.t_from_log_snr(torch.linspace(ends[0], ends[1], steps + 1, dtype=torch.float64))
    grid[0], grid[-1] = sde.T, eps  # exact end points despite round-off in the inverse
    return grid.clamp(eps, sde.T)


def karras_grid(sde: SDE, steps: int, eps: float, rho: float = 7.0) -> torch.Tensor:
    """n + 1 times whose s = sigma/alpha follow Karras et al.'s rho-schedule (float64)."""
    _check_steps(steps, eps, sde)
    return karras_times(sde, sde.T, eps, steps, rho)


def karras_times(sde: SDE, t_start: float, t_end: float, steps: int, rho: float = 7.0) -> torch.Tensor:
    """The rho-schedule between any two times t_start > t_end (float64; the ends exact)."""
    if not rho > 0:
        raise ValueError(f"rho must be > 0, got {rho!r}")
    s_max, s_min = torch.exp(-0.5 * sde.log_snr(torch.tensor([t_start, t_end], dtype=torch.float64)))
    ramp = torch.linspace(0, 1, steps + 1, dtype=torch.float64)
    s = (s_max ** (1 / rho) + ramp * (s_min ** (1 / rho) - s_max ** (1 / rho))) ** rho
    grid = sde.t_from_log_snr(-2.0 * torch.log(s))
    grid[0], grid[-1] = t_start, t_end
    return grid.clamp(t_end, t_start)


def time_quadratic_grid(sde: SDE, steps: int, eps: float) -> torch.Tensor:
    """n + 1 times whose square roots are equally spaced (DDIM's "quadratic" spacing, Song et al. 2021a)."""
    _check_steps(steps, eps, sde)
    root = torch.linspace(math.sqrt(sde.T), math.sqrt(eps), steps + 1, dtype=torch.float64)
    grid = root**2
    grid[0], grid[-1] = sde.T, eps
    return grid


GRID_BUILDERS = {
    "uniform": uniform_grid,
    "log_snr": log_snr_grid,
    "karras": karras_grid,
    "time_quadratic": time_quadratic_grid,
}  # name -> fn(sde, steps, eps)
TIME_GRIDS = tuple(GRID_BUILDERS)


def get_time_grid(kind: str | Sequence[float] | torch.Tensor, sde: SDE, steps: int | None, eps: float) -> torch.Tensor:
    """A grid by name (`TIME_GRIDS`) or a custom decreasing sequence of times.

    Args:
        kind: a name, or the grid itself (then `steps` must be None or len(grid) - 1).
        sde: the SDE, for T and the log-SNR.
        steps: number of intervals n.
        eps: final time.

    Returns:
        float64 tensor of shape (n + 1,), strictly decreasing from <= T to >= 0.

    Raises:
        ValueError: for an unknown name or a custom grid that is not strictly decreasing in [0, T].
    """
    if isinstance(kind, str):
        if kind not in GRID_BUILDERS:
            raise ValueError(f"unknown time grid {kind!r}; valid: {', '.join(TIME_GRIDS)} or a sequence of times")
        if steps is None:
            raise ValueError(f"the {kind!r} time grid needs a step count")
        return GRID_BUILDERS[kind](sde, steps, eps)
    grid = torch.as_tensor(kind, dtype=torch.float64).flatten()
    if grid.numel() - 1 > MAX_STEPS:
        raise ValueError(f"a custom time grid of {grid.numel() - 1} intervals exceeds the limit of {MAX_STEPS:,} steps")
    if grid.numel() < 2:
        raise ValueError("a custom time grid needs at least two times")
    if steps is not None and steps != grid.numel() - 1:
        raise ValueError(f"steps={steps} disagrees with a custom grid of {grid.numel() - 1} intervals")
    if bool(torch.any(grid[1:] >= grid[:-1])):
        raise ValueError("a custom time grid must be strictly decreasing (from T towards 0)")
    if grid[0] > sde.T or grid[-1] < 0:
        raise ValueError(f"a custom time grid must lie in [0, T={sde.T}], got [{grid[-1].item()}, {grid[0].item()}]")
    return grid
