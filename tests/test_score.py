"""Tests of scoresde.score: the network -> score_fn adapter and Tweedie denoising."""

import math

import pytest
import torch

from scoresde.score import PARAMETERIZATIONS, TIME_LABELS, NetworkScore, denoise, get_score_fn, time_label
from scoresde.sde_lib import VPSDE, broadcast_to_data
from tests.problems import GaussianData, reference_schedule

pytestmark = pytest.mark.usefixtures("single_thread")

TIMES = torch.tensor([1e-3, 0.1, 0.5, 0.9, 1.0], dtype=torch.float64)


def _fake_net(x_in, label):
    """A known function of the input and the label."""
    return torch.sin(x_in) * broadcast_to_data(1.0 + 0.1 * label, x_in) + 0.25


def _problem(data_shape):
    mean = torch.linspace(-1.0, 1.5, math.prod(data_shape), dtype=torch.float64).reshape(data_shape)
    return GaussianData(mean, 0.6)


@pytest.mark.parametrize("parameterization", [*PARAMETERIZATIONS, "score_scaled"])
def test_each_parameterisation_gives_the_documented_formula(sde, data_shape, parameterization, make_generator):
    x = 3.0 * torch.randn((5, *data_shape), generator=make_generator(0), dtype=torch.float64)
    scaled = parameterization == "score_scaled"
    score_fn = NetworkScore(_fake_net, sde, parameterization="score" if scaled else parameterization, scale_by_sigma=scaled)
    ref = reference_schedule(sde, TIMES)
    alpha, sigma = broadcast_to_data(ref["alpha"], x), broadcast_to_data(ref["sigma"], x)
    out = _fake_net(x, TIMES)
    expected = {
        "score": out,
        "score_scaled": out / sigma,
        "eps": -out / sigma,
        "x0": (alpha * out - x) / sigma**2,
        "edm": None,
    }[parameterization]
    if parameterization == "edm":  # Karras et al. 2022, table 1, in x~ = x / alpha, s = sigma / alpha, sd = 0.5
        s, x_tilde = sigma / alpha, x / alpha
        out = _fake_net(x_tilde / torch.sqrt(s**2 + 0.25), TIMES)
        denoised = 0.25 / (s**2 + 0.25) * x_tilde + s * 0.5 / torch.sqrt(s**2 + 0.25) * out
        expected = (alpha * denoised - x) / sigma**2
    result = score_fn(x, TIMES)
    assert result.shape == x.shape and result.dtype == x.dtype
    torch.testing.assert_close(result, expected, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("parameterization", PARAMETERIZATIONS)
def test_exact_networks_give_the_exact_score_of_gaussian_data(sde, data_shape, parameterization, make_generator):
    problem = _problem(data_shape)
    exact_output = {
        "score": problem.score(sde),
        "eps": problem.noise_prediction(sde),
        "x0": problem.posterior_mean(sde),
        "edm": _exact_edm_output(problem, sde),
    }[parameterization]
    score_fn = NetworkScore(exact_output, sde, parameterization=parameterization, time_label="t")
    for t in (1e-3, 0.2, 0.6, 1.0):
        x = problem.sample_marginal(6, sde, t, make_generator(1))
        t_batch = torch.full((6,), t, dtype=torch.float64)
        # x0: (alpha x0_hat - x) / sigma^2 cancels to ~1e-16 / sigma^2 (sigma^2 ~ 1e-8 for sub-VP at 1e-3).
        torch.testing.assert_close(score_fn(x, t_batch), problem.score(sde)(x, t_batch), rtol=1e-6, atol=1e-6)


def _exact_edm_output(problem, sde):
    """The F that makes EDM's D = c_skip x~ + c_out F the exact posterior mean (sd = 0.5)."""

    def net(x_in, t):
        ref = reference_schedule(sde, t)
        alpha, sigma = broadcast_to_data(ref["alpha"], x_in), broadcast_to_data(ref["sigma"], x_in)
        s = sigma / alpha
        x_tilde = x_in * torch.sqrt(s**2 + 0.25)
        c_skip, c_out = 0.25 / (s**2 + 0.25), s * 0.5 / torch.sqrt(s**2 + 0.25)
        return (problem.posterior_mean(sde)(alpha * x_tilde, t) - c_skip * x_tilde) / c_out

    return net


def test_exact_score_of_gaussian_data_against_autograd(sde, make_generator):
    """The problem's score is the gradient of log N(x; alpha m, v I)."""
    problem = _problem((2,))
    t = torch.full((4,), 0.3, dtype=torch.float64)
    x = problem.sample_marginal(4, sde, 0.3, make_generator(2)).requires_grad_(True)
    v = problem.marginal_var(sde, t)
    density = torch.distributions.Normal(problem.marginal_mean(sde, t), broadcast_to_data(v.sqrt(), x))
    (grad,) = torch.autograd.grad(density.log_prob(x).sum(), x)
    torch.testing.assert_close(problem.score(sde)(x.detach(), t), grad)


@pytest.mark.parametrize("label", TIME_LABELS)
def test_time_labels_reach_the_network_as_documented(sde, label, make_generator):
    seen = []

    def net(x_in, network_label):
        seen.append(network_label)
        return torch.zeros_like(x_in)

    x = torch.randn(5, 2, generator=make_generator(3), dtype=torch.float64)
    NetworkScore(net, sde, time_label=label)(x, TIMES)
    sigma = reference_schedule(sde, TIMES)["sigma"]
    expected = {
        "t": TIMES,
        "sigma": sigma,
        "log_sigma": torch.log(sigma),
        "999t": 999.0 * TIMES / sde.T,
        "index": TIMES * (sde.N - 1) / sde.T,
    }[label]
    assert seen[0].shape == (5,)
    torch.testing.assert_close(seen[0], expected, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(time_label(sde, TIMES, label), expected, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("sigma_data", [0.5, 1.3])
def test_scale_input_divides_by_the_marginal_std(sde, sigma_data, make_generator):
    seen = []

    def net(x_in, network_label):
        seen.append(x_in)
        return x_in

    x = torch.randn(5, 3, 4, 4, generator=make_generator(4), dtype=torch.float64)
    options = {} if sigma_data == 0.5 else {"sigma_data": sigma_data}
    result = NetworkScore(net, sde, scale_input=True, **options)(x, TIMES)
    ref = reference_schedule(sde, TIMES)
    c_in = broadcast_to_data(1.0 / torch.sqrt(ref["alpha"] ** 2 * sigma_data**2 + ref["sigma"] ** 2), x)
    torch.testing.assert_close(seen[0], c_in * x)
    torch.testing.assert_close(result, c_in * x)  # the "score" output is not rescaled back
    NetworkScore(net, sde)(x, TIMES)
    torch.testing.assert_close(seen[1], x, rtol=0, atol=0)


def test_scalar_time_is_expanded_to_the_batch(make_generator):
    seen = []

    def net(x_in, network_label):
        seen.append(network_label)
        return x_in

    x = torch.randn(3, 2, generator=make_generator(5))
    NetworkScore(net, VPSDE(), time_label="999t")(x, 0.5)
    assert seen[0].shape == (3,) and torch.all(seen[0] == 499.5)


def test_dtype_follows_the_data(sde, dtype, make_generator):
    x = torch.randn(4, 2, generator=make_generator(6), dtype=dtype)
    for parameterization in PARAMETERIZATIONS:
        score = NetworkScore(_fake_net, sde, parameterization=parameterization)(x, TIMES[:4].to(dtype))
        assert score.dtype == dtype


def test_get_score_fn_is_the_adapter(make_generator):
    sde = VPSDE()
    score_fn = get_score_fn(_fake_net, sde, parameterization="eps", time_label="999t")
    assert isinstance(score_fn, NetworkScore)
    x = torch.randn(5, 2, generator=make_generator(7), dtype=torch.float64)
    reference = NetworkScore(_fake_net, sde, parameterization="eps", time_label="999t")
    torch.testing.assert_close(score_fn(x, TIMES), reference(x, TIMES), rtol=0, atol=0)


# --- validation -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "options, match",
    [
        ({"parameterization": "noise"}, "score.*eps.*x0"),
        ({"parameterization": "Eps"}, "score.*eps.*x0"),
        ({"time_label": "999"}, "t.*sigma.*log_sigma.*999t.*index"),
        ({"time_label": "time"}, "t.*sigma.*log_sigma.*999t.*index"),
        ({"parameterization": "eps", "scale_by_sigma": True}, "scale_by_sigma"),
        ({"parameterization": "x0", "scale_by_sigma": True}, "scale_by_sigma"),
        ({"sigma_data": 0.0}, "sigma_data"),
        ({"sigma_data": -1.0}, "sigma_data"),
    ],
)
def test_bad_options_raise(options, match):
    with pytest.raises(ValueError, match=match):
        NetworkScore(_fake_net, VPSDE(), **options)


def test_unknown_time_label_raises_in_time_label():
    with pytest.raises(ValueError, match="999t"):
        time_label(VPSDE(), TIMES, "steps")


def test_network_with_the_wrong_output_shape_raises():
    score_fn = NetworkScore(lambda x_in, label: x_in[:, :1], VPSDE())
    with pytest.raises(ValueError, match="shape"):
        score_fn(torch.zeros(3, 2), torch.full((3,), 0.5))


@pytest.mark.parametrize("bad_t", [-0.1, 1.5])
def test_time_outside_zero_to_T_raises(bad_t):
    with pytest.raises(ValueError, match=r"\bt\b"):
        NetworkScore(_fake_net, VPSDE())(torch.zeros(3, 2), torch.full((3,), bad_t))


# --- Tweedie ------------------------------------------------------------------------------------


def test_denoise_returns_the_exact_posterior_mean(sde, data_shape, make_generator):
    problem = _problem(data_shape)
    for t in (1e-3, 0.3, 0.8, 1.0):
        x = problem.sample_marginal(6, sde, t, make_generator(8))
        t_batch = torch.full((6,), t, dtype=torch.float64)
        ref = reference_schedule(sde, t_batch)
        # m + alpha s^2 / v (x - alpha m), written out from Gaussian conditioning.
        v = broadcast_to_data(ref["alpha"] ** 2 * 0.36 + ref["sigma"] ** 2, x)
        alpha = broadcast_to_data(ref["alpha"], x)
        expected = problem.mean + alpha * 0.36 / v * (x - alpha * problem.mean)
        torch.testing.assert_close(denoise(sde, problem.score(sde), x, t_batch), expected, rtol=1e-9, atol=1e-9)
        t_scalar = torch.tensor(t, dtype=torch.float64)
        torch.testing.assert_close(denoise(sde, problem.score(sde), x, t_scalar), expected, rtol=1e-9, atol=1e-9)


def test_denoised_exact_marginal_samples_have_the_posterior_mean_distribution(make_generator):
    """E[E[x0 | x_t]] = m, Var = alpha^2 s^4 / v per coordinate (law of total variance)."""
    sde, problem = VPSDE(), GaussianData(torch.tensor([1.0, -0.5]), 0.6)
    n, t = 16000, 0.4
    x = problem.sample_marginal(n, sde, t, make_generator(9))
    x0_hat = denoise(sde, problem.score(sde), x, torch.full((n,), t, dtype=torch.float64))
    ref = reference_schedule(sde, torch.tensor([t], dtype=torch.float64))
    var = (ref["alpha"] ** 2 * 0.6**4 / (ref["alpha"] ** 2 * 0.36 + ref["sigma"] ** 2)).item()
    assert torch.all(torch.abs(x0_hat.mean(dim=0) - problem.mean) < 5 * math.sqrt(var / n))
    assert torch.all(torch.abs(x0_hat.var(dim=0) / var - 1) < 5 * math.sqrt(2 / n))
