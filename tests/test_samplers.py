"""Tests of scoresde.samplers: the exact target is reached with the exact score, NFE, grids, errors.

With Gaussian data and the exact score, every Euler–Maruyama step of the reverse SDE is affine in x
plus Gaussian noise, and so is Tweedie's final denoising step. The mean and variance of the sampler's
output are therefore known exactly by a scalar recursion (`euler_maruyama_moments`), which gives the
discretisation (and prior-mismatch) bias; the exact target is N(m, (alpha s^2)^2 / v(eps)) per
coordinate, the law of E[x(0) | x(eps)] for x(eps) ~ p_eps.
"""

import math

import pytest
import scipy.stats
import torch

from scoresde import oracle, samplers
from scoresde.models import ScoreMLP
from scoresde.samplers import SAMPLERS, available, euler_maruyama_step, get_time_grid, sample
from scoresde.samplers.time_grids import TIME_GRIDS
from scoresde.score import NetworkScore
from scoresde.sde_lib import EDMSDE, VESDE, VPSDE, CosineVPSDE, broadcast_to_data, subVPSDE
from tests.problems import DEFAULT_SDES, SDE_CASES, GaussianData, reference_schedule

pytestmark = pytest.mark.usefixtures("single_thread")

PROBLEM = GaussianData(torch.tensor([1.0, -0.5]), 0.6)
EPS = 1e-3


def _prior_var(sde) -> float:
    return sde.sigma_max**2 if isinstance(sde, VESDE) else 1.0


def euler_maruyama_moments(sde, problem, grid, *, score_scale=1.0, denoise=True):
    """Exact mean (per coordinate) and std of the Euler–Maruyama + Tweedie output for Gaussian data.

    A step from t to t - h with score k * (-(x - alpha m) / v) maps x to a x + b + g sqrt(h) z with
    a = 1 - h c(t) - k h g^2 / v and b = k h g^2 alpha m / v (c: drift coefficient, f = c x).
    """
    mean = torch.zeros_like(problem.mean)
    var = torch.tensor(_prior_var(sde), dtype=torch.float64)
    for i in range(grid.numel() - 1):
        t, h = grid[i : i + 1], (grid[i] - grid[i + 1]).item()
        ref = reference_schedule(sde, t)
        v = problem.var_at(ref["alpha"], ref["sigma"])
        a = 1.0 - h * ref["drift_coeff"] - score_scale * h * ref["g2"] / v
        mean = a * mean + score_scale * h * ref["g2"] * ref["alpha"] * problem.mean / v
        var = a**2 * var + ref["g2"] * h
    if denoise:
        ref = reference_schedule(sde, grid[-1:])
        gain = ref["alpha"] * problem.std**2 / problem.var_at(ref["alpha"], ref["sigma"])
        mean = problem.mean + gain * (mean - ref["alpha"] * problem.mean)
        var = gain**2 * var
    return mean, var.sqrt().item()


def _target(sde, problem, eps):
    """N(m, alpha^2 s^4 / v(eps)): the law of the exact posterior mean E[x(0) | x(eps)]."""
    ref = reference_schedule(sde, torch.tensor([eps], dtype=torch.float64))
    return problem.mean, (ref["alpha"] * problem.std**2 / problem.var_at(ref["alpha"], ref["sigma"]).sqrt()).item()


def _reaches_target(samples, target_mean, target_std, bias_mean, bias_std) -> bool:
    """Per-coordinate mean and std within 5 Monte-Carlo standard errors plus the known bias."""
    n = samples.shape[0]
    se_mean, se_std = target_std / math.sqrt(n), target_std / math.sqrt(2 * n)
    mean_ok = torch.all(torch.abs(samples.mean(dim=0) - target_mean) < 5 * se_mean + bias_mean.abs())
    std_ok = torch.all(torch.abs(samples.std(dim=0) - target_std) < 5 * se_std + abs(bias_std))
    return bool(mean_ok and std_ok)


STEPS = {"vp": 500, "subvp": 500, "ve": 1000}


