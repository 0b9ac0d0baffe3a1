"""scoresde.integrate against closed-form solutions of linear ODEs.

dy/dt = -t y + w J y (J the rotation generator on pairs of coordinates) has the solution
y(t) = exp(-(t^2 - t0^2) / 2) R(w (t - t0)) y(t0), R a rotation by that angle: it depends on t, couples
coordinates, and is solved exactly in either direction, so every back end's global error is known.
"""

import math
import re

import numpy as np
import pytest
import torch

from scoresde import integrate, likelihood
from scoresde.samplers import adaptive

W = 3.0
ADAPTIVE = [(backend, method) for backend in ("torchdiffeq", "scipy", "per_sample") for method in integrate.METHODS[backend]]


def rotating_decay(y: torch.Tensor, t: torch.Tensor, rows=None) -> torch.Tensor:
    """dy/dt for y of shape (n, 2k): decay at rate t, rotation of each coordinate pair at rate W."""
    pairs = y.reshape(y.shape[0], -1, 2)
    rotated = torch.stack([-pairs[..., 1], pairs[..., 0]], dim=-1).reshape(y.shape)
    return -t[:, None] * y + W * rotated


def exact(y0: torch.Tensor, t0: float, t1: float) -> torch.Tensor:
    angle = W * (t1 - t0)
    pairs = y0.reshape(y0.shape[0], -1, 2)
    c, s = math.cos(angle), math.sin(angle)
    turned = torch.stack([c * pairs[..., 0] - s * pairs[..., 1], s * pairs[..., 0] + c * pairs[..., 1]], dim=-1)
    return math.exp(-(t1**2 - t0**2) / 2) * turned.reshape(y0.shape)


def start(n=5, d=4, seed=0, dtype=torch.float64):
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed), dtype=dtype)


# Global error, relative to the solution's size, per unit tolerance (which bounds local errors): at
# most 10 here but for torchdiffeq's fehlberg2, which advances with the first-order formula of its
# pair (some 400).
ERROR_PER_TOLERANCE = {"fehlberg2": 1000.0}


@pytest.mark.parametrize("t0, t1", [(0.0, 1.0), (1.5, 0.25)], ids=["forward", "backward"])
@pytest.mark.parametrize("backend, method", ADAPTIVE)
def test_adaptive_back_ends_meet_their_tolerance(backend, method, t0, t1):
    y0 = start()
    truth = exact(y0, t0, t1)
    tight, loose = (
        integrate.solve(rotating_decay, y0, t0, t1, backend=backend, method=method, rtol=tol, atol=tol) for tol in (1e-6, 1e-4)
    )
    assert tight.y.shape == y0.shape and tight.y.dtype == y0.dtype
    errors = [((s.y - truth).abs().max() / truth.abs().max()).item() for s in (tight, loose)]
    assert errors[0] < ERROR_PER_TOLERANCE.get(method, 30.0) * 1e-6, f"{backend}/{method}: relative errors {errors}"
    assert errors[0] < errors[1] and 0 < loose.nfe < tight.nfe  # a looser tolerance: larger error, fewer evaluations


def test_exponential_decay_with_every_back_end():
    """dy/dt = -y, y(2) = exp(-2) y(0), the default method of every back end."""
    y0 = start(3, 2)
    for backend in integrate.BACKENDS:
        steps = 64 if backend == "fixed_step" else None
        y = integrate.solve(lambda y, t, rows=None: -y, y0, 0.0, 2.0, backend=backend, steps=steps, rtol=1e-8, atol=1e-8).y
        torch.testing.assert_close(y, math.exp(-2.0) * y0, rtol=1e-6, atol=1e-8, msg=backend)


def test_the_counts_are_the_calls_of_f():
    y0 = start()
    for backend in integrate.BACKENDS:
        calls = []

        def f(y, t, rows=None):
            calls.append(y.shape[0])
            return rotating_decay(y, t)

        solution = integrate.solve(f, y0, 0.0, 1.0, backend=backend, steps=10, rtol=1e-6, atol=1e-6)
        assert solution.nfe == len(calls), backend
        assert solution.nfe_per_sample.dtype == torch.long and solution.nfe_per_sample.shape == (5,)
        if backend != "per_sample":
            assert (solution.nfe_per_sample == solution.nfe).all()
    assert solution.nfe == 40  # fixed_step, the last: 4 evaluations per step


