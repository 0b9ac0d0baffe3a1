"""Tests of scoresde.losses: hand-computed values, and the exact score of Gaussian data as minimiser.

For Gaussian data the score is exact at every t, so the expected excess loss of a perturbed score is
known in closed form given t: lambda(t) delta^2 for score + delta, and 0.01 lambda(t) / v(t) for
1.1 * score (E[score^2] = 1 / v per coordinate). The tests pair the exact and perturbed losses on the
same t, x(0) and noise (same generator seed) and compare their difference with that excess.
"""

import math

import pytest
import scipy.stats
import torch

from scoresde.losses import WEIGHTINGS, ddpm_loss, dsm_loss, smld_loss
from scoresde.sde_lib import EDMSDE, VESDE, VPSDE, CosineVPSDE, broadcast_to_data, subVPSDE
from tests.problems import GaussianData, reference_chain, reference_schedule

pytestmark = pytest.mark.usefixtures("single_thread")

PROBLEM = GaussianData(torch.tensor([0.5, -1.0]), 0.8)
N_SAMPLES = 16000
CHAIN_SDES = [
    VPSDE(),
    VPSDE(beta_min=0.5, beta_max=8.0, N=250),
    VESDE(),
    VESDE(sigma_min=0.05, sigma_max=5.0, N=300),
    CosineVPSDE(N=300),
]
CHAIN_IDS = ["vp", "vp_custom", "ve", "ve_custom", "cosine"]


def _known_score(x, t):
    return -x * broadcast_to_data(1.0 + t, x) + 0.3 * torch.sin(x)


def _weight(sde, weighting, t):
    """lambda(t) of each weighting, from the reference schedule (sigma_data = 0.5 for "edm")."""
    ref = reference_schedule(sde, t)
    if weighting == "edm":  # Karras et al. 2022: lambda(s) = (s^2 + sd^2) / (s sd)^2 on || D - x0 ||^2, s = sigma / alpha
        s = ref["sigma"] / ref["alpha"]
        return (s**2 + 0.25) / (s**2 * 0.25) * ref["sigma"] ** 4 / ref["alpha"] ** 2
    return ref["sigma"] ** 2 if weighting == "sigma2" else ref["g2"]


def _perturb(fn, perturbation):
    if perturbation == "shift":
        return lambda x, label: fn(x, label) + 0.1
    return lambda x, label: 1.1 * fn(x, label)


def _recording(fn, record):
    def wrapped(x, label):
        record.append(label)
        return fn(x, label)

    return wrapped


def _assert_gap_matches(diff, expected):
    """The paired difference has the expected mean (5 standard errors), which is resolved (> 10 SE)."""
    se = (diff - expected).std().item() / math.sqrt(diff.numel())
    assert diff.mean().item() > 0
    assert abs(diff.mean().item() - expected.mean().item()) < 5 * se, (diff.mean().item(), expected.mean().item(), se)
    assert expected.mean().item() > 10 * se


# --- DSM: exact values --------------------------------------------------------------------------


@pytest.mark.parametrize("weighting", [*WEIGHTINGS, "callable"])
def test_dsm_with_fixed_t_and_noise_equals_the_formula(sde, data_shape, weighting, make_generator):
    generator = make_generator(0)
    x0 = torch.randn((5, *data_shape), generator=generator, dtype=torch.float64)
    noise = torch.randn((5, *data_shape), generator=generator, dtype=torch.float64)
    t = torch.tensor([1e-5, 0.1, 0.4, 0.75, 1.0], dtype=torch.float64)
    ref = reference_schedule(sde, t)
    alpha, sigma = (broadcast_to_data(ref[k], x0) for k in ("alpha", "sigma"))
    score = _known_score(alpha * x0 + sigma * noise, t)
    per_element = (score + noise / sigma) ** 2
    if weighting == "sigma2":
        expected = (sigma * score + noise).pow(2).reshape(5, -1).mean(dim=1)
    elif weighting == "edm":
        expected = _weight(sde, "edm", t) * per_element.reshape(5, -1).mean(dim=1)
    elif weighting == "likelihood":
        expected = ref["g2"] * per_element.reshape(5, -1).mean(dim=1)
    else:
        expected = (1.0 + t**2) * per_element.reshape(5, -1).mean(dim=1)
    weight_arg = (lambda s: 1.0 + s**2) if weighting == "callable" else weighting
    loss = dsm_loss(_known_score, sde, x0, weighting=weight_arg, t=t, noise=noise)
    assert loss.shape == (5,) and loss.dtype == torch.float64
    torch.testing.assert_close(loss, expected, rtol=1e-10, atol=1e-12)


