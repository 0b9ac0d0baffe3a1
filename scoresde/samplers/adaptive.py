"""Adaptive-step solution of the probability-flow ODE dx/dt = f(x, t) - g(t)^2 score(x, t) / 2.

Two back ends:
    torchdiffeq  (default) any of its adaptive methods (dopri5, bosh3, adaptive_heun, fehlberg2,
                 dopri8) on the tensors themselves, on CPU or GPU. The step-size controller uses
                 the largest per-sample RMS error, so every sample meets rtol/atol whatever else is
                 in the batch (the number of steps, shared by the batch, follows its hardest sample).
    scipy        scipy.integrate.solve_ivp (RK45 by default) on the flattened batch as one system,
                 as score_sde does: for parity with Song et al.'s numbers, not for speed.

Only the end points of the time grid are used.
"""

from __future__ import annotations

import numpy as np
import torch

from scoresde.sde_lib import time_vector

METHODS = ("dopri5", "bosh3", "adaptive_heun", "fehlberg2", "dopri8")
SCIPY_METHODS = ("RK45", "RK23", "DOP853", "Radau", "BDF", "LSODA")
BACKENDS = ("torchdiffeq", "scipy")


def _max_sample_rms(error: torch.Tensor) -> torch.Tensor:
    """The controller's norm: RMS over each sample's dimensions, maximum over the batch."""
    if error.ndim == 0:
        return error.abs()
    return error.reshape(error.shape[0], -1).pow(2).mean(dim=1).sqrt().max()


# Below this fraction of the dtype's machine epsilon, round-off in the embedded error estimate
# forces step sizes proportional to rtol / eps: on the 2-D ring mixture in float32 (500 samples,
# VP, dopri5) rtol = atol = 1e-5 takes 171 evaluations, 1e-9 849, 1e-10 4,173 and 1e-12 did not
# finish in 30 s. The floor refuses such tolerances by name instead of running for ever.
RTOL_MIN_FRACTION_OF_EPS = 1e-2


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


def _check_options(backend, method, rtol, atol, dtype) -> None:
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; valid: {', '.join(BACKENDS)}")
    valid = METHODS if backend == "torchdiffeq" else SCIPY_METHODS
    if method not in valid:
        raise ValueError(f"unknown method {method!r} for backend {backend!r}; valid: {', '.join(valid)}")
    check_tolerances(rtol, atol, torch.float64 if backend == "scipy" else dtype)


def probability_flow(
    sde,
    score_fn,
    x,
    time_grid,
    *,
    rtol: float = 1e-5,
    atol: float = 1e-5,
    method: str = "",
    backend: str = "torchdiffeq",
    generator=None,
    callback=None,
):
    """Integrate the probability-flow ODE from time_grid[0] to time_grid[-1] adaptively.

    Raises:
        ValueError: unknown backend or method (listing the valid ones), tolerances that are not
            positive or below what x's dtype resolves (`min_rtol`).
        FloatingPointError: the step size collapsed (the drift went NaN / infinite on the way).
    """
    method = method or ("dopri5" if backend == "torchdiffeq" else "RK45")
    _check_options(backend, method, rtol, atol, x.dtype)
    reverse_ode = sde.reverse(score_fn, probability_flow=True)
    t_start, t_end = float(time_grid[0]), float(time_grid[-1])
    newest = {}

    def drift(t, y):
        t = min(max(float(t), t_end), t_start)  # guard against round-off at the ends
        newest["t"], newest["drift"] = t, reverse_ode.sde(y, time_vector(t, y))[0]
        return newest["drift"]

    if backend == "scipy":
        return _solve_scipy(drift, x, t_start, t_end, rtol, atol, method)
    import torchdiffeq

    span = torch.tensor([t_start, t_end], dtype=x.dtype, device=x.device)
    # step_t makes the solver land on t_end instead of stepping past it and interpolating, so the
    # drift is never evaluated outside [t_end, t_start] (where alpha, sigma may be undefined).
    options = {"norm": _max_sample_rms, "step_t": span}
    try:
        return torchdiffeq.odeint(drift, x, span, rtol=rtol, atol=atol, method=method, options=options)[-1]
    except AssertionError as err:  # torchdiffeq's "underflow in dt": the step size collapsed
        finite = bool(torch.isfinite(newest["drift"]).all()) if "drift" in newest else True
        cause = "the score function returned NaN or infinity there" if not finite else "the ODE is too stiff for rtol/atol"
        raise FloatingPointError(
            f"the adaptive solver ({method}) failed at t = {newest.get('t', t_start):.6g} ({err}): {cause}"
        ) from None


def _solve_scipy(drift, x, t_start, t_end, rtol, atol, method) -> torch.Tensor:
    from scipy.integrate import solve_ivp

    shape, dtype, device = x.shape, x.dtype, x.device

    def fun(t, y_flat):
        y = torch.from_numpy(y_flat).reshape(shape).to(device=device, dtype=dtype)
        return drift(t, y).detach().cpu().double().numpy().ravel()

    solution = solve_ivp(fun, (t_start, t_end), x.detach().cpu().double().numpy().ravel(), rtol=rtol, atol=atol, method=method)
    if not solution.success:
        raise FloatingPointError(f"scipy {method} failed: {solution.message}")
    return torch.from_numpy(np.ascontiguousarray(solution.y[:, -1])).reshape(shape).to(device=device, dtype=dtype)
