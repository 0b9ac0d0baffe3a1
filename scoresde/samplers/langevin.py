"""Langevin dynamics at a fixed noise level: the corrector of Song et al. and NCSN's sampler.

A Langevin step targeting p_t (Song & Ermon 2019, eq. 4):

    x <- x + epsilon score(x, t) + sqrt(2 epsilon) z.

Song et al. (2021, Algorithms 4-5) pick epsilon from a signal-to-noise ratio
snr = sqrt(epsilon / 2) ||score|| / ||z||. Two step rules implement it:

    noise_level (default)  epsilon = 2 (snr sigma(t))^2: the snr rule with the norms at their
                           typical values ||z|| = sqrt(d), ||score|| = sqrt(d) / sigma(t). It is
                           proportional to sigma^2 as in NCSN (Song & Ermon 2019, Algorithm 1,
                           whose step_lr eps corresponds to snr = sqrt(eps) / (2 sigma_min)), the
                           same for every sample, and stable in any dimension.
    score_norm             epsilon = 2 (snr ||z|| / ||score||)^2 with each sample's own norms.
                           score_sde averages the norms over the batch (so a sample depends on its
                           batch); per sample it is only reliable in high dimension: in 2-D a
                           sample near a mode has a tiny score and takes a huge step.
                           score_sde's extra factor 1 - beta_i for VP is omitted (< beta_max / N).
"""

from __future__ import annotations

import torch

from scoresde.samplers.noise import randn_like
from scoresde.samplers.registry import report_step
from scoresde.sde_lib import broadcast_to_data, time_vector

STEP_RULES = ("noise_level", "score_norm")


def _per_sample_norm(v: torch.Tensor) -> torch.Tensor:
    return v.reshape(v.shape[0], -1).norm(dim=1)


def langevin_step(
    score_fn, sde, x: torch.Tensor, t_vec: torch.Tensor, noise: torch.Tensor, *, snr: float, step_rule: str = "noise_level"
) -> torch.Tensor:
    """One Langevin step targeting p_t with the step size of `step_rule` (module docstring)."""
    score = score_fn(x, t_vec)
    if step_rule == "noise_level":
        epsilon = broadcast_to_data(2.0 * (snr * sde.sigma(t_vec)) ** 2, x)
    else:
        ratio = snr * _per_sample_norm(noise) / _per_sample_norm(score).clamp_min(1e-30)
        epsilon = broadcast_to_data(2.0 * ratio**2, x)
    return x + epsilon * score + torch.sqrt(2.0 * epsilon) * noise


def check_langevin_options(snr, steps: int, step_rule: str, steps_name: str) -> None:
    """Raise ValueError for snr <= 0, steps < 1 or an unknown step rule."""
    if not (isinstance(snr, (int, float)) and snr > 0):
        raise ValueError(f"snr must be > 0, got {snr!r}")
    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"{steps_name} must be an integer >= 1, got {steps!r}")
    if step_rule not in STEP_RULES:
        raise ValueError(f"unknown step_rule {step_rule!r}; valid: {', '.join(STEP_RULES)}")


def annealed_langevin(
    sde,
    score_fn,
    x,
    time_grid,
    *,
    steps_per_level: int = 5,
    snr: float = 0.16,
    step_rule: str = "noise_level",
    generator=None,
    callback=None,
):
    """Annealed Langevin dynamics (Song & Ermon 2019): `steps_per_level` Langevin steps targeting
    p_t at each time of the grid after the first (x starts as a sample of the prior at T)."""
    check_langevin_options(snr, steps_per_level, step_rule, "steps_per_level")
    times = time_grid.tolist()[1:]
    for i, t in enumerate(times):
        t_vec = time_vector(t, x)
        for _ in range(steps_per_level):
            x = langevin_step(score_fn, sde, x, t_vec, randn_like(x, generator), snr=snr, step_rule=step_rule)
        report_step(callback, i, len(times), t, x, None)
    return x