def test_dsm_draws_t_uniformly_from_eps_to_T(default_sde, make_generator):
    times = []
    x0 = torch.zeros(4000, 2)
    dsm_loss(_recording(_known_score, times), default_sde, x0, eps=0.05, generator=make_generator(1))
    t = times[0].double()
    assert t.shape == (4000,) and t.min() >= 0.05 and t.max() <= default_sde.T
    assert scipy.stats.kstest(t.numpy(), scipy.stats.uniform(0.05, default_sde.T - 0.05).cdf).pvalue > 1e-3


@pytest.mark.parametrize("sde", [EDMSDE(), VPSDE(), CosineVPSDE()], ids=["edm", "vp", "cosine"])
def test_log_normal_times_have_log_normal_noise_to_signal_ratios(sde, make_generator):
    """EDM's training distribution: log(sigma / alpha) ~ N(p_mean, p_std^2), for any SDE."""
    times = []
    dsm_loss(
        _recording(_known_score, times),
        sde,
        torch.zeros(4000, 2),
        eps=1e-3,
        generator=make_generator(1),
        time_distribution="log_normal",
        p_mean=-1.0,
        p_std=1.1,
    )
    t = times[0].double()
    assert t.min() >= 1e-3 and t.max() <= sde.T
    ref = reference_schedule(sde, t)
    log_ratio = torch.log(ref["sigma"] / ref["alpha"]).numpy()
    assert scipy.stats.kstest(log_ratio, scipy.stats.norm(-1.0, 1.1).cdf).pvalue > 1e-3
    assert scipy.stats.kstest(log_ratio, scipy.stats.norm(-1.2, 1.1).cdf).pvalue < 1e-3  # the test can tell


@pytest.mark.parametrize(
    "options, match",
    [
        ({"time_distribution": "lognormal"}, "uniform.*log_normal"),
        ({"time_distribution": "log_normal", "p_std": 0.0}, "p_std"),
        ({"weighting": "edm", "sigma_data": 0.0}, "sigma_data"),
    ],
)
def test_bad_time_distribution_options_raise(options, match):
    with pytest.raises(ValueError, match=match):
        dsm_loss(_known_score, EDMSDE(), torch.zeros(3, 2), **options)


def test_dsm_is_reproducible_with_a_generator(default_sde, dtype, make_generator):
    x0 = PROBLEM.sample_data(64, make_generator(2), dtype)
    first = dsm_loss(_known_score, default_sde, x0, generator=make_generator(3))
    assert first.dtype == dtype and first.shape == (64,)
    again = dsm_loss(_known_score, default_sde, x0, generator=make_generator(3))
    torch.testing.assert_close(first, again, rtol=0, atol=0)
    assert not torch.equal(first, dsm_loss(_known_score, default_sde, x0, generator=make_generator(4)))


# --- DSM: the exact score is the minimiser ------------------------------------------------------


