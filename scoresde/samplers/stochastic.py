"""Fast stochastic solvers: the reverse SDE family at 10-50 evaluations, each with an ODE limit.

All of them work for any SDE of the library (they ask it for alpha, sigma and the log-SNR only),
draw their noise from `noise.randn_like` (so per-sample generators make every sample independent
of its batch), and reduce to a deterministic solver of `scoresde.samplers.ode` when their noise is
switched off, which the tests check to round-off.

    dpmpp_2m_sde, dpmpp_3m_sde
        DPM-Solver++ for the reverse SDE family with noise share eta (Lu et al. 2022b,
        "DPM-Solver++", sec. 5; eta as in k-diffusion): in data prediction D and the half log-SNR
        lambda the exact solution from t_i to t_{i+1} (h = lambda_{i+1} - lambda_i, c = 1 + eta) is

            x_{i+1} = (sigma_{i+1}/sigma_i) e^(-eta h) x_i + alpha_{i+1} int_0^h c e^(c(tau - h)) D dtau
                      + sigma_{i+1} sqrt(1 - e^(-2 eta h)) z,

        with D interpolated through the last 2 or 3 predictions (the integral in closed form,
        `ode.exponential_adams_weights` with rate c). eta = 1 is the reverse-time SDE of Song et
        al., eta = 0 the probability-flow ODE (then = `dpm_solver_pp` of the same order).
    sa_solver
        SA-Solver (Xue et al. 2023): the same stochastic Adams predictor plus the corrector that
        also interpolates D at the predicted point, with the same z; the next step reuses that
        evaluation, so one evaluation per step. eta = tau^2 of the paper; eta = 0 is `unipc`.
    edm_stochastic
        Karras et al. 2022, Algorithm 2: at each step whose noise level s = sigma / alpha lies in
        [s_tmin, s_tmax], first raise it to s_hat = (1 + gamma) s, gamma = min(s_churn / n, sqrt 2 - 1),
        by adding noise of std s_noise sqrt(s_hat^2 - s^2) in y = x / alpha, then take a Heun step
        from s_hat to s_{i+1}. s_churn = 0 is `heun`.
    restart
        Restart sampling (Xu et al. 2023): Heun steps on the grid; on reaching the grid time whose
        s is nearest to `restart_s_min`, `restarts` times: add noise up to s = `restart_s_max`
        (y += sqrt(s_max^2 - s_min^2) z: the forward process, exact for any SDE in y) and solve
        the ODE back down with `restart_steps` Heun steps on a rho = 7 grid. restarts = 0 is `heun`.

The noise of the SDE solvers is the main error at few steps (the step's injected noise is not
averaged out); at 20-50 evaluations it contracts earlier errors (the reason to use them).
"""

from __future__ import annotations

import math

import torch

from scoresde.samplers.noise import randn_like
from scoresde.samplers.ode import GridScales, exponential_adams_loop, exponential_adams_weights, heun_step
from scoresde.samplers.registry import report_step
from scoresde.samplers.time_grids import karras_times
from scoresde.sde_lib import time_vector


def _check_eta(eta) -> None:
    if not (isinstance(eta, (int, float)) and not isinstance(eta, bool) and 0 <= eta < math.inf):
        raise ValueError(f"eta must be a number >= 0, got {eta!r}")


def dpmpp_2m_sde(sde, score_fn, x, time_grid, *, eta: float = 1.0, generator=None, callback=None):
    """DPM-Solver++(2M) SDE: second-order multistep for the reverse SDE with noise share eta (module docstring).

    Raises:
        ValueError: if eta is not a number >= 0.
    """
    _check_eta(eta)
    return exponential_adams_loop(
        sde, score_fn, x, time_grid, 2, False, exponential_adams_weights, eta=eta, generator=generator, callback=callback
    )


def dpmpp_3m_sde(sde, score_fn, x, time_grid, *, eta: float = 1.0, generator=None, callback=None):
    """DPM-Solver++(3M) SDE: third-order multistep for the reverse SDE with noise share eta (module docstring).

    Raises:
        ValueError: if eta is not a number >= 0.
    """
    _check_eta(eta)
    return exponential_adams_loop(
        sde, score_fn, x, time_grid, 3, False, exponential_adams_weights, eta=eta, generator=generator, callback=callback
    )


def sa_solver(sde, score_fn, x, time_grid, *, predictor_order: int = 3, eta: float = 1.0, generator=None, callback=None):
    """SA-Solver: stochastic Adams predictor of `predictor_order` plus its free corrector (module docstring).

    Raises:
        ValueError: if predictor_order is not 1, 2 or 3, or eta is not a number >= 0.
    """
    _check_eta(eta)
    return exponential_adams_loop(
        sde,
        score_fn,
        x,
        time_grid,
        predictor_order,
        True,
        exponential_adams_weights,
        eta=eta,
        generator=generator,
        callback=callback,
    )


