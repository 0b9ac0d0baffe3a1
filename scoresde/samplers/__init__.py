"""Pluggable samplers behind one entry point, `sample(name, sde, score_fn, ...)`.

`SAMPLERS` maps each name to a loop function `fn(sde, score_fn, x, time_grid, *, generator,
callback, **options) -> x`; `available()` lists the names. Step functions are importable from the
sampler modules for people who build their own loops.

| name                 | kind                    | score evaluations     | module                  |
|----------------------|-------------------------|-----------------------|-------------------------|
| euler_maruyama       | reverse SDE, 1st order  | 1 per step            | euler_maruyama.py       |
| reverse_diffusion    | reverse SDE (Song's)    | 1 per step            | predictor_corrector.py  |
| ancestral            | DDPM / SMLD posterior   | 1 per step            | ancestral.py            |
| predictor_corrector  | predictor + Langevin    | 1 + corrector_steps   | predictor_corrector.py  |
| annealed_langevin    | NCSN                    | steps_per_level       | langevin.py             |
| probability_flow     | adaptive ODE            | adaptive              | adaptive.py             |
| ode_euler            | ODE, Euler in t         | 1 per step            | ode.py                  |
| ddim                 | ODE, 1st-order exp.     | 1 per step            | ode.py                  |
| heun                 | ODE, Karras 2nd order   | 2 per step            | ode.py                  |
| dpmpp_2m, dpmpp_3m   | ODE, multistep 2nd/3rd  | 1 per step            | ode.py                  |
| ipndm                | ODE, equal-step AB 4    | 1 per step            | ode.py                  |
| lms                  | ODE, variable-step AB 4 | 1 per step            | ode.py                  |
| unipc                | ODE, predictor + free corrector | 1 per step    | ode.py                  |
"""

from __future__ import annotations

import inspect
from typing import Callable, Sequence

import torch

from scoresde.samplers import noise
from scoresde.samplers.adaptive import probability_flow
from scoresde.samplers.ancestral import ancestral, ancestral_step
from scoresde.samplers.euler_maruyama import euler_maruyama, euler_maruyama_step
from scoresde.samplers.langevin import annealed_langevin, langevin_step
from scoresde.samplers.ode import ddim, ddim_step, dpm_solver_pp, dpmpp_2m, dpmpp_3m, heun, ipndm, lms, ode_euler, unipc
from scoresde.samplers.predictor_corrector import predictor_corrector, reverse_diffusion, reverse_diffusion_step
from scoresde.samplers.time_grids import MAX_STEPS, TIME_GRIDS, get_time_grid
from scoresde.samplers.tuned_grid import tune_time_grid
from scoresde.score import denoise as tweedie_denoise
from scoresde.sde_lib import SDE

SAMPLERS: dict[str, Callable] = {
    "euler_maruyama": euler_maruyama,
    "reverse_diffusion": reverse_diffusion,
    "ancestral": ancestral,
    "predictor_corrector": predictor_corrector,
    "annealed_langevin": annealed_langevin,
    "probability_flow": probability_flow,
    "ode_euler": ode_euler,
    "ddim": ddim,
    "heun": heun,
    "dpmpp_2m": dpmpp_2m,
    "dpmpp_3m": dpmpp_3m,
    "ipndm": ipndm,
    "lms": lms,
    "unipc": unipc,
}

# The time grid each sampler uses when the caller names none.
DEFAULT_TIME_GRIDS = {
    "ddim": "log_snr",
    "dpmpp_2m": "log_snr",
    "dpmpp_3m": "log_snr",
    "heun": "karras",
    "ipndm": "karras",
    "lms": "karras",
    "unipc": "log_snr",
    "annealed_langevin": "log_snr",  # geometric noise levels as NCSN (uniform t is the same for VE)
}

DEFAULT_EPS = 1e-3


def available() -> list[str]:
    """Names accepted by `sample`."""
    return sorted(SAMPLERS)


# Fixed-step ODE solvers: they evaluate the score on the trajectory at the grid times, which
# `denoise="extrapolate"` needs (an adaptive solver's last evaluations are Runge–Kutta stages).
DETERMINISTIC = ("ode_euler", "ddim", "heun", "dpmpp_2m", "dpmpp_3m", "ipndm", "lms", "unipc")
DENOISE_MODES = (True, False, "tweedie", "extrapolate")


