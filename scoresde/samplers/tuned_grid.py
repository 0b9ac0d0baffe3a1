"""Time grids tuned to one model, sampler and step count: where to put the few steps you can afford.

At 10 score evaluations a fixed-step ODE solver's error depends as much on where its steps lie as
on its order: on the problems of `benchmarks/sampler_accuracy.py` the best of the uniform, log-SNR
and Karras grids differs from problem to problem, and by up to 10x. `tune_time_grid` chooses the
grid for the problem at hand by minimising the sampler's error against a reference solution of
the probability-flow ODE from the same noise, over a batch of starting points x_T:

    grid* = argmin_grid  RMS( sampler(x_T; grid) - Phi(x_T) ),

where Phi(x_T) is the flow's end point from x_T: by default our adaptive solver at a tight
tolerance (`sample("probability_flow", rtol=atol=1e-6)`, which works with any score function, a
trained network's included), or any reference the caller passes (e.g. an exact oracle solution).
The same idea, choosing steps by the error of the solver's output against a fine solution,
underlies Watson et al. 2021 ("Learning to efficiently sample from diffusion probabilistic
models", dynamic programming over steps) and Chen et al. 2024 ("A geometric perspective on
diffusion models", GITS); Sabour et al. 2024 ("Align Your Steps") minimise a bound instead.

Parameterisation (every parameter vector gives a valid grid). In the log-SNR lambda(t) =
log(alpha^2 / sigma^2), the first time stays T; the last log-SNR is

    lambda_n = lambda(T) + exp(psi) (lambda_end0 - lambda(T)),   capped at lambda(t_min),

with lambda_end0 the initial grid's last value (so psi moves the final time eps, whose choice
matters at small budgets because the denoising step jumps from there to zero noise), and the
increments are positive shares of the total,

    lambda_{i+1} - lambda_i = (lambda_n - lambda_0) softmax(theta)_i,   theta_0 = 0.

The search starts from a named grid (theta = the increments of that grid) and runs scipy's
Nelder–Mead on (theta_1..theta_{n-1}, psi): derivative-free, so the sampler is a black box and
each evaluation costs one sampler run on the batch.

The tuned grid is a property of the model and the budget, not of the batch: tune on some x_T,
then use the grid (`sample(..., time_grid=grid)`) for others. The benchmark evaluates tuned grids
only on x_T they were not tuned on.
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np
import torch

from scoresde.samplers.time_grids import get_time_grid
from scoresde.sde_lib import SDE


def _grid_from_parameters(sde: SDE, lam0: float, lam_end0: float, lam_cap: float, params: np.ndarray) -> torch.Tensor:
    theta = np.concatenate([[0.0], params[:-1]])
    lam_end = min(lam0 + math.exp(float(params[-1])) * (lam_end0 - lam0), lam_cap)
    shares = np.exp(theta - theta.max())
    shares /= shares.sum()
    lam = lam0 + (lam_end - lam0) * np.concatenate([[0.0], np.cumsum(shares)])
    grid = sde.t_from_log_snr(torch.as_tensor(lam, dtype=torch.float64))
    grid[0] = sde.T
    return grid


def _strictly_decreasing(grid: torch.Tensor) -> bool:
    return bool(torch.all(grid[1:] < grid[:-1])) and bool(torch.isfinite(grid).all())


def tune_time_grid(
    sample_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    sde: SDE,
    x_T: torch.Tensor,
    steps: int,
    *,
    reference: torch.Tensor | None = None,
    score_fn: Callable | None = None,
    init: str = "log_snr",
    eps: float = 1e-3,
    t_min: float | None = None,
    max_evaluations: int = 600,
    tolerance: float = 1e-3,
    features: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> tuple[torch.Tensor, dict]:
    """A time grid of `steps` intervals that minimises the RMS error of `sample_fn` (module docstring).

    Args:
        sample_fn: `sample_fn(x_T, grid) -> x`, the sampler with everything but the grid fixed, e.g.
            `lambda x_T, grid: samplers.sample("unipc", sde, score_fn, x_T=x_T, time_grid=grid)[0]`.
        sde: the SDE (for T and the log-SNR).
        x_T: the batch of starting points to tune on.
        steps: the number of grid intervals.
        reference: the flow's end points from x_T; computed with the adaptive solver from `score_fn`
            (rtol = atol = 1e-6, Tweedie's final step) when omitted.
        score_fn: needed only when `reference` is omitted.
        init: the named grid to start from (`scoresde.samplers.TIME_GRIDS`).
        eps: the starting grid's final time.
        t_min: the smallest final time allowed (default 1e-5 T).
        max_evaluations: the most sampler runs the search may spend.
        tolerance: stop when the simplex's errors agree to this fraction of the starting error.
        features: a map of samples to features in which the RMS is taken instead (e.g. a
            classifier's penultimate layer); default the samples themselves.

    Returns:
        (grid, info): the tuned grid (float64, strictly decreasing from T, steps + 1 times), and info
        with "rms_initial" (the starting grid's error), "rms" (the tuned grid's), "evaluations".

    Raises:
        ValueError: bad steps, a reference of the wrong shape, or neither reference nor score_fn.
    """
    from scipy.optimize import minimize

    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be an integer >= 1, got {steps!r}")
    if reference is None:
        if score_fn is None:
            raise ValueError("give either a reference solution or the score_fn to compute one")
        from scoresde import samplers

        reference, _ = samplers.sample(
            "probability_flow", sde, score_fn, x_T=x_T, eps=min(eps, 1e-5 * sde.T), rtol=1e-6, atol=1e-6
        )
    if reference.shape != x_T.shape:
        raise ValueError(f"reference has shape {tuple(reference.shape)}, x_T {tuple(x_T.shape)}: they must agree")
    start = get_time_grid(init, sde, steps, eps)
    lam = sde.log_snr(start)
    lam0, lam_end0 = float(lam[0]), float(lam[-1])
    lam_cap = float(sde.log_snr(torch.tensor(t_min if t_min is not None else 1e-5 * sde.T, dtype=torch.float64)))
    lam_cap = min(lam_cap, 50.0) if math.isfinite(lam_cap) else 50.0
    target = reference.double() if features is None else features(reference).double()
    increments = np.diff(lam.numpy())
    params0 = np.concatenate([np.log(increments / increments[0])[1:], [0.0]])

    evaluations = 0

    def loss(params: np.ndarray) -> float:
        nonlocal evaluations
        grid = _grid_from_parameters(sde, lam0, lam_end0, lam_cap, params)
        if not _strictly_decreasing(grid) or grid[-1] < 0:
            return float("inf")
        evaluations += 1
        x = sample_fn(x_T, grid)
        x = x if features is None else features(x)
        value = float(torch.sqrt(((x.double() - target) ** 2).mean()))
        return value if math.isfinite(value) else float("inf")

    initial = loss(params0)
    simplex = [params0] + [params0 + 0.5 * np.eye(len(params0))[i] for i in range(len(params0))]
    result = minimize(
        loss,
        params0,
        method="Nelder-Mead",
        options={"maxfev": max_evaluations, "initial_simplex": np.array(simplex), "fatol": tolerance * initial, "xatol": 1e-3},
    )
    best = result.x if result.fun < initial else params0
    grid = _grid_from_parameters(sde, lam0, lam_end0, lam_cap, best)
    return grid, {"rms_initial": initial, "rms": min(float(result.fun), initial), "evaluations": evaluations}


__all__ = ["tune_time_grid"]
