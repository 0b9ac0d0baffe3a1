"""Other toolkits' own samplers on scoresde's exact-score Gaussian-mixture problems (a library, not a test).

The problems are `sampler_accuracy.PROBLEMS` (a `scoresde.oracle.GaussianMixture` with an exact
denoiser, an SDE of `scoresde.sde_lib`, an end time eps). Each peer's sampler code is called as
installed (k-diffusion's `sampling` functions, diffusers' schedulers and their `step`); only the
"network" is ours: the mixture's exact denoiser D(x, t) = E[x(0) | x(t) = x], presented in the
peer's convention. Every record is measured against the same references as `sampler_accuracy`:

    rms       RMS over samples and coordinates of (x - exact probability-flow end point at zero noise
              from the same x_T) (`GaussianMixture.solve_flow`, DOP853 at rtol 1e-10). Deterministic
              samplers only; None for stochastic ones, whose samples follow other paths.
    sw        sliced Wasserstein distance to exact data samples (seed 1); sw_floor: the same for the
              exact flow end points (the best a sampler can do from these x_T).
    nll_gap   mean -log p_0(x) over the samples minus the same over exact data samples, with the
              mixture's exact data density p_0 (`log_prob`); near 0 is good, positive means samples
              off the data's high-density set (leftover noise, too wide), negative too concentrated.
              nll_gap_floor is the gap of the exact flow end points (sampling noise only). A sample
              whose log-density is not finite makes nll_gap None and is counted in `nonfinite`.
    nfe       denoiser calls counted by a wrapper (a budget B runs the most steps whose count is <= B).

x_T = `sde.prior_sampling((n, *event_shape), generator=Generator().manual_seed(0), dtype=float64)`.

k-diffusion (`k_diffusion.sampling`, loaded by `peer_overhead.load_k_diffusion_sampling`). It works
in the variance-exploding form y = x / alpha, s = sigma / alpha with a denoiser model(y, s). Given y
at s the wrapper takes t = sde.t_from_log_snr(-2 log s), x = alpha(t) y and returns
mixture.denoiser(x, t, sde) (the data prediction is the same in both forms). When a sampler asks for
a noise level outside the SDE's range [s(0), s(T)] (the churn of `sample_euler` / `sample_heun`
raises s above s(T) at the first step; VESDE has s(0) = sigma_min > 0) it gets the same quantity
in closed form, E[x(0) | x(0) + s z = y] (the mixture's denoiser under EDMSDE, where alpha = 1 and
sigma = s), and the call is counted in `off_schedule_calls`. Start: y_T = x_T / alpha(T); the
sigmas end with 0 (k-diffusion's last step goes to zero noise), so the result is a data-space sample,
directly comparable with the exact flow end point. Grids (all float64):
    karras   k-diffusion's `get_sigmas_karras(N, s(eps), s(T), rho=7)` (+ its appended 0), computed
             with float64 as torch's default dtype: the s-values of scoresde's karras grid with N - 1
             steps, then the zero-noise step that scoresde does as Tweedie's formula (checked);
    log_snr  scoresde's log-SNR grid converted to s (= k-diffusion's `get_sigmas_exponential`), + 0;
    uniform  scoresde's uniform-in-t grid converted to s, + 0 (deterministic samplers only).
`sample_dpm_fast` takes (s_min, s_max, NFE) instead of sigmas and stops at s_min = s(eps): one more
denoiser call (Tweedie's formula, an Euler step to s = 0) ends it at zero noise, counted in nfe.
Noise: torch.manual_seed(0) before every stochastic run (their `default_noise_sampler` draws from the
global generator; their `BrownianTreeNoiseSampler` takes its seed from it).

diffusers (schedulers and their own `step`). Two families:
  * discrete-time schedulers (DDIM, DDPM, PNDM, Euler, Heun, LMS, KDPM2, DPM-Solver(++) multistep,
    single-step and SDE, UniPC, DEIS, SA-Solver) on the variance-preserving problems (VPSDE and
    CosineVPSDE, where alpha^2 + sigma^2 = 1): 1000 training steps with `trained_betas` such that
    alphas_cumprod[k] = alpha(t_k)^2 at t_k = (k + 1) / 1000, i.e. beta_k = 1 - alpha(t_k)^2 /
    alpha(t_{k-1})^2 (alpha(t_{-1}) = 1). The "network" gets the scheduler's scaled model input (VP
    form x = alpha x0 + sigma z) and the timestep k; it reads the noise level the way diffusers
    itself maps timesteps to sigmas, s = exp(interpolation of log s_j over the integer steps j at k),
    with s_j = sqrt((1 - alphas_cumprod[j]) / alphas_cumprod[j]), so t = t_from_log_snr(-2 log s)
    (exactly t_k for an integer k; Karras sigmas give fractional timesteps), and returns the noise
    prediction eps = (x - alpha D) / sigma ("epsilon", every scheduler's default). Schedulers that
    keep their sample in the sigma form (init_noise_sigma > 1: Euler, Heun, LMS, KDPM2, DPM-Solver
    SDE, Euler ancestral) start from x_T / alpha(T), the others from x_T; both start at timestep 999,
    t = 1 = T. Where the discrete grid differs from a continuous one (recorded in `end_sigma`, the
    sigma / alpha at which the returned sample sits):
      - the evaluated timesteps are integers (or log-sigma interpolations) of the 1000-step chain;
        the smallest noise a scheduler can evaluate is timestep 0, t = 0.001 (our VP eps is 1e-4);
      - DDIM, DDPM and PNDM step from k to k - 1000 // N (not to the next listed timestep): they are
        run with timestep_spacing="trailing" (999, 999 - 1000/N, ...), consistent when N divides
        1000; DDIM's last step goes to `final_alpha_cumprod` = 1 (set_alpha_to_one), zero noise,
        DDPM's to x_0, PNDM's (its default set_alpha_to_one=False) to alphas_cumprod[0];
      - the other schedulers keep their default spacing ("linspace"); Euler, Heun, LMS, KDPM2 and
        the multistep solvers with final_sigmas_type="zero" end at sigma = 0, while DEIS, PNDM and
        SA-Solver end at alphas_cumprod[0] (t = 0.001, s about 0.01): their samples keep that
        noise, which sets their rms floor on these problems;
      - diffusers keeps its schedule in float32 (betas, alphas_cumprod, sigmas) and several
        schedulers upcast/compute the step in float32: the peers' results carry about 1e-7 relative
        round-off, far below the errors compared here.
  * EDM schedulers (EDMEulerScheduler, EDMDPMSolverMultistepScheduler) on every problem, in the VE
    form with sigma_min = s(eps), sigma_max = s(T), rho = 7 (Karras sigmas), final sigma 0 and
    sigma_data = 0.5. Their network convention is EDM's preconditioning: the network gets
    c_in(s) y and c_noise = log(s) / 4 and must return F with D = c_skip(s) y + c_out(s) F; the
    wrapper reads s = exp(4 c_noise) and returns F = (D - c_skip y) / c_out (float32 timesteps: s
    carries about 1e-7 relative round-off).
  Noise: a torch.Generator seeded 0 passed to `step` where it takes one (and torch.manual_seed(0));
  DPMSolverSDEScheduler takes noise_sampler_seed=0.

Not run, and why: k-diffusion's `sample_dpm_adaptive` (its NFE is set by its error control, not by
a budget), `sample_ipndm`, `sample_ipndm_v`, `sample_deis` (not in the installed k-diffusion
0.1.1.post1; run when present); diffusers' `IPNDMScheduler` (its own sin^2 schedule, whose
trained_betas are not a beta schedule), `ScoreSdeVeScheduler` (a predictor-corrector loop with its
own API), and churn in `EDMEulerScheduler.step` (it adds the churn noise after the network call, so
the network is evaluated at sigma while the step uses sigma_hat).
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import inspect
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling benchmark modules
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout, not an installed copy
from peer_overhead import load_k_diffusion_sampling
from sampler_accuracy import PROBLEMS

from scoresde import samplers
from scoresde.eval import metrics
from scoresde.samplers.time_grids import get_time_grid
from scoresde.sde_lib import EDMSDE

BUDGETS = (3, 4, 5, 6, 8, 10, 20, 50)
TRAIN_STEPS = 1000  # diffusers' discrete chain


# -- problems and metrics ---------------------------------------------------------------------------
@dataclass
class Problem:
    """One `PROBLEMS` entry with its starting points, references and scales (all float64)."""

    key: str
    mixture: object
    sde: object
    eps: float
    x_T: torch.Tensor
    reference: torch.Tensor  # exact flow end points at zero noise from x_T
    data: torch.Tensor  # exact data samples (seed 1)
    sw_floor: float
    nll_data: float  # mean -log p_0 over the data samples
    nll_gap_floor: float

    def scales(self, t: float) -> tuple[float, float]:
        """(alpha(t), sigma(t)) as Python floats."""
        t64 = torch.tensor(t, dtype=torch.float64)
        return self.sde.alpha(t64).item(), self.sde.sigma(t64).item()

    def s_of_t(self, t: float) -> float:
        """s = sigma(t) / alpha(t)."""
        alpha, sigma = self.scales(t)
        return sigma / alpha

    @property
    def s_range(self) -> tuple[float, float]:
        """(s(0), s(T)): the noise levels the SDE covers."""
        return self.s_of_t(0.0), self.s_of_t(self.sde.T)

    @property
    def alpha_T(self) -> float:
        return self.scales(self.sde.T)[0]


@functools.lru_cache(maxsize=None)
def get_problem(key: str, n: int) -> Problem:
    """The problem `key` with n starting points (cached: the reference solve takes seconds)."""
    make_mixture, make_sde, eps = PROBLEMS[key]
    mixture, sde = make_mixture(), make_sde()
    x_T = sde.prior_sampling((n, *mixture.event_shape), generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    reference = mixture.solve_flow(x_T, sde)
    data = mixture.sample(n, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    nll_data = -mixture.log_prob(data).mean().item()
    return Problem(
        key,
        mixture,
        sde,
        eps,
        x_T,
        reference,
        data,
        metrics.sliced_wasserstein(reference, data),
        nll_data,
        -mixture.log_prob(reference).mean().item() - nll_data,
    )


def _sig(value: float | None, digits: int = 4) -> float | None:
    """Rounded to `digits` significant digits (None and non-finite values pass as None)."""
    if value is None or not math.isfinite(value):
        return None
    return float(f"{value:.{digits}g}")


def measure(problem: Problem, x: torch.Tensor, stochastic: bool) -> dict:
    """rms (deterministic only), sw, nll_gap and the count of non-finite samples / log-densities."""
    x = x.detach().to(torch.float64)
    finite = torch.isfinite(x.flatten(1)).all(1)
    log_p = problem.mixture.log_prob(x[finite]) if bool(finite.any()) else x.new_zeros(0)
    nonfinite = int((~finite).sum()) + int((~torch.isfinite(log_p)).sum())
    nll_gap = None if nonfinite else -log_p.mean().item() - problem.nll_data
    rms = None if stochastic or nonfinite else (x - problem.reference).pow(2).mean().sqrt().item()
    sw = None if int((~finite).sum()) else metrics.sliced_wasserstein(x, problem.data)
    return {"rms": _sig(rms), "sw": _sig(sw), "nll_gap": _sig(nll_gap), "nonfinite": nonfinite}


def _identity(problem: Problem, peer: str, sampler: str, grid: str, budget: int) -> dict:
    """The fields that say which run a record is of."""
    return {"problem": problem.key, "peer": peer, "sampler": sampler, "grid": grid, "budget": budget}


def _record(problem: Problem, peer: str, sampler: str, grid: str, budget: int, nfe: int, x, stochastic: bool, **extra) -> dict:
    return {
        **_identity(problem, peer, sampler, grid, budget),
        "nfe": nfe,
        **measure(problem, x, stochastic),
        "sw_floor": _sig(problem.sw_floor),
        "nll_gap_floor": _sig(problem.nll_gap_floor),
        "stochastic": stochastic,
        **extra,
    }


def _failure(problem: Problem, peer: str, sampler: str, grid: str, budget: int, stochastic: bool, error, **extra) -> dict:
    """The record of a run that raised: metrics None, the exception in `error`."""
    return {
        **_identity(problem, peer, sampler, grid, budget),
        **dict.fromkeys(("nfe", "rms", "sw", "nll_gap")),
        "stochastic": stochastic,
        "error": f"{type(error).__name__}: {error}",
        **extra,
    }


def _steps_for_budget(nfe_of: Callable[[int], int], budget: int, first: int = 1) -> int | None:
    """The most steps N >= first whose evaluation count nfe_of(N) is <= budget (None if none is).

    The count grows with N (every sampler here), so N is found by bisection.
    """
    if nfe_of(first) > budget:
        return None
    low, high = first, budget + 1  # nfe_of(low) <= budget; N = budget + 1 costs more than budget
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (middle, high) if nfe_of(middle) <= budget else (low, middle)
    return low


@contextlib.contextmanager
def float64_default() -> Iterator[None]:
    """torch's default dtype float64 inside (for peers' grid builders that use it)."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)


