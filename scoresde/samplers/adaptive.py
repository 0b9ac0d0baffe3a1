"""Adaptive-step solution of the probability-flow ODE dx/dt = f(x, t) - g(t)^2 score(x, t) / 2.

A thin use of `scoresde.integrate`, with one of its shared-step back ends (`BACKENDS`):
    torchdiffeq  (default) any of its adaptive methods (dopri5, bosh3, adaptive_heun, fehlberg2,
                 dopri8) on the tensors themselves, on CPU or GPU. The step-size controller uses
                 the largest per-sample RMS error, so every sample meets rtol/atol whatever else is
                 in the batch (the number of steps, shared by the batch, follows its hardest sample).
    scipy        scipy.integrate.solve_ivp (RK45 by default) on the flattened batch as one system,
                 as score_sde does: for parity with Song et al.'s numbers, not for speed.

Only the end points of the time grid are used.
"""

from __future__ import annotations

from scoresde import integrate

METHODS = integrate.TORCHDIFFEQ_METHODS
SCIPY_METHODS = integrate.SCIPY_METHODS
BACKENDS = integrate.SHARED_STEP_BACKENDS


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
    """Integrate the probability-flow ODE from time_grid[0] to time_grid[-1] adaptively
    (`integrate.solve`; method "" is the back end's default: dopri5, or RK45 for scipy).

    Raises:
        ValueError: unknown backend or method (listing the valid ones), tolerances that are not
            positive or below what x's dtype resolves (`integrate.min_rtol`).
        FloatingPointError: the step size collapsed (the drift went NaN / infinite on the way).
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; valid: {', '.join(BACKENDS)}")
    reverse_ode = sde.reverse(score_fn, probability_flow=True)

    def drift(y, t):
        return reverse_ode.sde(y, t)[0]

    t_start, t_end = float(time_grid[0]), float(time_grid[-1])
    return integrate.solve(drift, x, t_start, t_end, backend=backend, method=method, rtol=rtol, atol=atol).y
