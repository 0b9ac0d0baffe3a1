"""Tests of scoresde.sde_lib against closed forms, exact chains and forward simulation."""

import math

import numpy as np
import pytest
import scipy.stats
import torch

from scoresde.sde_lib import EDMSDE, SDE, SDES, VESDE, VPSDE, CosineVPSDE, broadcast_to_data, get_sde, subVPSDE
from tests.problems import SDE_CASES, GaussianData, reference_chain, reference_schedule

pytestmark = pytest.mark.usefixtures("single_thread")

# Times covering [0, 1], including both ends and points very close to 0; tests scale them by T.
ALL_TIMES = torch.cat(
    [
        torch.zeros(1, dtype=torch.float64),
        torch.logspace(-8, -1, 15, dtype=torch.float64),
        torch.linspace(0.15, 1.0, 18, dtype=torch.float64),
    ]
)


def _times(n: int, low: float = 0.02, high: float = 1.0) -> torch.Tensor:
    return torch.linspace(low, high, n, dtype=torch.float64)


def _over(sde: SDE, fractions) -> torch.Tensor:
    """Times at the given fractions of [0, T] (float64)."""
    return torch.as_tensor(fractions, dtype=torch.float64) * sde.T


def _known_score(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """A known, non-linear, time-dependent stand-in for a score network."""
    return -x * broadcast_to_data(1.0 + t, x) + 0.3 * torch.sin(x)


# --- closed forms ---------------------------------------------------------------------------


def test_alpha_sigma_drift_and_diffusion_match_the_paper(sde):
    t = _over(sde, ALL_TIMES)
    ref = reference_schedule(sde, t)
    torch.testing.assert_close(sde.alpha(t), ref["alpha"], rtol=1e-12, atol=0)
    torch.testing.assert_close(sde.sigma(t), ref["sigma"], rtol=1e-10, atol=1e-300)
    x = torch.linspace(-3, 3, t.numel(), dtype=torch.float64)[:, None].repeat(1, 2)
    drift, diffusion = sde.sde(x, t)
    torch.testing.assert_close(drift, broadcast_to_data(ref["drift_coeff"], x) * x, rtol=1e-12, atol=1e-300)
    torch.testing.assert_close(diffusion**2, ref["g2"], rtol=1e-10, atol=1e-300)


@pytest.mark.parametrize("shape", [(5, 2), (5, 3, 4, 4)])
def test_alpha_and_sigma_agree_with_marginal_prob(sde, shape, dtype, make_generator):
    x = torch.randn(shape, generator=make_generator(1), dtype=dtype)
    t = _over(sde, [0.0, 1e-4, 0.3, 0.77, 1.0]).to(dtype)
    mean, std = sde.marginal_prob(x, t)
    assert mean.shape == x.shape and std.shape == (5,)
    assert mean.dtype == dtype and std.dtype == dtype
    torch.testing.assert_close(mean, broadcast_to_data(sde.alpha(t), x) * x)
    torch.testing.assert_close(std, sde.sigma(t))
    noise = torch.randn(shape, generator=make_generator(2), dtype=dtype)
    torch.testing.assert_close(sde.perturb(x, t, noise), mean + broadcast_to_data(std, x) * noise)


def test_vp_sigma_squared_is_one_minus_alpha_squared():
    for sde in (VPSDE(), VPSDE(beta_min=0.5, beta_max=8.0)):
        alpha, sigma = sde.alpha(ALL_TIMES), sde.sigma(ALL_TIMES)
        torch.testing.assert_close(sigma**2, 1.0 - alpha**2, rtol=1e-12, atol=1e-15)


def test_subvp_sigma_is_one_minus_alpha_squared_and_below_vp():
    sub, vp = subVPSDE(), VPSDE()
    alpha, sigma = sub.alpha(ALL_TIMES), sub.sigma(ALL_TIMES)
    torch.testing.assert_close(sigma, 1.0 - alpha**2, rtol=1e-12, atol=1e-15)
    torch.testing.assert_close(alpha, vp.alpha(ALL_TIMES), rtol=0, atol=0)
    assert torch.all(sigma <= vp.sigma(ALL_TIMES))


def test_ve_sigma_is_geometric():
    sde = VESDE(sigma_min=0.01, sigma_max=50.0)
    torch.testing.assert_close(
        sde.sigma(torch.tensor([0.0, 0.5, 1.0], dtype=torch.float64)),
        torch.tensor([0.01, math.sqrt(0.01 * 50.0), 50.0], dtype=torch.float64),
    )
    torch.testing.assert_close(sde.alpha(ALL_TIMES), torch.ones_like(ALL_TIMES), rtol=0, atol=0)


def test_log_snr_definition_and_monotonicity(sde):
    t = _over(sde, ALL_TIMES[1:])
    log_snr = sde.log_snr(t)
    ref = reference_schedule(sde, t)
    torch.testing.assert_close(log_snr, torch.log(ref["alpha"] ** 2 / ref["sigma"] ** 2), rtol=1e-10, atol=1e-10)
    assert torch.all(log_snr[1:] < log_snr[:-1])


def test_log_snr_and_t_from_log_snr_are_inverse(sde):
    t = _over(sde, ALL_TIMES)
    torch.testing.assert_close(sde.t_from_log_snr(sde.log_snr(t)), t, rtol=1e-9, atol=1e-12)
    ends = sde.log_snr(_over(sde, [1e-6, 1.0]))
    log_snr = torch.linspace(ends[1], ends[0], 101, dtype=torch.float64)
    torch.testing.assert_close(sde.log_snr(sde.t_from_log_snr(log_snr)), log_snr, rtol=1e-9, atol=1e-9)


def test_drift_is_the_time_derivative_of_log_alpha(sde):
    """f(x, t) = c(t) x with c = d/dt log alpha(t), checked by central differences."""
    t, h = _times(25, high=0.98) * sde.T, 1e-6 * sde.T
    drift, _ = sde.sde(torch.ones(t.numel(), 1, dtype=torch.float64), t)
    dlog_alpha = (torch.log(sde.alpha(t + h)) - torch.log(sde.alpha(t - h))) / (2 * h)
    torch.testing.assert_close(drift[:, 0], dlog_alpha, rtol=1e-6, atol=1e-8)


def test_diffusion_satisfies_the_variance_ode(sde):
    """d/dt sigma^2 = 2 c(t) sigma^2 + g^2, the variance ODE of dx = c x dt + g dw."""
    t, h = _times(25, high=0.98) * sde.T, 1e-6 * sde.T
    drift, diffusion = sde.sde(torch.ones(t.numel(), 1, dtype=torch.float64), t)
    dvar = (sde.sigma(t + h) ** 2 - sde.sigma(t - h) ** 2) / (2 * h)
    rhs = 2 * drift[:, 0] * sde.sigma(t) ** 2 + diffusion**2
    torch.testing.assert_close(dvar, rhs, rtol=1e-6, atol=1e-8)


# --- forward simulation ----------------------------------------------------------------------


def test_marginal_prob_matches_euler_maruyama_simulation(sde, make_generator):
    """20k paths of the forward SDE from a fixed x0 (900 steps of T / 1000, coefficients at mid-step
    times), up to 0.9 T: beyond it the cosine schedule's beta grows to thousands and explicit steps
    of this size are unstable.

    VE follows score_sde's convention: marginal_prob's std sigma(t) is that of the SMLD kernel,
    whose data already carry N(0, sigma_min^2), so the paths start at x0 + sigma_min z.
    """
    n, steps, x0_value = 20000, 1000, 1.5
    generator = make_generator(11)
    x0 = torch.full((n, 1), x0_value, dtype=torch.float64)
    x = x0.clone()
    if isinstance(sde, VESDE):
        x = x + sde.sigma_min * torch.randn(x.shape, generator=generator).double()
    dt = sde.T / steps
    checkpoints = {50: 0.05, 250: 0.25, 500: 0.5, 900: 0.9}
    for k in range(900):
        t_mid = torch.full((n,), (k + 0.5) * dt, dtype=torch.float64)
        drift, diffusion = sde.sde(x, t_mid)
        noise = torch.randn(x.shape, generator=generator).double()
        x = x + drift * dt + broadcast_to_data(diffusion, x) * math.sqrt(dt) * noise
        if k + 1 in checkpoints:
            t = torch.full((n,), checkpoints[k + 1] * sde.T, dtype=torch.float64)
            mean, std = sde.marginal_prob(x0, t)
            exact_mean, exact_var = mean[0, 0].item(), std[0].item() ** 2
            se_mean = math.sqrt(exact_var / n)
            se_var = exact_var * math.sqrt(2.0 / (n - 1))
            assert abs(x.mean().item() - exact_mean) < 5 * se_mean, (k + 1, x.mean().item(), exact_mean)
            assert abs(x.var().item() - exact_var) < 5 * se_var, (k + 1, x.var().item(), exact_var)


# --- prior -----------------------------------------------------------------------------------


def _prior_std(sde: SDE) -> float:
    return sde.sigma_max if isinstance(sde, (VESDE, EDMSDE)) else 1.0


def test_prior_logp_is_the_gaussian_log_density(sde, data_shape, make_generator):
    std = _prior_std(sde)
    z = std * torch.randn((7, *data_shape), generator=make_generator(3), dtype=torch.float64)
    logp = sde.prior_logp(z)
    assert logp.shape == (7,)
    expected = torch.distributions.Normal(0.0, std).log_prob(z).reshape(7, -1).sum(dim=1)
    torch.testing.assert_close(logp, expected)
    scipy_logp = scipy.stats.norm(0.0, std).logpdf(z.numpy()).reshape(7, -1).sum(axis=1)
    np.testing.assert_allclose(logp.numpy(), scipy_logp, rtol=1e-12)


def test_prior_sampling_has_the_prior_std(sde, make_generator):
    n = 16000
    x = sde.prior_sampling((n, 2), generator=make_generator(4), dtype=torch.float64)
    assert x.shape == (n, 2) and x.dtype == torch.float64
    std, count = _prior_std(sde), x.numel()
    assert abs(x.mean().item()) < 5 * std / math.sqrt(count)
    assert abs(x.std().item() / std - 1.0) < 5 / math.sqrt(2 * count)
    # VE's prior is N(0, sigma(T)^2); VP's N(0, 1) is sigma(T) up to alpha(T)^2 = exp(-int beta).
    sigma_end = sde.sigma(torch.tensor([sde.T], dtype=torch.float64)).item()
    assert abs(sigma_end / std - 1.0) < (1e-12 if isinstance(sde, (VESDE, EDMSDE)) else 0.01)


def test_prior_sampling_respects_generator_dtype_and_shape(sde, make_generator):
    first = sde.prior_sampling((3, 3, 4, 4), generator=make_generator(5))
    assert first.shape == (3, 3, 4, 4) and first.dtype == torch.float32
    torch.testing.assert_close(first, sde.prior_sampling((3, 3, 4, 4), generator=make_generator(5)), rtol=0, atol=0)
    assert not torch.equal(first, sde.prior_sampling((3, 3, 4, 4), generator=make_generator(6)))


# --- discrete chains -------------------------------------------------------------------------


def _chain_times(sde: SDE, indices: torch.Tensor) -> torch.Tensor:
    """A time inside the cell of each chain index i (index = floor(t (N - 1) / T))."""
    t = (indices.double() + 0.25) * sde.T / (sde.N - 1)
    return torch.where(indices == sde.N - 1, torch.full_like(t, sde.T), t)


VP_CASES = {
    "vp": VPSDE(),
    "vp_custom": VPSDE(beta_min=0.5, beta_max=8.0, N=250),
    "cosine": CosineVPSDE(),
    "cosine_custom": CosineVPSDE(s=0.02, max_beta=0.99, N=200),
}


def _reference_betas(sde: SDE) -> torch.Tensor:
    """beta_i = 1 - alpha_bar_i / alpha_bar_{i-1} of the reference chain's alpha_bar_i = alpha_i^2."""
    alpha_bar = reference_chain(sde)[0] ** 2
    return 1.0 - alpha_bar / torch.cat([torch.ones(1, dtype=torch.float64), alpha_bar[:-1]])


@pytest.mark.parametrize("sde", VP_CASES.values(), ids=VP_CASES.keys())
def test_vp_discretize_is_the_ddpm_step(sde, data_shape, dtype, make_generator):
    betas = _reference_betas(sde)
    indices = torch.tensor([0, 1, sde.N // 3, sde.N - 2, sde.N - 1])
    t = _chain_times(sde, indices).to(dtype)
    x = torch.randn((5, *data_shape), generator=make_generator(7), dtype=dtype)
    f, G = sde.discretize(x, t)
    beta = betas[indices].to(dtype)
    assert f.shape == x.shape and G.shape == (5,) and f.dtype == dtype and G.dtype == dtype
    # x_{i+1} = x_i + f + G z = sqrt(1 - beta_i) x_i + sqrt(beta_i) z
    torch.testing.assert_close(x + f, broadcast_to_data(torch.sqrt(1 - beta), x) * x)
    torch.testing.assert_close(G, torch.sqrt(beta))


@pytest.mark.parametrize("sde", [VESDE(), VESDE(sigma_min=0.05, sigma_max=5.0, N=300)], ids=["ve", "ve_custom"])
def test_ve_discretize_is_the_smld_step(sde, data_shape, dtype, make_generator):
    i = torch.arange(sde.N)
    sigmas = sde.sigma_min * (sde.sigma_max / sde.sigma_min) ** (i.double() / (sde.N - 1))
    previous = torch.cat([torch.zeros(1, dtype=torch.float64), sigmas[:-1]])
    indices = torch.tensor([0, 1, sde.N // 2, sde.N - 1])
    t = _chain_times(sde, indices).to(dtype)
    x = torch.randn((4, *data_shape), generator=make_generator(8), dtype=dtype)
    f, G = sde.discretize(x, t)
    assert G.dtype == dtype and f.shape == x.shape
    torch.testing.assert_close(f, torch.zeros_like(x), rtol=0, atol=0)
    torch.testing.assert_close(G, torch.sqrt(sigmas[indices] ** 2 - previous[indices] ** 2).to(dtype))


@pytest.mark.parametrize("sde", [subVPSDE(N=400), EDMSDE(N=400)], ids=["subvp", "edm"])
def test_discretize_is_euler_maruyama_with_step_T_over_n_without_a_chain(sde, data_shape, make_generator):
    t = _over(sde, [0.0, 0.2, 0.5, 1.0])
    x = torch.randn((4, *data_shape), generator=make_generator(9), dtype=torch.float64)
    f, G = sde.discretize(x, t)
    drift, diffusion = sde.sde(x, t)
    torch.testing.assert_close(f, drift * sde.T / 400)
    torch.testing.assert_close(G, diffusion * math.sqrt(sde.T / 400))


@pytest.mark.parametrize("sde", VP_CASES.values(), ids=VP_CASES.keys())
def test_vp_discrete_marginals_are_the_products_of_the_chain(sde):
    """Iterate the chain's mean and variance from x_{-1} = x(0) (mean 1, variance 0) through discretize."""
    alphas, sigmas = sde.discrete_marginals()
    assert alphas.shape == sigmas.shape == (sde.N,)
    indices = torch.arange(sde.N)
    one = torch.ones(sde.N, 1, dtype=torch.float64)
    f, G = sde.discretize(one, _chain_times(sde, indices))
    scale = (one + f)[:, 0]  # x_{i+1} = scale_i x_i + G_i z
    mean, var = torch.tensor(1.0, dtype=torch.float64), torch.tensor(0.0, dtype=torch.float64)
    means, variances = [], []
    for i in range(sde.N):
        mean, var = scale[i] * mean, scale[i] ** 2 * var + G[i] ** 2
        means.append(mean)
        variances.append(var)
    torch.testing.assert_close(alphas, torch.stack(means), rtol=1e-10, atol=1e-14)
    torch.testing.assert_close(sigmas**2, torch.stack(variances), rtol=1e-10, atol=1e-14)
    torch.testing.assert_close(alphas, reference_chain(sde)[0], rtol=1e-10, atol=1e-14)
    # The chain is the discretisation of the SDE: its scales are close to alpha(t).
    t = torch.linspace(0, 1, sde.N, dtype=torch.float64)
    assert torch.max(torch.abs(alphas - sde.alpha(t))) < 5.0 / sde.N


def test_ve_discrete_marginals_are_the_sum_of_the_chain_variances():
    sde = VESDE(sigma_min=0.05, sigma_max=5.0, N=300)
    alphas, sigmas = sde.discrete_marginals()
    torch.testing.assert_close(alphas, torch.ones(sde.N, dtype=torch.float64), rtol=0, atol=0)
    torch.testing.assert_close(sigmas[[0, -1]], torch.tensor([0.05, 5.0], dtype=torch.float64))
    _, G = sde.discretize(torch.zeros(sde.N, 1, dtype=torch.float64), _chain_times(sde, torch.arange(sde.N)))
    torch.testing.assert_close(torch.cumsum(G**2, dim=0), sigmas**2)


@pytest.mark.parametrize("sde", [subVPSDE(), EDMSDE()], ids=["subvp", "edm"])
def test_sdes_without_a_chain_have_no_discrete_marginals(sde):
    with pytest.raises(ValueError, match=type(sde).__name__):
        sde.discrete_marginals()


def test_vp_chain_needs_betas_below_one():
    sde = VPSDE(N=10)  # beta_max / N = 2
    with pytest.raises(ValueError, match="beta_max / N"):
        sde.discrete_marginals()
    with pytest.raises(ValueError, match="beta_max / N"):
        sde.discretize(torch.zeros(2, 2), torch.tensor([0.5, 0.5]))


# --- reverse SDE and probability-flow ODE ------------------------------------------------------


@pytest.mark.parametrize("probability_flow", [False, True], ids=["sde", "ode"])
def test_reverse_drift_and_diffusion(sde, data_shape, probability_flow, make_generator):
    weight = 0.5 if probability_flow else 1.0
    x = torch.randn((6, *data_shape), generator=make_generator(12), dtype=torch.float64)
    t = _over(sde, [0.0, 0.01, 0.2, 0.5, 0.9, 1.0])
    reverse = sde.reverse(_known_score, probability_flow=probability_flow)
    assert reverse.T == sde.T and reverse.N == sde.N
    drift, diffusion = reverse.sde(x, t)
    ref = reference_schedule(sde, t)
    f = broadcast_to_data(ref["drift_coeff"], x) * x
    expected = f - broadcast_to_data(ref["g2"], x) * _known_score(x, t) * weight
    torch.testing.assert_close(drift, expected)
    expected_diffusion = torch.zeros(6, dtype=torch.float64) if probability_flow else ref["g2"].sqrt()
    torch.testing.assert_close(diffusion, expected_diffusion, rtol=1e-10, atol=0)
    # discretize: f_i - w G_i^2 score, G_i (0 for the ODE)
    t_chain = _over(sde, [0.0, 0.2, 0.5, 1.0])
    rev_f, rev_G = reverse.discretize(x[:4], t_chain)
    f_i, G_i = sde.discretize(x[:4], t_chain)
    torch.testing.assert_close(rev_f, f_i - broadcast_to_data(G_i**2, f_i) * _known_score(x[:4], t_chain) * weight)
    torch.testing.assert_close(rev_G, torch.zeros_like(G_i) if probability_flow else G_i, rtol=0, atol=0)


def test_probability_flow_of_the_exact_score_generates_the_exact_flow(sde, make_generator):
    """d/dt of x_t = mu_t + sqrt(v_t / v_s)(x_s - mu_s) equals the probability-flow drift."""
    problem = GaussianData(torch.tensor([1.0, -2.0]), 0.7)
    s = 0.3 * sde.T
    x_s = problem.sample_marginal(8, sde, s, make_generator(13))
    ode = sde.reverse(problem.score(sde), probability_flow=True)
    h = 1e-6 * sde.T
    for t in _over(sde, [0.05, 0.3, 0.6, 0.95]).tolist():
        x_t = problem.ode_flow(sde, x_s, s, t)
        velocity = (problem.ode_flow(sde, x_s, s, t + h) - problem.ode_flow(sde, x_s, s, t - h)) / (2 * h)
        drift, diffusion = ode.sde(x_t, torch.full((8,), t, dtype=torch.float64))
        scale = velocity.abs().max().item() + 1.0
        torch.testing.assert_close(drift, velocity, rtol=1e-6, atol=1e-6 * scale)
        assert torch.all(diffusion == 0)


def test_reverse_sde_passes_a_batch_of_times_for_a_scalar_t(make_generator):
    seen = []

    def score_fn(x, t):
        seen.append(t)
        return torch.zeros_like(x)

    x = torch.randn(3, 2, generator=make_generator(14))
    VPSDE().reverse(score_fn).sde(x, 0.5)
    assert seen[0].shape == (3,) and torch.all(seen[0] == 0.5)


# --- any data shape -------------------------------------------------------------------------


def _all_outputs(sde: SDE, x: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> dict[str, torch.Tensor]:
    drift, diffusion = sde.sde(x, t)
    mean, std = sde.marginal_prob(x, t)
    f, G = sde.discretize(x, t)
    rev_drift, rev_diffusion = sde.reverse(_known_score).sde(x, t)
    ode_drift, _ = sde.reverse(_known_score, probability_flow=True).sde(x, t)
    rev_f, rev_G = sde.reverse(_known_score).discretize(x, t)
    return {
        "drift": drift,
        "diffusion": diffusion,
        "mean": mean,
        "std": std,
        "f": f,
        "G": G,
        "perturb": sde.perturb(x, t, noise),
        "prior_logp": sde.prior_logp(x),
        "rev_drift": rev_drift,
        "rev_diffusion": rev_diffusion,
        "ode_drift": ode_drift,
        "rev_f": rev_f,
        "rev_G": rev_G,
    }


def test_every_method_works_per_example_for_any_shape(sde, make_generator):
    """(B, 3, 4, 4) gives the same per-example results as its (B, 48) flattening and as one example
    at a time; (B, 2) works the same way."""
    generator = make_generator(15)
    t = _over(sde, [0.0, 0.1, 0.45, 0.8, 1.0])
    images = torch.randn(5, 3, 4, 4, generator=generator, dtype=torch.float64)
    noise = torch.randn(5, 3, 4, 4, generator=generator, dtype=torch.float64)
    full = _all_outputs(sde, images, t, noise)
    flat = _all_outputs(sde, images.reshape(5, 48), t, noise.reshape(5, 48))
    for key, value in full.items():
        assert value.shape[0] == 5, key
        torch.testing.assert_close(value.reshape(flat[key].shape), flat[key], msg=key)
        if value.ndim > 1:
            assert value.shape == images.shape, key
    for b in range(5):
        single = _all_outputs(sde, images[b : b + 1], t[b : b + 1], noise[b : b + 1])
        for key, value in single.items():
            torch.testing.assert_close(value, full[key][b : b + 1], msg=key)
    points = images.reshape(5, 48)[:, :2].contiguous()
    two_d = _all_outputs(sde, points, t, noise.reshape(5, 48)[:, :2])
    torch.testing.assert_close(two_d["mean"], flat["mean"][:, :2])
    torch.testing.assert_close(two_d["rev_drift"], flat["rev_drift"][:, :2])


@pytest.mark.parametrize("t_scalar", [0.4, torch.tensor(0.4)], ids=["float", "tensor0d"])
def test_scalar_time_equals_a_batch_of_equal_times(sde, t_scalar, make_generator):
    x = torch.randn(4, 2, generator=make_generator(16), dtype=torch.float64)
    t = torch.full((4,), 0.4, dtype=torch.float64)
    torch.testing.assert_close(sde.sde(x, t_scalar)[0], sde.sde(x, t)[0])
    torch.testing.assert_close(sde.marginal_prob(x, t_scalar)[0], sde.marginal_prob(x, t)[0])
    reverse = sde.reverse(_known_score)
    torch.testing.assert_close(reverse.sde(x, t_scalar)[0], reverse.sde(x, t)[0])
    alpha = sde.alpha(t_scalar)
    torch.testing.assert_close(alpha, sde.alpha(t)[0].to(alpha.dtype))


def test_python_float_time_keeps_the_precision_of_float64_data(sde):
    """A float t with float64 data must mean that float, not its float32 rounding."""
    x = torch.ones(1, 2, dtype=torch.float64)
    t64 = torch.tensor([0.1], dtype=torch.float64)
    torch.testing.assert_close(sde.marginal_prob(x, 0.1)[1], sde.sigma(t64)[0], rtol=1e-13, atol=0)
    torch.testing.assert_close(sde.sde(x, 0.1)[1], sde.sde(x, t64)[1][0], rtol=1e-13, atol=0)


def test_dtype_is_preserved(sde, dtype, make_generator):
    x = torch.randn(3, 3, 4, 4, generator=make_generator(17), dtype=dtype)
    t = torch.tensor([0.1, 0.5, 1.0], dtype=torch.float64)
    for key, value in _all_outputs(sde, x, t, torch.randn_like(x)).items():
        assert value.dtype == dtype, key


# --- validation -----------------------------------------------------------------------------

BAD_PARAMETERS = [
    (VPSDE, {"beta_min": 1.0, "beta_max": 1.0}, "beta_max"),
    (VPSDE, {"beta_min": 5.0, "beta_max": 1.0}, "beta_max"),
    (VPSDE, {"beta_min": 0.0}, "beta_min"),
    (VPSDE, {"beta_min": -0.1}, "beta_min"),
    (VPSDE, {"beta_min": float("nan")}, "beta_min"),
    (subVPSDE, {"beta_min": 2.0, "beta_max": 2.0}, "beta_max"),
    (subVPSDE, {"beta_min": 0.0}, "beta_min"),
    (VESDE, {"sigma_min": 0.0}, "sigma_min"),
    (VESDE, {"sigma_min": -1.0}, "sigma_min"),
    (VESDE, {"sigma_min": 1.0, "sigma_max": 1.0}, "sigma_max"),
    (VESDE, {"sigma_min": 1.0, "sigma_max": 0.5}, "sigma_max"),
    (VPSDE, {"N": 0}, r"\bN\b"),
    (subVPSDE, {"N": -3}, r"\bN\b"),
    (VESDE, {"N": 2.5}, r"\bN\b"),
    (VESDE, {"N": True}, r"\bN\b"),
    (CosineVPSDE, {"s": -0.1}, r"\bs\b"),
    (CosineVPSDE, {"s": float("nan")}, r"\bs\b"),
    (CosineVPSDE, {"max_beta": 0.0}, "max_beta"),
    (CosineVPSDE, {"max_beta": 1.0}, "max_beta"),
    (CosineVPSDE, {"N": 0}, r"\bN\b"),
    (EDMSDE, {"sigma_max": 0.0}, "sigma_max"),
    (EDMSDE, {"sigma_max": float("inf")}, "sigma_max"),
]


@pytest.mark.parametrize("cls, kwargs, name", BAD_PARAMETERS)
def test_bad_parameters_raise_naming_the_parameter(cls, kwargs, name):
    with pytest.raises(ValueError, match=name):
        cls(**kwargs)


METHODS_TAKING_T = {
    "sde": lambda sde, x, t: sde.sde(x, t),
    "marginal_prob": lambda sde, x, t: sde.marginal_prob(x, t),
    "perturb": lambda sde, x, t: sde.perturb(x, t, torch.zeros_like(x)),
    "discretize": lambda sde, x, t: sde.discretize(x, t),
    "alpha": lambda sde, x, t: sde.alpha(t),
    "sigma": lambda sde, x, t: sde.sigma(t),
    "log_snr": lambda sde, x, t: sde.log_snr(t),
    "reverse.sde": lambda sde, x, t: sde.reverse(_known_score).sde(x, t),
    "reverse.discretize": lambda sde, x, t: sde.reverse(_known_score).discretize(x, t),
}


@pytest.mark.parametrize("method", sorted(METHODS_TAKING_T))
@pytest.mark.parametrize(
    "bad_t",
    [-0.1, 1.0 + 1e-6, float("nan"), [0.5, 1.5], [-1e-9, 0.5]],
    ids=["negative", "above_T", "nan", "batch_above", "batch_negative"],
)
def test_time_outside_zero_to_T_raises(default_sde, method, bad_t):
    x = torch.zeros(2 if isinstance(bad_t, list) else 3, 2)
    t = torch.tensor(bad_t) if isinstance(bad_t, list) else bad_t
    with pytest.raises(ValueError, match=r"\bt\b"):
        METHODS_TAKING_T[method](default_sde, x, t)


def test_time_with_two_dimensions_raises(default_sde):
    with pytest.raises(ValueError, match=r"\bt\b"):
        default_sde.marginal_prob(torch.zeros(3, 2), torch.full((3, 1), 0.5))


def test_ends_of_the_time_range_are_accepted(default_sde):
    x = torch.ones(2, 2, dtype=torch.float64)
    mean, std = default_sde.marginal_prob(x, torch.tensor([0.0, default_sde.T], dtype=torch.float64))
    assert torch.all(torch.isfinite(mean)) and torch.all(torch.isfinite(std))
    torch.testing.assert_close(mean[0], x[0])


def test_get_sde_builds_by_name_and_rejects_unknown_names():
    assert type(get_sde("vpsde")) is VPSDE
    assert type(get_sde("subVPSDE")) is subVPSDE
    ve = get_sde("vesde", sigma_min=0.1, sigma_max=3.0, N=20)
    assert type(ve) is VESDE and (ve.sigma_min, ve.sigma_max, ve.N) == (0.1, 3.0, 20)
    assert type(get_sde("cosine_vp_sde", s=0.01)) is CosineVPSDE
    edm = get_sde("EDM-SDE", sigma_max=20.0)
    assert type(edm) is EDMSDE and edm.T == 20.0
    with pytest.raises(ValueError, match="vpsde.*subvpsde.*vesde.*cosinevpsde.*edmsde"):
        get_sde("ddim")


def test_cases_cover_every_registered_sde():
    assert {type(build()) for build in SDE_CASES.values()} == set(SDES.values())


def test_edm_time_is_the_noise_level_up_to_sigma_max():
    sde = EDMSDE(sigma_max=80.0)
    t = torch.tensor([0.002, 1.0, 80.0], dtype=torch.float64)
    torch.testing.assert_close(sde.sigma(t), t, rtol=0, atol=0)
    with pytest.raises(ValueError, match=r"\bt\b"):
        sde.sigma(torch.tensor([80.001]))


def test_cosine_beta_is_continuous_at_the_clip_and_bounded_by_the_chain():
    """The rate reaches -N log(1 - max_beta) at t_clip and stays there; alpha stays continuous."""
    sde = CosineVPSDE()
    t = torch.tensor([sde.t_clip - 1e-9, sde.t_clip + 1e-9], dtype=torch.float64)
    bound = -sde.N * math.log(1.0 - sde.max_beta)
    torch.testing.assert_close(sde.beta(t), torch.full((2,), bound, dtype=torch.float64), rtol=1e-4, atol=0)
    torch.testing.assert_close(sde.alpha(t[0]), sde.alpha(t[1]), rtol=1e-5, atol=0)
    assert sde.discrete_betas.max().item() == sde.max_beta  # only the last chain step is clipped
    assert (sde.discrete_betas == sde.max_beta).sum().item() == 1
    # The point of the schedule: little time spent in near-pure noise (alpha^2 < 0.01), unlike linear VP.
    nearly_noise = torch.tensor(math.log(0.01 / 0.99), dtype=torch.float64)
    assert sde.t_from_log_snr(nearly_noise).item() > 0.9 and VPSDE().t_from_log_snr(nearly_noise).item() < 0.7
