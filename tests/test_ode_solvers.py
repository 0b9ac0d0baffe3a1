"""Deterministic samplers against the closed-form probability-flow ODE solution of a Gaussian.

For N(m, diag(s^2)) data the flow from time u to time t is x_t = mu_t + sqrt(v_t / v_u) (x_u - mu_u)
with mu = alpha m and v = alpha^2 s^2 + sigma^2 (`GaussianMixture.flow`), so the global error of a
fixed-step solver can be measured exactly, and its convergence order fitted.
"""

import math

import numpy as np
import pytest
import torch

from scoresde import oracle, samplers
from scoresde.sde_lib import EDMSDE, VESDE, VPSDE, CosineVPSDE, subVPSDE

SDES = {"vp": VPSDE(), "subvp": subVPSDE(), "ve": VESDE(sigma_max=20.0), "cosine": CosineVPSDE(), "edm": EDMSDE(sigma_max=20.0)}
EPS = 1e-3
# A stiff-ish Gaussian: per-dimension stds from 0.05 to 1.
TARGET = oracle.gaussian(torch.tensor([0.5, -0.5, 0.0]), torch.tensor([0.05, 0.3, 1.0]))

# Step counts in each solver's asymptotic range on the Karras grid (higher orders need more steps
# before round-off and the first, lower-order steps stop mattering).
ASYMPTOTIC_STEPS = {"dpmpp_3m": (64, 128, 256), "lms": (64, 128, 256)}
# (sampler, its declared order, step counts): every fixed-step solver of the registry.
ORDERS = [(name, samplers.get(name).order, ASYMPTOTIC_STEPS.get(name, (32, 64, 128))) for name in samplers.deterministic()]


def flow_error(name, sde, steps, x_T, **options):
    exact = TARGET.flow(x_T, sde.T, EPS, sde)
    x, info = samplers.sample(
        name, sde, TARGET.score_fn(sde), x_T=x_T, steps=steps, eps=EPS, denoise=False, time_grid="karras", **options
    )
    return (x - exact).pow(2).mean().sqrt().item(), info


@pytest.fixture(scope="module")
def x_T_by_sde():
    return {
        k: sde.prior_sampling((128, 3), generator=torch.Generator().manual_seed(1), dtype=torch.float64)
        for k, sde in SDES.items()
    }


@pytest.mark.parametrize("sde_name", SDES)
@pytest.mark.parametrize("name, order, steps", ORDERS)
def test_fixed_step_solvers_converge_with_their_order(x_T_by_sde, sde_name, name, order, steps):
    sde = SDES[sde_name]
    errors = [flow_error(name, sde, n, x_T_by_sde[sde_name])[0] for n in steps]
    slope = -np.polyfit(np.log(steps), np.log(errors), 1)[0]
    # LMS's first steps are lower order (no history yet); its fitted slope approaches 4 from below.
    tolerance = (-0.25, 0.6) if name != "lms" else (-0.8, 0.6)
    assert order + tolerance[0] < slope < order + tolerance[1], f"{name} on {sde_name}: errors {errors}, slope {slope:.2f}"


@pytest.mark.parametrize("name", samplers.deterministic())
def test_fixed_step_nfe_is_what_the_registry_declares(x_T_by_sde, name):
    _, info = flow_error(name, SDES["vp"], 7, x_T_by_sde["vp"])
    assert info["nfe"] == 7 * samplers.get(name).evaluations()


@pytest.mark.parametrize("order", [1, 2, 3])
def test_dpm_solver_pp_converges_with_the_order_it_is_given(x_T_by_sde, order):
    """dpm_solver_pp(order=k) is DPM-Solver++(kM): ddim at k = 1, dpmpp_2m and dpmpp_3m at 2 and 3."""
    sde, x_T = SDES["vp"], x_T_by_sde["vp"]
    steps = ASYMPTOTIC_STEPS["dpmpp_3m"] if order == 3 else (32, 64, 128)
    errors = [flow_error("dpm_solver_pp", sde, n, x_T, order=order)[0] for n in steps]
    slope = -np.polyfit(np.log(steps), np.log(errors), 1)[0]
    assert order - 0.25 < slope < order + 0.6, f"errors {errors}, slope {slope:.2f}"
    same = {1: "ddim", 2: "dpmpp_2m", 3: "dpmpp_3m"}[order]
    assert flow_error(same, sde, 16, x_T)[0] == pytest.approx(flow_error("dpm_solver_pp", sde, 16, x_T, order=order)[0], rel=1e-9)