def edm_stochastic(
    sde,
    score_fn,
    x,
    time_grid,
    *,
    s_churn: float = 10.0,
    s_tmin: float = 0.05,
    s_tmax: float = 50.0,
    s_noise: float = 1.003,
    generator=None,
    callback=None,
):
    """Karras et al.'s stochastic sampler (Algorithm 2; module docstring), 2 evaluations per step.

    The defaults are EDM's choices for ImageNet-64 (Table 5: S_churn 40 over 256 steps there; here
    10, a milder share for the few steps this sampler is run at); s_tmin and s_tmax are noise
    levels s = sigma / alpha (EDM's sigma). The raised level s_hat never exceeds the grid's first
    one (the prior's), so the score is never asked beyond T.

    Raises:
        ValueError: for a negative s_churn or s_noise, or s_tmin > s_tmax.
    """
    for name, value in (("s_churn", s_churn), ("s_noise", s_noise), ("s_tmin", s_tmin)):
        if not (isinstance(value, (int, float)) and value >= 0):
            raise ValueError(f"{name} must be a number >= 0, got {value!r}")
    if not s_tmax >= s_tmin:
        raise ValueError(f"s_tmax must be >= s_tmin, got s_tmin={s_tmin!r}, s_tmax={s_tmax!r}")
    g = GridScales(sde, time_grid)
    gamma = min(s_churn / g.n, math.sqrt(2.0) - 1.0)
    for i in range(g.n):
        s = g.s[i]
        s_hat = min(s * (1.0 + gamma), g.s[0]) if s_tmin <= s <= s_tmax else s
        if not s_hat > s:  # no churn at this step: Heun's step itself
            x, d = heun_step(g, score_fn, x, i)
            report_step(callback, i, g.n, g.t[i], x, d)
            continue
        y = x / g.alpha[i] + randn_like(x, generator).mul_(s_noise * math.sqrt(s_hat**2 - s**2))
        lam_hat = torch.tensor(-2.0 * math.log(s_hat), dtype=torch.float64)
        t_hat = float(sde.t_from_log_snr(lam_hat).clamp(g.t[i], g.t[0]))
        t64 = torch.tensor(t_hat, dtype=torch.float64)
        alpha_hat, sigma_hat = float(sde.alpha(t64)), float(sde.sigma(t64))
        x_hat = alpha_hat * y
        d = (x_hat + sigma_hat**2 * score_fn(x_hat, time_vector(t_hat, x))) / alpha_hat
        slope = (y - d) / s_hat
        y_euler = y + (g.s[i + 1] - s_hat) * slope
        if g.s[i + 1] == 0:
            x = g.alpha[i + 1] * y_euler
        else:
            slope_next = (y_euler - g.denoise(score_fn, g.alpha[i + 1] * y_euler, i + 1)) / g.s[i + 1]
            x = g.alpha[i + 1] * (y + (g.s[i + 1] - s_hat) * 0.5 * (slope + slope_next))
        report_step(callback, i, g.n, g.t[i], x, d)
    return x


def restart_evaluations(options) -> int:
    """2 x restarts x restart_steps (besides 2 / step)"""
    return 2 * options["restarts"] * options["restart_steps"]


def restart(
    sde,
    score_fn,
    x,
    time_grid,
    *,
    restarts: int = 1,
    restart_steps: int = 2,
    restart_s_min: float = 0.06,
    restart_s_max: float = 0.30,
    generator=None,
    callback=None,
):
    """Restart sampling with Heun steps (module docstring): 2 evaluations per grid step plus
    2 `restarts` `restart_steps` for the restart interval.

    The restart interval [restart_s_min, restart_s_max] is in noise levels s = sigma / alpha; the
    defaults are Xu et al.'s interval for CIFAR-10 ([0.06, 0.30]). The restart starts at the grid
    time after t_0 whose s is nearest to restart_s_min in log; restart_s_max is capped at the grid's
    first noise level.

    Raises:
        ValueError: restarts < 0, restart_steps < 1, or not 0 < restart_s_min < restart_s_max.
    """
    if not (isinstance(restarts, int) and not isinstance(restarts, bool) and restarts >= 0):
        raise ValueError(f"restarts must be an integer >= 0, got {restarts!r}")
    if not (isinstance(restart_steps, int) and not isinstance(restart_steps, bool) and restart_steps >= 1):
        raise ValueError(f"restart_steps must be an integer >= 1, got {restart_steps!r}")
    s_min, s_max = restart_s_min, restart_s_max
    if not (isinstance(s_min, (int, float)) and isinstance(s_max, (int, float)) and 0 < s_min < s_max):
        raise ValueError(f"the restart interval needs 0 < restart_s_min < restart_s_max, got {s_min!r}, {s_max!r}")
    g = GridScales(sde, time_grid)
    candidates = [j for j in range(1, g.n + 1) if g.s[j] > 0]
    at = min(candidates, key=lambda j: abs(math.log(g.s[j] / s_min))) if candidates and restarts else None
    for i in range(g.n):
        x, d = heun_step(g, score_fn, x, i)
        if i + 1 == at:
            x = _restart(sde, score_fn, x, g, at, min(s_max, g.s[0]), restarts, restart_steps, generator)
        report_step(callback, i, g.n, g.t[i], x, d)
    return x


def _restart(sde, score_fn, x, g: GridScales, at: int, s_max: float, restarts: int, steps: int, generator) -> torch.Tensor:
    """`restarts` times: noise x from s = g.s[at] up to s_max, then Heun back down in `steps` steps."""
    s_min = g.s[at]
    if not s_max > s_min:  # the grid reaches s_min only above s_max: nothing to restart over
        s_max = g.s[max(at - 1, 0)]
    t_max = float(sde.t_from_log_snr(torch.tensor(-2.0 * math.log(s_max), dtype=torch.float64)).clamp(g.t[at], g.t[0]))
    sub = GridScales(sde, _restart_grid(sde, t_max, g.t[at], steps))
    for _ in range(restarts):
        y = x / g.alpha[at] + randn_like(x, generator).mul_(math.sqrt(max(sub.s[0] ** 2 - s_min**2, 0.0)))
        x = sub.alpha[0] * y
        for i in range(steps):
            x, _ = heun_step(sub, score_fn, x, i)
    return x


def _restart_grid(sde, t_max: float, t_min: float, steps: int) -> torch.Tensor:
    """Karras et al.'s rho = 7 grid from t_max down to t_min."""
    return karras_times(sde, t_max, t_min, steps)
