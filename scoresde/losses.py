"""Score-matching objectives. Each returns per-example losses of shape (batch,); callers reduce.

Continuous time (Song et al. 2021, eq. 7): with t ~ U[eps, T], z ~ N(0, I),
x(t) = alpha(t) x(0) + sigma(t) z and the conditional score -z / sigma(t),

    L(theta) = E_t E_{x(0), z} lambda(t) || s_theta(x(t), t) + z / sigma(t) ||^2.

Weightings lambda(t):
    "sigma2"      sigma(t)^2, which makes the loss || sigma s + z ||^2 (the default; score_sde's
                  non-likelihood weighting, equal to DDPM's noise-prediction loss for eps-models)
    "likelihood"  g(t)^2, which makes the loss an upper bound on the negative log-likelihood
                  (Song et al. 2021b, "Maximum likelihood training of score-based diffusion models")
    "edm"         sigma^2 (s^2 + sigma_data^2) / sigma_data^2 with s = sigma / alpha: EDM's
                  lambda(s) || D - x(0) ||^2 with lambda = (s^2 + sigma_data^2) / (s sigma_data)^2
                  (Karras et al. 2022, eq. 8 and table 1), rewritten for the score through
                  D - x(0) = sigma^2 (score - target) / alpha. It gives every noise level unit
                  weight on the output of EDM's preconditioned network (`NetworkScore`'s "edm").

Training-time distributions:
    "uniform"     t ~ U[eps, T] (Song et al.)
    "log_normal"  log(sigma / alpha) ~ N(p_mean, p_std^2) (EDM: -1.2, 1.2), mapped to t through
                  the log-SNR lambda = -2 log(sigma / alpha) and clamped to [eps, T]. For `EDMSDE`
                  this is EDM's log-normal sigma; for any other SDE, the same distribution of the
                  noise-to-signal ratio.

Discrete time: DDPM (Ho et al. 2020, eq. 14, "L_simple") and SMLD (Song & Ermon 2019, eq. 5) pick
a level i of the SDE's discrete chain uniformly and use the chain's own marginals.
"""

from __future__ import annotations

from typing import Callable

import torch

from scoresde.sde_lib import SDE, broadcast_to_data

WEIGHTINGS = ("sigma2", "likelihood", "edm")
TIME_DISTRIBUTIONS = ("uniform", "log_normal")
REDUCTIONS = ("mean", "sum")

ScoreFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _reduce(sq: torch.Tensor, reduce: str) -> torch.Tensor:
    """Mean or sum of a per-element loss over all but the batch dimension."""
    if reduce not in REDUCTIONS:
        raise ValueError(f"unknown reduction {reduce!r}; valid: {', '.join(REDUCTIONS)}")
    flat = sq.reshape(sq.shape[0], -1)
    return flat.mean(dim=1) if reduce == "mean" else flat.sum(dim=1)


def sample_time(
    batch: int,
    sde: SDE,
    eps: float,
    *,
    generator: torch.Generator | None,
    device,
    dtype,
    distribution: str = "uniform",
    p_mean: float = -1.2,
    p_std: float = 1.2,
) -> torch.Tensor:
    """Training times of shape (batch,) from `distribution` (module docstring), within [eps, T].

    Raises:
        ValueError: if eps is not in (0, T), p_std <= 0, or the distribution is unknown.
    """
    if not 0 < eps < sde.T:
        raise ValueError(f"eps (the smallest training time) must lie in (0, T={sde.T}), got {eps!r}")
    if distribution == "uniform":
        u = torch.rand(batch, generator=generator, device=device, dtype=dtype)
        return eps + u * (sde.T - eps)
    if distribution == "log_normal":
        if not p_std > 0:
            raise ValueError(f"p_std (the log-normal's standard deviation) must be > 0, got {p_std!r}")
        log_ratio = p_mean + p_std * torch.randn(batch, generator=generator, device=device, dtype=torch.float64)
        t = sde.t_from_log_snr(-2.0 * log_ratio).clamp(eps, sde.T)
        return t.to(dtype)
    raise ValueError(f"unknown time distribution {distribution!r}; valid: {', '.join(TIME_DISTRIBUTIONS)}")


