"""Targets with closed forms for the tests: Gaussian data and reference SDE coefficients.

Gaussian data N(m, s^2 I) stays Gaussian under every linear SDE of `scoresde.sde_lib`:

    p_t = N(alpha(t) m, v(t) I),   v(t) = alpha(t)^2 s^2 + sigma(t)^2,

so the score, the posterior mean E[x(0) | x(t)] (Tweedie), the optimal noise prediction and the
probability-flow ODE flow map are all exact at every t. Nothing here calls the functions under test
except `alpha`/`sigma` of an SDE (where a test wants "whatever schedule the SDE has"); the
independent closed forms of Song et al. (2021, eqs. 9, 11, 12), Nichol & Dhariwal (2021, eq. 17)
and Karras et al. (2022) are in `reference_schedule`.
"""

from __future__ import annotations

import math
from typing import Callable

import torch

from scoresde.sde_lib import EDMSDE, SDE, VESDE, VPSDE, CosineVPSDE, broadcast_to_data, subVPSDE

ScoreFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def as_batch_time(t: torch.Tensor | float, x: torch.Tensor) -> torch.Tensor:
    """`t` as a tensor of shape (batch,) with the dtype and device of `x`."""
    t = torch.as_tensor(t, dtype=x.dtype, device=x.device)
    return t.expand(x.shape[0]) if t.ndim == 0 else t


