"""Controllable generation against exact conditionals of Gaussian mixtures (scoresde.controllable).

Identities are checked to round-off (Bayes' rule for guidance, the replacement hook against the
paper's explicit loop); sampling statistics against the exact conditional within Monte-Carlo error.
"""

from __future__ import annotations

import math

import pytest
import torch

from scoresde import controllable, samplers
from scoresde.oracle import GaussianMixture
from scoresde.sde_lib import VESDE, VPSDE, subVPSDE

SDES = {"vpsde": lambda: VPSDE(), "subvpsde": lambda: subVPSDE(), "vesde": lambda: VESDE(sigma_min=0.01, sigma_max=20.0)}
N = 4000  # samples per statistical check


def coupled() -> GaussianMixture:
    """Two components whose coordinates are coupled only through the component."""
    return GaussianMixture(torch.tensor([0.7, 0.3]), torch.tensor([[-1.0, -1.0], [1.0, 1.0]]), 0.5)


def classes_mixture() -> tuple[GaussianMixture, torch.Tensor]:
    """Four components in two classes with unequal weights: class 1 = components 2, 3."""
    means = torch.tensor([[-1.0, 0.0], [0.0, -1.0], [1.0, 0.5], [0.3, 1.2]])
    return GaussianMixture(torch.tensor([0.4, 0.3, 0.2, 0.1]), means, torch.tensor([0.15, 0.2, 0.25, 0.1])), torch.tensor(
        [0, 0, 1, 1]
    )


def assert_moments(x: torch.Tensor, target: GaussianMixture, z_max: float = 4.0, n_effective: float | None = None):
    """Per-coordinate mean and variance of x against the mixture's, in Monte-Carlo standard errors
    (of `n_effective` independent draws when given, e.g. for resampled particles)."""
    x = x.double().reshape(x.shape[0], -1)
    mean, var = target.mean().reshape(-1), target.covariance_diagonal().reshape(-1)
    n = n_effective or x.shape[0]
    z_mean = (x.mean(0) - mean) / torch.sqrt(var / n)
    fourth = target.sample(200_000, generator=torch.Generator().manual_seed(7)).double().reshape(200_000, -1)
    var_se = torch.sqrt(((fourth - mean) ** 4).mean(0) - var**2) / math.sqrt(n)
    z_var = (x.var(0) - var) / var_se
    assert z_mean.abs().max() < z_max and z_var.abs().max() < z_max, (z_mean, z_var)