class CountingScore:
    """Wraps a score function and counts its evaluations (one per call, whatever the batch).

    The first evaluation is checked (a score of another shape than x would broadcast silently into
    a wrong result; a NaN or infinite one would give NaN samples): `ValueError` / `FloatingPointError`
    naming the problem. Later evaluations are not checked (a host synchronisation per step); the
    newest output is kept by reference, so a solver failure can be explained cheaply.

    With `record`, it also keeps copies of the newest evaluation at each of the last two distinct
    times, as (t, x, score), for `denoise="extrapolate"`.
    """

    def __init__(self, score_fn: Callable, record: bool = False):
        self.score_fn = score_fn
        self.calls = 0
        self.record = record
        self.history: list[tuple[float, torch.Tensor, torch.Tensor]] = []
        self.last: tuple[torch.Tensor, torch.Tensor] | None = None  # (t, score) of the newest evaluation

    def __call__(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        score = self.score_fn(x, t)
        if self.calls == 1:
            _check_first_score(score, x, t)
        self.last = (t, score)
        if self.record:
            t0 = float(t.reshape(-1)[0])
            self.history = [h for h in self.history if h[0] != t0][-1:] + [(t0, x.clone(), score.clone())]
        return score


def _check_first_score(score, x: torch.Tensor, t: torch.Tensor) -> None:
    if not isinstance(score, torch.Tensor):
        raise TypeError(f"score_fn must return a tensor, returned {type(score).__name__}")
    if score.shape != x.shape:
        raise ValueError(f"score_fn returned shape {tuple(score.shape)} for x of shape {tuple(x.shape)}; a score has x's shape")
    if not bool(torch.isfinite(score).all()):
        raise FloatingPointError(f"score_fn returned NaN or infinity at its first evaluation (t = {float(t.reshape(-1)[0]):.6g})")


def _check_result(x: torch.Tensor, counted: CountingScore, name: str) -> None:
    """Samples that are not finite raise, naming how many and the score's last state."""
    finite = torch.isfinite(x.reshape(x.shape[0], -1)).all(dim=1)
    if bool(finite.all()):
        return
    t, score = counted.last if counted.last is not None else (None, None)
    where = (
        ""
        if t is None or score is None
        else (
            f"; the score function's last output (t = {float(t.reshape(-1)[0]):.6g}) was "
            f"{'finite' if bool(torch.isfinite(score).all()) else 'NaN / infinite'}"
        )
    )
    raise FloatingPointError(
        f"{name}: {int((~finite).sum())} of {x.shape[0]} samples are NaN or infinite after "
        f"{counted.calls} score evaluations{where}; check the score function, or take more steps"
    )


def _denoise_extrapolated(sde: SDE, counted: CountingScore, x: torch.Tensor, t_end: float) -> torch.Tensor:
    """The probability-flow ODE's end point at zero noise, extrapolated along the trajectory.

    In y = x / alpha, s = sigma / alpha the ODE is dy/ds = (y - D) / s, whose solution at s = 0
    is D itself continued to s = 0 (y(s) = s (y_a / s_a + int_s^{s_a} D / u^2 du) -> D(0)).
    Tweedie's formula stops at D(s_a); here D, even in s along the trajectory, is extrapolated
    linearly in s^2 through the last two trajectory times:
    D(0) ~ D_a + (D_a - D_b) s_a^2 / (s_b^2 - s_a^2). One score evaluation, like Tweedie.
    """
    tweedie_denoise(sde, counted, x, torch.full((x.shape[0],), t_end, dtype=x.dtype, device=x.device))
    if len(counted.history) < 2:
        return _history_denoised(sde, counted.history[-1])[1]
    (s_b, d_b), (s_a, d_a) = (_history_denoised(sde, h) for h in counted.history)
    if not s_b > s_a:  # no earlier trajectory time to extrapolate from
        return d_a
    return d_a + (d_a - d_b) * (s_a**2 / (s_b**2 - s_a**2))


def _history_denoised(sde: SDE, entry) -> tuple[float, torch.Tensor]:
    t, x, score = entry
    t64 = torch.tensor(t, dtype=torch.float64)
    alpha, sigma = sde.alpha(t64).item(), sde.sigma(t64).item()
    return sigma / alpha, torch.add(x, score, alpha=sigma**2).div_(alpha)


def sampler_options(name: str) -> set[str]:
    """The options (keyword arguments beyond `sample`'s own) that sampler `name` accepts.

    Raises:
        ValueError: for an unknown sampler.
    """
    if name not in SAMPLERS:
        raise ValueError(f"unknown sampler {name!r}; available: {', '.join(available())}")
    params = inspect.signature(SAMPLERS[name]).parameters.values()
    return {p.name for p in params if p.kind == p.KEYWORD_ONLY} - {"generator", "callback"}


def initial_state(sde, shape, x_T, generator, device) -> torch.Tensor:
    """x_T itself (moved to `device`), or a draw of the prior of `shape` (one generator per example allowed)."""
    if x_T is not None:
        if shape is not None and tuple(shape) != tuple(x_T.shape):
            raise ValueError(f"shape {tuple(shape)} disagrees with x_T of shape {tuple(x_T.shape)}")
        return x_T.to(device) if device is not None else x_T
    if shape is None:
        raise ValueError("give either shape or x_T")
    shape = tuple(shape)
    if generator is None or isinstance(generator, torch.Generator):
        return sde.prior_sampling(shape, generator=generator, device=device)
    if len(generator) != shape[0]:
        raise ValueError(f"got {len(generator)} generators for a batch of {shape[0]} samples; give one per sample")
    # each draw on its generator's device (CPU generators give the same x_T for any target device)
    draws = [sde.prior_sampling((1, *shape[1:]), generator=g, device=g.device) for g in generator]
    return torch.cat(draws).to(device) if device is not None else torch.cat(draws)


@torch.no_grad()
def sample(
    name: str,
    sde: SDE,
    score_fn: Callable,
    shape: Sequence[int] | None = None,
    *,
    x_T: torch.Tensor | None = None,
    steps: int | None = None,
    eps: float | None = None,
    denoise: bool | str = True,
    generator: noise.Generators = None,
    device: torch.device | str | None = None,
    time_grid: str | Sequence[float] | torch.Tensor | None = None,
    callback: Callable[[int, int], None] | None = None,
    **options,
) -> tuple[torch.Tensor, dict]:
    """Draw samples of p_eps (or of p_0 with `denoise`) by reversing `sde`.

    Args:
        name: a sampler from `available()`.
        sde: the forward SDE.
        score_fn: score_fn(x, t) with t of shape (batch,); a network adapter or an exact score.
        shape: (batch, *dims) of the samples; needed when x_T is not given.
        x_T: initial noise at time T (drawn from the prior when omitted). Its dtype is used.
        steps: number of steps (default sde.N); with a custom `time_grid` it must be None or
            len(time_grid) - 1.
        eps: final time (default 1e-3).
        denoise: True or "tweedie": finish with Tweedie's formula E[x_0 | x_eps] (one more score
            evaluation); "extrapolate" (fixed-step ODE solvers): continue the probability-flow
            ODE to zero noise by extrapolating the denoiser along the trajectory (same cost,
            more accurate from about 20 steps on); False: stop at eps. Skipped when the grid
            ends where sigma = 0.
        generator: random source for x_T and the sampler's noise: a torch.Generator, or a list
            of one generator per sample, which makes each sample independent of its batch.
        device: where x_T is drawn when omitted.
        time_grid: "uniform", "log_snr", "karras", or a decreasing sequence of times; default
            the sampler's own (`DEFAULT_TIME_GRIDS`, else uniform).
        callback: called as callback(i, n) after each step i of n (progress bars).
        **options: sampler-specific options.

    Returns:
        (x, info): samples shaped like x_T; info has "nfe" (exact number of score evaluations),
        "time_grid" (the times used), "sampler".

    Raises:
        ValueError: unknown sampler, unknown option, or inconsistent arguments (a generator list
            of another length than the batch, more than `MAX_STEPS` steps, a score of the wrong
            shape); the message lists what is valid.
        FloatingPointError: the score is NaN / infinite at its first evaluation, or samples end
            NaN / infinite (how many is named).
    """
    valid = sampler_options(name)
    fn = SAMPLERS[name]
    unknown = set(options) - valid
    if unknown:
        raise ValueError(f"unknown options {sorted(unknown)} for sampler {name!r}; valid: {sorted(valid) or 'none'}")
    if denoise not in DENOISE_MODES:
        raise ValueError(f"denoise must be one of {DENOISE_MODES}, got {denoise!r}")
    if denoise == "extrapolate" and name not in DETERMINISTIC:
        raise ValueError(
            f"denoise='extrapolate' needs a fixed-step deterministic sampler ({', '.join(DETERMINISTIC)}), got {name!r}"
        )
    eps = DEFAULT_EPS if eps is None else eps
    if time_grid is None:
        time_grid = DEFAULT_TIME_GRIDS.get(name, "uniform")
    if steps is None and isinstance(time_grid, str):
        steps = sde.N
    grid = get_time_grid(time_grid, sde, steps, eps)
    x = initial_state(sde, shape, x_T, generator, device)
    if generator is not None and not isinstance(generator, torch.Generator) and len(generator) != x.shape[0]:
        raise ValueError(f"got {len(generator)} generators for a batch of {x.shape[0]} samples; give one per sample")
    counted = CountingScore(score_fn, record=denoise == "extrapolate")
    x = fn(sde, counted, x, grid, generator=generator, callback=callback, **options)
    if denoise and sde.sigma(grid[-1]).item() > 0:  # at sigma = 0, x is already noise-free
        if denoise == "extrapolate":
            x = _denoise_extrapolated(sde, counted, x, grid[-1].item())
        else:
            x = tweedie_denoise(sde, counted, x, torch.full((x.shape[0],), grid[-1].item(), dtype=x.dtype, device=x.device))
    _check_result(x, counted, name)
    return x, {"nfe": counted.calls, "time_grid": grid, "sampler": name}


__all__ = [
    "DEFAULT_TIME_GRIDS",
    "MAX_STEPS",
    "DETERMINISTIC",
    "SAMPLERS",
    "TIME_GRIDS",
    "tune_time_grid",
    "ancestral",
    "ancestral_step",
    "annealed_langevin",
    "available",
    "ddim",
    "ddim_step",
    "dpm_solver_pp",
    "dpmpp_2m",
    "dpmpp_3m",
    "euler_maruyama",
    "euler_maruyama_step",
    "get_time_grid",
    "heun",
    "initial_state",
    "ipndm",
    "langevin_step",
    "lms",
    "noise",
    "ode_euler",
    "predictor_corrector",
    "probability_flow",
    "reverse_diffusion",
    "reverse_diffusion_step",
    "sample",
    "sampler_options",
    "unipc",
]