# -- k-diffusion ---------------------------------------------------------------------------------------
def load_k_diffusion():
    """k_diffusion.sampling (`peer_overhead.load_k_diffusion_sampling`; once per process), or None."""
    return sys.modules.get("k_diffusion.sampling") or load_k_diffusion_sampling()


class VEDenoiser:
    """k-diffusion's model(y, sigma) for a problem: the exact D at s = sigma, counting calls (module docstring)."""

    def __init__(self, problem: Problem):
        self.problem = problem
        self.s_low, self.s_high = problem.s_range
        self.calls = 0
        self.off_schedule_calls = 0

    def __call__(self, y: torch.Tensor, sigma: torch.Tensor, **kwargs) -> torch.Tensor:
        self.calls += 1
        sigma = torch.as_tensor(sigma, dtype=torch.float64).reshape(-1)
        s = sigma[0].item()
        if not bool((sigma == sigma[0]).all()):
            raise ValueError("one noise level per call is expected (k-diffusion passes sigma * ones)")
        return self.denoise(y, s)

    def denoise(self, y: torch.Tensor, s: float) -> torch.Tensor:
        """D at noise level s > 0 in the VE form, through the SDE's own time where it covers s."""
        problem, sde = self.problem, self.problem.sde
        # a relative 1e-12 at the ends only absorbs round-off of s(0) and s(T)
        if self.s_low * (1 - 1e-12) <= s <= self.s_high * (1 + 1e-12):
            t = sde.t_from_log_snr(torch.tensor(-2.0 * math.log(s), dtype=torch.float64)).clamp(0.0, sde.T).item()
            alpha = problem.scales(t)[0]
            times = torch.full((y.shape[0],), t, dtype=torch.float64)
            return problem.mixture.denoiser(alpha * y, times, sde).to(y.dtype)
        self.off_schedule_calls += 1
        return problem.mixture.denoiser(y, s, EDMSDE(max(2.0 * s, 1.0))).to(y.dtype)


