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

from scoresde.sde_lib import EDMSDE, SDE, VESDE, VPSDE, CosineVPSDE

MAX_STEPS = 1_000_000  # more is a typo (10**9 steps would allocate an 8 GB grid before the first step)


def _check_steps(steps: int, eps: float, sde: SDE, start: float | None = None) -> float:
    """Validate the arguments of a named grid; return its first time (`start`, default T)."""
    if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1:
        raise ValueError(f"steps must be an integer >= 1, got {steps!r}")
    if steps > MAX_STEPS:
        raise ValueError(f"steps={steps} exceeds the limit of {MAX_STEPS:,} steps (samplers.MAX_STEPS)")
    start = sde.T if start is None else float(start)
    if not 0 < start <= sde.T:
        raise ValueError(f"start (the first time) must lie in (0, T={sde.T}], got {start!r}")
    if not 0 < eps < start:
        raise ValueError(f"eps (the final time) must lie in (0, start={start}), got {eps!r}")
    return start


def uniform_grid(sde: SDE, steps: int, eps: float, start: float | None = None) -> torch.Tensor:
    """n + 1 times equally spaced from `start` (default T) down to eps (float64)."""
    start = _check_steps(steps, eps, sde, start)
    return torch.linspace(start, eps, steps + 1, dtype=torch.float64)


def log_snr_grid(sde: SDE, steps: int, eps: float, start: float | None = None) -> torch.Tensor:
    """n + 1 times whose log-SNR values are equally spaced (float64)."""
    start = _check_steps(steps, eps, sde, start)
    ends = sde.log_snr(torch.tensor([start, eps], dtype=torch.float64))
    grid = sde.t_from_log_snr(torch.linspace(ends[0], ends[1], steps + 1, dtype=torch.float64))
    grid[0], grid[-1] = start, eps  # exact end points despite round-off in the inverse
    return grid.clamp(eps, start)


def karras_grid(sde: SDE, steps: int, eps: float, start: float | None = None, rho: float = 7.0) -> torch.Tensor:
    """n + 1 times whose s = sigma/alpha follow Karras et al.'s rho-schedule (float64)."""
    start = _check_steps(steps, eps, sde, start)
    return karras_times(sde, start, eps, steps, rho)


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


def time_quadratic_grid(sde: SDE, steps: int, eps: float, start: float | None = None) -> torch.Tensor:
    """n + 1 times whose square roots are equally spaced (DDIM's "quadratic" spacing, Song et al. 2021a)."""
    start = _check_steps(steps, eps, sde, start)
    root = torch.linspace(math.sqrt(start), math.sqrt(eps), steps + 1, dtype=torch.float64)
    grid = root**2
    grid[0], grid[-1] = start, eps
    return grid


# Where a fixed-step ODE solver's named grid ends by default when it takes few steps: (at most this
# many steps, end log-SNR). Measured with benchmarks/few_step.py's problems (exact scores, 2-D rings
# and a 64-D mixture with stds 0.01-1 under VP, VE, cosine and EDM; every solver, grid and end step):
# at 4-8 evaluations ending at log-SNR 6 (sigma/alpha = 0.05) and denoising from there beats ending
# near zero noise (eps 1e-3 .. 1e-5) on 29 of the 32 (problem, budget) cells, by up to 3.6x, losing by
# at most 1.3x; at 10 evaluations log-SNR 8 wins on 5 of 8 (README, "Few evaluations").
FEW_STEP_END_LOG_SNR = ((8, 6.0), (12, 8.0))


def few_step_end_time(sde: SDE, steps: int, eps: float) -> float:
    """The default final time of a named grid of `steps` steps: the time of `FEW_STEP_END_LOG_SNR`'s
    end log-SNR for that many steps when it lies later than `eps`, else `eps` itself."""
    for most_steps, log_snr in FEW_STEP_END_LOG_SNR:
        if steps <= most_steps:
            t = float(sde.t_from_log_snr(torch.tensor(log_snr, dtype=torch.float64)))
            return t if eps < t < sde.T else eps
    return eps


FEW_STEPS = 12  # "few steps" for the per-SDE default grids below (the band they were measured in)

