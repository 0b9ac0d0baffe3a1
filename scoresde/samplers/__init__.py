"""Pluggable samplers behind one entry point, `sample(name, sde, score_fn, ...)`.

Every sampler is declared once, in `REGISTRY` (a `registry.SamplerInfo` each: loop function, kind,
convergence order, score evaluations per step, default time grid, summary); its options and
their defaults are its loop's keyword-only parameters. Everything else is derived from there:
`available()`, `SAMPLERS`, `DEFAULT_TIME_GRIDS`, `DETERMINISTIC`, `sampler_options`, the table
below (generated) and in the README (checked by a test), the config sections
`config.sampling.<name>`, the benchmark's budgets, the tests' parametrisations. `register` adds a
sampler of your own. Step functions are importable from the sampler modules for people who build
their own loops.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Mapping, Sequence

import torch

from scoresde.samplers import noise
from scoresde.samplers.adaptive import probability_flow
from scoresde.samplers.ancestral import ancestral, ancestral_step
from scoresde.samplers.euler_maruyama import euler_maruyama, euler_maruyama_step
from scoresde.samplers.grid_search import (
    GridSearch,
    dp_time_grid,
    interpolate_time_grid,
    load_time_grid,
    save_time_grid,
    search_time_grid,
)
from scoresde.samplers.langevin import annealed_langevin, langevin_step
from scoresde.samplers.ode import ddim, ddim_step, dpm_solver_pp, dpmpp_2m, dpmpp_3m, heun, ipndm, lms, ode_euler, unipc
from scoresde.samplers.predictor_corrector import predictor_corrector, reverse_diffusion, reverse_diffusion_step
from scoresde.samplers.registry import KINDS, SamplerInfo, StepInfo, closest
from scoresde.samplers.stochastic import dpmpp_2m_sde, dpmpp_3m_sde, edm_stochastic, restart, restart_evaluations, sa_solver
from scoresde.samplers.time_grids import (
    FEW_STEP_END_LOG_SNR,
    FEW_STEPS,
    MAX_STEPS,
    SDE_DEFAULT_GRIDS,
    TIME_GRIDS,
    few_step_end_time,
    get_time_grid,
    sde_default_grid,
    sde_default_grids_markdown,
)
from scoresde.samplers.tuned_grid import tune_time_grid
from scoresde.score import denoise as tweedie_denoise
from scoresde.score import tweedie
from scoresde.sde_lib import SDE, broadcast_to_data, time_vector

DEFAULT_END_TIME = 1e-3  # the final time eps of `sample` when none is given


def _predictor_corrector_evaluations(options: Mapping[str, Any]) -> int:
    """1 + corrector_steps"""
    return (options["predictor"] != "none") + (options["corrector"] != "none") * options["corrector_steps"]


def _annealed_langevin_evaluations(options: Mapping[str, Any]) -> int:
    """steps_per_level"""
    return options["steps_per_level"]


REGISTRY: dict[str, SamplerInfo] = {
    info.name: info
    for info in (
        SamplerInfo("euler_maruyama", euler_maruyama, "sde", summary="reverse-time SDE, Euler–Maruyama"),
        SamplerInfo("reverse_diffusion", reverse_diffusion, "sde", summary="Song et al.'s reverse-diffusion predictor"),
        SamplerInfo(
            "ancestral", ancestral, "sde", summary="posterior q(x_s \\| x_t, D(x_t)): DDPM for VP, SMLD for VE, any step count"
        ),
        SamplerInfo(
            "predictor_corrector",
            predictor_corrector,
            "sde",
            evaluations_per_step=_predictor_corrector_evaluations,
            summary="any predictor + Langevin corrector (Song et al.)",
        ),
        SamplerInfo(
            "annealed_langevin",
            annealed_langevin,
            "sde",
            evaluations_per_step=_annealed_langevin_evaluations,
            default_grid="log_snr",  # geometric noise levels as NCSN (uniform t is the same for VE)
            summary="NCSN: Langevin steps at each noise level",
        ),
        SamplerInfo(
            "dpmpp_2m_sde",
            dpmpp_2m_sde,
            "sde",
            default_grid="log_snr",
            summary="DPM-Solver++(2M) SDE: 2nd-order multistep for the reverse SDE; `eta` = noise share (0: `dpmpp_2m`)",
        ),
        SamplerInfo(
            "dpmpp_3m_sde",
            dpmpp_3m_sde,
            "sde",
            default_grid="log_snr",
            summary="DPM-Solver++(3M) SDE: 3rd-order multistep for the reverse SDE (`eta=0`: `dpmpp_3m`)",
        ),
        SamplerInfo(
            "sa_solver",
            sa_solver,
            "sde",
            default_grid="log_snr",
            summary="SA-Solver: stochastic Adams predictor + free corrector (Xue et al.; `eta=0`: `unipc`)",
        ),
        SamplerInfo(
            "edm_stochastic",
            edm_stochastic,
            "sde",
            evaluations_per_step=2,
            default_grid="karras",
            summary="Karras et al.'s Algorithm 2: churn noise, then a Heun step (`s_churn=0`: `heun`)",
        ),
        SamplerInfo(
            "restart",
            restart,
            "sde",
            evaluations_per_step=2,
            extra_evaluations=restart_evaluations,
            default_grid="karras",
            summary="Restart sampling (Xu et al.): Heun, and `restarts` returns to `restart_s_max` (`restarts=0`: `heun`)",
        ),
        SamplerInfo(
            "probability_flow",
            probability_flow,
            "adaptive",
            evaluations_per_step=0,
            summary='adaptive ODE solver on the grid\'s end points (`backend="scipy"`: RK45, score_sde parity)',
        ),
        SamplerInfo("ode_euler", ode_euler, "ode", order=1, summary="Euler in t on the probability-flow ODE"),
        SamplerInfo(
            "ddim",
            ddim,
            "ode",
            order=1,
            default_grid="log_snr",
            summary="first-order exponential integrator (= Euler in sigma/alpha)",
        ),
        SamplerInfo(
            "heun", heun, "ode", order=2, evaluations_per_step=2, default_grid="karras", summary="Karras et al.'s 2nd-order Heun"
        ),
        SamplerInfo("dpmpp_2m", dpmpp_2m, "ode", order=2, default_grid="log_snr", summary="DPM-Solver++(2M), multistep"),
        SamplerInfo(
            "dpm_solver_pp",
            dpm_solver_pp,
            "ode",
            order=2,
            default_grid="log_snr",
            summary="DPM-Solver++(kM) of any `order` k in 1-3 (the declared order is the default's)",
        ),
        SamplerInfo("dpmpp_3m", dpmpp_3m, "ode", order=3, default_grid="log_snr", summary="DPM-Solver++(3M), multistep"),
        SamplerInfo(
            "ipndm",
            ipndm,
            "ode",
            order=2,
            default_grid="karras",
            summary="Adams–Bashforth in sigma/alpha with equal-step weights (iPNDM; order 4 on even steps, 2 on uneven ones)",
        ),
        SamplerInfo("lms", lms, "ode", order=4, default_grid="karras", summary="variable-step Adams–Bashforth in sigma/alpha"),
        SamplerInfo(
            "unipc",
            unipc,
            "ode",
            order=3,
            default_grid="log_snr",
            summary="exponential Adams predictor + a corrector that reuses the next evaluation (order + 1); "
            '`interpolate_in="s"` (the denoiser as a polynomial in sigma/alpha) is 2–4x more accurate at 20–50 NFE '
            "with `predictor_order=3`",
        ),
    )
}

BUILT_IN = dict(REGISTRY)  # the declarations above: SDE_DEFAULT_GRIDS was measured for these loops


def register(
    name: str,
    loop: Callable,
    *,
    kind: str,
    order: int | None = None,
    evaluations_per_step: int | Callable[[Mapping[str, Any]], int] = 1,
    default_grid: str = "uniform",
    summary: str = "",
    extra_evaluations: int | Callable[[Mapping[str, Any]], int] = 0,
    replace: bool = False,
) -> SamplerInfo:
    """Declare a sampler of your own; it then works wherever a sampler name does (`registry`).

    Raises:
        ValueError: a name already taken (unless `replace`), an unknown kind or grid, a loop
            without the keyword-only `generator` and `callback` parameters.
    """
    if name in REGISTRY and not replace:
        raise ValueError(f"a sampler named {name!r} is already registered; pass replace=True to replace it")
    if default_grid not in TIME_GRIDS:
        raise ValueError(f"unknown default_grid {default_grid!r}; valid: {', '.join(TIME_GRIDS)}")
    info = SamplerInfo(name, loop, kind, order, evaluations_per_step, default_grid, summary, extra_evaluations)
    REGISTRY[name] = info
    return info


def unregister(name: str) -> None:
    """Remove a sampler added by `register`."""
    REGISTRY.pop(name, None)


def get(name: str) -> SamplerInfo:
    """The declaration of sampler `name`.

    Raises:
        ValueError: for an unknown name (with the closest one and the list of valid names).
    """
    if name not in REGISTRY:
        raise ValueError(f"unknown sampler {name!r}{closest(name, REGISTRY)}; available: {', '.join(available())}")
    return REGISTRY[name]


def available() -> list[str]:
    """Names accepted by `sample`."""
    return sorted(REGISTRY)


def deterministic() -> tuple[str, ...]:
    """The fixed-step ODE solvers (kind "ode"): they evaluate the score on the trajectory at the grid
    times, which `denoise="extrapolate"` and tuned time grids need."""
    return tuple(name for name, info in REGISTRY.items() if info.deterministic)


def default_time_grid(name: str, sde: SDE, steps: int) -> str:
    """The named grid sampler `name` takes on `sde` with `steps` steps when the caller names none:
    for a fixed-step ODE solver, `SDE_DEFAULT_GRIDS`' choice for this SDE and step count where it
    makes one (measured more accurate), unless `register(..., replace=True)` replaced the solver;
    else the sampler's own `default_grid`."""
    info = get(name)
    measured = info.kind == "ode" and BUILT_IN.get(name, info) is info  # a built-in's row is not for its replacement
    chosen = sde_default_grid(sde, name, steps) if measured else None
    return chosen or info.default_grid


