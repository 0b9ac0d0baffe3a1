"""The fast stochastic solvers (`scoresde.samplers.stochastic`): their ODE limits, their noise, their costs.

That each one draws the exact Gaussian mixture under every SDE is checked with all samplers in
test_sampler_distributions.py; here: with the noise switched off each equals the deterministic
solver it extends, to round-off, on every SDE and at few and many steps; the noise is really
there and comes from the generators; the evaluation counts are the declared ones; bad options
are refused by name.
"""

import math

import pytest
import torch

from scoresde import oracle, samplers
from scoresde.sde_lib import EDMSDE, VESDE, VPSDE, CosineVPSDE, subVPSDE

TARGET = oracle.GaussianMixture(
    weights=torch.tensor([0.5, 0.3, 0.2]),
    means=torch.tensor([[-1.0, 0.0], [1.0, 0.5], [0.5, -1.0]]),
    stds=torch.tensor([0.2, 0.15, 0.1]),
)
SDES = {"vp": VPSDE(), "subvp": subVPSDE(), "ve": VESDE(sigma_max=5.0), "cosine": CosineVPSDE(), "edm": EDMSDE(sigma_max=5.0)}
# (stochastic sampler, its options without noise, the ODE solver it then is, options of both)
LIMITS = [
    ("dpmpp_2m_sde", {"eta": 0.0}, "dpmpp_2m", {}),
    ("dpmpp_3m_sde", {"eta": 0.0}, "dpmpp_3m", {}),
    ("sa_solver", {"eta": 0.0}, "unipc", {"predictor_order": 3}),
    ("sa_solver", {"eta": 0.0}, "unipc", {"predictor_order": 2}),
    ("edm_stochastic", {"s_churn": 0.0}, "heun", {}),
    ("restart", {"restarts": 0}, "heun", {}),
]
STOCHASTIC = ("dpmpp_2m_sde", "dpmpp_3m_sde", "sa_solver", "edm_stochastic", "restart")


def x_T(sde, n=32):
    return sde.prior_sampling((n, 2), generator=torch.Generator().manual_seed(0), dtype=torch.float64)


@pytest.mark.parametrize("steps", [2, 5, 20])
@pytest.mark.parametrize("sde_name", SDES)
@pytest.mark.parametrize("stochastic, off, ode, common", LIMITS)
def test_without_noise_each_stochastic_solver_is_its_ode_solver(stochastic, off, ode, common, sde_name, steps):
    sde = SDES[sde_name]
    grid = "karras" if ode == "heun" else "log_snr"
    run = dict(x_T=x_T(sde), steps=steps, time_grid=grid, generator=torch.Generator().manual_seed(1))
    a, info_a = samplers.sample(stochastic, sde, TARGET.score_fn(sde), **run, **off, **common)
    b, info_b = samplers.sample(ode, sde, TARGET.score_fn(sde), **run, **common)
    assert info_a["nfe"] == info_b["nfe"]
    assert torch.allclose(a, b, rtol=0, atol=1e-10), (a - b).abs().max()


@pytest.mark.parametrize("name", STOCHASTIC)
def test_the_noise_is_there_and_comes_from_the_generator(name):
    sde = SDES["vp"]

    def run(seed):
        return samplers.sample(
            name, sde, TARGET.score_fn(sde), x_T=x_T(sde), steps=10, generator=torch.Generator().manual_seed(seed)
        )[0]

    assert torch.equal(run(3), run(3))
    assert (run(3) - run(4)).abs().max() > 1e-3


@pytest.mark.parametrize("name", STOCHASTIC)
def test_evaluation_counts_are_the_declared_ones(name):
    sde = SDES["edm"]
    info = samplers.get(name)
    for options in ({}, {"restarts": 2, "restart_steps": 3} if name == "restart" else {}):
        _, out = samplers.sample(name, sde, TARGET.score_fn(sde), x_T=x_T(sde, 4), steps=7, **options)
        assert out["nfe"] == 7 * info.evaluations(options) + info.fixed_evaluations(options) + 1


def recording_score(sde, seen: list):
    """TARGET's exact score under `sde`, appending each call's time to `seen`."""

    def score(x, t):
        seen.append(float(t[0]))
        return TARGET.score(x, t, sde)

    return score