def k_diffusion_sigmas(K, problem: Problem, grid: str, n_sigmas: int) -> torch.Tensor:
    """n_sigmas noise levels from s(T) to s(eps) and the final 0 (float64; module docstring)."""
    s_min, s_max = problem.s_of_t(problem.eps), problem.s_of_t(problem.sde.T)
    if grid == "karras":
        with float64_default():
            return K.get_sigmas_karras(n_sigmas, s_min, s_max, rho=7.0).to(torch.float64)
    times = get_time_grid(grid, problem.sde, n_sigmas - 1, problem.eps)
    alpha, sigma = problem.sde.alpha(times), problem.sde.sigma(times)
    return torch.cat([sigma / alpha, torch.zeros(1, dtype=torch.float64)])


@dataclass
class KSampler:
    label: str  # the function's name and settings
    function: str
    options: dict
    stochastic: bool
    grids: tuple[str, ...] = ("karras", "log_snr", "uniform")


EDM_CHURN = {"s_churn": 40.0, "s_tmin": 0.05, "s_tmax": 50.0, "s_noise": 1.003}  # EDM's ImageNet-64 settings
K_SAMPLERS = [
    KSampler("sample_euler", "sample_euler", {}, False),
    KSampler("sample_heun", "sample_heun", {}, False),
    KSampler("sample_lms", "sample_lms", {}, False),
    KSampler("sample_dpmpp_2m", "sample_dpmpp_2m", {}, False),
    KSampler("sample_dpm_2", "sample_dpm_2", {}, False),
    KSampler("sample_ipndm", "sample_ipndm", {}, False),
    KSampler("sample_ipndm_v", "sample_ipndm_v", {}, False),
    KSampler("sample_deis", "sample_deis", {}, False),
    KSampler("sample_dpmpp_2m_sde(eta=0)", "sample_dpmpp_2m_sde", {"eta": 0.0}, False),
    KSampler("sample_dpmpp_3m_sde(eta=0)", "sample_dpmpp_3m_sde", {"eta": 0.0}, False),
    KSampler("sample_dpm_fast + final D", "sample_dpm_fast", {}, False, ("own",)),
    KSampler("sample_euler_ancestral", "sample_euler_ancestral", {}, True),
    KSampler("sample_dpm_2_ancestral", "sample_dpm_2_ancestral", {}, True),
    KSampler("sample_dpmpp_2s_ancestral", "sample_dpmpp_2s_ancestral", {}, True),
    KSampler("sample_dpmpp_sde", "sample_dpmpp_sde", {}, True),
    KSampler("sample_dpmpp_2m_sde", "sample_dpmpp_2m_sde", {}, True),
    KSampler("sample_dpmpp_2m_sde(solver_type=heun)", "sample_dpmpp_2m_sde", {"solver_type": "heun"}, True),
    KSampler("sample_dpmpp_3m_sde", "sample_dpmpp_3m_sde", {}, True),
    KSampler("sample_euler(s_churn=10)", "sample_euler", {"s_churn": 10.0}, True),
    KSampler("sample_heun(s_churn=10)", "sample_heun", {"s_churn": 10.0}, True),
    KSampler("sample_heun(EDM churn 40, s_tmin .05, s_tmax 50, s_noise 1.003)", "sample_heun", EDM_CHURN, True),
]