def resolve_time_grid(
    name: str,
    sde: SDE,
    steps: int | None = None,
    eps: float | None = None,
    time_grid: str | Sequence[float] | torch.Tensor | None = None,
) -> torch.Tensor:
    """The times `sample` integrates over for these arguments (its defaults filled in the same way):
    a named grid (default `default_time_grid`) of `steps` steps (default sde.N) ending at `eps`
    (default `DEFAULT_END_TIME`, or `few_step_end_time`'s later end for a fixed-step sampler on a
    named grid of few steps), or the custom grid itself.

    Raises:
        ValueError: for an unknown sampler or grid, or inconsistent steps / eps.
    """
    info = get(name)
    if steps is None and (time_grid is None or isinstance(time_grid, str)):
        steps = sde.N
    if time_grid is None:
        time_grid = default_time_grid(name, sde, steps) if steps is not None else info.default_grid
    if eps is None:  # a fixed-step sampler on a named grid of few steps ends where measured best
        few = info.kind != "adaptive" and isinstance(time_grid, str)
        eps = few_step_end_time(sde, steps, DEFAULT_END_TIME) if few and steps is not None else DEFAULT_END_TIME
    return get_time_grid(time_grid, sde, steps, eps)


def __getattr__(name: str):  # views of the registry that follow `register`
    if name == "SAMPLERS":
        return {n: info.loop for n, info in REGISTRY.items()}
    if name == "DEFAULT_TIME_GRIDS":
        return {n: info.default_grid for n, info in REGISTRY.items()}
    if name == "DETERMINISTIC":
        return deterministic()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