def test_the_restart_interval_lies_where_it_is_asked_for():
    """The restart jumps from the grid time nearest to s_min up to s_max: read from the score's calls."""
    sde = EDMSDE(sigma_max=80.0)
    seen: list[float] = []
    score = recording_score(sde, seen)

    samplers.sample("restart", sde, score, x_T=x_T(sde, 4), steps=10, eps=2e-3, restarts=1, restart_steps=2, denoise=False)
    grid = samplers.get_time_grid("karras", sde, 10, 2e-3).tolist()
    s = [sde.sigma(torch.tensor(t)).item() / sde.alpha(torch.tensor(t)).item() for t in grid]
    at = min(range(1, 11), key=lambda j: abs(math.log(s[j] / 0.06)))
    # Heun's evaluations on the grid up to the restart point, then the restart's first one at s_max = 0.30
    first_restart = seen[2 * at]
    sigma = sde.sigma(torch.tensor(first_restart)).item() / sde.alpha(torch.tensor(first_restart)).item()
    assert sigma == pytest.approx(0.30, rel=1e-6)
    assert len(seen) == 2 * 10 + 2 * 2


def test_edm_churn_raises_the_noise_level_by_gamma():
    """With churn the first evaluation of a step is at s_hat = (1 + gamma) s_i, gamma = min(S_churn / n, sqrt 2 - 1)."""
    sde = EDMSDE(sigma_max=80.0)
    seen: list[float] = []
    score = recording_score(sde, seen)

    samplers.sample(
        "edm_stochastic", sde, score, x_T=x_T(sde, 4), steps=8, eps=1e-3, s_churn=2.0, s_tmin=0.0, s_tmax=1e9, denoise=False
    )
    grid = samplers.get_time_grid("karras", sde, 8, 1e-3).tolist()
    assert seen[0] == pytest.approx(grid[0])  # the prior's level is never exceeded
    assert seen[2] == pytest.approx(grid[1] * 1.25)  # EDM: sigma(t) = t, gamma = 2 / 8


@pytest.mark.parametrize(
    "name, options, message",
    [
        ("dpmpp_2m_sde", {"eta": -1.0}, "eta must be a number >= 0"),
        ("dpmpp_3m_sde", {"eta": "lots"}, "eta must be a number >= 0"),
        ("sa_solver", {"predictor_order": 5}, "predictor_order must be 1, 2 or 3"),
        ("edm_stochastic", {"s_churn": -2.0}, "s_churn must be a number >= 0"),
        ("edm_stochastic", {"s_tmin": 2.0, "s_tmax": 1.0}, "s_tmax must be >= s_tmin"),
        ("restart", {"restarts": -1}, "restarts must be an integer >= 0"),
        ("restart", {"restart_steps": 0}, "restart_steps must be an integer >= 1"),
        ("restart", {"restart_s_min": 0.5, "restart_s_max": 0.1}, "0 < restart_s_min < restart_s_max"),
    ],
)
def test_bad_options_are_refused_by_name(name, options, message):
    with pytest.raises(ValueError, match=message):
        samplers.check_options(name, options)


@pytest.mark.parametrize("name", ["ddim", "dpmpp_3m", "unipc", "heun", "dpmpp_2m_sde"])
@pytest.mark.parametrize("sde_name", ["vp", "ve", "edm"])
def test_the_analytical_first_step_is_exact_on_gaussian_data_and_saves_one_evaluation(name, sde_name):
    """AFS replaces the first evaluation by the Gaussian's closed-form score: on N(0, s_d^2 I) data
    the samples equal the exact-score run's, with one evaluation fewer counted."""
    sde = SDES[sde_name]
    data = oracle.gaussian(torch.zeros(2, dtype=torch.float64), 0.7)
    run = dict(x_T=x_T(sde), steps=5, generator=torch.Generator().manual_seed(2))
    exact, info = samplers.sample(name, sde, data.score_fn(sde), **run)
    run["generator"] = torch.Generator().manual_seed(2)
    afs, info_afs = samplers.sample(name, sde, data.score_fn(sde), analytic_first_step=0.7, **run)
    assert torch.allclose(afs, exact, rtol=0, atol=1e-10)
    assert info_afs["nfe"] == info["nfe"] - 1
    # on other data it is an approximation: not the same samples
    other = samplers.sample(name, sde, TARGET.score_fn(sde), analytic_first_step=0.7, x_T=x_T(sde), steps=5)[0]
    assert torch.isfinite(other).all()
    with pytest.raises(ValueError, match="analytic_first_step is the data std"):
        samplers.sample(name, sde, data.score_fn(sde), analytic_first_step=-1.0, x_T=x_T(sde), steps=5)