def run_k_sampler(K, problem: Problem, spec: KSampler, grid: str, steps: int, x_T: torch.Tensor | None = None):
    """One run: (samples, the counting denoiser). `steps` = intervals of the sigmas (or dpm_fast's n)."""
    model = VEDenoiser(problem)
    y = (problem.x_T if x_T is None else x_T) / problem.alpha_T
    function = getattr(K, spec.function)
    torch.manual_seed(0)
    if spec.function == "sample_dpm_fast":
        s_min, s_max = problem.s_of_t(problem.eps), problem.s_of_t(problem.sde.T)
        y = function(model, y, s_min, s_max, steps, disable=True, **spec.options)
        return model(y, torch.full((y.shape[0],), s_min, dtype=torch.float64)), model
    sigmas = k_diffusion_sigmas(K, problem, grid, steps)
    return function(model, y, sigmas, disable=True, **spec.options), model


_K_NFE: dict[tuple[str, int], int] = {}  # (sampler label, steps) -> evaluations: the same on every problem and grid


def k_diffusion_runs(problem_key: str, n: int = 1024, budgets=BUDGETS, K=None) -> Iterator[dict]:
    """Records of every available k-diffusion sampler and grid at each budget (module docstring).

    Deterministic samplers run on the karras, log_snr and uniform grids, stochastic ones on the first two.
    """
    K = K or load_k_diffusion()
    if K is None:
        return
    problem = get_problem(problem_key, n)
    for spec in K_SAMPLERS:
        if not hasattr(K, spec.function):
            continue
        grids = spec.grids if not spec.stochastic else tuple(g for g in spec.grids if g != "uniform")
        for grid in grids:

            def nfe_of(steps: int, spec=spec, grid=grid) -> int:  # counted on one sample, once per sampler
                key = (spec.label, steps)
                if key not in _K_NFE:
                    _K_NFE[key] = run_k_sampler(K, problem, spec, grid, steps, problem.x_T[:1])[1].calls
                return _K_NFE[key]

            for budget in budgets:
                steps = _steps_for_budget(nfe_of, budget, first=2)  # >= 1 step before the one to s = 0
                if spec.function == "sample_dpm_fast":
                    steps = budget - 1 if budget >= 3 else None
                if steps is None:
                    continue
                try:
                    x, model = run_k_sampler(K, problem, spec, grid, steps)
                except Exception as error:  # a peer's own failure on this problem: recorded, not hidden
                    yield _failure(problem, "k-diffusion", spec.label, grid, budget, spec.stochastic, error, steps=steps)
                    continue
                yield _record(
                    problem,
                    "k-diffusion",
                    spec.label,
                    grid,
                    budget,
                    model.calls,
                    x,
                    spec.stochastic,
                    steps=steps,
                    off_schedule_calls=model.off_schedule_calls,
                )