@pytest.mark.parametrize("sde_name", SDES)
def test_adaptive_error_scales_with_tolerance(x_T_by_sde, sde_name):
    sde, x_T = SDES[sde_name], x_T_by_sde[sde_name]
    results = [flow_error("probability_flow", sde, None, x_T, rtol=tol, atol=tol) for tol in (1e-3, 1e-5, 1e-7)]
    errors = [e for e, _ in results]
    nfes = [info["nfe"] for _, info in results]
    assert errors[0] > errors[1] > errors[2]
    assert errors[2] < 1e-5
    assert nfes[0] < nfes[1] < nfes[2]
    # dopri5 is 5th order: 100x tighter tolerance costs about 100^(1/5) = 2.5x more evaluations.
    assert nfes[2] / nfes[1] < 4


def test_adaptive_per_sample_accuracy_does_not_depend_on_the_batch(x_T_by_sde):
    """A sample solved alone and inside a batch meets the same tolerance."""
    sde, x_T = SDES["ve"], x_T_by_sde["ve"]
    exact = TARGET.flow(x_T, sde.T, EPS, sde)
    x_batch, _ = samplers.sample(
        "probability_flow", sde, TARGET.score_fn(sde), x_T=x_T, eps=EPS, denoise=False, rtol=1e-6, atol=1e-6
    )
    for j in (0, 5, 17):
        x_one, _ = samplers.sample(
            "probability_flow", sde, TARGET.score_fn(sde), x_T=x_T[j : j + 1], eps=EPS, denoise=False, rtol=1e-6, atol=1e-6
        )
        scale = exact[j].abs().max().item() + 1
        assert (x_one[0] - exact[j]).abs().max().item() < 1e-4 * scale
        assert (x_batch[j] - exact[j]).abs().max().item() < 1e-4 * scale


def test_scipy_backend_agrees_with_torchdiffeq(x_T_by_sde):
    sde, x_T = SDES["vp"], x_T_by_sde["vp"][:16]
    common = dict(x_T=x_T, eps=EPS, denoise=False, rtol=1e-7, atol=1e-7)
    x_torch, _ = samplers.sample("probability_flow", sde, TARGET.score_fn(sde), **common)
    x_scipy, info = samplers.sample("probability_flow", sde, TARGET.score_fn(sde), backend="scipy", **common)
    exact = TARGET.flow(x_T, sde.T, EPS, sde)
    assert (x_scipy - exact).abs().max() < 1e-4
    assert (x_torch - x_scipy).abs().max() < 1e-4
    assert info["nfe"] > 0


@pytest.mark.parametrize(
    "options, message",
    [
        ({"method": "rk4"}, "unknown method"),
        ({"backend": "julia"}, "unknown backend"),
        ({"rtol": 0.0}, "rtol and atol must be > 0"),
    ],
)
def test_adaptive_rejects_bad_options(options, message):
    sde = SDES["vp"]
    with pytest.raises(ValueError, match=message):
        samplers.sample("probability_flow", sde, TARGET.score_fn(sde), (2, 3), **options)


@pytest.mark.parametrize(
    "name, options",
    [
        ("dpm_solver", {}),
        ("lms", {"max_order": 5}),
        ("ipndm", {"max_order": 0}),
        ("unipc", {"predictor_order": 4}),
        ("unipc", {"interpolate_in": "t"}),
    ],
)
def test_bad_names_and_orders_raise(name, options):
    sde = SDES["vp"]
    with pytest.raises(ValueError):
        samplers.sample(name, sde, TARGET.score_fn(sde), (2, 3), steps=4, **options)