@pytest.mark.parametrize("perturbation", ["shift", "scale"])
@pytest.mark.parametrize("weighting", WEIGHTINGS)
def test_dsm_is_lowest_at_the_exact_score(default_sde, weighting, perturbation, make_generator):
    x0 = PROBLEM.sample_data(N_SAMPLES, make_generator(5))
    exact = PROBLEM.score(default_sde)
    times = []
    options = {"weighting": weighting}
    loss_exact = dsm_loss(_recording(exact, times), default_sde, x0, generator=make_generator(6), **options)
    loss_perturbed = dsm_loss(_perturb(exact, perturbation), default_sde, x0, generator=make_generator(6), **options)
    t = times[0]
    ref = reference_schedule(default_sde, t)
    weight = _weight(default_sde, weighting, t)
    if perturbation == "shift":
        expected = 0.01 * weight
    else:
        expected = 0.01 * weight / PROBLEM.var_at(ref["alpha"], ref["sigma"])
    _assert_gap_matches(loss_perturbed - loss_exact, expected)


@pytest.mark.parametrize("weighting", WEIGHTINGS)
def test_dsm_gradient_vanishes_in_expectation_at_the_exact_score(default_sde, weighting, make_generator):
    """score = exact + theta: d loss / d theta = 2 lambda (exact + theta + z / sigma) / D per coordinate.

    Each example has its own theta, so theta.grad holds independent per-example gradients.
    """
    x0 = PROBLEM.sample_data(N_SAMPLES, make_generator(7))
    exact = PROBLEM.score(default_sde)
    dims = x0[0].numel()
    for offset in (0.0, 0.3):
        theta = torch.full_like(x0, offset, requires_grad=True)
        times = []
        loss = dsm_loss(
            _recording(lambda x, t: exact(x, t) + theta, times), default_sde, x0, weighting=weighting, generator=make_generator(8)
        )
        loss.sum().backward()
        grad = theta.grad.detach()
        expected = 2.0 * offset * _weight(default_sde, weighting, times[0]) / dims
        expected = broadcast_to_data(expected, grad).expand_as(grad)
        se = (grad - expected).std().item() / math.sqrt(grad.numel())
        assert abs(grad.mean().item() - expected.mean().item()) < 5 * se, (offset, grad.mean().item(), se)
        if offset:
            assert grad.mean().item() > 10 * se


# --- discrete losses ------------------------------------------------------------------------------


@pytest.mark.parametrize("sde", CHAIN_SDES, ids=CHAIN_IDS)
def test_ddpm_and_smld_losses_equal_their_formulas(sde, make_generator):
    """Recover the level i and the noise z = (x_i - alpha_i x0) / sigma_i from what the network sees."""
    alphas, sigmas = reference_chain(sde)
    x0 = PROBLEM.sample_data(2000, make_generator(9))
    for loss_fn in (ddpm_loss, smld_loss):
        seen = []

        def net(x, i):
            seen.append((x, i))
            return 0.5 * x + 0.1

        loss = loss_fn(net, sde, x0, generator=make_generator(10))
        x_i, i = seen[0]
        assert i.dtype == torch.long and i.shape == (2000,)
        assert i.min() >= 0 and i.max() <= sde.N - 1
        assert abs(i.double().mean().item() - (sde.N - 1) / 2) < 5 * sde.N / math.sqrt(12 * 2000)
        alpha, sigma = broadcast_to_data(alphas[i], x0), broadcast_to_data(sigmas[i], x0)
        z = (x_i - alpha * x0) / sigma
        if loss_fn is ddpm_loss:
            expected = (net(x_i, i) - z).pow(2).mean(dim=1)
        else:
            expected = (sigma * net(x_i, i) + z).pow(2).mean(dim=1)
        torch.testing.assert_close(loss, expected, rtol=1e-8, atol=1e-10)
        assert abs(z.mean().item()) < 5 / math.sqrt(z.numel())
        assert abs(z.std().item() - 1) < 5 / math.sqrt(2 * z.numel())


# Each discrete objective with its exact predictor at level (alpha, sigma) and the loss gap that a
# shift of the prediction by 0.1 must cost (a scale by 1.1 costs 0.01 sigma^2 / v for both).
DISCRETE_OBJECTIVES = {
    "ddpm": (ddpm_loss, PROBLEM.noise_prediction_at, lambda sigma: torch.full_like(sigma, 0.01)),
    "smld": (smld_loss, PROBLEM.score_at, lambda sigma: 0.01 * sigma**2),
}