# -- diffusers ----------------------------------------------------------------------------------------
def load_diffusers():
    """The diffusers package, or None when it is not installed.

    A torchvision stub left in sys.modules by `load_k_diffusion_sampling` (a module without a spec)
    breaks diffusers' import-time probing of optional packages; it is set aside during the import.
    """
    if importlib.util.find_spec("diffusers") is None:
        return None
    stubs = {
        name: module
        for name, module in list(sys.modules.items())
        if name.split(".")[0] == "torchvision" and getattr(module, "__spec__", None) is None
    }
    for name in stubs:
        del sys.modules[name]
    try:
        import diffusers
        import diffusers.schedulers

        diffusers.utils.logging.set_verbosity_error()
    finally:
        sys.modules.update(stubs)
    return diffusers


def is_variance_preserving(problem: Problem) -> bool:
    """alpha^2 + sigma^2 = 1 across [0, T] (VPSDE, CosineVPSDE): what diffusers' discrete chain assumes."""
    t = torch.linspace(0, problem.sde.T, 11, dtype=torch.float64)
    return bool(torch.allclose(problem.sde.alpha(t) ** 2 + problem.sde.sigma(t) ** 2, torch.ones_like(t), atol=1e-12))


def trained_alphas_cumprod(problem: Problem) -> np.ndarray:
    """alpha(t_k)^2 at t_k = (k + 1) / 1000 (T = 1), float64."""
    t = torch.arange(1, TRAIN_STEPS + 1, dtype=torch.float64) * (problem.sde.T / TRAIN_STEPS)
    return (problem.sde.alpha(t) ** 2).numpy()


def trained_betas(problem: Problem) -> np.ndarray:
    """beta_k = 1 - alphas_cumprod[k] / alphas_cumprod[k - 1] (with 1 before step 0)."""
    acp = trained_alphas_cumprod(problem)
    return 1.0 - acp / np.concatenate([[1.0], acp[:-1]])


class DiscreteEpsModel:
    """A diffusers noise-prediction network for a VP problem: eps(x, timestep) exact (module docstring)."""

    def __init__(self, problem: Problem):
        self.problem = problem
        acp = trained_alphas_cumprod(problem)
        self.log_sigmas = 0.5 * np.log((1.0 - acp) / acp)
        self.calls = 0
        self.first_s: float | None = None

    def time_of(self, timestep) -> float:
        """Our t for a (possibly fractional) diffusers timestep, through its log-sigma interpolation."""
        k = float(timestep)
        log_s = float(np.interp(k, np.arange(TRAIN_STEPS), self.log_sigmas))
        t = self.problem.sde.t_from_log_snr(torch.tensor(-2.0 * log_s, dtype=torch.float64))
        return t.clamp(0.0, self.problem.sde.T).item()

    def __call__(self, x: torch.Tensor, timestep) -> torch.Tensor:
        self.calls += 1
        t = self.time_of(timestep)
        alpha, sigma = self.problem.scales(t)
        if self.first_s is None:
            self.first_s = sigma / alpha
        x = x.to(torch.float64)
        d = self.problem.mixture.denoiser(x, torch.full((x.shape[0],), t, dtype=torch.float64), self.problem.sde)
        return (x - alpha * d) / sigma


