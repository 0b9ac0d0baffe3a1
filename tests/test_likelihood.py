"""Likelihoods against exact Gaussian-mixture densities, for VP, sub-VP and VE.

`scoresde.oracle.GaussianMixture` gives log p_t exactly at every t. The ODE likelihood estimates
log p_eps(x) = log p_T(x(T)) + int div F; with the exact p_T (the `prior_logp` argument) the only
error left is the solver's, so it is compared with the truth to 1e-3 nats, and its scaling with the
tolerance is checked. With the default prior N(0, I) (or N(0, sigma_max^2 I)) the difference is the
known p_T-vs-prior mismatch, which is measured separately.
"""

import math

import pytest
import torch

from scoresde import likelihood
from scoresde.oracle import GaussianMixture
from scoresde.sde_lib import VESDE, VPSDE, subVPSDE

SDES = {"vp": VPSDE, "subvp": subVPSDE, "ve": VESDE}
EPS = 1e-5


def mixture(dim, seed=1):
    g = torch.Generator().manual_seed(seed)
    return GaussianMixture(
        torch.tensor([0.5, 0.3, 0.2]), 2 * torch.randn(3, dim, generator=g), 0.3 + 0.5 * torch.rand(3, dim, generator=g)
    )


def data(mix, n, seed=2):
    return mix.sample(n, generator=torch.Generator().manual_seed(seed)).double()


def true_logp(mix, sde, x, t):
    return mix.log_prob(x, sde, torch.full((x.shape[0],), t, dtype=x.dtype))


def exact_prior(mix, sde):
    return lambda z: true_logp(mix, sde, z, sde.T)


@pytest.mark.parametrize("dim", [2, 10])
@pytest.mark.parametrize("name", sorted(SDES))
def test_exact_divergence_matches_the_true_log_density(name, dim):
    sde, mix = SDES[name](), mixture(dim)
    x = data(mix, 4)
    logp, info = likelihood.log_likelihood(sde, mix.score_fn(sde), x, rtol=1e-6, atol=1e-6, prior_logp=exact_prior(mix, sde))
    assert info["exact_divergence"] and logp.shape == (4,)
    assert (logp - true_logp(mix, sde, x, EPS)).abs().max() < 1e-3
    # With the default prior the difference is exactly the prior's mismatch with the true p_T.
    default, _ = likelihood.log_likelihood(sde, mix.score_fn(sde), x, rtol=1e-6, atol=1e-6)
    mismatch = sde.prior_logp(info["latent"]) - exact_prior(mix, sde)(info["latent"])
    torch.testing.assert_close(default - logp, mismatch, atol=1e-6, rtol=0)


def test_error_scales_with_the_tolerance():
    sde, mix = VPSDE(), mixture(2)
    x = data(mix, 8)
    errors, nfes = [], []
    for tol in (1e-3, 1e-5, 1e-7):
        logp, info = likelihood.log_likelihood(sde, mix.score_fn(sde), x, rtol=tol, atol=tol, prior_logp=exact_prior(mix, sde))
        errors.append(float((logp - true_logp(mix, sde, x, EPS)).abs().max()))
        nfes.append(info["nfe"])
    assert errors[0] > 10 * errors[1] > 100 * errors[2] and errors[2] < 1e-6
    assert nfes[0] < nfes[1] < nfes[2]


@pytest.mark.parametrize("name", sorted(SDES))
def test_hutchinson_is_unbiased_within_its_standard_error(name):
    """z = (estimate - truth) / stderr over 40 examples and 10 probes: mean ~ 0, RMS ~ 1."""
    sde, mix = SDES[name](), mixture(10)
    x = data(mix, 40)
    truth = true_logp(mix, sde, x, EPS)
    for probe in likelihood.PROBES:
        logp, info = likelihood.log_likelihood(
            sde,
            mix.score_fn(sde),
            x,
            exact_divergence=False,
            n_probes=10,
            probe=probe,
            rtol=1e-4,
            atol=1e-4,
            generator=torch.Generator().manual_seed(3),
            prior_logp=exact_prior(mix, sde),
        )
        z = (logp - truth) / info["stderr"]
        assert info["probe_estimates"].shape == (40, 10) and (info["stderr"] > 0).all()
        assert abs(float(z.mean())) < 4 / math.sqrt(40) and 0.6 < float(z.pow(2).mean().sqrt()) < 1.5
        assert float(z.abs().max()) < 5


def test_each_example_is_independent_of_the_batch():
    sde, mix = VESDE(), mixture(3)
    x = data(mix, 12)
    together, info = likelihood.log_likelihood(sde, mix.score_fn(sde), x)
    alone = torch.cat([likelihood.log_likelihood(sde, mix.score_fn(sde), x[i : i + 1])[0] for i in (0, 5)])
    shuffled, _ = likelihood.log_likelihood(sde, mix.score_fn(sde), x.flip(0))
    torch.testing.assert_close(alone, together[[0, 5]], rtol=0, atol=1e-12)
    torch.testing.assert_close(shuffled.flip(0), together, rtol=0, atol=1e-12)
    assert info["nfe_per_sample"].min() < info["nfe_per_sample"].max()  # each took its own steps


