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

METHODS = ("dopri5", "bosh3", "adaptive_heun", "fehlberg2", "dopri8")
SCIPY_METHODS = ("RK45", "RK23", "DOP853", "Radau", "BDF", "LSODA")
BACKENDS = ("torchdiffeq", "scipy")


def _max_sample_rms(error: torch.Tensor) -> torch.Tensor:
    """The controller's norm: RMS over each sample's dimensions, maximum over the batch."""
    if error.ndim == 0:
        return error.abs()
    return error.reshape(error.shape[0], -1).pow(2).mean(dim=1).sqrt().max()


def _check_options(backend, method, rtol, atol) -> None:
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; valid: {', '.join(BACKENDS)}")
    valid = METHODS if backend == "torchdiffeq" else SCIPY_METHODS
    if method not in valid:
        raise ValueError(f"unknown method {method!r} for backend {backend!r}; valid: {', '.join(valid)}")
    if not (rtol > 0 and atol > 0):
        raise ValueError(f"rtol and atol must be > 0, got {rtol!r}, {atol!r}")


def probability_flow(sde, score_fn, x, time_grid, *, rtol: float = 1e-5, atol: float = 1e-5,
                     method: str | None = None, backend: str = "torchdiffeq", generator=None, callback=None):
    """Integrate the probability-flow ODE from time_grid[0] to time_grid[-1] adaptively.

    Raises:
        ValueError: unknown backend or method (listing the valid ones), non-positive tolerances.
    """
    method = method or ("dopri5" if backend == "torchdiffeq" else "RK45")
    _check_options(backend, method, rtol, atol)
    reverse_ode = sde.reverse(score_fn, probability_flow=True)
    t_start, t_end = float(time_grid[0]), float(time_grid[-1])

    def drift(t, y):
        t = min(max(float(t), t_end), t_start)  # guard against round-off at the ends
        return reverse_ode.sde(y, torch.full((y.shape[0],), t, device=y.device, dtype=y.dtype))[0]

    if backend == "scipy":
        return _solve_scipy(drift, x, t_start, t_end, rtol, atol, method)
    import torchdiffeq

    span = torch.tensor([t_start, t_end], dtype=x.dtype, device=x.device)
    # step_t makes the solver land on t_end instead of stepping past it and interpolating, so the
    # drift is never evaluated outside [t_end, t_start] (where alpha, sigma may be undefined).
    options = {"norm": _max_sample_rms, "step_t": span}
    return torchdiffeq.odeint(drift, x, span, rtol=rtol, atol=atol, method=method, options=options)[-1]


def _solve_scipy(drift, x, t_start, t_end, rtol, atol, method) -> torch.Tensor:
    from scipy.integrate import solve_ivp

    shape, dtype, device = x.shape, x.dtype, x.device

    def fun(t, y_flat):
        y = torch.from_numpy(y_flat).reshape(shape).to(device=device, dtype=dtype)
        return drift(t, y).detach().cpu().double().numpy().ravel()

    solution = solve_ivp(fun, (t_start, t_end), x.detach().cpu().double().numpy().ravel(), rtol=rtol, atol=atol, method=method)
    if not solution.success:
        raise RuntimeError(f"scipy {method} failed: {solution.message}")
    return torch.from_numpy(np.ascontiguousarray(solution.y[:, -1])).reshape(shape).to(device=device, dtype=dtype)
