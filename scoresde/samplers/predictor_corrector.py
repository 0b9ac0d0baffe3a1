"""Predictor–corrector sampling (Song et al. 2021, Algorithm 1 and app. G).

At each grid time t_i, in the default order "corrector_first" (as score_sde):

    x <- corrector steps at t_i  (Langevin, `corrector_steps` times, step size from `snr`)
    x <- predictor step t_i -> t_{i+1}

and in the order "predictor_first" the corrector runs at t_{i+1} after the predictor.

Predictors:
    reverse_diffusion  reverse of the forward discretization (Song et al. 2021, eq. 46): with
                       a = alpha_t / alpha_s and G^2 = sigma_t^2 - a^2 sigma_s^2 for the step t -> s,
                       x_mean = (2 - a) x + G^2 score, x = x_mean + G z. For VE it is exactly the
                       SMLD reverse-diffusion step; for VP it is score_sde's step with the betas of
                       this grid instead of the training chain's.
    euler_maruyama     the reverse-SDE Euler–Maruyama step
    ancestral          the posterior step of `ancestral.py`
    none               corrector only (annealed Langevin dynamics)
Correctors: langevin (step size from `snr` by `step_rule`, see langevin.py), none.
"""

from __future__ import annotations

import math

import torch

from scoresde.samplers.ancestral import ancestral_step
from scoresde.samplers.euler_maruyama import euler_maruyama_step
from scoresde.samplers.langevin import check_langevin_options, langevin_step
from scoresde.samplers.noise import randn_like
from scoresde.samplers.ode import GridScales
from scoresde.samplers.registry import report_step
from scoresde.sde_lib import time_vector

PREDICTORS = ("reverse_diffusion", "euler_maruyama", "ancestral", "none")
CORRECTORS = ("langevin", "none")
ORDERS = ("corrector_first", "predictor_first")


def reverse_diffusion_step(score_fn, g: GridScales, i: int, x: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """x_mean = (2 - a) x + G^2 score(x, t_i), x = x_mean + G z (see the module docstring)."""
    a = g.alpha[i] / g.alpha[i + 1]
    g2 = max(g.sigma[i] ** 2 - a**2 * g.sigma[i + 1] ** 2, 0.0)
    x_mean = (2.0 - a) * x + g2 * score_fn(x, time_vector(g.t[i], x))
    return x_mean + math.sqrt(g2) * noise


def _predict(name, sde, reverse_sde, score_fn, g, i, x, generator):
    if name == "none":
        return x
    noise = randn_like(x, generator)
    if name == "reverse_diffusion":
        return reverse_diffusion_step(score_fn, g, i, x, noise)
    if name == "euler_maruyama":
        return euler_maruyama_step(reverse_sde, x, g.t[i], g.t[i + 1], noise)[0]
    return ancestral_step(g, i, x, g.denoise(score_fn, x, i), noise)[0]


def _correct(name, sde, score_fn, x, t, steps, snr, step_rule, generator):
    if name == "none":
        return x
    t_vec = time_vector(t, x)
    for _ in range(steps):
        x = langevin_step(score_fn, sde, x, t_vec, randn_like(x, generator), snr=snr, step_rule=step_rule)
    return x


def predictor_corrector(
    sde,
    score_fn,
    x,
    time_grid,
    *,
    predictor: str = "reverse_diffusion",
    corrector: str = "langevin",
    snr: float = 0.16,
    corrector_steps: int = 1,
    step_rule: str = "noise_level",
    order: str = "corrector_first",
    generator=None,
    callback=None,
):
    """The PC sampler; see the module docstring for predictors, correctors and orders.

    Raises:
        ValueError: unknown predictor, corrector or order (listing the valid ones), or bad snr/steps.
    """
    for value, valid, what in (
        (predictor, PREDICTORS, "predictor"),
        (corrector, CORRECTORS, "corrector"),
        (order, ORDERS, "order"),
    ):
        if value not in valid:
            raise ValueError(f"unknown {what} {value!r}; valid: {', '.join(valid)}")
    if corrector != "none":
        check_langevin_options(snr, corrector_steps, step_rule, "corrector_steps")
    g = GridScales(sde, time_grid)
    reverse_sde = sde.reverse(score_fn)
    for i in range(g.n):
        if order == "corrector_first":
            x = _correct(corrector, sde, score_fn, x, g.t[i], corrector_steps, snr, step_rule, generator)
        x = _predict(predictor, sde, reverse_sde, score_fn, g, i, x, generator)
        if order == "predictor_first":
            x = _correct(corrector, sde, score_fn, x, g.t[i + 1], corrector_steps, snr, step_rule, generator)
        report_step(callback, i, g.n, g.t[i], x, None)
    return x


def reverse_diffusion(sde, score_fn, x, time_grid, *, generator=None, callback=None):
    """The reverse-diffusion predictor alone."""
    return predictor_corrector(sde, score_fn, x, time_grid, corrector="none", generator=generator, callback=callback)
