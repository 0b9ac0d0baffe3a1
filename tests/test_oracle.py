"""Tests of scoresde.oracle against autograd, scipy, closed forms and Monte Carlo moments.

The references are computed here from the raw mixture parameters (numpy / scipy), never from the
oracle's own helpers; alpha(t), sigma(t), f and g come from the SDEs, which `test_sde_lib` checks.
"""

import math

import numpy as np
import pytest
import scipy.special
import scipy.stats
import torch

from scoresde.oracle import GaussianMixture, gaussian, ring, stiff
from scoresde.sde_lib import VESDE, VPSDE, subVPSDE

pytestmark = pytest.mark.usefixtures("single_thread")

TIMES = [0.0, 1e-3, 0.1, 0.5, 1.0]
DTYPES = pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
N_MC = 50_000

# Raw parameters of the test problems (numpy, so the references do not go through the oracle).
# MIX2: unnormalised weights, full per-coordinate stds. MIX3: one std per component.
MIX2 = {
    "weights": np.array([5.0, 3.0, 2.0]),
    "means": np.array([[-1.0, 0.5], [1.5, -0.5], [0.2, 2.0]]),
    "stds": np.array([[0.3, 0.6], [0.5, 0.2], [0.4, 0.4]]),
}
MIX3 = {
    "weights": np.array([0.7, 0.3]),
    "means": np.array([[0.0, 1.0, -1.0], [2.0, -1.0, 0.5]]),
    "stds": np.array([0.5, 1.2]),
}


def _build(params) -> GaussianMixture:
    return GaussianMixture(torch.tensor(params["weights"]), torch.tensor(params["means"]), torch.tensor(params["stds"]))


def _full_stds(params) -> np.ndarray:
    stds = params["stds"]
    return np.broadcast_to(stds[:, None] if stds.ndim == 1 else stds, params["means"].shape)


def _image_mixture() -> GaussianMixture:
    means = torch.tensor([[[[0.5, -0.5], [1.0, 0.0]]], [[[-1.0, 0.3], [0.2, 0.8]]]], dtype=torch.float64)
    return GaussianMixture([0.4, 0.6], means, [0.3, 0.7])


@pytest.fixture(params=[VPSDE, subVPSDE, VESDE], ids=["vp", "subvp", "ve"])
def forward_sde(request):
    """VPSDE(), subVPSDE() and VESDE() with Song et al.'s default parameters."""
    return request.param()


def _scales(sde, t: float) -> tuple[float, float]:
    """alpha(t), sigma(t) in float64 (a Python float t would be read as float32)."""
    t = torch.tensor(t, dtype=torch.float64)
    return float(sde.alpha(t)), float(sde.sigma(t))


def _reference_log_prob(params, x: np.ndarray, alpha: float, sigma: float) -> np.ndarray:
    """log sum_k w_k N(x; alpha mu_k, diag(alpha^2 s_k^2 + sigma^2)) with scipy, x of shape (n, d)."""
    weights = params["weights"] / params["weights"].sum()
    terms = [
        math.log(w) + scipy.stats.multivariate_normal(alpha * mu, np.diag(alpha**2 * s**2 + sigma**2)).logpdf(x)
        for w, mu, s in zip(weights, params["means"], _full_stds(params))
    ]
    return scipy.special.logsumexp(np.stack(terms, axis=0), axis=0)