def dsm_loss(
    score_fn: ScoreFn,
    sde: SDE,
    x0: torch.Tensor,
    *,
    eps: float = 1e-5,
    weighting: str = "sigma2",
    reduce: str = "mean",
    generator: torch.Generator | None = None,
    t: torch.Tensor | None = None,
    noise: torch.Tensor | None = None,
    time_distribution: str = "uniform",
    p_mean: float = -1.2,
    p_std: float = 1.2,
    sigma_data: float = 0.5,
) -> torch.Tensor:
    """Denoising score matching in continuous time (Song et al. 2021, eq. 7).

    Args:
        score_fn: s_theta(x, t), differentiable in the parameters being trained.
        sde: the forward SDE.
        x0: clean data, shape (batch, *dims).
        eps: smallest time sampled.
        weighting: one of `WEIGHTINGS`, or a callable lambda(t) -> (batch,).
        reduce: "mean" or "sum" over the data dimensions.
        generator: random source for t and z.
        t, noise: fix t (batch,) and z (like x0) instead of drawing them (tests, variance reduction).
        time_distribution: one of `TIME_DISTRIBUTIONS`; p_mean, p_std parameterise "log_normal".
        sigma_data: the data's standard deviation, for the "edm" weighting.

    Returns:
        Per-example losses, shape (batch,).

    Raises:
        ValueError: for an unknown weighting, reduction or time distribution, or eps outside (0, T).
    """
    if not (callable(weighting) or weighting in WEIGHTINGS):
        raise ValueError(f"unknown weighting {weighting!r}; valid: {', '.join(WEIGHTINGS)} or a callable")
    if t is None:
        t = sample_time(
            x0.shape[0],
            sde,
            eps,
            generator=generator,
            device=x0.device,
            dtype=x0.dtype,
            distribution=time_distribution,
            p_mean=p_mean,
            p_std=p_std,
        )
    if noise is None:
        noise = torch.randn(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)
    x_t = sde.perturb(x0, t, noise)
    sigma = sde.sigma(t)
    score = score_fn(x_t, t)
    if weighting == "sigma2":
        return _reduce((score * broadcast_to_data(sigma, x0) + noise) ** 2, reduce)
    if weighting == "edm":
        if not sigma_data > 0:
            raise ValueError(f"sigma_data must be > 0, got {sigma_data!r}")
        ratio2 = (sigma / sde.alpha(t)) ** 2
        return _reduce((score * broadcast_to_data(sigma, x0) + noise) ** 2, reduce) * (ratio2 + sigma_data**2) / sigma_data**2
    if weighting == "likelihood":
        g2 = sde.sde(x0, t)[1] ** 2
        return _reduce((score + noise / broadcast_to_data(sigma, x0)) ** 2, reduce) * g2
    if callable(weighting):
        return _reduce((score + noise / broadcast_to_data(sigma, x0)) ** 2, reduce) * weighting(t)
    raise ValueError(f"unknown weighting {weighting!r}; valid: {', '.join(WEIGHTINGS)} or a callable")


def _discrete_level(sde: SDE, x0: torch.Tensor, generator) -> tuple[torch.Tensor, ...]:
    """A uniform level i of the discrete chain, its (alpha_i, sigma_i), and x_i = alpha_i x0 + sigma_i z."""
    alphas, sigmas = (v.to(device=x0.device, dtype=x0.dtype) for v in sde.discrete_marginals())
    i = torch.randint(0, sde.N, (x0.shape[0],), generator=generator, device=x0.device)
    noise = torch.randn(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)
    x_i = broadcast_to_data(alphas[i], x0) * x0 + broadcast_to_data(sigmas[i], x0) * noise
    return i, sigmas[i], noise, x_i


def ddpm_loss(
    net: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    sde: SDE,
    x0: torch.Tensor,
    *,
    reduce: str = "mean",
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """DDPM's simplified objective || eps_theta(x_i, i) - z ||^2 (Ho et al. 2020, eq. 14).

    The level i ~ U{0, ..., N-1} indexes the SDE's discrete chain (`sde.discrete_marginals()`);
    `net(x_i, i)` predicts the noise z and receives the integer level i.

    Returns:
        Per-example losses, shape (batch,).
    """
    i, _, noise, x_i = _discrete_level(sde, x0, generator)
    return _reduce((net(x_i, i) - noise) ** 2, reduce)


def smld_loss(
    net: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    sde: SDE,
    x0: torch.Tensor,
    *,
    reduce: str = "mean",
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """NCSN's objective sigma_i^2 || s_theta(x_i, i) + z / sigma_i ||^2 (Song & Ermon 2019, eq. 5).

    `net(x_i, i)` predicts the score at level i (increasing noise with i; score_sde flips the
    order, largest sigma first).

    Returns:
        Per-example losses, shape (batch,).
    """
    i, sigma, noise, x_i = _discrete_level(sde, x0, generator)
    return _reduce((net(x_i, i) * broadcast_to_data(sigma, x0) + noise) ** 2, reduce)