@pytest.mark.parametrize("objective", DISCRETE_OBJECTIVES)
@pytest.mark.parametrize("perturbation", ["shift", "scale"])
@pytest.mark.parametrize("sde", CHAIN_SDES, ids=CHAIN_IDS)
def test_discrete_loss_is_lowest_at_the_exact_predictor(sde, perturbation, objective, make_generator):
    """DDPM at the exact noise predictor, SMLD at the exact level score; the excess loss of a
    perturbed predictor equals its closed form."""
    loss_fn, exact_at, shift_gap = DISCRETE_OBJECTIVES[objective]
    alphas, sigmas = reference_chain(sde)
    x0 = PROBLEM.sample_data(N_SAMPLES, make_generator(11))

    def exact(x, i):
        return exact_at(x, alphas[i], sigmas[i])

    levels = []
    loss_exact = loss_fn(_recording(exact, levels), sde, x0, generator=make_generator(12))
    loss_perturbed = loss_fn(_perturb(exact, perturbation), sde, x0, generator=make_generator(12))
    alpha, sigma = alphas[levels[0]], sigmas[levels[0]]
    if perturbation == "shift":
        expected = shift_gap(sigma)
    else:
        expected = 0.01 * sigma**2 / PROBLEM.var_at(alpha, sigma)
    _assert_gap_matches(loss_perturbed - loss_exact, expected)


@pytest.mark.parametrize("loss_fn", [ddpm_loss, smld_loss])
def test_discrete_losses_reject_subvp(loss_fn):
    with pytest.raises(ValueError, match="subVPSDE"):
        loss_fn(lambda x, i: x, subVPSDE(), torch.zeros(4, 2))


# --- reductions and validation ---------------------------------------------------------------------


def test_sum_reduction_is_mean_times_the_number_of_dimensions(default_sde, data_shape, make_generator):
    x0 = torch.randn((6, *data_shape), generator=make_generator(15), dtype=torch.float64)
    dims = math.prod(data_shape)
    for weighting in WEIGHTINGS:
        options = {"weighting": weighting}
        mean = dsm_loss(_known_score, default_sde, x0, generator=make_generator(16), **options)
        total = dsm_loss(_known_score, default_sde, x0, reduce="sum", generator=make_generator(16), **options)
        torch.testing.assert_close(total, dims * mean)
    chain = VESDE() if isinstance(default_sde, VESDE) else VPSDE()
    for loss_fn in (ddpm_loss, smld_loss):
        mean = loss_fn(lambda x, i: 0.5 * x, chain, x0, generator=make_generator(17))
        total = loss_fn(lambda x, i: 0.5 * x, chain, x0, reduce="sum", generator=make_generator(17))
        torch.testing.assert_close(total, dims * mean)


@pytest.mark.parametrize("weighting", ["sigma", "Likelihood", "", None])
def test_unknown_weighting_raises_listing_the_valid_ones(default_sde, weighting):
    with pytest.raises(ValueError, match="sigma2.*likelihood"):
        dsm_loss(_known_score, default_sde, torch.zeros(3, 2), weighting=weighting)


@pytest.mark.parametrize("loss_fn", [dsm_loss, ddpm_loss, smld_loss])
@pytest.mark.parametrize("reduce", ["max", "none", "MEAN"])
def test_unknown_reduction_raises_listing_the_valid_ones(loss_fn, reduce):
    score = _known_score if loss_fn is dsm_loss else (lambda x, i: x)
    with pytest.raises(ValueError, match="mean.*sum"):
        loss_fn(score, VPSDE(), torch.zeros(3, 2), reduce=reduce)


@pytest.mark.parametrize("eps", [0.0, -1e-3, 1.0, 1.5, float("nan")])
def test_eps_outside_zero_to_T_raises(default_sde, eps):
    with pytest.raises(ValueError, match="eps"):
        dsm_loss(_known_score, default_sde, torch.zeros(3, 2), eps=eps)