def test_ddim_is_euler_in_the_edm_variables(x_T_by_sde):
    """DDIM's exponential step equals an Euler step on dy/ds = (y - D)/s (Karras et al. 2022)."""
    sde, x = SDES["vp"], x_T_by_sde["vp"]
    grid = torch.tensor([0.8, 0.5], dtype=torch.float64)
    x_ddim = samplers.ddim(sde, TARGET.score_fn(sde), x, grid)
    a, s = sde.alpha(grid), sde.sigma(grid) / sde.alpha(grid)
    d = TARGET.denoiser(x, 0.8, sde)
    y = x / a[0]
    x_euler = a[1] * (y + (s[1] - s[0]) * (y - d) / s[0])
    assert torch.allclose(x_ddim, x_euler, atol=1e-12)


def test_lms_coefficients_are_adams_bashforth_on_equal_steps():
    from scoresde.samplers.ode import variable_step_coefficients

    assert np.allclose(variable_step_coefficients([3.0, 2.0, 1.0, 0.0], 4.0), [55 / 24, -59 / 24, 37 / 24, -9 / 24])
    # Exact for cubic slopes on an uneven grid: integrate 3 s^2 + 1 from s = 0.7 to 1.9.
    nodes = [0.7, 0.4, 0.25, 0.1]
    c = variable_step_coefficients(nodes, 1.9)
    assert math.isclose(sum(ci * (3 * n**2 + 1) for ci, n in zip(c, nodes)), (1.9**3 + 1.9) - (0.7**3 + 0.7), rel_tol=1e-12)


@pytest.mark.parametrize(
    "name", ["ode_euler", "ddim", "heun", "dpmpp_2m", "dpmpp_3m", "ipndm", "lms", "unipc", "ancestral", "euler_maruyama"]
)
def test_a_vp_grid_ending_at_zero_noise_is_finite_and_close_to_the_flow(x_T_by_sde, name):
    """VP reaches sigma = 0 at t = 0; solvers must step there without dividing by zero."""
    sde, x_T = SDES["vp"], x_T_by_sde["vp"]
    grid = torch.cat([samplers.get_time_grid("log_snr", sde, 40, 1e-3), torch.zeros(1, dtype=torch.float64)])
    x, info = samplers.sample(
        name, sde, TARGET.score_fn(sde), x_T=x_T, time_grid=grid, generator=torch.Generator().manual_seed(0)
    )
    assert torch.isfinite(x).all()
    assert info["nfe"] <= 41 * 2  # no Tweedie step at sigma = 0
    if name not in ("ancestral", "euler_maruyama"):
        exact = TARGET.flow(x_T, sde.T, 0.0, sde)
        assert (x - exact).pow(2).mean().sqrt() < 0.05


def zero_noise_flow(x_T, sde):
    """Exact probability-flow end point at zero noise for the Gaussian TARGET (VE: alpha = 1)."""
    s_T = sde.sigma(torch.tensor(sde.T, dtype=torch.float64)).item()
    var = TARGET.stds[0] ** 2
    return TARGET.means[0] + torch.sqrt(var / (var + s_T**2)) * (x_T - TARGET.means[0])


@pytest.mark.parametrize("name, steps", [("heun", 200), ("dpmpp_2m", 300), ("dpmpp_3m", 60), ("lms", 60), ("ipndm", 100)])
def test_extrapolated_denoising_reaches_zero_noise_more_accurately_than_tweedie(x_T_by_sde, name, steps):
    """VE stops at sigma_min = 0.01; the flow goes on to zero noise, which Tweedie undershoots.

    Step counts keep the solvers' own error below Tweedie's (about 5e-4 here).
    """
    sde, x_T = SDES["ve"], x_T_by_sde["ve"]
    exact = zero_noise_flow(x_T, sde)
    errors, nfes = {}, {}
    for mode in ("tweedie", "extrapolate"):
        x, info = samplers.sample(
            name, sde, TARGET.score_fn(sde), x_T=x_T, steps=steps, eps=1e-5, denoise=mode, time_grid="karras"
        )
        errors[mode] = (x - exact).pow(2).mean().sqrt().item()
        nfes[mode] = info["nfe"]
    assert nfes["tweedie"] == nfes["extrapolate"]
    assert errors["extrapolate"] < errors["tweedie"] / 3, errors