class GaussianData:
    """Data x(0) ~ N(m, s^2 I) with examples of shape `shape`.

    Args:
        mean: a scalar, or a tensor broadcastable to `shape` (the per-coordinate mean m).
        std: the standard deviation s > 0 of every coordinate.
        shape: per-example shape; defaults to the shape of `mean`.
    """

    def __init__(self, mean, std: float, shape: tuple[int, ...] | None = None):
        mean = torch.as_tensor(mean, dtype=torch.float64)
        self.shape = tuple(mean.shape) if shape is None else tuple(shape)
        self.mean = torch.broadcast_to(mean, self.shape).clone()
        self.std = float(std)
        if not self.std > 0:
            raise ValueError("std must be > 0")

    # -- data ---------------------------------------------------------------------------------
    def sample_data(self, n: int, generator: torch.Generator, dtype: torch.dtype = torch.float64) -> torch.Tensor:
        """n draws of x(0), shape (n, *shape)."""
        z = torch.randn((n, *self.shape), generator=generator, dtype=torch.float64)
        return (self.mean + self.std * z).to(dtype)

    # -- the marginal p_t given alpha(t), sigma(t) of shape (batch,) ---------------------------
    def mean_at(self, alpha: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """alpha m, shaped like `like` (batch, *shape)."""
        return broadcast_to_data(alpha.to(like), like) * self.mean.to(like)

    def var_at(self, alpha: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        """v = alpha^2 s^2 + sigma^2, shape (batch,)."""
        return alpha**2 * self.std**2 + sigma**2

    def score_at(self, x: torch.Tensor, alpha: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        """grad log N(x; alpha m, v I) = -(x - alpha m) / v."""
        alpha, sigma = alpha.to(x), sigma.to(x)
        v = broadcast_to_data(self.var_at(alpha, sigma), x)
        return -(x - self.mean_at(alpha, x)) / v

    def posterior_mean_at(self, x: torch.Tensor, alpha: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        """E[x(0) | x(t) = x] = m + alpha s^2 (x - alpha m) / v (Gaussian conditioning)."""
        alpha, sigma = alpha.to(x), sigma.to(x)
        v = broadcast_to_data(self.var_at(alpha, sigma), x)
        gain = broadcast_to_data(alpha, x) * self.std**2 / v
        return self.mean.to(x) + gain * (x - self.mean_at(alpha, x))

    def noise_prediction_at(self, x: torch.Tensor, alpha: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        """E[z | x(t) = x] for x(t) = alpha x(0) + sigma z: sigma (x - alpha m) / v."""
        alpha, sigma = alpha.to(x), sigma.to(x)
        v = broadcast_to_data(self.var_at(alpha, sigma), x)
        return broadcast_to_data(sigma, x) * (x - self.mean_at(alpha, x)) / v

    # -- the same, with alpha(t), sigma(t) taken from an SDE ------------------------------------
    def marginal_mean(self, sde: SDE, t: torch.Tensor) -> torch.Tensor:
        """alpha(t) m, shape (batch, *shape) for t of shape (batch,)."""
        like = torch.empty((t.shape[0], *self.shape), dtype=t.dtype)
        return self.mean_at(sde.alpha(t), like)

    def marginal_var(self, sde: SDE, t: torch.Tensor) -> torch.Tensor:
        """v(t) = alpha(t)^2 s^2 + sigma(t)^2 per coordinate, shape (batch,)."""
        return self.var_at(sde.alpha(t), sde.sigma(t))

    def score(self, sde: SDE) -> ScoreFn:
        """The exact score_fn(x, t) = -(x - alpha(t) m) / v(t) of p_t under `sde`."""

        def score_fn(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            t = as_batch_time(t, x)
            return self.score_at(x, sde.alpha(t), sde.sigma(t))

        return score_fn

    def posterior_mean(self, sde: SDE) -> ScoreFn:
        """(x, t) -> E[x(0) | x(t) = x], the exact x0-prediction under `sde`."""

        def x0_fn(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            t = as_batch_time(t, x)
            return self.posterior_mean_at(x, sde.alpha(t), sde.sigma(t))

        return x0_fn

    def noise_prediction(self, sde: SDE) -> ScoreFn:
        """(x, t) -> E[z | x(t) = x], the exact eps-prediction under `sde`."""

        def eps_fn(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            t = as_batch_time(t, x)
            return self.noise_prediction_at(x, sde.alpha(t), sde.sigma(t))

        return eps_fn

    def sample_marginal(self, n: int, sde: SDE, t: float, generator: torch.Generator) -> torch.Tensor:
        """n exact draws of x(t) ~ p_t (float64)."""
        tt = torch.full((n,), float(t), dtype=torch.float64)
        z = torch.randn((n, *self.shape), generator=generator, dtype=torch.float64)
        std = broadcast_to_data(self.marginal_var(sde, tt).sqrt(), z)
        return self.marginal_mean(sde, tt) + std * z

    def ode_flow(self, sde: SDE, x_s: torch.Tensor, s: float, t: float) -> torch.Tensor:
        """The probability-flow ODE's exact flow map: x_t = mu_t + sqrt(v_t / v_s) (x_s - mu_s)."""
        ts = torch.full((x_s.shape[0],), float(s), dtype=x_s.dtype)
        tt = torch.full((x_s.shape[0],), float(t), dtype=x_s.dtype)
        ratio = broadcast_to_data((self.marginal_var(sde, tt) / self.marginal_var(sde, ts)).sqrt(), x_s)
        return self.marginal_mean(sde, tt).to(x_s) + ratio * (x_s - self.marginal_mean(sde, ts).to(x_s))


# -- independent closed forms of the schedules (Song et al. 2021, eqs. 9, 11, 12, and app. B) ---


def reference_schedule(sde: SDE, t: torch.Tensor) -> dict[str, torch.Tensor]:
    """alpha(t), sigma(t), the drift coefficient c(t) (f = c x) and g(t)^2, written from the paper.

    For VP and sub-VP with B(t) = int_0^t beta = beta_min t + (beta_max - beta_min) t^2 / 2:
        alpha = exp(-B/2);  VP: sigma^2 = 1 - e^{-B}, g^2 = beta;
        sub-VP: sigma = 1 - e^{-B}, g^2 = beta (1 - e^{-2B}).
    For VE: alpha = 1, sigma = sigma_min (sigma_max / sigma_min)^t, g^2 = 2 sigma^2 log(sigma_max / sigma_min).
    """
    t = t.to(torch.float64)
    if isinstance(sde, VESDE):
        log_ratio = math.log(sde.sigma_max / sde.sigma_min)
        sigma = sde.sigma_min * (sde.sigma_max / sde.sigma_min) ** t
        return {
            "alpha": torch.ones_like(t),
            "sigma": sigma,
            "drift_coeff": torch.zeros_like(t),
            "g2": 2.0 * log_ratio * sigma**2,
        }
    if isinstance(sde, (VPSDE, subVPSDE)):
        b0, b1 = sde.beta_0, sde.beta_1
        beta = b0 + t * (b1 - b0)
        big_b = b0 * t + 0.5 * (b1 - b0) * t**2
        alpha = torch.exp(-0.5 * big_b)
        if isinstance(sde, VPSDE):
            sigma, g2 = torch.sqrt(-torch.expm1(-big_b)), beta
        else:
            sigma, g2 = -torch.expm1(-big_b), beta * -torch.expm1(-2.0 * big_b)
        return {"alpha": alpha, "sigma": sigma, "drift_coeff": -0.5 * beta, "g2": g2}
    if isinstance(sde, CosineVPSDE):
        return _cosine_reference(sde, t)
    if isinstance(sde, EDMSDE):
        return {"alpha": torch.ones_like(t), "sigma": t.clone(), "drift_coeff": torch.zeros_like(t), "g2": 2.0 * t}
    raise TypeError(f"no reference schedule for {type(sde).__name__}")


def _cosine_angle(sde: CosineVPSDE, t):
    """theta(t) = pi/2 (t + s) / (1 + s) (Nichol & Dhariwal 2021, eq. 17)."""
    return 0.5 * math.pi * (t + sde.s) / (1.0 + sde.s)


def _cosine_reference(sde: CosineVPSDE, t: torch.Tensor) -> dict[str, torch.Tensor]:
    """alpha^2 = cos^2 theta(t) / cos^2 theta(0), beta = -d log alpha^2/dt = pi/(1+s) tan theta,
    up to the time where beta reaches -N log(1 - max_beta); beyond it beta stays there.

    sigma^2 = 1 - alpha^2 = (cos^2 theta_0 - cos^2 theta) / cos^2 theta_0
            = sin(theta + theta_0) sin(theta - theta_0) / cos^2 theta_0.
    """
    theta_0 = _cosine_angle(sde, 0.0)
    beta_clip = -sde.N * math.log(1.0 - sde.max_beta)
    t_clip = math.atan(beta_clip * (1.0 + sde.s) / math.pi) * 2.0 * (1.0 + sde.s) / math.pi - sde.s
    theta = _cosine_angle(sde, t.clamp(max=t_clip))
    alpha = torch.cos(theta) / math.cos(theta_0)
    sigma2 = torch.sin(theta + theta_0) * torch.sin(theta - theta_0) / math.cos(theta_0) ** 2
    beta = math.pi / (1.0 + sde.s) * torch.tan(theta)
    clipped = t > t_clip
    alpha = torch.where(clipped, alpha * torch.exp(-0.5 * beta_clip * (t - t_clip)), alpha)
    sigma2 = torch.where(clipped, 1.0 - alpha**2, sigma2)
    beta = torch.where(clipped, torch.full_like(t, beta_clip), beta)
    return {"alpha": alpha, "sigma": sigma2.sqrt(), "drift_coeff": -0.5 * beta, "g2": beta}


# -- the SDEs the tests run over ------------------------------------------------------------------

SDE_CASES: dict[str, Callable[[], SDE]] = {
    "vp": VPSDE,
    "subvp": subVPSDE,
    "ve": VESDE,
    "vp_custom": lambda: VPSDE(beta_min=0.5, beta_max=8.0, N=250),
    "ve_custom": lambda: VESDE(sigma_min=0.05, sigma_max=5.0, N=300),
    "cosine": CosineVPSDE,
    "cosine_custom": lambda: CosineVPSDE(s=0.02, max_beta=0.99, N=200),
    "edm": EDMSDE,
}
DEFAULT_SDES = ("vp", "subvp", "ve")


def reference_chain(sde: SDE) -> tuple[torch.Tensor, torch.Tensor]:
    """(alpha_i, sigma_i), i = 0..N-1, of the discrete chain, written from the papers (float64).

    DDPM (Ho et al. 2020): betas = linspace(beta_min / N, beta_max / N, N) (VP) or the cosine ones,
    alpha_i = sqrt(prod_{j <= i} (1 - beta_j)), sigma_i = sqrt(1 - alpha_i^2).
    SMLD (Song & Ermon 2019): alpha_i = 1, sigma_i geometric from sigma_min to sigma_max.
    """
    if isinstance(sde, VPSDE):
        betas = torch.linspace(sde.beta_0 / sde.N, sde.beta_1 / sde.N, sde.N, dtype=torch.float64)
        alpha_bar = torch.cumprod(1.0 - betas, dim=0)
        return alpha_bar.sqrt(), (1.0 - alpha_bar).sqrt()
    if isinstance(sde, CosineVPSDE):
        # beta_i = min(1 - f((i + 1) / N) / f(i / N), max_beta), f(t) = cos^2 theta(t)  (Nichol & Dhariwal 2021)
        f = torch.cos(_cosine_angle(sde, torch.arange(sde.N + 1, dtype=torch.float64) / sde.N)) ** 2
        alpha_bar = torch.cumprod(1.0 - torch.clamp(1.0 - f[1:] / f[:-1], max=sde.max_beta), dim=0)
        return alpha_bar.sqrt(), (1.0 - alpha_bar).sqrt()
    if isinstance(sde, VESDE):
        ratio = torch.arange(sde.N, dtype=torch.float64) / max(sde.N - 1, 1)
        return torch.ones(sde.N, dtype=torch.float64), sde.sigma_min * (sde.sigma_max / sde.sigma_min) ** ratio
    raise TypeError(f"no discrete chain for {type(sde).__name__}")