class EDMModel:
    """A diffusers EDM network F(c_in y, c_noise) with c_skip y + c_out F = the exact D (module docstring)."""

    def __init__(self, problem: Problem, sigma_data: float):
        self.denoiser = VEDenoiser(problem)
        self.sigma_data = sigma_data
        self.first_s: float | None = None

    @property
    def calls(self) -> int:
        return self.denoiser.calls

    def __call__(self, scaled: torch.Tensor, c_noise) -> torch.Tensor:
        s = math.exp(4.0 * float(torch.as_tensor(c_noise, dtype=torch.float64).reshape(-1)[0]))
        if self.first_s is None:
            self.first_s = s
        sd2 = self.sigma_data**2
        y = scaled.to(torch.float64) * math.sqrt(s * s + sd2)
        self.denoiser.calls += 1
        d = self.denoiser.denoise(y, s)
        c_skip, c_out = sd2 / (s * s + sd2), s * self.sigma_data / math.sqrt(s * s + sd2)
        return (d - c_skip * y) / c_out


@dataclass
class DScheduler:
    label: str
    cls: str
    options: dict
    stochastic: bool
    edm: bool = False
    step_options: dict | None = None


_TRAILING = {"timestep_spacing": "trailing"}
_NO_CLIP = {"clip_sample": False}  # DDIM's and DDPM's default clips the data prediction to [-1, 1]
D_SCHEDULERS = [
    DScheduler("DDIMScheduler(trailing)", "DDIMScheduler", {"set_alpha_to_one": True, **_TRAILING, **_NO_CLIP}, False),
    DScheduler("PNDMScheduler(PLMS, trailing)", "PNDMScheduler", {"skip_prk_steps": True, **_TRAILING}, False),
    DScheduler("EulerDiscreteScheduler", "EulerDiscreteScheduler", {}, False),
    DScheduler("EulerDiscreteScheduler(karras)", "EulerDiscreteScheduler", {"use_karras_sigmas": True}, False),
    DScheduler("HeunDiscreteScheduler", "HeunDiscreteScheduler", {}, False),
    DScheduler("HeunDiscreteScheduler(karras)", "HeunDiscreteScheduler", {"use_karras_sigmas": True}, False),
    DScheduler("LMSDiscreteScheduler", "LMSDiscreteScheduler", {}, False),
    DScheduler("LMSDiscreteScheduler(karras)", "LMSDiscreteScheduler", {"use_karras_sigmas": True}, False),
    DScheduler("KDPM2DiscreteScheduler(karras)", "KDPM2DiscreteScheduler", {"use_karras_sigmas": True}, False),
    DScheduler("DPMSolverMultistepScheduler(dpmsolver++ 2)", "DPMSolverMultistepScheduler", {}, False),
    DScheduler(
        "DPMSolverMultistepScheduler(dpmsolver++ 2, karras)", "DPMSolverMultistepScheduler", {"use_karras_sigmas": True}, False
    ),
    DScheduler("DPMSolverMultistepScheduler(dpmsolver++ 3)", "DPMSolverMultistepScheduler", {"solver_order": 3}, False),
    DScheduler(
        "DPMSolverMultistepScheduler(dpmsolver++ 3, karras)",
        "DPMSolverMultistepScheduler",
        {"solver_order": 3, "use_karras_sigmas": True},
        False,
    ),
    DScheduler("DPMSolverSinglestepScheduler(2)", "DPMSolverSinglestepScheduler", {"final_sigmas_type": "zero"}, False),
    DScheduler("UniPCMultistepScheduler(bh2, 2)", "UniPCMultistepScheduler", {}, False),
    DScheduler("UniPCMultistepScheduler(bh2, 2, karras)", "UniPCMultistepScheduler", {"use_karras_sigmas": True}, False),
    DScheduler("UniPCMultistepScheduler(bh2, 3)", "UniPCMultistepScheduler", {"solver_order": 3}, False),
    DScheduler("UniPCMultistepScheduler(bh1, 3)", "UniPCMultistepScheduler", {"solver_order": 3, "solver_type": "bh1"}, False),
    DScheduler("DEISMultistepScheduler(3)", "DEISMultistepScheduler", {}, False),
    DScheduler("DEISMultistepScheduler(3, karras)", "DEISMultistepScheduler", {"use_karras_sigmas": True}, False),
    DScheduler("SASolverScheduler(tau=0)", "SASolverScheduler", {"tau_func": lambda t: 0}, False),
    DScheduler("DDPMScheduler(trailing)", "DDPMScheduler", {**_TRAILING, **_NO_CLIP}, True),
    DScheduler(
        "DDIMScheduler(eta=1, trailing)",
        "DDIMScheduler",
        {"set_alpha_to_one": True, **_TRAILING, **_NO_CLIP},
        True,
        False,
        {"eta": 1.0},
    ),
    DScheduler("EulerAncestralDiscreteScheduler", "EulerAncestralDiscreteScheduler", {}, True),
    DScheduler("KDPM2AncestralDiscreteScheduler(karras)", "KDPM2AncestralDiscreteScheduler", {"use_karras_sigmas": True}, True),
    DScheduler("DPMSolverSDEScheduler", "DPMSolverSDEScheduler", {"noise_sampler_seed": 0}, True),
    DScheduler(
        "DPMSolverSDEScheduler(karras)", "DPMSolverSDEScheduler", {"noise_sampler_seed": 0, "use_karras_sigmas": True}, True
    ),
    DScheduler(
        "DPMSolverMultistepScheduler(sde-dpmsolver++)",
        "DPMSolverMultistepScheduler",
        {"algorithm_type": "sde-dpmsolver++"},
        True,
    ),
    DScheduler(
        "DPMSolverMultistepScheduler(sde-dpmsolver++, karras)",
        "DPMSolverMultistepScheduler",
        {"algorithm_type": "sde-dpmsolver++", "use_karras_sigmas": True},
        True,
    ),
    DScheduler("SASolverScheduler(default tau)", "SASolverScheduler", {}, True),
    DScheduler("EDMEulerScheduler", "EDMEulerScheduler", {}, False, True),
    DScheduler("EDMDPMSolverMultistepScheduler(dpmsolver++ 2)", "EDMDPMSolverMultistepScheduler", {}, False, True),
    DScheduler(
        "EDMDPMSolverMultistepScheduler(dpmsolver++ 3)", "EDMDPMSolverMultistepScheduler", {"solver_order": 3}, False, True
    ),
    DScheduler(
        "EDMDPMSolverMultistepScheduler(sde-dpmsolver++)",
        "EDMDPMSolverMultistepScheduler",
        {"algorithm_type": "sde-dpmsolver++"},
        True,
        True,
    ),
]
EDM_SIGMA_DATA = 0.5