@pytest.mark.parametrize(
    "name", ["euler_maruyama", "ancestral", "predictor_corrector", "annealed_langevin", "reverse_diffusion", "probability_flow"]
)
def test_extrapolated_denoising_is_refused_for_other_samplers(name):
    sde = SDES["vp"]
    with pytest.raises(ValueError, match="deterministic sampler"):
        samplers.sample(name, sde, TARGET.score_fn(sde), (2, 3), steps=3, denoise="extrapolate")


def test_unknown_denoise_mode_is_refused():
    sde = SDES["vp"]
    with pytest.raises(ValueError, match="denoise must be one of"):
        samplers.sample("ddim", sde, TARGET.score_fn(sde), (2, 3), steps=3, denoise="richardson")


@pytest.mark.parametrize("sde_name", SDES)
def test_unipc_interpolating_in_s_has_order_predictor_plus_one(x_T_by_sde, sde_name):
    sde, steps = SDES[sde_name], (64, 128, 256)
    errors = [flow_error("unipc", sde, n, x_T_by_sde[sde_name], predictor_order=3, interpolate_in="s")[0] for n in steps]
    slope = -np.polyfit(np.log(steps), np.log(errors), 1)[0]
    assert 3.6 < slope < 4.6, f"unipc (s) on {sde_name}: errors {errors}, slope {slope:.2f}"


def test_s_adams_weights_integrate_polynomials_in_s_exactly():
    """s_{i+1} int_{s_{i+1}}^{s_i} P(s) / s^2 ds for a cubic P, from its values at three past nodes and the step's start."""
    from types import SimpleNamespace

    from scipy.integrate import quad

    from scoresde.samplers.ode import s_adams_weights

    grid = SimpleNamespace(s=[3.0, 1.7, 0.9, 0.5, 0.2])  # decreasing s = sigma / alpha; step from s[3] to s[4]
    poly = lambda s: 0.3 - 1.2 * s + 0.7 * s**2 + 0.25 * s**3  # noqa: E731
    weights = s_adams_weights(grid, 3, [3, 2, 1, 0])
    exact = grid.s[4] * quad(lambda s: poly(s) / s**2, grid.s[4], grid.s[3], epsabs=1e-14, epsrel=1e-13)[0]
    assert math.isclose(sum(w * poly(grid.s[j]) for w, j in zip(weights, [3, 2, 1, 0])), exact, rel_tol=1e-10)
    # The step to zero noise (r = 0) extrapolates D to s = 0.
    to_zero = SimpleNamespace(s=[0.9, 0.5, 0.0])
    weights = s_adams_weights(to_zero, 1, [1, 0])
    assert math.isclose(
        sum(w * poly(to_zero.s[j]) for w, j in zip(weights, [1, 0])) + 0.0,
        poly(0.5) + (poly(0.5) - poly(0.9)) / (0.5 - 0.9) * (0.0 - 0.5),
        rel_tol=1e-12,
    )


@pytest.fixture(scope="module")
def ring_flow():
    sde, ring = VPSDE(), oracle.ring(8, 1.0, 0.05)
    x_T = sde.prior_sampling((128, 2), generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    return sde, ring, x_T, ring.solve_flow(x_T, sde, rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("name", samplers.deterministic())
def test_every_fixed_step_solver_runs_at_every_budget_from_3_to_10(name, ring_flow):
    """Budgets of 3-10 evaluations (final denoising included): the most steps that fit, the exact
    count spent, finite samples, and an error that falls from 3 to 10 evaluations; with the analytical
    first step one more step fits the same budget."""
    sde, ring, x_T, exact = ring_flow
    per_step = samplers.get(name).evaluations()
    errors = {}
    for budget in range(3, 11):
        for afs in (False, True):
            steps = (budget - 1 + afs) // per_step
            x, info = samplers.sample(
                name, sde, ring.score_fn(sde), x_T=x_T, steps=steps, analytic_first_step=0.7 if afs else None
            )
            assert info["nfe"] == 1 + steps * per_step - afs <= budget, (budget, afs)
            assert torch.isfinite(x).all()
            if not afs:
                errors[budget] = float((x - exact).pow(2).mean().sqrt())
    assert errors[10] < 0.7 * errors[3], errors
