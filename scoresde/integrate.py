"""Integration of dy/dt = f(y, t) for a batch of n independent states y = (y_1, ..., y_n), y0 of shape
(n, ...), from t0 to t1 (either direction): the adaptive (and RK4) integrator that the adaptive
sampler (`samplers.adaptive`), the likelihood (`likelihood`) and the oracle's reference flow
(`oracle.GaussianMixture.solve_flow`) share. (The fixed-step samplers of `samplers.ode` step on
their time grids with formulas of their own.)

`solve(f, y0, t0, t1, backend=..., method=..., rtol=..., atol=...)` returns y(t1) and the
evaluation counts. Back ends (`METHODS` lists each one's methods, the first its default):

    torchdiffeq  torchdiffeq's adaptive Runge–Kutta methods (Chen et al. 2018) on the tensors
                 themselves (CPU or GPU). One step size for the whole batch, controlled by the
                 largest per-sample error (below), so every sample meets rtol/atol whatever else is
                 in the batch; the number of steps follows the hardest sample.
    scipy        scipy.integrate.solve_ivp (Virtanen et al. 2020) on the flattened batch as one
                 system of n * d equations in float64, with scipy's own norm (RMS over all n * d
                 coordinates, so a sample's accuracy depends on the batch): score_sde's way, kept
                 for parity with published numbers, not for speed.
    per_sample   our Dormand–Prince 5(4) with a step size, a time and accepted steps of its own for
                 every sample (`dopri5_per_sample`): a sample's result does not depend on the batch.
    fixed_step   the classical Runge–Kutta 4 with `steps` equal steps (`rk4`), no error control.

f is called as f(y, t) with t of shape (n,) (y's dtype and device), except by per_sample, which
evaluates only the samples still under way: f(y[rows], t, rows), rows the indices into y0 (None:
all), so f can pick per-sample data (e.g. a divergence estimator's probes). The shared-step back
ends clamp t into [min(t0, t1), max(t0, t1)] (torchdiffeq's initial step guess may probe past the
end, and scipy's stage times t + c h may round past it), and torchdiffeq is made to land on t1
(`step_t`) rather than to step past it and interpolate, so f is never evaluated outside the
interval where, e.g., a noise schedule is defined.

The mathematics. An explicit Runge–Kutta step of size h from (y, t) evaluates the stages

    k_i = f(y + h sum_{j<i} a_ij k_j, t + c_i h),   i = 1..s,

and takes y_new = y + h sum_i b_i k_i; an embedded formula of lower order with weights b^_i gives
the error estimate e = h sum_i (b_i - b^_i) k_i at no extra cost. Dormand–Prince 5(4) (Dormand &
Prince 1980; Hairer, Nørsett & Wanner 1993, sec. II.5, table 5.2) has s = 7 stages, propagates the
5th-order solution and has c_7 = 1 with a_7j = b_j ("first same as last"): k_7 is the next step's
k_1, so an accepted step costs 6 evaluations. The error is measured per sample with the scale
sc = atol + rtol max(|y|, |y_new|) per coordinate as the RMS (HNW eqs. 4.10, 4.11)

    err = sqrt( mean_i (e_i / sc_i)^2 )   over the sample's coordinates i;

the shared-step back end torchdiffeq takes the largest err of the batch (`max_sample_rms`), the
per-sample solver each sample's own, and with `tail` > 0 the larger of the RMS over the leading
coordinates and over the last `tail` ones, so that a few extra channels (the likelihood's
log-density integrals) are not drowned by many data coordinates. A step is accepted when err <= 1,
and either way the next step size is (HNW sec. II.4, eq. 4.13, with exponent 1 / (q + 1) for the
embedded order q = 4)

    h <- h min(5, max(0.2, 0.9 err^(-1/5)))

in the per-sample solver, which starts from h = |t1 - t0| / 100 and corrects it at the first step;
torchdiffeq uses the same rule (exponent 1 / its method's order) with a growth limit of 10, no
shrinking after an accepted step, and HNW's starting-step algorithm (sec. II.4). Every back end
but fixed_step shortens the last step to land exactly on t1. RK4 (Kutta 1901; HNW sec. II.1) has
global error O(h^4).

The tolerance floor (`min_rtol`): in a dtype with machine epsilon eps, the embedded error estimate
carries round-off of order eps |y|, so rtol much below eps forces steps that shrink with rtol / eps
rather than with the true error: on the 2-D ring mixture in float32 (500 samples, VP, dopri5)
rtol = atol = 1e-5 takes 171 evaluations, 1e-9 849, 1e-10 4,173 and 1e-12 did not finish in 30 s.
`check_tolerances` refuses rtol < RTOL_MIN_FRACTION_OF_EPS * eps (by the dtype's name) instead of
letting the solver run for ever; scipy works in float64 whatever y0's dtype.

Step collapse (f going NaN or infinite on the way, or an ODE too stiff for the tolerances) raises
FloatingPointError instead of returning garbage or spinning: torchdiffeq's names the method and the
time of the last evaluation, per_sample's the step that went NaN (or the step budget it ran out
of), scipy's the method and scipy's message.

References:
    J. R. Dormand, P. J. Prince (1980), A family of embedded Runge–Kutta formulae, J. Comput. Appl.
        Math. 6(1), 19–26.
    E. Hairer, S. P. Nørsett, G. Wanner (1993), Solving Ordinary Differential Equations I: Nonstiff
        Problems, 2nd ed., Springer (II.1 Runge–Kutta methods, II.4 step size control, II.5 the
        Dormand–Prince pair).
    W. Kutta (1901), Beitrag zur näherungsweisen Integration totaler Differentialgleichungen,
        Z. Math. Phys. 46, 435–453 (the classical RK4).
    R. T. Q. Chen, Y. Rubanova, J. Bettencourt, D. Duvenaud (2018), Neural Ordinary Differential
        Equations, NeurIPS (torchdiffeq).
    P. Virtanen et al. (2020), SciPy 1.0, Nature Methods 17, 261–272 (scipy.integrate.solve_ivp).
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import numpy as np
import torch

TORCHDIFFEQ_METHODS = ("dopri5", "bosh3", "adaptive_heun", "fehlberg2", "dopri8")
SCIPY_METHODS = ("RK45", "RK23", "DOP853", "Radau", "BDF", "LSODA")
# The back ends whose step size the whole batch shares (the samplers' choice), then our own two.
SHARED_STEP_BACKENDS = ("torchdiffeq", "scipy")
METHODS: dict[str, tuple[str, ...]] = {
    "torchdiffeq": TORCHDIFFEQ_METHODS,
    "scipy": SCIPY_METHODS,
    "per_sample": ("dopri5",),
    "fixed_step": ("rk4",),
}
BACKENDS = tuple(METHODS)
DEFAULT_METHODS = {backend: methods[0] for backend, methods in METHODS.items()}

# Below this fraction of the dtype's machine epsilon the error estimate is round-off (module docstring).
RTOL_MIN_FRACTION_OF_EPS = 1e-2

# Dormand–Prince 5(4) tableau (Dormand & Prince 1980; Hairer, Nørsett & Wanner, table 5.2).
_C = (0.0, 1 / 5, 3 / 10, 4 / 5, 8 / 9, 1.0, 1.0)
_A = (
    (),
    (1 / 5,),
    (3 / 40, 9 / 40),
    (44 / 45, -56 / 15, 32 / 9),
    (19372 / 6561, -25360 / 2187, 64448 / 6561, -212 / 729),
    (9017 / 3168, -355 / 33, 46732 / 5247, 49 / 176, -5103 / 18656),
    (35 / 384, 0.0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84),
)
_B5 = (35 / 384, 0.0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84, 0.0)
_B4 = (5179 / 57600, 0.0, 7571 / 16695, 393 / 640, -92097 / 339200, 187 / 2100, 1 / 40)
_ERR = tuple(b5 - b4 for b5, b4 in zip(_B5, _B4))


class Solution(NamedTuple):
    """What `solve` returns."""

    y: torch.Tensor  # y(t1), shaped like y0, its dtype and device
    nfe: int  # batched evaluations of f
    nfe_per_sample: torch.Tensor  # (n,) int64: the evaluations each sample took part in


def min_rtol(dtype: torch.dtype) -> float:
    """The smallest relative tolerance accepted in `dtype` (1.2e-9 in float32, 2.2e-18 in float64)."""
    return RTOL_MIN_FRACTION_OF_EPS * torch.finfo(dtype).eps


def check_tolerances(rtol: float, atol: float, dtype: torch.dtype) -> None:
    """Raise ValueError for tolerances that are not positive or that `dtype` cannot resolve."""
    if not (rtol > 0 and atol > 0):
        raise ValueError(f"rtol and atol must be > 0, got {rtol!r}, {atol!r}")
    if rtol < min_rtol(dtype):
        raise ValueError(
            f"rtol={rtol:g} is below what {str(dtype).replace('torch.', '')} can resolve: use rtol >= "
            f"{min_rtol(dtype):.2g} (or float64 inputs); a smaller tolerance stalls the solver"
        )


def check_options(
    backend: str, method: str | None, *, rtol: float, atol: float, dtype: torch.dtype, steps: int | None = None
) -> str:
    """Raise ValueError for options `solve` refuses (the message lists what is valid); else the
    method, `method` or the back end's default (`DEFAULT_METHODS`) when None or empty.

    Tolerances are checked in `dtype` (float64 for scipy, which integrates in float64); fixed_step
    has none and needs `steps` >= 1 instead.
    """
    if backend not in METHODS:
        raise ValueError(f"unknown backend {backend!r}; valid: {', '.join(BACKENDS)}")
    method = method or DEFAULT_METHODS[backend]
    if method not in METHODS[backend]:
        raise ValueError(f"unknown method {method!r} for backend {backend!r}; valid: {', '.join(METHODS[backend])}")
    if backend == "fixed_step":
        if not (isinstance(steps, int) and steps >= 1):
            raise ValueError(f"method {method!r} needs steps >= 1, got {steps!r}")
    else:
        check_tolerances(rtol, atol, torch.float64 if backend == "scipy" else dtype)
    return method


def solve(
    f: Callable[..., torch.Tensor],
    y0: torch.Tensor,
    t0: float,
    t1: float,
    *,
    backend: str = "torchdiffeq",
    method: str | None = None,
    rtol: float = 1e-5,
    atol: float = 1e-5,
    steps: int | None = None,
    tail: int = 0,
) -> Solution:
    """Integrate dy/dt = f(y, t) from t0 to t1 for the batch y0 (module docstring).

    Args:
        f: the derivative, f(y, t) -> shaped like y, t of shape (n,); per_sample calls f(y, t, rows).
        y0: the states at t0, floating point, shape (n, ...).
        t0, t1: the start and end times (t1 < t0 integrates backwards).
        backend, method: one of BACKENDS and one of its METHODS (default: its first).
        rtol, atol: the adaptive back ends' tolerances (unused by fixed_step).
        steps: the step count of fixed_step.
        tail: per_sample only: the last `tail` coordinates of each flattened sample are a separate
            group of its error norm.

    Returns:
        Solution(y(t1), the number of batched evaluations of f, the evaluations per sample).

    Raises:
        ValueError: an unknown backend or method (listing the valid ones), tolerances that are not
            positive or below what the dtype resolves (`min_rtol`), bad steps or tail.
        FloatingPointError: the step size collapsed (f NaN or infinite, or the ODE too stiff for
            rtol / atol), scipy failed, or per_sample did not reach t1.
    """
    method = check_options(backend, method, rtol=rtol, atol=atol, dtype=y0.dtype, steps=steps)
    if not y0.is_floating_point() or y0.ndim < 1:
        raise ValueError(f"y0 must be a floating-point tensor of shape (n, ...), got {y0.dtype} {tuple(y0.shape)}")
    if tail and backend != "per_sample":
        raise ValueError(f"tail is an option of the per_sample back end, not of {backend!r}")
    t0, t1 = float(t0), float(t1)
    calls = 0

    def counted(*args):
        nonlocal calls
        calls += 1
        return f(*args)

    if backend == "per_sample":
        y, per_sample = dopri5_per_sample(counted, y0, t0, t1, rtol=rtol, atol=atol, tail=tail)
        return Solution(y, calls, per_sample)
    if backend == "fixed_step":
        assert steps is not None  # check_options requires it
        y = rk4(counted, y0, t0, t1, steps)
    elif backend == "scipy":
        y = _solve_scipy(counted, y0, t0, t1, method, rtol, atol)
    else:
        y = _solve_torchdiffeq(counted, y0, t0, t1, method, rtol, atol)
    return Solution(y, calls, torch.full((y0.shape[0],), calls, dtype=torch.long, device=y0.device))


def max_sample_rms(error: torch.Tensor) -> torch.Tensor:
    """The shared-step controller's norm: RMS over each sample's coordinates, maximum over the batch."""
    if error.ndim == 0:
        return error.abs()
    return error.reshape(error.shape[0], -1).pow(2).mean(dim=1).sqrt().max()


def _solve_torchdiffeq(f, y0, t0, t1, method, rtol, atol) -> torch.Tensor:
    import torchdiffeq

    low, high = min(t0, t1), max(t0, t1)
    newest: dict[str, torch.Tensor] = {}

    def rhs(t, y):
        newest["t"] = t.clamp(low, high)
        newest["dy"] = f(y, newest["t"].to(y.dtype).expand(y.shape[0]).contiguous())
        return newest["dy"]

    span = torch.tensor([t0, t1], dtype=y0.dtype, device=y0.device)
    options = {"norm": max_sample_rms, "step_t": span}  # step_t: land on t1, never step past it
    try:
        return torchdiffeq.odeint(rhs, y0, span, rtol=rtol, atol=atol, method=method, options=options)[-1]
    except AssertionError as err:  # torchdiffeq's "underflow in dt": the step size collapsed
        finite = bool(torch.isfinite(newest["dy"]).all()) if "dy" in newest else True
        cause = "the ODE is too stiff for rtol/atol" if finite else "dy/dt returned NaN or infinity there"
        t = float(newest["t"]) if "t" in newest else t0
        raise FloatingPointError(f"the adaptive solver ({method}) failed at t = {t:.6g} ({err}): {cause}") from None


def _solve_scipy(f, y0, t0, t1, method, rtol, atol) -> torch.Tensor:
    from scipy.integrate import solve_ivp

    shape, dtype, device = y0.shape, y0.dtype, y0.device
    low, high = min(t0, t1), max(t0, t1)

    def rhs(t, y_flat):
        y = torch.from_numpy(y_flat).reshape(shape).to(device=device, dtype=dtype)
        time = torch.full((shape[0],), min(max(float(t), low), high), dtype=dtype, device=device)
        return f(y, time).detach().cpu().double().numpy().ravel()

    solution = solve_ivp(rhs, (t0, t1), y0.detach().cpu().double().numpy().ravel(), rtol=rtol, atol=atol, method=method)
    if not solution.success:
        raise FloatingPointError(f"scipy {method} failed: {solution.message}")
    return torch.from_numpy(np.ascontiguousarray(solution.y[:, -1])).reshape(shape).to(device=device, dtype=dtype)


def _per_row(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """A per-sample vector of shape (n,) shaped to broadcast against `like` of shape (n, ...)."""
    return v.reshape(-1, *([1] * (like.ndim - 1)))


def _error_norm(error: torch.Tensor, y0: torch.Tensor, y1: torch.Tensor, rtol: float, atol: float, tail: int) -> torch.Tensor:
    """Per sample: the RMS scaled error, the larger of the leading coordinates' and the last `tail`'s."""
    scale = atol + rtol * torch.maximum(y0.abs(), y1.abs())
    ratio = ((error / scale) ** 2).reshape(error.shape[0], -1)
    head = ratio.shape[1] - tail
    norm = ratio[:, :head].mean(dim=1)
    if tail:
        norm = torch.maximum(norm, ratio[:, head:].mean(dim=1))
    return norm.sqrt()


def dopri5_per_sample(
    f, y0: torch.Tensor, t0: float, t1: float, *, rtol: float, atol: float, tail: int = 0, max_steps: int = 100_000
) -> tuple[torch.Tensor, torch.Tensor]:
    """Integrate dy/dt = f(y, t, rows) from t0 to t1 (either direction) with a step size per sample.

    Each sample keeps its own time, step size and first-same-as-last stage; only the samples not yet
    at t1 are evaluated (rows: their indices into y0; None for all). The controller and the norm
    (with its `tail` group) are the module docstring's.

    Returns:
        (y at t1, the number of function evaluations each sample took part in).

    Raises:
        ValueError: tail outside [0, coordinates per sample).
        FloatingPointError: a sample's error went NaN (f NaN or infinite), or t1 was not reached
            within max_steps steps.
    """
    n = y0.shape[0]
    if not 0 <= tail < y0[:1].numel():
        raise ValueError(f"tail must lie in [0, {y0[:1].numel()}) (the coordinates per sample), got {tail!r}")
    direction = 1.0 if t1 >= t0 else -1.0
    span = abs(t1 - t0)
    y = y0.clone()
    t = torch.full((n,), float(t0), dtype=y0.dtype, device=y0.device)
    h = torch.full((n,), 1e-2 * span, dtype=y0.dtype, device=y0.device)  # |step|; adapted at once
    k1 = f(y, t, None)
    evals = torch.ones(n, dtype=torch.long, device=y0.device)
    active = torch.ones(n, dtype=torch.bool, device=y0.device)
    for _ in range(max_steps):
        rows = active.nonzero().squeeze(1)
        if rows.numel() == 0:
            return y, evals
        ya, ta, ha = y[rows], t[rows], h[rows]
        remaining = (t1 - ta) * direction
        ha = torch.minimum(ha, remaining)
        step = direction * _per_row(ha, ya)
        stages = [k1[rows]]
        for i in range(1, 7):
            increment = sum(a * k for a, k in zip(_A[i], stages) if a != 0.0)
            stages.append(f(ya + step * increment, ta + direction * _C[i] * ha, rows))
        evals[rows] += 6
        y_new = ya + step * sum(b * k for b, k in zip(_B5, stages) if b != 0.0)
        error = step * sum(e * k for e, k in zip(_ERR, stages) if e != 0.0)
        err = _error_norm(error, ya, y_new, rtol, atol, tail)
        failed = err.isnan()
        if failed.any():  # NaN never recovers: every later step size would be NaN too
            begin, length = float(ta[failed][0]), float(ha[failed][0])
            raise FloatingPointError(
                f"the per-sample solver (dopri5) failed in the step from t = {begin:.6g} to {begin + direction * length:.6g}: "
                "dy/dt returned NaN or infinity there"
            )
        accept = err <= 1.0
        factor = torch.where(err == 0, torch.full_like(err, 5.0), (0.9 * err.clamp_min(1e-10) ** -0.2).clamp(0.2, 5.0))
        accepted = rows[accept]
        y[accepted] = y_new[accept]
        last = (ha >= remaining) & accept  # landed exactly on t1
        t[accepted] = torch.where(last[accept], torch.full_like(ta[accept], float(t1)), ta[accept] + direction * ha[accept])
        k1[accepted] = stages[6][accept]
        h[rows] = ha * factor
        active[rows[last]] = False
    raise FloatingPointError(f"the ODE solver did not reach t={t1} within {max_steps} steps; loosen rtol/atol")


def rk4(f, y0: torch.Tensor, t0: float, t1: float, steps: int) -> torch.Tensor:
    """The classical Runge–Kutta 4 with `steps` equal steps from t0 to t1; f(y, t), t of shape (n,).

    Step i runs from t0 + i h to t0 + (i + 1) h, its end computed from i rather than by adding h
    repeatedly, and the last step ends on t1 exactly: summed round-off never carries t past t1
    (where an SDE's alpha and sigma may be undefined).
    """
    y, h = y0.clone(), (t1 - t0) / steps

    def at(time: float) -> torch.Tensor:
        return torch.full((y0.shape[0],), time, dtype=y0.dtype, device=y0.device)

    for i in range(steps):
        start, end = t0 + i * h, (t1 if i == steps - 1 else t0 + (i + 1) * h)
        middle = at(start + 0.5 * (end - start))
        k1 = f(y, at(start))
        k2 = f(y + 0.5 * h * k1, middle)
        k3 = f(y + 0.5 * h * k2, middle)
        k4 = f(y + h * k3, at(end))
        y = y + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
    return y
