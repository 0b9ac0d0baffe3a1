"""Ancestral sampling: draw x_s from the Gaussian posterior q(x_s | x_t, x_0 = D(x_t)).

For any SDE with kernel N(alpha x0, sigma^2 I), the transition from s to t > s is
N(alpha_{t|s} x_s, sigma_{t|s}^2 I) with alpha_{t|s} = alpha_t / alpha_s and
sigma_{t|s}^2 = sigma_t^2 - alpha_{t|s}^2 sigma_s^2, and the posterior is (Kingma et al. 2021,
"Variational Diffusion Models", eqs. 28-30)

    mean = alpha_{t|s} sigma_s^2 / sigma_t^2 x_t + alpha_s sigma_{t|s}^2 / sigma_t^2 D(x_t),
    var  = sigma_{t|s}^2 sigma_s^2 / sigma_t^2,

with D the Tweedie denoiser. For VP this is DDPM's ancestral step (Ho et al. 2020, eq. 7) and for
VE the SMLD ancestral step of Song et al. (2021, app. F); because it is written with the marginals
rather than the training chain, any number of steps works (it never forms a beta above 1), and
sub-VP, also linear, works too.
"""

from __future__ import annotations

import math

import torch

from scoresde.samplers.noise import randn_like
from scoresde.samplers.ode import GridScales
from scoresde.samplers.registry import report_step


def ancestral_step(
    g: GridScales, i: int, x: torch.Tensor, d: torch.Tensor, noise: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Posterior step from grid time i to i + 1 given the data prediction d; returns (x, mean)."""
    a_t, a_s = g.alpha[i], g.alpha[i + 1]
    var_t, var_s = g.sigma[i] ** 2, g.sigma[i + 1] ** 2
    a_ts = a_t / a_s
    var_ts = max(var_t - a_ts**2 * var_s, 0.0)
    mean = (a_ts * var_s / var_t) * x + (a_s * var_ts / var_t) * d
    return mean + math.sqrt(var_ts * var_s / var_t) * noise, mean


def ancestral(sde, score_fn, x, time_grid, *, generator=None, callback=None):
    """DDPM / SMLD ancestral sampling over any decreasing time grid."""
    g = GridScales(sde, time_grid)
    for i in range(g.n):
        d = g.denoise(score_fn, x, i)
        x, _ = ancestral_step(g, i, x, d, randn_like(x, generator))
        report_step(callback, i, g.n, g.t[i], x, d)
    return x