DENOISE_MODES = (True, False, "tweedie", "extrapolate")


def markdown_table() -> str:
    """The table of all registered samplers (the README's, and this module's docstring)."""
    lines = ["| name | kind | order | evaluations | default grid | options (defaults) | what |", "|---|---|---|---|---|---|---|"]
    for name, info in REGISTRY.items():
        if info.kind == "adaptive":
            cost = "adaptive"
        elif callable(info.evaluations_per_step):
            cost = (info.evaluations_per_step.__doc__ or "depends on options").strip()
        else:
            cost = f"{info.evaluations_per_step} / step"
        if callable(info.extra_evaluations):
            cost += " + " + (info.extra_evaluations.__doc__ or "more, by options").split("(")[0].strip()
        elif info.extra_evaluations:
            cost += f" + {info.extra_evaluations}"
        grid = "end points" if info.kind == "adaptive" else info.default_grid
        options = ", ".join(f"`{k}={v!r}`".replace("'", '"') for k, v in info.option_defaults().items()) or "-"
        lines.append(f"| `{name}` | {info.kind} | {info.order or '-'} | {cost} | {grid} | {options} | {info.summary} |")
    return "\n".join(lines)


class CountingScore:
    """Wraps a score function and counts its evaluations (one per call, whatever the batch).

    The first evaluation is checked (a score of another shape than x would broadcast silently into
    a wrong result; a NaN or infinite one would give NaN samples): `ValueError` / `FloatingPointError`
    naming the problem. Later evaluations are not checked (a host synchronisation per step); the
    newest output is kept by reference, so a solver failure can be explained cheaply.
    """

    def __init__(self, score_fn: Callable):
        self.score_fn = score_fn
        self.calls = 0
        self.last: tuple[torch.Tensor, torch.Tensor] | None = None  # (t, score) of the newest evaluation

    def __call__(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        score = self.score_fn(x, t)
        if self.calls == 1:
            _check_first_score(score, x, t)
        self.last = (t, score)
        return score


class AnalyticFirstStep:
    """The first score evaluation replaced by the closed form of a Gaussian's (the analytical first
    step, AFS; Dockhorn et al. 2022, "GENIE", and Zhou et al. 2024, "AMED", sec. 3.3):

        score(x, t) = -(x - alpha mu) / (alpha^2 s_d^2 + sigma^2),

    the exact score of the marginal at t of data N(mu, s_d^2 I) (`sigma_data` = s_d, `mean` = mu).
    At the prior's end (t = T) the true marginal is nearly that Gaussian for any data with those
    first moments, so the first step costs no evaluation. It wraps the counted score function, so
    `info["nfe"]` counts only the evaluations that reached the model.
    """

    def __init__(self, score_fn: Callable, sde: SDE, sigma_data: float, mean: float = 0.0):
        if not (isinstance(sigma_data, (int, float)) and not isinstance(sigma_data, bool) and sigma_data >= 0):
            raise ValueError(f"analytic_first_step is the data std s_d >= 0 of the Gaussian it assumes, got {sigma_data!r}")
        if not (isinstance(mean, (int, float)) and not isinstance(mean, bool) and math.isfinite(mean)):
            raise ValueError(f"analytic_first_step's mean must be a finite number, got {mean!r}")
        self.score_fn, self.sde, self.sigma_data, self.mean = score_fn, sde, float(sigma_data), float(mean)
        self.used = False

    def __call__(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        if self.used:
            return self.score_fn(x, t)
        self.used = True
        alpha, sigma = (broadcast_to_data(v.to(x.dtype), x) for v in self.sde.scales(t))
        return -(x - alpha * self.mean) / (alpha**2 * self.sigma_data**2 + sigma**2)


def gaussian_moments(analytic_first_step: float | Sequence[float]) -> tuple[float, float]:
    """(mean, std) of the analytical first step's Gaussian from a std s_d or a pair (mean, s_d).

    Raises:
        ValueError: anything else, a negative std or a mean that is not finite.
    """
    value = analytic_first_step
    pair: Sequence[Any] = value if isinstance(value, (tuple, list)) and len(value) == 2 else (0.0, value)
    numbers = [v for v in pair if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)]
    if len(numbers) != 2:
        raise ValueError(f"analytic_first_step is the data std s_d >= 0, or a pair (mean, s_d), of finite numbers; got {value!r}")
    mean, std = float(numbers[0]), float(numbers[1])
    if std < 0:
        raise ValueError(f"analytic_first_step is the data std s_d >= 0 of the Gaussian it assumes, got {std!r}")
    return mean, std


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


def _denoise_extrapolated(sde: SDE, counted: CountingScore, x: torch.Tensor, t_end: float, last: StepInfo | None) -> torch.Tensor:
    """The probability-flow ODE's end point at zero noise, extrapolated along the trajectory.

    In y = x / alpha, s = sigma / alpha the ODE is dy/ds = (y - D) / s, whose solution at s = 0
    is D itself continued to s = 0 (y(s) = s (y_a / s_a + int_s^{s_a} D / u^2 du) -> D(0)).
    Tweedie's formula stops at D(s_a); here D, even in s along the trajectory, is extrapolated
    linearly in s^2 through the end time a and the last step's start b (its `denoised`, reported
    to the step callback): D(0) ~ D_a + (D_a - D_b) s_a^2 / (s_b^2 - s_a^2). One score evaluation,
    like Tweedie.
    """
    s_a, d_a = _denoised_at(sde, counted, x, t_end)
    if last is None or last["denoised"] is None:
        return d_a
    s_b = _scale(sde, last["t"])
    if not s_b > s_a:  # no earlier trajectory time to extrapolate from
        return d_a
    return d_a + (d_a - last["denoised"]) * (s_a**2 / (s_b**2 - s_a**2))


def _scale(sde: SDE, t: float) -> float:
    """s = sigma(t) / alpha(t), in float64."""
    t64 = torch.tensor(t, dtype=torch.float64)
    return sde.sigma(t64).item() / sde.alpha(t64).item()


def _denoised_at(sde: SDE, score_fn: Callable, x: torch.Tensor, t: float) -> tuple[float, torch.Tensor]:
    """(s(t), D(x, t)), Tweedie's D = (x + sigma^2 score) / alpha with float64 scalars (one evaluation)."""
    t64 = torch.tensor(t, dtype=torch.float64)
    alpha, sigma = sde.alpha(t64).item(), sde.sigma(t64).item()
    return sigma / alpha, tweedie(x, score_fn(x, time_vector(t, x)), alpha, sigma)


class _OptionsAccepted(Exception):
    """Raised by the dry run's score function: the loop got past its option checks."""


def _accept(x, t):
    raise _OptionsAccepted


def check_options(name: str, options: Mapping[str, Any]) -> None:
    """Raise what sampler `name` raises for `options`, without sampling.

    The options' names are checked against the loop's signature; their values by a dry run of the
    loop on a one-dimensional toy problem whose score function stops it at the first evaluation
    (loops check their options before they evaluate anything), so nothing is computed and even a
    huge step count costs nothing.

    Raises:
        ValueError: an unknown sampler or option, or a value the sampler refuses (its own message).
    """
    info = get(name)
    unknown = set(options) - set(info.options)
    if unknown:
        raise ValueError(f"unknown options {sorted(unknown)} for sampler {name!r}; valid: {sorted(info.options) or 'none'}")
    from scoresde.sde_lib import VPSDE

    grid = torch.tensor([1.0, 0.5, 0.25], dtype=torch.float64)
    try:
        info.loop(VPSDE(N=3), _accept, torch.zeros(1, 1), grid, generator=None, callback=None, **options)
    except _OptionsAccepted:
        pass


def sampler_options(name: str) -> set[str]:
    """The options (keyword arguments beyond `sample`'s own) that sampler `name` accepts.

    Raises:
        ValueError: for an unknown sampler.
    """
    return set(get(name).options)


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
    callback: Callable[[StepInfo], None] | None = None,
    analytic_first_step: float | tuple[float, float] | None = None,
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
        eps: final time; default `DEFAULT_END_TIME` (1e-3), and for a fixed-step sampler on a
            named grid of at most 12 steps the later time of `FEW_STEP_END_LOG_SNR` (log-SNR 6 up
            to 8 steps, 8 up to 12: measured more accurate at few evaluations).
        denoise: True or "tweedie": finish with Tweedie's formula E[x_0 | x_eps] (one more score
            evaluation); "extrapolate" (fixed-step ODE solvers): continue the probability-flow
            ODE to zero noise by extrapolating the denoiser along the trajectory (same cost,
            more accurate from about 20 steps on); False: stop at eps. Skipped when the grid
            ends where sigma = 0.
        generator: random source for x_T and the sampler's noise: a torch.Generator, or a list
            of one generator per sample, which makes each sample independent of its batch.
        device: where x_T is drawn when omitted.
        time_grid: a name of `TIME_GRIDS` ("uniform", "log_snr", "karras", "time_quadratic") or a
            decreasing sequence of times; default `default_time_grid(name, sde, steps)`: the
            sampler's own (`DEFAULT_TIME_GRIDS`) unless `SDE_DEFAULT_GRIDS` names one measured
            more accurate for this SDE, solver and step count.
        callback: called after each step with a `StepInfo` dict: "i", "n" (steps), "t" (the step's
            start time), "x" (the state after the step) and "denoised" (the data prediction the
            step evaluated at t, or None); for progress bars and for inspecting trajectories.
        analytic_first_step: off (None) by default; a data std s_d, or a pair (mean mu, s_d),
            replaces the first score evaluation (at t_0) by the exact score of Gaussian data
            N(mu, s_d^2 I) (`AnalyticFirstStep`): one evaluation fewer, exact when the data is
            that Gaussian.
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
    info = get(name)
    unknown = set(options) - set(info.options)
    if unknown:
        raise ValueError(f"unknown options {sorted(unknown)} for sampler {name!r}; valid: {sorted(info.options) or 'none'}")
    if denoise not in DENOISE_MODES:
        raise ValueError(f"denoise must be one of {DENOISE_MODES}, got {denoise!r}")
    if denoise == "extrapolate" and not info.deterministic:
        raise ValueError(
            f"denoise='extrapolate' needs a fixed-step deterministic sampler ({', '.join(deterministic())}), got {name!r}"
        )
    grid = resolve_time_grid(name, sde, steps, eps, time_grid)
    x = initial_state(sde, shape, x_T, generator, device)
    if generator is not None and not isinstance(generator, torch.Generator) and len(generator) != x.shape[0]:
        raise ValueError(f"got {len(generator)} generators for a batch of {x.shape[0]} samples; give one per sample")
    counted = CountingScore(score_fn)
    solver_score: Callable = counted
    if analytic_first_step is not None:
        mean, std = gaussian_moments(analytic_first_step)
        solver_score = AnalyticFirstStep(counted, sde, std, mean)
    steps_seen: list[StepInfo] = []  # the last step's report, for denoise="extrapolate"

    def on_step(step: StepInfo) -> None:
        steps_seen[:] = [step]
        if callback is not None:
            callback(step)

    watch = callback is not None or denoise == "extrapolate"  # else no per-step reports at all (their cost)
    x = info.loop(sde, solver_score, x, grid, generator=generator, callback=on_step if watch else None, **options)
    if denoise and sde.sigma(grid[-1]).item() > 0:  # at sigma = 0, x is already noise-free
        if denoise == "extrapolate":
            x = _denoise_extrapolated(sde, counted, x, grid[-1].item(), steps_seen[-1] if steps_seen else None)
        else:
            x = tweedie_denoise(sde, counted, x, time_vector(grid[-1].item(), x))
    _check_result(x, counted, name)
    return x, {"nfe": counted.calls, "time_grid": grid, "sampler": name}