def test_per_sample_results_do_not_depend_on_the_batch():
    """Samples of very different stiffness: each takes its own steps, and its result alone, in the
    batch and in a shuffled batch is the same; f sees which samples it evaluates (rows)."""
    y0 = start(6, 2)
    rates = torch.tensor([0.5, 40.0, 1.0, 8.0, 0.1, 20.0], dtype=torch.float64)

    def decay(rate):
        def f(y, t, rows):
            return -(rate if rows is None else rate[rows])[:, None] * y

        return f

    together = integrate.solve(decay(rates), y0, 0.0, 1.0, backend="per_sample", rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(together.y, torch.exp(-rates)[:, None] * y0, rtol=1e-4, atol=1e-6)
    for i in (0, 1, 5):
        alone = integrate.solve(decay(rates[i : i + 1]), y0[i : i + 1], 0.0, 1.0, backend="per_sample", rtol=1e-6, atol=1e-6)
        torch.testing.assert_close(alone.y[0], together.y[i], rtol=0, atol=1e-12)
        assert alone.nfe_per_sample[0] == together.nfe_per_sample[i]
    flip = integrate.solve(decay(rates.flip(0)), y0.flip(0), 0.0, 1.0, backend="per_sample", rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(flip.y.flip(0), together.y, rtol=0, atol=1e-12)
    per_sample = together.nfe_per_sample
    assert per_sample[1] > per_sample[0] and per_sample[4] < per_sample[3]  # the stiffer, the more steps
    assert ((per_sample - 1) % 6 == 0).all() and together.nfe < per_sample.sum()  # FSAL: 1 + 6 per step


def test_per_sample_tail_is_a_separate_group_of_the_error_norm():
    """A slow tail channel beside many fast-varying coordinates: its own norm makes the solver
    resolve it; averaged with the others its error would be drowned (2 of 40 coordinates)."""
    y0 = torch.ones(1, 40, dtype=torch.float64)
    rates = torch.cat([torch.full((38,), 1e-3), torch.full((2,), 30.0)]).to(torch.float64)

    def f(y, t, rows):
        return -rates * y

    joint = integrate.solve(f, y0, 0.0, 1.0, backend="per_sample", rtol=1e-3, atol=1e-3)
    split = integrate.solve(f, y0, 0.0, 1.0, backend="per_sample", rtol=1e-3, atol=1e-3, tail=2)
    truth = torch.exp(-rates)
    assert split.nfe > joint.nfe
    assert (split.y[0, 38:] - truth[38:]).abs().max() < (joint.y[0, 38:] - truth[38:]).abs().max()


def test_the_shared_step_norm_is_the_worst_sample():
    error = torch.zeros(4, 3)
    error[2] = torch.tensor([3.0, 0.0, 4.0])
    assert integrate.max_sample_rms(error).item() == pytest.approx(5 / math.sqrt(3))
    assert integrate.max_sample_rms(torch.tensor(-2.0)).item() == 2.0


def test_rk4_has_global_order_four():
    y0 = start()
    steps = np.array([8, 16, 32, 64])
    errors = [
        (integrate.solve(rotating_decay, y0, 0.0, 2.0, backend="fixed_step", steps=int(n)).y - exact(y0, 0.0, 2.0)).abs().max()
        for n in steps
    ]
    slope = -np.polyfit(np.log(steps), np.log(errors), 1)[0]
    assert 3.8 < slope < 4.3, f"errors {errors}, fitted order {slope:.2f}"


@pytest.mark.parametrize(
    "backend, t0, t1, rate",
    [("torchdiffeq", 2e-3, 1e-3, 0.01), ("scipy", 1.0, 1e-5, 1.0)],
    ids=["torchdiffeq", "scipy"],
)
def test_shared_step_back_ends_evaluate_only_inside_the_interval(backend, t0, t1, rate):
    """torchdiffeq's first step guess (0.01 |y| / |f|, here 1) probes far past t1 on a short
    interval; scipy's RK45 evaluates its last stages at t + c h, which here rounds to 4e-18 below
    t1 = 1e-5. f never sees a time outside [t1, t0]."""
    seen = []

    def f(y, t):
        seen.append(t)
        return -rate * (1 + t[:, None]) * y

    integrate.solve(f, start(), t0, t1, backend=backend, rtol=1e-6, atol=1e-6)
    times = torch.cat(seen)
    assert times.min() >= t1 and times.max() <= t0


def test_the_tolerance_floor_names_the_dtype():
    assert integrate.min_rtol(torch.float32) == pytest.approx(1e-2 * 2**-23)
    with pytest.raises(ValueError, match=r"rtol=1e-10 is below what float32 can resolve: use rtol >= 1\.2e-09"):
        integrate.solve(rotating_decay, start(dtype=torch.float32), 0.0, 1.0, rtol=1e-10, atol=1e-10)
    with pytest.raises(ValueError, match="float32"):
        integrate.solve(rotating_decay, start(dtype=torch.float32), 0.0, 1.0, backend="per_sample", rtol=1e-10)
    with pytest.raises(ValueError, match="rtol and atol must be > 0"):
        integrate.check_tolerances(1e-5, 0.0, torch.float64)
    integrate.check_tolerances(1e-10, 1e-10, torch.float64)  # float64 resolves it
    # scipy integrates in float64 whatever the input: float32 states may ask for 1e-10.
    y = integrate.solve(rotating_decay, start(dtype=torch.float32), 0.0, 1.0, backend="scipy", rtol=1e-10, atol=1e-10).y
    assert y.dtype == torch.float32


def nan_below_half(y, t, rows=None):
    """dy/dt that turns NaN for t < 0.5."""
    return torch.where(t[:, None] < 0.5, torch.full_like(y, float("nan")), -y)


def test_a_nan_derivative_raises_naming_the_time():
    with pytest.raises(FloatingPointError, match=r"adaptive solver \(dopri5\) failed at t = .*NaN or infinity there") as raised:
        integrate.solve(nan_below_half, start(), 1.0, 0.0, backend="torchdiffeq")
    t = float(re.search(r"failed at t = ([-+0-9.e]+)", str(raised.value)).group(1))
    assert 0.0 <= t < 0.5  # where it went NaN, not the start or the end
    # The per-sample solver names the step that went NaN: from above t = 0.5 to below it.
    with pytest.raises(FloatingPointError, match=r"per-sample solver \(dopri5\) failed in the step from t = ") as raised:
        integrate.solve(nan_below_half, start(), 1.0, 0.0, backend="per_sample")
    begin, end = map(float, re.search(r"from t = ([-+0-9.e]+) to ([-+0-9.e]+)", str(raised.value)).groups())
    assert begin >= 0.5 > end


def test_scipy_failure_raises():
    with pytest.raises(FloatingPointError, match="scipy RK23 failed"):
        integrate.solve(nan_below_half, start(), 1.0, 0.0, backend="scipy", method="RK23")


@pytest.mark.parametrize(
    "options, message",
    [
        ({"backend": "julia"}, "unknown backend 'julia'; valid: torchdiffeq, scipy, per_sample, fixed_step"),
        (
            {"method": "RK45"},
            "unknown method 'RK45' for backend 'torchdiffeq'; valid: dopri5, bosh3, adaptive_heun, fehlberg2, dopri8",
        ),
        ({"backend": "scipy", "method": "dopri5"}, "valid: RK45, RK23, DOP853, Radau, BDF, LSODA"),
        ({"backend": "per_sample", "method": "bosh3"}, "valid: dopri5"),
        ({"backend": "fixed_step"}, "method 'rk4' needs steps >= 1, got None"),
        ({"backend": "fixed_step", "steps": 0}, "needs steps >= 1"),
        ({"tail": 1}, "tail is an option of the per_sample back end"),
        ({"backend": "per_sample", "tail": 4}, r"tail must lie in \[0, 4\)"),
    ],
)
def test_bad_options_name_what_is_valid(options, message):
    with pytest.raises(ValueError, match=message):
        integrate.solve(rotating_decay, start(), 0.0, 1.0, **options)


def test_callers_take_their_names_from_here():
    assert adaptive.METHODS == integrate.METHODS["torchdiffeq"] and adaptive.SCIPY_METHODS == integrate.METHODS["scipy"]
    assert set(adaptive.BACKENDS) < set(integrate.BACKENDS)
    for backend, method in likelihood.SOLVERS.values():
        assert method in integrate.METHODS[backend]


@pytest.mark.parametrize("t0, t1", [(1e-5, 1.0), (1.0, 1e-3), (0.1, 80.0)])
def test_rk4_times_never_pass_the_end_whatever_the_number_of_steps(t0, t1):
    """Adding h repeatedly drifts by round-off (32 steps from 1e-5 to 1 ended past T = 1, where the
    SDE refuses t); the times come from the step index and the last step ends on t1 exactly."""
    from scoresde import integrate

    for steps in range(1, 201):
        seen = []

        def f(y, t):
            seen.append(t)
            return -y

        integrate.rk4(f, torch.ones(2, 1, dtype=torch.float64), t0, t1, steps)
        times = torch.cat(seen)
        assert float(times.max()) == max(t0, t1) and float(times.min()) == min(t0, t1), steps