# The named grid a fixed-step ODE solver takes by default on these SDEs, in place of its own
# `default_grid`: SDE class -> ({solver: grid} for at most FEW_STEPS steps, {solver: grid} for more).
# Derived by benchmarks/default_grids.py (`--check` compares this table with what it measures): on
# the exact-score problems (a 2-D ring and a 64-D mixture with stds 0.01-1 per SDE; 4-10, 20 and
# 50 evaluations; 512 samples; RMS to the exact flow; up to FEW_STEPS steps both with `sample`'s
# few-step end and with eps = 1e-3, the run modes' default) a solver's grid is changed where
# another named grid is at least 1.2x more accurate in the geometric mean and no more than 1.25x
# less accurate on either problem with either end. Measured at one parameter set per SDE (VP beta
# 0.1-20, VE sigma 0.01-10 and 0.01-50, EDM sigma_max 80, cosine s = 0.008). Other SDEs (sub-VP,
# yours), solvers not named here and stochastic samplers keep the sampler's own default; a subclass
# takes its parent's row.
SDE_DEFAULT_GRIDS: dict[type, tuple[dict[str, str], dict[str, str]]] = {
    VPSDE: (
        {
            "ode_euler": "time_quadratic",
            "ddim": "time_quadratic",
            "heun": "uniform",
            "dpmpp_2m": "time_quadratic",
            "dpm_solver_pp": "time_quadratic",
            "dpmpp_3m": "time_quadratic",
            "ipndm": "log_snr",
            "lms": "time_quadratic",
            "unipc": "time_quadratic",
        },
        {"ode_euler": "karras", "ddim": "time_quadratic", "heun": "time_quadratic", "ipndm": "log_snr", "lms": "time_quadratic"},
    ),
    CosineVPSDE: (
        {
            "ddim": "time_quadratic",
            "heun": "log_snr",
            "dpmpp_2m": "time_quadratic",
            "dpm_solver_pp": "time_quadratic",
            "dpmpp_3m": "time_quadratic",
            "ipndm": "time_quadratic",
            "lms": "time_quadratic",
            "unipc": "time_quadratic",
        },
        {
            "ddim": "time_quadratic",
            "heun": "log_snr",
            "ipndm": "time_quadratic",
            "lms": "time_quadratic",
            "unipc": "time_quadratic",
        },
    ),
    VESDE: ({"ipndm": "time_quadratic"}, {"unipc": "karras"}),
    EDMSDE: ({"ode_euler": "log_snr", "ipndm": "log_snr"}, {"ode_euler": "log_snr"}),
}


def sde_default_grid(sde: SDE, solver: str, steps: int) -> str | None:
    """`SDE_DEFAULT_GRIDS`' grid for this SDE (or its nearest listed parent class), solver and step
    count; None where the table names none (the solver's own default applies)."""
    for cls in type(sde).__mro__:
        if cls in SDE_DEFAULT_GRIDS:
            few, many = SDE_DEFAULT_GRIDS[cls]
            return (few if steps <= FEW_STEPS else many).get(solver)
    return None


def sde_default_grids_markdown() -> str:
    """`SDE_DEFAULT_GRIDS` as a Markdown table (the README's copy is checked by a test)."""
    lines = ["| SDE | steps | solver: default grid |", "|---|---|---|"]
    for cls, halves in SDE_DEFAULT_GRIDS.items():
        for label, choices in zip((f"<= {FEW_STEPS}", f"> {FEW_STEPS}"), halves):
            cells = ", ".join(f"`{solver}`: {grid}" for solver, grid in choices.items()) or "-"
            lines.append(f"| `{cls.__name__}` | {label} | {cells} |")
    return "\n".join(lines)


GRID_BUILDERS = {
    "uniform": uniform_grid,
    "log_snr": log_snr_grid,
    "karras": karras_grid,
    "time_quadratic": time_quadratic_grid,
}  # name -> fn(sde, steps, eps, start)
TIME_GRIDS = tuple(GRID_BUILDERS)


def get_time_grid(
    kind: str | Sequence[float] | torch.Tensor, sde: SDE, steps: int | None, eps: float, start: float | None = None
) -> torch.Tensor:
    """A grid by name (`TIME_GRIDS`) or a custom decreasing sequence of times.

    Args:
        kind: a name, or the grid itself (then `steps` must be None or len(grid) - 1).
        sde: the SDE, for T and the log-SNR.
        steps: number of intervals n.
        eps: final time.
        start: first time of a named grid (default T); custom grids carry their own.

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
        return GRID_BUILDERS[kind](sde, steps, eps, start)
    if start is not None:
        raise ValueError("start applies to named time grids; a custom grid starts at its own first time")
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