@pytest.mark.parametrize("name", DEFAULT_SDES)
def test_euler_maruyama_with_the_exact_score_reaches_the_exact_target(name, make_generator):
    sde, n, steps = SDE_CASES[name](), 16000, STEPS[name]
    samples, info = sample(
        "euler_maruyama",
        sde,
        PROBLEM.score(sde),
        (n, 2),
        steps=steps,
        eps=EPS,
        denoise=True,
        generator=make_generator(0),
        x_T=None,
        time_grid="uniform",
    )
    assert samples.shape == (n, 2) and info["nfe"] == steps + 1
    samples = samples.double()
    target_mean, target_std = _target(sde, PROBLEM, EPS)
    chain_mean, chain_std = euler_maruyama_moments(sde, PROBLEM, info["time_grid"])
    bias_mean, bias_std = chain_mean - target_mean, chain_std - target_std
    # The discretisation bias is small against the Monte-Carlo error: the test is about the target.
    assert torch.all(bias_mean.abs() < target_std / math.sqrt(n)) and abs(bias_std) < target_std / math.sqrt(2 * n)
    assert _reaches_target(samples, target_mean, target_std, bias_mean, bias_std)
    standardised = ((samples - target_mean) / target_std).reshape(-1).numpy()
    assert scipy.stats.kstest(standardised, "norm").pvalue > 1e-3


@pytest.mark.parametrize("name", DEFAULT_SDES)
def test_a_wrong_score_misses_the_target(name, make_generator):
    """The same check with the score scaled by 0.5 fails, so the test above can fail."""
    sde, n, steps = SDE_CASES[name](), 16000, STEPS[name] // 2
    exact = PROBLEM.score(sde)
    samples, info = sample(
        "euler_maruyama", sde, lambda x, t: 0.5 * exact(x, t), (n, 2), steps=steps, eps=EPS, generator=make_generator(1)
    )
    target_mean, target_std = _target(sde, PROBLEM, EPS)
    chain_mean, chain_std = euler_maruyama_moments(sde, PROBLEM, info["time_grid"])
    assert not _reaches_target(samples.double(), target_mean, target_std, torch.zeros_like(target_mean), 0.0)
    # ... while the exact-moment recursion still describes what the sampler did.
    wrong_mean, wrong_std = euler_maruyama_moments(sde, PROBLEM, info["time_grid"], score_scale=0.5)
    assert _reaches_target(samples.double(), wrong_mean, wrong_std, torch.zeros_like(wrong_mean), 0.0)
    assert abs(wrong_std / target_std - 1) > 0.5 and abs(chain_std / target_std - 1) < 0.01


def test_euler_maruyama_step_is_the_documented_update(sde, data_shape, make_generator):
    generator = make_generator(2)
    x = torch.randn((4, *data_shape), generator=generator, dtype=torch.float64)
    noise = torch.randn((4, *data_shape), generator=generator, dtype=torch.float64)
    problem = GaussianData(0.3, 0.8, data_shape)
    x_next, x_mean = euler_maruyama_step(sde.reverse(problem.score(sde)), x, 0.6, 0.55, noise)
    ref = reference_schedule(sde, torch.full((4,), 0.6, dtype=torch.float64))
    drift = broadcast_to_data(ref["drift_coeff"], x) * x - broadcast_to_data(ref["g2"], x) * problem.score(sde)(x, 0.6)
    torch.testing.assert_close(x_mean, x - 0.05 * drift)
    torch.testing.assert_close(x_next, x_mean + broadcast_to_data(ref["g2"].sqrt(), x) * math.sqrt(0.05) * noise)


# --- bookkeeping ------------------------------------------------------------------------------------