# -- exact identities --------------------------------------------------------------------------
def test_condition_is_bayes_rule():
    """log p(x_u | y) differs from the joint log p(y, x_u) by a constant, and integrates to one."""
    mix = GaussianMixture(
        torch.tensor([0.5, 0.3, 0.2]),
        torch.randn(3, 3, generator=torch.Generator().manual_seed(0)),
        torch.tensor([[0.3, 0.5, 0.4], [0.6, 0.2, 0.3], [0.4, 0.4, 0.7]]),
    )
    mask = torch.tensor([True, False, True])
    y = torch.tensor([0.2, 0.0, -0.4], dtype=torch.float64)
    cond = mix.condition(mask, y)
    u = torch.randn(50, 1, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    x = torch.cat([y[0].expand(50, 1), u, y[2].expand(50, 1)], dim=1)
    difference = mix.log_prob(x) - cond.log_prob(u)
    assert float(difference.max() - difference.min()) < 1e-12
    grid = torch.linspace(-8, 8, 20001, dtype=torch.float64).unsqueeze(1)
    assert float(torch.trapezoid(cond.log_prob(grid).exp(), grid[:, 0])) == pytest.approx(1.0, abs=1e-9)
    with pytest.raises(ValueError, match="every coordinate"):
        mix.condition(torch.ones(3, dtype=torch.bool), y)


@pytest.mark.parametrize("sde_name", list(SDES))
def test_classifier_guidance_at_scale_one_is_the_class_conditional_score(sde_name):
    """score + grad log p_t(c | x) = grad log p_t(x | c) exactly, with the exact classifier (Bayes)."""
    sde, (mix, classes) = SDES[sde_name](), classes_mixture()
    x = mix.sample_marginal(sde, 0.3, 64, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    t = torch.full((64,), 0.3, dtype=torch.float64)
    labels = torch.arange(64) % 2
    guided = controllable.classifier_guidance(mix.score_fn(sde), lambda x, t: mix.class_log_posterior(x, sde, t, classes), labels)
    conditional = mix.class_score_fn(sde, classes)(x, t, labels)
    torch.testing.assert_close(guided(x, t), conditional, rtol=1e-9, atol=1e-9)
    # the class-conditional score is that of the class's own sub-mixture
    torch.testing.assert_close(
        conditional[labels == 1], mix.subset([2, 3]).score(x[labels == 1], 0.3, sde), rtol=1e-12, atol=1e-12
    )


def test_classifier_free_guidance_combines_the_two_scores():
    sde, (mix, classes) = VPSDE(), classes_mixture()
    class_score = mix.class_score_fn(sde, classes)
    x, t = torch.randn(8, 2, dtype=torch.float64), torch.full((8,), 0.5, dtype=torch.float64)
    labels = torch.tensor([0, 1] * 4)
    cond, uncond = class_score(x, t, labels), class_score(x, t, None)
    for scale, expected in [(0.0, uncond), (1.0, cond), (3.0, uncond + 3.0 * (cond - uncond))]:
        torch.testing.assert_close(controllable.classifier_free_guidance(class_score, labels, scale)(x, t), expected)
    assert controllable.network_evaluations_per_score("free", 3.0) == 2
    assert controllable.network_evaluations_per_score("free", 1.0) == 1


@pytest.mark.parametrize("sde_name", ["vpsde", "vesde"])
@pytest.mark.parametrize("guidance", controllable.GUIDANCE)
@pytest.mark.parametrize("sampler,steps", [("ancestral", 200), ("dpmpp_2m", 40)])
def test_guided_samples_follow_the_class_conditional(sde_name, guidance, sampler, steps):
    """At scale 1 every sample of class 1 comes from class 1's components, in their weights 2 : 1,
    with the sub-mixture's moments (Monte-Carlo error)."""
    sde, (mix, classes) = SDES[sde_name](), classes_mixture()
    labels = torch.ones(N, dtype=torch.long)
    if guidance == "classifier":
        score = controllable.classifier_guidance(
            mix.score_fn(sde), lambda x, t: mix.class_log_posterior(x, sde, t, classes), labels
        )
    else:
        score = controllable.classifier_free_guidance(mix.class_score_fn(sde, classes), labels, 1.0)
    x, _ = samplers.sample(sampler, sde, score, (N, 2), steps=steps, generator=torch.Generator().manual_seed(3))
    component = mix.responsibilities(x.double()).argmax(1)
    assert float((classes[component] == 1).double().mean()) > 0.995
    share = float((component == 2).double().mean())
    assert abs(share - 2 / 3) < 4 * math.sqrt(2 / 9 / N), share
    assert_moments(x, mix.subset([2, 3]))


# -- inpainting and colorization ---------------------------------------------------------------
def test_replacement_hook_equals_the_explicit_replacement_loop():
    """DDIM with fixed replacement noise, through the score hook, equals the paper's loop that
    replaces the known coordinates after every step (to round-off)."""
    sde, mix = VPSDE(), coupled()
    score = mix.score_fn(sde)
    known = torch.tensor([0.3, 0.0], dtype=torch.float64).expand(16, 2).clone()
    mask = torch.tensor([1.0, 0.0], dtype=torch.float64)
    x, info = controllable.inpaint(
        "ddim", sde, score, known, mask, steps=12, denoise=False, generator=torch.Generator().manual_seed(0)
    )
    assert info["noise"] == "fixed" and info["nfe"] == 12
    x_T = sde.prior_sampling((16, 2), generator=torch.Generator().manual_seed(0)).double()
    g = samplers.ode.GridScales(sde, samplers.resolve_time_grid("ddim", sde, 12))  # what inpaint's default is
    z = (x_T - g.alpha[0] * known) / g.sigma[0]
    y = x_T.clone()
    for i in range(g.n):
        y = torch.lerp(y, g.alpha[i] * known + g.sigma[i] * z, mask)  # replace, then step
        y = samplers.ddim_step(g, i, y, g.denoise(score, y, i))
    torch.testing.assert_close(x[:, 1], y[:, 1], rtol=1e-12, atol=1e-12)
    assert torch.equal(x[:, 0], known[:, 0])


@pytest.mark.parametrize("sde_name", ["vpsde", "vesde"])
@pytest.mark.parametrize(
    "sampler,steps",
    [("predictor_corrector", 200), ("ancestral", 1000), ("euler_maruyama", 300), ("dpmpp_2m", 40), ("probability_flow", None)],
)
def test_inpainting_is_exact_when_the_unknown_part_is_independent_of_the_component(sde_name, sampler, steps):
    """Components that differ only in the known coordinate: replacement samples the exact conditional
    (the mixture of the unknown parts with posterior weights given y), for SDE and ODE samplers."""
    sde = SDES[sde_name]()
    mix = GaussianMixture(
        torch.tensor([0.6, 0.4]), torch.tensor([[-1.0, 0.5], [1.0, 0.5]]), torch.tensor([[0.4, 0.3], [0.4, 0.3]])
    )
    known = torch.tensor([0.2, 0.0], dtype=torch.float64).expand(N, 2).clone()
    mask = torch.tensor([1.0, 0.0])
    # (ancestral sampling loses variance at O(1 / steps), as its plug-in posterior mean ignores
    # Var[x_0 | x_t]: about 4 % at 200 steps here, with or without inpainting)
    kwargs = {"steps": steps, "time_grid": "log_snr"} if steps else {"rtol": 1e-4, "atol": 1e-4}
    x, _ = controllable.inpaint(
        sampler, sde, mix.score_fn(sde), known, mask, generator=torch.Generator().manual_seed(5), **kwargs
    )
    assert torch.equal(x[:, 0], known[:, 0])
    assert_moments(x[:, 1:], mix.condition(mask.bool(), known[0]))


@pytest.mark.parametrize("sde_name", ["vpsde", "vesde"])
def test_smc_inpainting_samples_the_exact_conditional_where_replacement_does_not(sde_name):
    """Coupled coordinates, y = 1 at component 2's mean: P(component 2 | y) = 0.9992. Replacement
    puts only ~77 % of the inpainted values there (its known bias); SMC's particles match the
    exact conditional's mean, std and P(x_2 > 0) within their Monte-Carlo error."""
    sde, mix = SDES[sde_name](), coupled()
    y = torch.tensor([[1.0, 0.0]], dtype=torch.float64)
    mask = torch.tensor([1.0, 0.0])
    exact = mix.condition(mask.bool(), y[0])
    x, info = controllable.smc_inpaint(
        sde, mix.score_fn(sde), y, mask, n_particles=N, steps=200, generator=torch.Generator().manual_seed(0)
    )
    assert x.shape == (1, N, 2) and torch.equal(x[0, :, 0], y[0, 0].expand(N))
    assert info["nfe"] == 201 and info["resamples"] >= 1 and info["min_ess"] > N / 4
    p_exact = float((exact.weights * 0.5 * torch.erfc(-exact.means[:, 0] / (exact.stds[:, 0] * math.sqrt(2)))).sum())
    n_eff = info["min_ess"]  # resampling duplicates particles: count only the effective ones
    p = float((x[0, :, 1] > 0).double().mean())
    assert abs(p - p_exact) < 4 * math.sqrt(p_exact * (1 - p_exact) / n_eff) + 1e-3, (p, p_exact)
    assert_moments(x[0, :, 1:], exact, n_effective=n_eff)
    replaced, _ = controllable.inpaint(
        "ancestral", sde, mix.score_fn(sde), y.expand(N, 2).clone(), mask, steps=200, generator=torch.Generator().manual_seed(0)
    )
    assert float((replaced[:, 1] > 0).double().mean()) < p_exact - 0.1  # the bias SMC removes


def test_colorization_keeps_the_gray_image_and_samples_the_colours():
    """RGB pixels from isotropic components sharing one gray level: the gray image carries no
    information about the colour, so the colours must follow the prior's colour distribution."""
    sde = VPSDE()
    decoupled_means = torch.tensor([[0.5 * math.sqrt(3), 0.8, 0.0], [0.5 * math.sqrt(3), -0.6, 0.7]], dtype=torch.float64)
    means = controllable.from_decoupled(decoupled_means.reshape(2, 3, 1, 1))  # rgb, shape (2, 3, 1, 1)
    mix = GaussianMixture(torch.tensor([0.5, 0.5]), means, 0.2)
    gray = torch.full((N, 1, 1, 1), 0.6, dtype=torch.float64)
    x, info = controllable.colorize(
        "ancestral", sde, mix.score_fn(sde), gray, steps=200, generator=torch.Generator().manual_seed(2)
    )
    assert x.shape == (N, 3, 1, 1) and info["noise"] == "fresh"
    torch.testing.assert_close(x.mean(dim=1, keepdim=True), gray, rtol=0, atol=1e-12)
    colour = controllable.to_decoupled(x)[:, 1:].reshape(N, 2)
    assert_moments(colour, GaussianMixture(torch.tensor([0.5, 0.5]), decoupled_means[:, 1:], 0.2))


@pytest.mark.parametrize("sde_name", ["vpsde", "vesde"])
def test_smc_colorization_samples_the_exact_colour_conditional(sde_name):
    """Two colours at different gray levels: the gray value says which colour (posterior 0.95 / 0.05
    here), so the colour's conditional is a reweighted mixture, which SMC particles must match."""
    sde = SDES[sde_name]()
    decoupled_means = torch.tensor([[-0.4 * math.sqrt(3), 0.8, 0.0], [0.4 * math.sqrt(3), -0.6, 0.7]], dtype=torch.float64)
    mix = GaussianMixture(torch.tensor([0.6, 0.4]), controllable.from_decoupled(decoupled_means.reshape(2, 3, 1, 1)), 0.3)
    gray = torch.tensor([[[[0.15]]]], dtype=torch.float64)
    exact = GaussianMixture(torch.tensor([0.6, 0.4]), decoupled_means, 0.3).condition(
        torch.tensor([True, False, False]), torch.tensor([math.sqrt(3) * 0.15, 0.0, 0.0], dtype=torch.float64)
    )
    assert 0.9 < float(exact.weights[1]) < 0.99  # informative, not decisive
    x, info = controllable.smc_colorize(
        sde, mix.score_fn(sde), gray, n_particles=N, steps=200, generator=torch.Generator().manual_seed(3)
    )
    assert x.shape == (1, N, 3, 1, 1)
    torch.testing.assert_close(x.mean(dim=2, keepdim=True)[0], gray.expand(N, 1, 1, 1), rtol=0, atol=1e-12)
    colour = controllable.to_decoupled(x[0])[:, 1:].reshape(N, 2)
    assert_moments(colour, exact, n_effective=info["min_ess"])
    replaced, _ = controllable.colorize(
        "ancestral", sde, mix.score_fn(sde), gray.expand(N, 1, 1, 1), steps=200, generator=torch.Generator().manual_seed(2)
    )
    first_colour = controllable.to_decoupled(replaced)[:, 1].reshape(N)
    assert float(first_colour.mean()) > float(exact.mean()[0]) + 0.3  # replacement's bias towards the prior, removed by SMC


def test_decoupling_is_orthogonal_with_gray_first():
    m = controllable.COLOR_DECOUPLING
    torch.testing.assert_close(m @ m.T, torch.eye(3, dtype=torch.float64))
    rgb = torch.rand(5, 3, 4, 4, dtype=torch.float64)
    torch.testing.assert_close(controllable.to_decoupled(rgb)[:, 0] / math.sqrt(3), rgb.mean(1))
    torch.testing.assert_close(controllable.from_decoupled(controllable.to_decoupled(rgb)), rgb)


def test_masks():
    assert controllable.masks("left_half", (1, 4, 4))[0].tolist() == [[1, 1, 0, 0]] * 4
    assert controllable.masks("top_half", (1, 4, 4))[0, :, 0].tolist() == [1, 1, 0, 0]
    assert controllable.masks("center", (1, 8, 8)).sum() == 64 - 16
    random = controllable.masks("random", (3, 32, 32), generator=torch.Generator().manual_seed(0), fraction=0.25)
    assert torch.equal(random[0], random[2]) and 0.7 < float(random.mean()) < 0.8


def test_bad_inputs_are_named():
    sde, mix = VPSDE(), coupled()
    known = torch.zeros(4, 2)
    with pytest.raises(ValueError, match="unknown noise mode"):
        controllable.inpaint("ancestral", sde, mix.score_fn(sde), known, torch.tensor([1.0, 0.0]), noise="sometimes")
    with pytest.raises(ValueError, match="does not broadcast"):
        controllable.inpaint("ancestral", sde, mix.score_fn(sde), known, torch.ones(3))
    with pytest.raises(ValueError, match="only 0 / 1"):
        controllable.inpaint("ancestral", sde, mix.score_fn(sde), known, torch.tensor([0.5, 0.0]))
    with pytest.raises(ValueError, match="unknown sampler"):
        controllable.inpaint("magic", sde, mix.score_fn(sde), known, torch.tensor([1.0, 0.0]))
    with pytest.raises(ValueError, match="unknown mask"):
        controllable.masks("triangle", (1, 4, 4))
    with pytest.raises(ValueError, match="shape \\(batch, 1"):
        controllable.colorize("ancestral", sde, mix.score_fn(sde), torch.zeros(4, 3, 2, 2))
    with pytest.raises(ValueError, match="labels must be integers"):
        controllable.classifier_free_guidance(mix.class_score_fn(sde, [0, 1]), torch.zeros(4), 2.0)
    guided = controllable.classifier_free_guidance(mix.class_score_fn(sde, [0, 1]), torch.zeros(3, dtype=torch.long), 2.0)
    with pytest.raises(ValueError, match="3 labels for a batch of 4"):
        guided(known, torch.full((4,), 0.5))
    with pytest.raises(ValueError, match="n_particles"):
        controllable.smc_inpaint(sde, mix.score_fn(sde), known, torch.tensor([1.0, 0.0]), n_particles=0, steps=5)
    with pytest.raises(ValueError, match="name no component"):
        mix.class_score_fn(sde, [0, 1])(known, torch.full((4,), 0.5), torch.tensor([0, 1, 2, 1]))