@pytest.mark.parametrize("method", ["torchdiffeq", "scipy", "rk4"])
def test_other_solvers_agree(method):
    sde, mix = VPSDE(), mixture(2)
    x = data(mix, 6)
    logp, info = likelihood.log_likelihood(
        sde, mix.score_fn(sde), x, method=method, steps=200, rtol=1e-6, atol=1e-6, prior_logp=exact_prior(mix, sde)
    )
    assert (logp - true_logp(mix, sde, x, EPS)).abs().max() < 1e-3
    assert info["nfe"] == (800 if method == "rk4" else info["nfe"]) and info["nfe"] > 0


@pytest.mark.parametrize("name", sorted(SDES))
def test_encode_then_decode_returns_the_input(name):
    sde, mix = SDES[name](), mixture(4)
    x = data(mix, 16)
    z, enc = likelihood.encode(sde, mix.score_fn(sde), x, rtol=1e-7, atol=1e-7)
    back, dec = likelihood.decode(sde, mix.score_fn(sde), z, rtol=1e-7, atol=1e-7)
    assert enc["nfe"] > 0 and dec["nfe"] > 0
    assert (back - x).abs().max() < 1e-4
    # The latent is the exact flow map: its density under the true p_T follows the likelihood.
    _, info = likelihood.log_likelihood(sde, mix.score_fn(sde), x, rtol=1e-7, atol=1e-7)
    torch.testing.assert_close(info["latent"], z, atol=1e-4, rtol=0)


def test_bits_per_dim_matches_the_known_offsets():
    logp, dim = torch.tensor([-1000.0, 0.0]), 3072
    # 8-bit data on [0, 1]: score_sde's -logp / (D ln 2) + 8; centred on [-1, 1]: + 7.
    torch.testing.assert_close(likelihood.bits_per_dim(logp, dim, 256, centered=False), -logp / (dim * math.log(2)) + 8)
    torch.testing.assert_close(likelihood.bits_per_dim(logp, dim, 256, centered=True), -logp / (dim * math.log(2)) + 7)
    # 17 levels (the digits), 1 dimension, density 1 on [0, 1): every level has probability 1/17.
    assert float(likelihood.bits_per_dim(torch.tensor(0.0), 1, 17, centered=False)) == pytest.approx(math.log2(17))


def test_dequantized_gaussian_gives_the_discrete_probability():
    """A wide Gaussian density on 4-level data: the bound's bits match -log2 P(k), P by integration."""
    mean, std = 0.1, 0.8
    k = torch.tensor([[0.0], [1.0], [2.0], [3.0]])
    x = likelihood.dequantize(
        k.expand(4, 4000).reshape(-1, 1), 4, centered=True, generator=torch.Generator().manual_seed(0), dtype=torch.float64
    )
    logp = torch.distributions.Normal(mean, std).log_prob(x).sum(dim=1)
    bound = likelihood.bits_per_dim(logp, 1, 4, centered=True).reshape(4, 4000).mean(dim=1)
    edges = torch.linspace(-1, 1, 5, dtype=torch.float64)
    cdf = torch.distributions.Normal(mean, std).cdf(edges)
    exact = -torch.log2(cdf[1:] - cdf[:-1])
    assert ((bound - exact) >= -0.01).all() and ((bound - exact) < 0.05).all()  # an upper bound, nearly tight
    with pytest.raises(ValueError, match="levels"):
        likelihood.dequantize(torch.tensor([4]), 4, centered=False)


def test_importance_weighted_bound_tightens_towards_the_discrete_probability():
    """A narrow Gaussian on 4 levels (a loose Jensen bound): K draws per example tighten the bound
    monotonically in K (in expectation) and K = 256 comes within 0.01 bits of -log2 P(k)."""
    mean, std, repeats = 0.1, 0.15, 400
    normal = torch.distributions.Normal(mean, std)
    cdf = normal.cdf(torch.linspace(-1, 1, 5, dtype=torch.float64))
    exact = -torch.log2(cdf[1:] - cdf[:-1])[1:3]  # the two levels near the mean, probabilities ~0.5
    k = torch.tensor([1.0, 2.0]).repeat_interleave(repeats)
    gaps = []
    for n_draws in (1, 4, 16, 256):
        x = likelihood.dequantize(
            k.expand(n_draws, -1), 4, centered=True, dtype=torch.float64, generator=torch.Generator().manual_seed(n_draws)
        )
        logp = likelihood.importance_weighted_logp(normal.log_prob(x))
        bound = likelihood.bits_per_dim(logp, 1, 4, centered=True).reshape(2, repeats).mean(dim=1)
        gaps.append(float((bound - exact).max()))
    assert gaps[0] > 0.05 and all(a > b for a, b in zip(gaps, gaps[1:])), gaps
    assert -0.005 < gaps[-1] < 0.01, gaps
    with pytest.raises(ValueError, match="K >= 1"):
        likelihood.importance_weighted_logp(torch.zeros(0, 3))