def make_scheduler(diffusers, problem: Problem, spec: DScheduler):
    """The scheduler of `spec` for `problem` (trained_betas from the SDE, or EDM sigmas s(eps)..s(T))."""
    cls = getattr(diffusers, spec.cls)
    if spec.edm:
        return cls(
            sigma_min=problem.s_of_t(problem.eps),
            sigma_max=problem.s_of_t(problem.sde.T),
            sigma_data=EDM_SIGMA_DATA,
            final_sigmas_type="zero",
            **spec.options,
        )
    return cls(num_train_timesteps=TRAIN_STEPS, trained_betas=trained_betas(problem), prediction_type="epsilon", **spec.options)


def end_sigma(scheduler) -> float | None:
    """sigma / alpha of the sample a scheduler returns (0 = noise-free), from its own schedule."""
    if hasattr(scheduler, "final_alpha_cumprod"):  # DDIM, PNDM
        acp = float(scheduler.final_alpha_cumprod)
        return math.sqrt((1.0 - acp) / acp)
    if getattr(scheduler, "sigmas", None) is not None:
        return float(scheduler.sigmas[-1])
    if hasattr(scheduler, "alphas_cumprod"):  # DDPM: its last step reaches x_0
        return 0.0
    return None


def run_scheduler(diffusers, problem: Problem, spec: DScheduler, steps: int, x_T: torch.Tensor | None = None):
    """One sampling loop with the scheduler's own `step`: (samples, model, scheduler)."""
    scheduler = make_scheduler(diffusers, problem, spec)
    scheduler.set_timesteps(steps)
    x_T = problem.x_T if x_T is None else x_T
    sigma_form = float(scheduler.init_noise_sigma) > 1.0 + 1e-6
    x = x_T / problem.alpha_T if sigma_form or spec.edm else x_T.clone()
    model = EDMModel(problem, EDM_SIGMA_DATA) if spec.edm else DiscreteEpsModel(problem)
    step_options = dict(spec.step_options or {})
    if "generator" in inspect.signature(scheduler.step).parameters:
        step_options["generator"] = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    for timestep in scheduler.timesteps:
        model_input = scheduler.scale_model_input(x, timestep)
        output = model(model_input, timestep)
        x = scheduler.step(output, timestep, x, **step_options).prev_sample
    s_T = problem.s_of_t(problem.sde.T)
    if model.first_s is None or abs(model.first_s / s_T - 1) > 1e-4:
        raise RuntimeError(f"{spec.label}: first noise level {model.first_s} is not s(T) = {s_T}")
    return x, model, scheduler


def diffusers_runs(problem_key: str, n: int = 1024, budgets=BUDGETS, diffusers=None) -> Iterator[dict]:
    """Records of every mapped diffusers scheduler on `problem_key` at each budget (module docstring).

    Discrete-time schedulers run on the variance-preserving problems only; EDM schedulers on all.
    """
    diffusers = diffusers or load_diffusers()
    if diffusers is None:
        return
    problem = get_problem(problem_key, n)
    vp = is_variance_preserving(problem)
    for spec in D_SCHEDULERS:
        if not hasattr(diffusers, spec.cls) or not (spec.edm or vp):
            continue

        @functools.lru_cache(maxsize=None)
        def nfe_of(steps: int, spec=spec) -> int:
            scheduler = make_scheduler(diffusers, problem, spec)
            scheduler.set_timesteps(steps)
            return len(scheduler.timesteps)

        for budget in budgets:
            steps = _steps_for_budget(nfe_of, budget)
            if steps is None:
                continue
            try:
                x, model, scheduler = run_scheduler(diffusers, problem, spec, steps)
            except Exception as error:  # a peer's own failure on this problem: recorded, not hidden
                yield _failure(problem, "diffusers", spec.label, "-", budget, spec.stochastic, error, steps=steps)
                continue
            yield _record(
                problem,
                "diffusers",
                spec.label,
                "edm karras" if spec.edm else str(scheduler.config.get("timestep_spacing", "-")),
                budget,
                model.calls,
                x.to(torch.float64),
                spec.stochastic,
                steps=steps,
                end_sigma=_sig(end_sigma(scheduler)),
            )