__all__ = [
    "AnalyticFirstStep",
    "DEFAULT_END_TIME",
    "FEW_STEP_END_LOG_SNR",
    "DEFAULT_TIME_GRIDS",
    "FEW_STEPS",
    "SDE_DEFAULT_GRIDS",
    "DENOISE_MODES",
    "DETERMINISTIC",
    "GridSearch",
    "KINDS",
    "MAX_STEPS",
    "REGISTRY",
    "SAMPLERS",
    "TIME_GRIDS",
    "SamplerInfo",
    "StepInfo",
    "ancestral",
    "ancestral_step",
    "annealed_langevin",
    "available",
    "check_options",
    "ddim",
    "ddim_step",
    "default_time_grid",
    "deterministic",
    "dp_time_grid",
    "dpm_solver_pp",
    "dpmpp_2m",
    "dpmpp_3m",
    "dpmpp_2m_sde",
    "dpmpp_3m_sde",
    "edm_stochastic",
    "euler_maruyama",
    "euler_maruyama_step",
    "gaussian_moments",
    "get",
    "few_step_end_time",
    "get_time_grid",
    "heun",
    "initial_state",
    "interpolate_time_grid",
    "ipndm",
    "langevin_step",
    "lms",
    "load_time_grid",
    "markdown_table",
    "noise",
    "ode_euler",
    "predictor_corrector",
    "probability_flow",
    "register",
    "resolve_time_grid",
    "sde_default_grids_markdown",
    "reverse_diffusion",
    "restart",
    "reverse_diffusion_step",
    "sa_solver",
    "sample",
    "sampler_options",
    "save_time_grid",
    "search_time_grid",
    "tune_time_grid",
    "unipc",
    "unregister",
]

__doc__ = f"{__doc__}\n{markdown_table()}\n"  # the registered samplers at import