@pytest.mark.parametrize("steps", [1, 7])
@pytest.mark.parametrize("denoise", [True, False])
def test_nfe_is_steps_plus_one_with_denoise(default_sde, steps, denoise, make_generator):
    calls = []

    def score_fn(x, t):
        calls.append(t)
        return PROBLEM.score(default_sde)(x, t)

    _, info = sample(
        "euler_maruyama", default_sde, score_fn, (8, 2), steps=steps, eps=EPS, denoise=denoise, generator=make_generator(3)
    )
    assert info["nfe"] == steps + int(denoise) == len(calls)
    assert info["sampler"] == "euler_maruyama"
    grid = info["time_grid"]
    torch.testing.assert_close(torch.stack([c[0] for c in calls[:steps]]).double(), grid[:-1].double())
    if denoise:
        assert calls[-1].shape == (8,) and torch.all(calls[-1] == calls[-1][0])
        assert abs(calls[-1][0].item() - EPS) < 1e-9


def test_default_steps_is_sde_n_and_default_eps_is_1e_3(make_generator):
    sde = VESDE(N=20)
    _, info = sample("euler_maruyama", sde, PROBLEM.score(sde), (4, 2), generator=make_generator(4))
    assert info["nfe"] == 21 and info["time_grid"].numel() == 21
    assert info["time_grid"][-1].item() == pytest.approx(1e-3, rel=1e-12)


def test_same_generator_seed_gives_identical_samples(default_sde, make_generator):
    score_fn = GaussianData(0.5, 0.7, (3, 4, 4)).score(default_sde)
    first, _ = sample("euler_maruyama", default_sde, score_fn, (32, 3, 4, 4), steps=20, generator=make_generator(5))
    again, _ = sample("euler_maruyama", default_sde, score_fn, (32, 3, 4, 4), steps=20, generator=make_generator(5))
    other, _ = sample("euler_maruyama", default_sde, score_fn, (32, 3, 4, 4), steps=20, generator=make_generator(6))
    assert torch.equal(first, again) and not torch.equal(first, other)