def _reference_moments(params, alpha: float = 1.0, sigma: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Mean and per-coordinate variance of the mixture's marginal."""
    weights = (params["weights"] / params["weights"].sum())[:, None]
    means, stds = params["means"], _full_stds(params)
    mean = (weights * means).sum(0)
    second = (weights * (stds**2 + means**2)).sum(0)
    return alpha * mean, alpha**2 * (second - mean**2) + sigma**2


def _assert_moments(x: torch.Tensor, mean, var, n_se: float = 5.0) -> None:
    """Sample mean and variance of x (n, *dims) within n_se standard errors of `mean`, `var`."""
    x = x.to(torch.float64).reshape(x.shape[0], -1)
    mean = torch.as_tensor(mean, dtype=torch.float64).reshape(-1)
    var = torch.as_tensor(var, dtype=torch.float64).reshape(-1)
    n = x.shape[0]
    sample_mean = x.mean(0)
    assert torch.all((sample_mean - mean).abs() < n_se * torch.sqrt(var / n)), (sample_mean, mean)
    squares = (x - sample_mean) ** 2
    se_var = squares.std(0) / math.sqrt(n)
    assert torch.all((squares.mean(0) - var).abs() < n_se * se_var), (squares.mean(0), var)


# --- densities and scores --------------------------------------------------------------------------


@pytest.mark.parametrize("make_mixture", [lambda: _build(MIX2), lambda: _build(MIX3), _image_mixture], ids=["2d", "3d", "image"])
def test_score_is_the_gradient_of_log_prob(forward_sde, make_mixture):
    mixture = make_mixture()
    generator = torch.Generator().manual_seed(0)
    for t in TIMES:
        x = mixture.sample_marginal(forward_sde, t, 64, generator=generator, dtype=torch.float64)
        x = (x + torch.randn(x.shape, generator=generator, dtype=torch.float64)).requires_grad_(True)
        (grad,) = torch.autograd.grad(mixture.log_prob(x, forward_sde, t).sum(), x)
        score = mixture.score(x.detach(), t, forward_sde)
        assert score.shape == x.shape
        torch.testing.assert_close(score, grad, rtol=1e-10, atol=1e-12)
    (grad0,) = torch.autograd.grad(mixture.log_prob(x).sum(), x)
    assert not torch.allclose(grad0, grad)  # p_0 differs from p_1: the test can tell times apart


@DTYPES
@pytest.mark.parametrize("params", [MIX2, MIX3], ids=["2d", "3d"])
def test_log_prob_matches_scipy(forward_sde, params, dtype):
    mixture = _build(params)
    generator = torch.Generator().manual_seed(1)
    tolerance = {"rtol": 1e-5, "atol": 1e-4} if dtype == torch.float32 else {"rtol": 1e-10, "atol": 1e-10}
    for t in TIMES:
        x = mixture.sample_marginal(forward_sde, t, 32, generator=generator, dtype=dtype)
        expected = _reference_log_prob(params, x.double().numpy(), *_scales(forward_sde, t))
        log_p = mixture.log_prob(x, forward_sde, t)
        assert log_p.shape == (32,) and log_p.dtype == dtype
        torch.testing.assert_close(log_p.double(), torch.from_numpy(expected), **tolerance)
    x = mixture.sample(16, generator=generator, dtype=dtype)
    expected = _reference_log_prob(params, x.double().numpy(), 1.0, 0.0)
    torch.testing.assert_close(mixture.log_prob(x).double(), torch.from_numpy(expected), **tolerance)


def test_per_example_times_match_scalar_times(forward_sde):
    mixture = _build(MIX2)
    t = torch.tensor(TIMES, dtype=torch.float64)
    x = torch.randn((len(TIMES), 2), generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    log_p, score = mixture.log_prob(x, forward_sde, t), mixture.score(x, t, forward_sde)
    for i, ti in enumerate(TIMES):
        torch.testing.assert_close(log_p[i : i + 1], mixture.log_prob(x[i : i + 1], forward_sde, ti))
        torch.testing.assert_close(score[i : i + 1], mixture.score(x[i : i + 1], ti, forward_sde))
    torch.testing.assert_close(mixture.score_fn(forward_sde)(x, t), score)


def test_responsibilities_are_bayes_posteriors(forward_sde):
    mixture = _build(MIX3)
    x = torch.randn((20, 3), generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    alpha, sigma = _scales(forward_sde, 0.3)
    weights = MIX3["weights"] / MIX3["weights"].sum()
    joint = np.stack(
        [
            w * scipy.stats.multivariate_normal(alpha * mu, (alpha**2 * s**2 + sigma**2) * np.eye(3)).pdf(x.numpy())
            for w, mu, s in zip(weights, MIX3["means"], MIX3["stds"])
        ],
        axis=1,
    )
    r = mixture.responsibilities(x, forward_sde, 0.3)
    torch.testing.assert_close(r, torch.from_numpy(joint / joint.sum(1, keepdims=True)), rtol=1e-9, atol=1e-12)


@DTYPES
def test_float32_agrees_with_float64(forward_sde, dtype):
    mixture = _build(MIX2)
    x64 = torch.randn((50, 2), generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    for t in [0.05, 0.5]:
        x = x64.to(dtype)
        for name in ["score", "denoiser"]:
            out = getattr(mixture, name)(x, t, forward_sde)
            assert out.dtype == dtype and out.shape == x.shape
            torch.testing.assert_close(out.double(), getattr(mixture, name)(x64, t, forward_sde), rtol=1e-4, atol=1e-4)


# --- denoiser ----------------------------------------------------------------------------------------


def test_denoiser_is_tweedie(forward_sde):
    mixture = _build(MIX2)
    generator = torch.Generator().manual_seed(5)
    for t in TIMES:
        x = mixture.sample_marginal(forward_sde, t, 64, generator=generator, dtype=torch.float64)
        alpha, sigma = _scales(forward_sde, t)
        tweedie = (x + sigma**2 * mixture.score(x, t, forward_sde)) / alpha
        torch.testing.assert_close(mixture.denoiser(x, t, forward_sde), tweedie, rtol=1e-9, atol=1e-9)


def test_single_gaussian_has_the_closed_form_score_and_posterior_mean(forward_sde):
    m, s = np.array([0.5, -1.0, 2.0]), np.array([0.3, 1.0, 2.0])
    oracle = gaussian(torch.tensor(m), torch.tensor(s))
    x = torch.randn((40, 3), generator=torch.Generator().manual_seed(6), dtype=torch.float64)
    for t in TIMES:
        alpha, sigma = _scales(forward_sde, t)
        v = alpha**2 * s**2 + sigma**2
        score = -(x.numpy() - alpha * m) / v
        posterior_mean = m + alpha * s**2 / v * (x.numpy() - alpha * m)
        torch.testing.assert_close(oracle.score(x, t, forward_sde), torch.from_numpy(score), rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(oracle.denoiser(x, t, forward_sde), torch.from_numpy(posterior_mean), rtol=1e-12, atol=1e-12)


# --- moments and samples ---------------------------------------------------------------------------


@pytest.mark.parametrize("params", [MIX2, MIX3], ids=["2d", "3d"])
def test_closed_form_moments(forward_sde, params):
    mixture = _build(params)
    mean, var = _reference_moments(params)
    torch.testing.assert_close(mixture.mean(), torch.from_numpy(mean))
    torch.testing.assert_close(mixture.covariance_diagonal(), torch.from_numpy(var))
    alpha, sigma = _scales(forward_sde, 0.4)
    mean, var = _reference_moments(params, alpha, sigma)
    torch.testing.assert_close(mixture.mean(forward_sde, 0.4), torch.from_numpy(mean))
    torch.testing.assert_close(mixture.covariance_diagonal(forward_sde, 0.4), torch.from_numpy(var))


def test_sample_moments_and_component_frequencies():
    mixture = _build(MIX2)
    x = mixture.sample(N_MC, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    assert x.shape == (N_MC, 2) and x.dtype == torch.float64
    _assert_moments(x, *_reference_moments(MIX2))
    # Far-apart modes with the same weights: the nearest mean identifies the component.
    separated = GaussianMixture(MIX2["weights"], 20.0 * MIX2["means"], 0.5)
    x = separated.sample(N_MC, generator=torch.Generator().manual_seed(8))
    nearest = torch.cdist(x.double(), separated.means).argmin(1)
    frequencies = torch.bincount(nearest, minlength=3).double() / N_MC
    weights = torch.tensor(MIX2["weights"] / MIX2["weights"].sum())
    assert torch.all((frequencies - weights).abs() < 5 * torch.sqrt(weights * (1 - weights) / N_MC))


@pytest.mark.parametrize("t", [0.05, 0.5, 1.0])
def test_sample_marginal_moments(forward_sde, t):
    mixture = _build(MIX3)
    x = mixture.sample_marginal(forward_sde, t, N_MC, generator=torch.Generator().manual_seed(9))
    assert x.shape == (N_MC, 3) and x.dtype == torch.float32
    _assert_moments(x, *_reference_moments(MIX3, *_scales(forward_sde, t)))


def test_sampling_is_reproducible_and_dtype_only_casts():
    mixture = ring()
    draw = lambda dtype: mixture.sample(100, generator=torch.Generator().manual_seed(10), dtype=dtype)  # noqa: E731
    torch.testing.assert_close(draw(torch.float32), draw(torch.float32), rtol=0, atol=0)
    torch.testing.assert_close(draw(torch.float32), draw(torch.float64).float(), rtol=0, atol=0)
    other = mixture.sample(100, generator=torch.Generator().manual_seed(11))
    assert not torch.allclose(other, draw(torch.float32))
    assert mixture.sample(0).shape == (0, 2)
    t = torch.linspace(0, 1, 100, dtype=torch.float64)
    assert mixture.sample_marginal(VPSDE(), t, 100).shape == (100, 2)


# --- the probability-flow ODE of a single Gaussian ---------------------------------------------------


def test_flow_solves_the_probability_flow_ode(forward_sde):
    m, s = np.array([0.5, -1.0, 2.0]), np.array([0.1, 1.0, 3.0])
    oracle = gaussian(torch.tensor(m), torch.tensor(s))
    x_s = oracle.sample_marginal(forward_sde, 0.2, 16, generator=torch.Generator().manual_seed(12), dtype=torch.float64)
    h = 1e-6
    for t in [0.01, 0.2, 0.5, 0.9]:
        x_t = oracle.flow(x_s, 0.2, t, forward_sde)
        derivative = (oracle.flow(x_s, 0.2, t + h, forward_sde) - oracle.flow(x_s, 0.2, t - h, forward_sde)) / (2 * h)
        alpha, sigma = _scales(forward_sde, t)
        score = -(x_t - torch.from_numpy(alpha * m)) / torch.from_numpy(alpha**2 * s**2 + sigma**2)
        drift, diffusion = forward_sde.sde(x_t, torch.full((16,), t, dtype=torch.float64))
        ode = drift - 0.5 * diffusion[:, None] ** 2 * score
        torch.testing.assert_close(derivative, ode, rtol=1e-6, atol=1e-6 * float(ode.abs().max()))


@DTYPES
def test_flow_composes_and_is_the_identity_at_equal_times(forward_sde, dtype):
    oracle = gaussian([0.5, -1.0], [0.2, 1.5])
    x = torch.randn((16, 2), generator=torch.Generator().manual_seed(13), dtype=dtype)
    tolerance = {"rtol": 1e-5, "atol": 1e-5} if dtype == torch.float32 else {"rtol": 1e-12, "atol": 1e-12}
    for s, u, t in [(0.1, 0.5, 0.9), (0.9, 0.4, 0.01), (1.0, 0.0, 0.6)]:
        direct = oracle.flow(x, s, t, forward_sde)
        assert direct.dtype == dtype
        composed = oracle.flow(oracle.flow(x, s, u, forward_sde), u, t, forward_sde)
        torch.testing.assert_close(composed, direct, **tolerance)
        torch.testing.assert_close(oracle.flow(x, s, s, forward_sde), x, **tolerance)
    times = torch.linspace(0.1, 0.9, 16, dtype=dtype)
    per_example = oracle.flow(x, 0.5, times, forward_sde)
    torch.testing.assert_close(per_example[3], oracle.flow(x, 0.5, float(times[3]), forward_sde)[3])


def test_flow_maps_marginals_to_marginals(forward_sde):
    params = {"weights": np.array([1.0]), "means": np.array([[0.5, -1.0, 2.0]]), "stds": np.array([[0.1, 1.0, 3.0]])}
    oracle = _build(params)
    for s, t in [(0.9, 0.05), (0.0, 0.7)]:
        generator = torch.Generator().manual_seed(14)
        x_s = oracle.sample_marginal(forward_sde, s, N_MC, generator=generator, dtype=torch.float64)
        _assert_moments(oracle.flow(x_s, s, t, forward_sde), *_reference_moments(params, *_scales(forward_sde, t)))


# --- image-shaped events -----------------------------------------------------------------------------


def test_image_shaped_events_match_the_flattened_mixture(forward_sde):
    image = _image_mixture()
    assert image.event_shape == (1, 2, 2) and image.dim == 4 and image.n_components == 2
    flat = GaussianMixture(image.weights, image.means.reshape(2, 4), image.stds.reshape(2, 4))
    x = image.sample_marginal(forward_sde, 0.3, 32, generator=torch.Generator().manual_seed(15))
    assert x.shape == (32, 1, 2, 2)
    t = torch.linspace(0.0, 1.0, 32)
    torch.testing.assert_close(image.log_prob(x, forward_sde, t), flat.log_prob(x.reshape(32, 4), forward_sde, t))
    for name in ["score", "denoiser"]:
        out = getattr(image, name)(x, t, forward_sde)
        assert out.shape == x.shape
        torch.testing.assert_close(out.reshape(32, 4), getattr(flat, name)(x.reshape(32, 4), t, forward_sde))
    # The closure drops into the library's reverse-time machinery like a network's score.
    drift, diffusion = forward_sde.reverse(image.score_fn(forward_sde), probability_flow=True).sde(x, t)
    assert drift.shape == x.shape and torch.all(diffusion == 0)


# --- validation --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "weights, means, stds, match",
    [
        ([1.0, -1.0], [[0.0], [1.0]], 1.0, "weights"),
        ([0.0, 1.0], [[0.0], [1.0]], 1.0, "weights"),
        ([1.0, float("nan")], [[0.0], [1.0]], 1.0, "weights"),
        ([[1.0]], [[0.0]], 1.0, "weights"),
        ([], np.zeros((0, 1)), 1.0, "weights"),
        ([1.0, 1.0], [0.0, 1.0], 1.0, "means"),
        ([1.0, 1.0], [[0.0], [1.0], [2.0]], 1.0, "means"),
        ([1.0, 1.0], [[0.0], [1.0]], 0.0, "stds"),
        ([1.0, 1.0], [[0.0], [1.0]], [1.0, -1.0], "stds"),
        ([1.0, 1.0], [[0.0, 1.0, 2.0]] * 2, [[1.0, 1.0]] * 2, "stds"),
    ],
)
def test_constructor_rejects_bad_parameters(weights, means, stds, match):
    with pytest.raises(ValueError, match=match):
        GaussianMixture(weights, means, stds)


def test_bad_inputs_raise():
    mixture, sde = _build(MIX2), VPSDE()
    with pytest.raises(ValueError, match=r"\(2,\).*\(5, 3\)"):
        mixture.score(torch.zeros(5, 3), 0.5, sde)
    with pytest.raises(ValueError, match="event_shape"):
        mixture.log_prob(torch.zeros(2))
    with pytest.raises(TypeError, match="floating-point"):
        mixture.log_prob(torch.zeros(5, 2, dtype=torch.long))
    with pytest.raises(ValueError, match="batch"):
        mixture.score(torch.zeros(5, 2), torch.full((4,), 0.5), sde)
    with pytest.raises(ValueError, match=r"\[0, T\]"):
        mixture.denoiser(torch.zeros(5, 2), 1.5, sde)
    with pytest.raises(ValueError, match="both sde and t"):
        mixture.log_prob(torch.zeros(5, 2), t=0.5)
    with pytest.raises(ValueError, match="both sde and t"):
        mixture.responsibilities(torch.zeros(5, 2), sde)
    with pytest.raises(ValueError, match="non-negative integer"):
        mixture.sample(-1)
    with pytest.raises(ValueError, match="no closed form"):
        mixture.flow(torch.zeros(5, 2), 0.1, 0.5, sde)
    for bad in [
        lambda: ring(0),
        lambda: ring(radius=-1.0),
        lambda: stiff(min_std=0.0),
        lambda: stiff(min_std=0.5, max_std=0.1),
        lambda: stiff(dim=0),
        lambda: gaussian(0.0, 1.0),
    ]:
        with pytest.raises(ValueError):
            bad()


# --- benchmark problems ------------------------------------------------------------------------------


def test_ring_places_equal_modes_on_a_circle():
    mixture = ring(n_components=5, radius=2.0, std=0.1)
    assert mixture.event_shape == (2,) and mixture.n_components == 5
    torch.testing.assert_close(mixture.weights, torch.full((5,), 0.2, dtype=torch.float64))
    torch.testing.assert_close(mixture.means.norm(dim=1), torch.full((5,), 2.0, dtype=torch.float64))
    angles = torch.atan2(mixture.means[:, 1], mixture.means[:, 0]) % (2 * math.pi)
    torch.testing.assert_close(angles, torch.arange(5, dtype=torch.float64) * 2 * math.pi / 5)
    torch.testing.assert_close(mixture.stds, torch.full((5, 2), 0.1, dtype=torch.float64))
    assert ring().n_components == 8 and float(ring().stds.max()) == 0.05


def test_stiff_is_deterministic_and_spans_the_documented_scales():
    mixture = stiff(dim=32, n_components=3, min_std=1e-3, max_std=2.0, seed=4)
    assert mixture.event_shape == (32,) and mixture.n_components == 3
    torch.testing.assert_close(mixture.means, stiff(dim=32, n_components=3, min_std=1e-3, max_std=2.0, seed=4).means)
    assert not torch.allclose(mixture.means, stiff(dim=32, n_components=3, seed=5).means)
    log_stds = torch.log(mixture.stds)
    torch.testing.assert_close(log_stds[:, 0], torch.full((3,), math.log(1e-3), dtype=torch.float64))
    torch.testing.assert_close(log_stds[:, -1], torch.full((3,), math.log(2.0), dtype=torch.float64))
    steps = log_stds.diff(dim=1)
    torch.testing.assert_close(steps, torch.full_like(steps, math.log(2.0 / 1e-3) / 31))
    default = stiff()
    assert default.event_shape == (64,) and default.n_components == 4
    assert 0.7 < float(default.means.std()) < 1.3 and abs(float(default.means.mean())) < 0.3
    x = default.sample(8, generator=torch.Generator().manual_seed(0))
    assert default.score(x, 0.0, VPSDE()).shape == (8, 64)


# --- accelerators ------------------------------------------------------------------------------------


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_inputs_match_cpu(forward_sde):
    mixture = _build(MIX2)
    x = torch.randn((64, 2), generator=torch.Generator().manual_seed(16))
    t = torch.rand(64, generator=torch.Generator().manual_seed(17))
    for name in ["score", "denoiser"]:
        out = getattr(mixture, name)(x.cuda(), t.cuda(), forward_sde)
        assert out.is_cuda and out.dtype == torch.float32
        torch.testing.assert_close(out.cpu(), getattr(mixture, name)(x, t, forward_sde), rtol=1e-4, atol=1e-4)
    log_p = mixture.log_prob(x.cuda(), forward_sde, t.cuda())
    assert log_p.is_cuda
    torch.testing.assert_close(log_p.cpu(), mixture.log_prob(x, forward_sde, t), rtol=1e-4, atol=1e-4)
    generator = torch.Generator(device="cuda").manual_seed(18)
    x = mixture.sample_marginal(forward_sde, 0.5, N_MC, generator=generator, device="cuda")
    assert x.is_cuda
    _assert_moments(x.cpu(), *_reference_moments(MIX2, *_scales(forward_sde, 0.5)))


@pytest.mark.parametrize("sde", [VPSDE(), subVPSDE(), VESDE(0.01, 20.0)], ids=["vp", "subvp", "ve"])
def test_solve_flow_matches_the_closed_form_for_one_gaussian(sde):
    """For K = 1 the flow to zero noise is x_0 = mu + s_0 / sqrt(s_0^2 + s_T^2) (y_T - mu) in the
    scaled variables (y = x / alpha, s = sigma / alpha); the numerical solve must agree."""
    g = gaussian(torch.tensor([0.5, -1.0, 2.0]), torch.tensor([0.3, 0.7, 0.05]))
    x_T = torch.randn(6, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 3
    T = torch.tensor(sde.T, dtype=torch.float64)
    y_T, s_T = x_T / sde.alpha(T), sde.sigma(T) / sde.alpha(T)
    expected = g.means[0] + g.stds[0] / torch.sqrt(g.stds[0] ** 2 + s_T**2) * (y_T - g.means[0])
    torch.testing.assert_close(g.solve_flow(x_T, sde), expected, rtol=1e-8, atol=1e-8)


def test_solve_flow_of_a_mixture_lands_on_its_components():
    """The flow of a ring of narrow Gaussians ends within a few stds of a component mean."""
    mixture = ring(8, 1.0, 0.05)
    x_T = VPSDE().prior_sampling((200, 2), generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    x_0 = mixture.solve_flow(x_T, VPSDE())
    nearest = torch.cdist(x_0, mixture.means).min(dim=1).values
    assert nearest.max() < 5 * 0.05