def test_a_data_set_is_evaluated_in_batches_as_one_batch():
    """evaluate_dataset (the likelihood mode's numerics): batch by batch, the per-sample solver
    gives each example what one call on all of them gives, and that is the true log density."""
    sde, mix = VPSDE(), mixture(2)
    x = data(mix, 10).float()
    options = dict(rtol=1e-5, atol=1e-5, eps=EPS)
    done = []
    values = likelihood.evaluate_dataset(sde, mix.score_fn(sde), x, batch_size=3, callback=done.append, **options)
    assert done == [3, 3, 3, 1] and set(values) == {"logp", "stderr", "nfe"}
    whole, info = likelihood.log_likelihood(sde, mix.score_fn(sde), x, **options)
    torch.testing.assert_close(torch.as_tensor(values["logp"]), whole.double(), rtol=0, atol=1e-5)
    assert (torch.as_tensor(values["logp"]) - true_logp(mix, sde, x.double(), EPS)).abs().max() < 0.05  # float32, default prior
    assert (values["nfe"] == info["nfe_per_sample"].numpy()).all()
    with pytest.raises(ValueError, match="n_dequantize"):
        likelihood.evaluate_dataset(sde, mix.score_fn(sde), x, n_dequantize=2, **options)


def test_dequantized_images_average_their_draws_and_bound_them_tighter():
    """Images of 4 levels, 3 dequantization draws: bpd is the bits of the mean log-likelihood (bits
    are affine in it), the importance-weighted bound is below it (Jensen), and the draws are a
    function of the seed."""
    sde, mix = VPSDE(), mixture(4)
    images = torch.randint(0, 4, (6, 1, 2, 2), generator=torch.Generator().manual_seed(0)).float() / 3
    score = lambda x, t: mix.score_fn(sde)(x.reshape(x.shape[0], -1), t).reshape(x.shape)  # noqa: E731
    run = lambda seed: likelihood.evaluate_dataset(  # noqa: E731
        sde, score, images, levels=4, centered=True, n_dequantize=3, batch_size=4, seed=seed, rtol=1e-4, atol=1e-4
    )
    values = run(0)
    bits = likelihood.bits_per_dim(torch.as_tensor(values["logp"]), 4, 4, centered=True)
    torch.testing.assert_close(torch.as_tensor(values["bpd"]), bits, rtol=0, atol=1e-5)
    assert (values["bpd_iw"] <= values["bpd"] + 1e-9).all() and (values["bpd_iw"] < values["bpd"]).any()
    assert (run(0)["logp"] == values["logp"]).all() and (run(1)["logp"] != values["logp"]).all()


def test_bad_arguments_are_named():
    sde, mix = VPSDE(), mixture(2)
    x = data(mix, 2)
    for kwargs, message in [
        ({"method": "rk45"}, "unknown method"),
        ({"probe": "uniform", "exact_divergence": False}, "unknown probe"),
        ({"eps": 2.0}, "eps must lie"),
        ({"rtol": 0.0}, "rtol and atol"),
        ({"method": "rk4"}, "needs steps"),
        ({"n_probes": 0, "exact_divergence": False}, "n_probes"),
    ]:
        with pytest.raises(ValueError, match=message):
            likelihood.log_likelihood(sde, mix.score_fn(sde), x, **kwargs)


# -- main.py --mode likelihood ---------------------------------------------------------------------
@pytest.mark.parametrize("dataset", ["eight_gaussians", "digits"])
def test_likelihood_mode_writes_per_example_values_and_a_summary(dataset, tmp_path):
    import json

    import numpy as np

    from scoresde import run_lib
    from tests.helpers import tiny_config

    overrides = {
        "data.dataset": dataset,
        "training.n_steps": 3,
        "likelihood.n_examples": 6,
        "likelihood.batch_size": 4,
        "likelihood.rtol": 1e-3,
        "likelihood.atol": 1e-3,
    }
    if dataset == "digits":
        overrides.update({"likelihood.divergence": "hutchinson", "likelihood.n_probes": 2, "likelihood.n_dequantize": 2})
    config = tiny_config(**overrides)
    run_lib.train(config, tmp_path)
    summary = run_lib.likelihood(config, tmp_path)
    assert json.loads((tmp_path / "likelihood" / "test.json").read_text()) == summary
    values = np.load(tmp_path / "likelihood" / "test.npz")
    assert values["logp"].shape == (6,) and np.isfinite(values["logp"]).all() and (values["nfe"] > 0).all()
    assert summary["n_examples"] == 6 and summary["step"] == 3
    if dataset == "digits":
        # bits/dim = -(logp + D log(2 / 17)) / (D ln 2) for centred 17-level data, per dequantization draw.
        assert summary["levels"] == 17 and summary["divergence"] == "hutchinson x2"
        assert np.isfinite(values["stderr"]).all() and values["bpd"].shape == (6,)
        assert summary["bits_per_dim"]["mean"] == pytest.approx(values["bpd"].mean())
        assert (values["bpd_iw"] <= values["bpd"] + 1e-9).all()  # log-mean-exp >= mean of logs
        assert summary["bits_per_dim_importance_weighted"]["mean"] == pytest.approx(values["bpd_iw"].mean())
    else:
        assert "bits_per_dim" not in summary and summary["divergence"] == "exact"