@pytest.mark.parametrize("x_dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
def test_output_dtype_is_the_dtype_of_x_T(default_sde, x_dtype, make_generator):
    x_T = default_sde.prior_sampling((16, 2), generator=make_generator(7), dtype=x_dtype)
    before = x_T.clone()
    samples, _ = sample("euler_maruyama", default_sde, PROBLEM.score(default_sde), x_T=x_T, steps=10, generator=make_generator(8))
    assert samples.dtype == x_dtype and samples.shape == x_T.shape
    assert torch.equal(x_T, before)  # the initial noise is not modified in place


@pytest.mark.parametrize("sde", [VPSDE(), VESDE(0.01, 50.0), EDMSDE(80.0), CosineVPSDE()], ids=["vp", "ve", "edm", "cosine"])
def test_few_steps_end_at_the_measured_log_snr_by_default(sde):
    """eps=None: a named grid of at most 8 steps ends at log-SNR 6, of 9-12 at 8, longer ones (and
    adaptive solvers, and custom grids) at DEFAULT_END_TIME; an explicit eps is always obeyed."""
    ring = oracle.ring(4, 1.0, 0.1)

    def end(name, steps, **kwargs):
        x_T = sde.prior_sampling((4, 2), generator=torch.Generator().manual_seed(0), dtype=torch.float64)
        return samplers.sample(name, sde, ring.score_fn(sde), x_T=x_T, steps=steps, **kwargs)[1]["time_grid"][-1]

    log_snr = lambda t: float(sde.log_snr(t.double()))  # noqa: E731
    expected = {3: 6.0, 8: 6.0, 9: 8.0, 12: 8.0}
    for steps, value in expected.items():
        for name in ("unipc", "heun", "euler_maruyama"):
            at = end(name, steps)
            if float(sde.log_snr(torch.tensor(samplers.DEFAULT_END_TIME, dtype=torch.float64))) > value:
                assert log_snr(at) == pytest.approx(value, abs=1e-6), (name, steps)
            else:  # the SDE's default end is already noisier (VE's sigma_min): kept
                assert at.item() == samplers.DEFAULT_END_TIME
    assert end("unipc", 13).item() == samplers.DEFAULT_END_TIME
    assert end("unipc", 5, eps=1e-4).item() == 1e-4
    assert end("probability_flow", None).item() == samplers.DEFAULT_END_TIME
    custom = samplers.get_time_grid("karras", sde, 4, 1e-3)
    assert end("unipc", None, time_grid=custom).item() == pytest.approx(1e-3)


def test_callback_sees_every_step(make_generator):
    seen = []
    sample(
        "euler_maruyama",
        VPSDE(),
        PROBLEM.score(VPSDE()),
        (4, 2),
        steps=6,
        generator=make_generator(9),
        callback=seen.append,
    )
    assert [(step["i"], step["n"]) for step in seen] == [(i, 6) for i in range(6)]
    grid = samplers.get_time_grid("uniform", VPSDE(), 6, samplers.few_step_end_time(VPSDE(), 6, samplers.DEFAULT_END_TIME))
    assert [step["t"] for step in seen] == pytest.approx(grid[:-1].tolist())
    assert all(step["x"].shape == (4, 2) and step["denoised"] is None for step in seen)  # an SDE step reports no D


@pytest.mark.parametrize("name", samplers.deterministic())
def test_every_ode_solver_reports_the_denoised_state_it_evaluated(name):
    """The callback's `denoised` is D(x_i, t_i) (Tweedie's formula at the step's start): checked
    against the exact denoiser of the mixture on the state the previous step reported. UniPC's
    evaluation at t_i is made on its predictor's state, before the corrector moves it (that is
    what makes its corrector free), so only its first one is on a reported state."""
    sde = VPSDE()
    seen = []
    x_T = sde.prior_sampling((5, 2), generator=torch.Generator().manual_seed(0))
    sample(name, sde, PROBLEM.score(sde), x_T=x_T, steps=5, callback=seen.append, denoise=False)
    assert [step["i"] for step in seen] == list(range(5))
    states = [x_T] + [step["x"] for step in seen]
    for step, x in zip(seen, states):
        if name == "unipc" and step["i"] > 0:
            assert step["denoised"].shape == x.shape
            continue
        t = torch.full((5,), step["t"])
        alpha, sigma = sde.alpha(t)[:, None], sde.sigma(t)[:, None]
        exact = (x + sigma**2 * PROBLEM.score(sde)(x, t)) / alpha
        torch.testing.assert_close(step["denoised"], exact, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("grid_kind", TIME_GRIDS)
@pytest.mark.parametrize("steps", [1, 2, 3])
def test_no_nan_with_very_few_steps(sde, grid_kind, steps, seeded, make_generator):
    x, info = sample(
        "euler_maruyama", sde, PROBLEM.score(sde), (64, 2), steps=steps, time_grid=grid_kind, generator=make_generator(10)
    )
    assert torch.all(torch.isfinite(x)) and info["nfe"] == steps + 1
    with seeded(0):
        net = ScoreMLP((2,), width=16, depth=1, embed_dim=8)
    for parameterization in ("eps", "x0", "score"):
        score_fn = NetworkScore(net, sde, parameterization=parameterization, scale_input=True)
        x, _ = sample("euler_maruyama", sde, score_fn, (16, 2), steps=steps, time_grid=grid_kind, generator=make_generator(11))
        assert torch.all(torch.isfinite(x)), parameterization


# --- time grids ---------------------------------------------------------------------------------


@pytest.mark.parametrize("grid_kind", TIME_GRIDS)
@pytest.mark.parametrize("steps", [1, 2, 10, 100])
def test_grids_run_from_T_to_eps_strictly_decreasing(sde, grid_kind, steps):
    for eps in (1e-5, 1e-3, 0.2):
        grid = get_time_grid(grid_kind, sde, steps, eps)
        assert grid.dtype == torch.float64 and grid.shape == (steps + 1,)
        assert grid[0].item() == sde.T and grid[-1].item() == pytest.approx(eps, rel=1e-12)
        assert torch.all(grid[1:] < grid[:-1])


@pytest.mark.parametrize("grid_kind", TIME_GRIDS)
def test_grids_from_a_later_start_are_the_same_rule_between_start_and_eps(sde, grid_kind):
    """`start` replaces T as the first time: the grid is the named rule on [eps, start]."""
    start = 0.6 * sde.T
    grid = get_time_grid(grid_kind, sde, 8, 1e-3, start=start)
    assert grid[0].item() == start and grid[-1].item() == pytest.approx(1e-3, rel=1e-12)
    assert torch.all(grid[1:] < grid[:-1])
    warp = {  # each rule is uniform in one of these functions of t
        "uniform": lambda t: t,
        "time_quadratic": torch.sqrt,
        "log_snr": sde.log_snr,
        "karras": lambda t: torch.exp(-sde.log_snr(t) / 14),  # s^(1/7), s = exp(-log_snr / 2)
    }[grid_kind]
    w = warp(grid)
    torch.testing.assert_close(
        w[1:] - w[:-1], torch.full((8,), ((w[-1] - w[0]) / 8).item(), dtype=torch.float64), rtol=1e-7, atol=1e-10
    )


def test_bad_grid_starts_are_refused(sde):
    with pytest.raises(ValueError, match="start .* must lie in"):
        get_time_grid("log_snr", sde, 8, 1e-3, start=1.5 * sde.T)
    with pytest.raises(ValueError, match="eps .* must lie in .0, start"):
        get_time_grid("karras", sde, 8, 0.5 * sde.T, start=0.4 * sde.T)
    with pytest.raises(ValueError, match="start applies to named time grids"):
        get_time_grid([sde.T, 0.5, 0.1], sde, None, 1e-3, start=0.9)


def test_uniform_grid_is_equally_spaced(sde):
    grid = get_time_grid("uniform", sde, 10, 1e-3)
    torch.testing.assert_close(grid[:-1] - grid[1:], torch.full((10,), (sde.T - 1e-3) / 10, dtype=torch.float64))


@pytest.mark.parametrize("steps", [1, 10, 100])
def test_log_snr_grid_has_equally_spaced_log_snr(sde, steps):
    grid = get_time_grid("log_snr", sde, steps, 1e-3)
    log_snr = reference_schedule(sde, grid)
    log_snr = torch.log(log_snr["alpha"] ** 2 / log_snr["sigma"] ** 2)
    spacing = log_snr[1:] - log_snr[:-1]
    torch.testing.assert_close(spacing, torch.full_like(spacing, spacing.mean().item()), rtol=1e-8, atol=1e-10)
    assert torch.all(spacing > 0)


@pytest.mark.parametrize("steps", [1, 10, 100])
def test_karras_grid_follows_the_rho_schedule(sde, steps):
    """s = sigma / alpha = exp(-log_snr / 2): s^(1/7) equally spaced from s(T) to s(eps)."""
    grid = get_time_grid("karras", sde, steps, 1e-3)
    ref = reference_schedule(sde, grid)
    root = (ref["sigma"] / ref["alpha"]) ** (1 / 7)
    ends = reference_schedule(sde, torch.tensor([sde.T, 1e-3], dtype=torch.float64))
    s_ends = (ends["sigma"] / ends["alpha"]) ** (1 / 7)
    expected = torch.linspace(s_ends[0].item(), s_ends[1].item(), steps + 1, dtype=torch.float64)
    torch.testing.assert_close(root, expected, rtol=1e-8, atol=1e-10)


def test_custom_grids_are_used_as_given(default_sde, make_generator):
    custom = [1.0, 0.6, 0.2, 0.05, 0.01]
    for kind in (custom, torch.tensor(custom), tuple(custom)):
        _, info = sample(
            "euler_maruyama", default_sde, PROBLEM.score(default_sde), (4, 2), time_grid=kind, generator=make_generator(12)
        )
        torch.testing.assert_close(info["time_grid"], torch.tensor(custom, dtype=torch.float64))
        assert info["nfe"] == 5
    _, info = sample(
        "euler_maruyama",
        default_sde,
        PROBLEM.score(default_sde),
        (4, 2),
        time_grid=custom,
        steps=4,
        denoise=False,
        generator=make_generator(12),
    )
    assert info["nfe"] == 4


@pytest.mark.parametrize(
    "grid, match",
    [
        ([1.0, 0.5, 0.5, 0.1], "decreasing"),
        ([1.0, 0.2, 0.5, 0.1], "decreasing"),
        ([0.1, 0.5, 1.0], "decreasing"),
        ([1.5, 0.5, 0.1], r"\[0, T"),
        ([1.0, 0.5, -0.1], r"\[0, T"),
        ([0.5], "two"),
    ],
)
def test_invalid_custom_grids_raise(grid, match):
    with pytest.raises(ValueError, match=match):
        get_time_grid(grid, VPSDE(), None, 1e-3)
    with pytest.raises(ValueError, match=match):
        sample("euler_maruyama", VPSDE(), PROBLEM.score(VPSDE()), (4, 2), time_grid=grid)


@pytest.mark.parametrize("parameterization", ["eps", "x0"])
def test_a_custom_grid_ending_at_zero_is_rejected_or_gives_finite_samples(parameterization, make_generator):
    """get_time_grid accepts a last time of 0, where sigma = 0; the final Tweedie step must not then
    divide by sigma(0) = 0 (eps: -out / sigma, x0: / sigma^2) and return NaN."""
    sde = VPSDE()
    score_fn = NetworkScore(lambda x_in, label: torch.tanh(x_in), sde, parameterization=parameterization)
    try:
        samples, _ = sample("euler_maruyama", sde, score_fn, (4, 2), time_grid=[1.0, 0.5, 0.0], generator=make_generator(13))
    except ValueError:
        return
    assert torch.all(torch.isfinite(samples))


def test_custom_grid_with_a_disagreeing_step_count_raises():
    with pytest.raises(ValueError, match="steps"):
        sample("euler_maruyama", VPSDE(), PROBLEM.score(VPSDE()), (4, 2), time_grid=[1.0, 0.5, 0.1], steps=5)


# --- validation -----------------------------------------------------------------------------------


def test_unknown_sampler_name_raises_listing_the_valid_ones():
    assert available() == sorted(SAMPLERS) and "euler_maruyama" in available()
    with pytest.raises(ValueError, match="euler_maruyama"):
        sample("euler-maruyama", VPSDE(), PROBLEM.score(VPSDE()), (4, 2), steps=2)


def test_unknown_sampler_option_raises_listing_the_valid_ones():
    with pytest.raises(ValueError, match=r"snr.*valid"):
        sample("euler_maruyama", VPSDE(), PROBLEM.score(VPSDE()), (4, 2), steps=2, snr=0.16)


def test_unknown_time_grid_raises_listing_the_valid_ones():
    with pytest.raises(ValueError, match="uniform.*log_snr.*karras"):
        sample("euler_maruyama", VPSDE(), PROBLEM.score(VPSDE()), (4, 2), steps=2, time_grid="quadratic")


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"steps": 0}, "steps"),
        ({"steps": 2.5}, "steps"),
        ({"steps": True}, "steps"),
        ({"eps": 0.0}, "eps"),
        ({"eps": 1.0}, "eps"),
        ({"eps": -0.1}, "eps"),
    ],
)
def test_bad_steps_or_eps_raise(default_sde, kwargs, match):
    options = {"steps": 3, **kwargs}
    with pytest.raises(ValueError, match=match):
        sample("euler_maruyama", default_sde, PROBLEM.score(default_sde), (4, 2), **options)


def test_shape_and_x_T_must_agree_and_one_is_needed():
    sde = subVPSDE()
    with pytest.raises(ValueError, match="shape"):
        sample("euler_maruyama", sde, PROBLEM.score(sde), (4, 3), x_T=torch.zeros(4, 2), steps=2)
    with pytest.raises(ValueError, match="x_T"):
        sample("euler_maruyama", sde, PROBLEM.score(sde), steps=2)