# -- summaries and sanity checks -------------------------------------------------------------------
def best_peer(records: list[dict], problem: str, budget: int, metric: str, stochastic: bool, peer: str | None = None):
    """The record with the best `metric` (smallest; for nll_gap the smallest |gap|) or None.

    Among records of `problem` at `budget` (nfe <= budget by construction) of the given kind
    (stochastic or not) and, if given, of one peer; records whose metric is None are skipped.
    """
    candidates = [
        r
        for r in records
        if r["problem"] == problem
        and r["budget"] == budget
        and r["stochastic"] == stochastic
        and (peer is None or r["peer"] == peer)
        and r.get(metric) is not None
    ]
    if not candidates:
        return None
    return min(candidates, key=lambda r: abs(r[metric]) if metric == "nll_gap" else r[metric])


def k_diffusion_mapping_check(
    K, problem_key: str = "stiff64_vp", n: int = 256, steps: int = 10, problem_samples: int = 1024
) -> dict:
    """Max |difference| of k-diffusion's samplers against ours on the same grids, float64.

    Our grid with `steps` intervals to eps then Tweedie's formula (denoise=True) is their sigmas
    s(grid) + [0]: sample_euler vs our ddim, sample_heun vs our heun, sample_lms vs our lms (on the
    karras grid and the log-SNR grid). Also the largest relative gap between get_sigmas_karras and
    the s-values of our karras grid.
    """
    problem = get_problem(problem_key, problem_samples)  # the first n of the benchmark's starting points
    x_T = problem.x_T[:n]
    result = {"problem": problem_key, "samples": n, "steps": steps}
    ours_karras = get_time_grid("karras", problem.sde, steps, problem.eps)
    theirs = k_diffusion_sigmas(K, problem, "karras", steps + 1)
    alpha, sigma = problem.sde.alpha(ours_karras), problem.sde.sigma(ours_karras)
    result["karras_sigmas_rel_gap"] = ((theirs[:-1] / (sigma / alpha)) - 1).abs().max().item()
    for grid in ("karras", "log_snr"):
        for their_name, our_name in (("sample_euler", "ddim"), ("sample_heun", "heun"), ("sample_lms", "lms")):
            spec = KSampler(their_name, their_name, {}, False)
            x_theirs, model = run_k_sampler(K, problem, spec, grid, steps + 1, x_T)
            x_ours, info = samplers.sample(
                our_name,
                problem.sde,
                problem.mixture.score_fn(problem.sde),
                x_T=x_T,
                time_grid=get_time_grid(grid, problem.sde, steps, problem.eps),
                denoise=True,
            )
            result[f"{their_name} vs {our_name} ({grid})"] = {
                "max_abs_diff": (x_theirs - x_ours).abs().max().item(),
                "nfe": [model.calls, info["nfe"]],
                "rms_vs_exact": (x_ours - problem.reference[:n]).pow(2).mean().sqrt().item(),
            }
    return result


def diffusers_mapping_check(
    diffusers, problem_key: str = "stiff64_vp", n: int = 256, steps: int = 10, problem_samples: int = 1024
) -> dict:
    """Max |difference| of diffusers' DDIMScheduler (trailing, eta 0) against our ddim on its times.

    With 1000 % steps == 0 the scheduler visits t = (k + 1) / 1000 for k = 999, 999 - 1000/steps, ...
    and then steps to alphas_cumprod = 1: our ddim on that time grid with Tweedie's formula at the end.
    """
    problem = get_problem(problem_key, problem_samples)  # the first n of the benchmark's starting points
    x_T = problem.x_T[:n]
    spec = D_SCHEDULERS[0]
    x_theirs, model, scheduler = run_scheduler(diffusers, problem, spec, steps, x_T)
    times = [(int(k) + 1) / TRAIN_STEPS for k in scheduler.timesteps]
    x_ours, info = samplers.sample(
        "ddim", problem.sde, problem.mixture.score_fn(problem.sde), x_T=x_T, time_grid=times, denoise=True
    )
    return {
        "problem": problem_key,
        "samples": n,
        "steps": steps,
        "times": times,
        "max_abs_diff": (x_theirs.to(torch.float64) - x_ours).abs().max().item(),
        "max_abs_x": x_ours.abs().max().item(),
        "nfe": [model.calls, info["nfe"]],
    }
