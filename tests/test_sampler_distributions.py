"""Every sampler, given the exact score of a Gaussian mixture, draws from that mixture.

The target has unequal weights and separated components, so the checks see both the mixture
weights (which component each sample lands in) and the shape of each component. Tolerances are
Monte-Carlo errors at the fixed seed, and a deliberately wrong score must fail the same checks.
"""

import math

import pytest
import torch

from scoresde import oracle, samplers
from scoresde.eval import metrics
from scoresde.sde_lib import EDMSDE, VESDE, VPSDE, CosineVPSDE, subVPSDE

TARGET = oracle.GaussianMixture(
    weights=torch.tensor([0.5, 0.3, 0.2]),
    means=torch.tensor([[-1.0, 0.0], [1.0, 0.5], [0.5, -1.0]]),
    stds=torch.tensor([0.2, 0.15, 0.1]),
)
N = 4000
SDES = {"vp": VPSDE(), "subvp": subVPSDE(), "ve": VESDE(sigma_max=5.0), "cosine": CosineVPSDE(), "edm": EDMSDE(sigma_max=5.0)}

# name -> (steps, options): enough steps for the discretisation bias to sit below Monte-Carlo error.
SAMPLERS = {
    "euler_maruyama": (500, {}),
    "reverse_diffusion": (500, {}),
    "ancestral": (500, {}),
    "predictor_corrector": (250, {"snr": 0.16, "corrector_steps": 1}),
    "annealed_langevin": (250, {"steps_per_level": 8, "snr": 0.3}),
    "dpmpp_2m_sde": (50, {}),
    "dpmpp_3m_sde": (50, {}),
    "sa_solver": (50, {}),
    "edm_stochastic": (50, {}),
    "restart": (25, {}),
    "probability_flow": (None, {"rtol": 1e-5, "atol": 1e-5}),
    "ode_euler": (300, {}),
    "ddim": (100, {}),
    "heun": (25, {}),
    "dpmpp_2m": (25, {}),
    "dpm_solver_pp": (25, {"order": 3}),
    "dpmpp_3m": (25, {}),
    "ipndm": (25, {}),
    "lms": (25, {}),
    "unipc": (25, {}),
}


def test_every_registered_sampler_is_checked_here():
    assert set(SAMPLERS) == set(samplers.available())


def component_report(x):
    """Fractions of samples per component (nearest by responsibility) and their stds."""
    labels = TARGET.responsibilities(x.double()).argmax(dim=1)
    fractions = torch.stack([(labels == k).double().mean() for k in range(3)])
    stds = torch.stack([x[labels == k].double().std(dim=0).mean() for k in range(3)])
    return fractions, stds


def assert_matches_target(x, what):
    assert torch.isfinite(x).all(), f"{what}: non-finite samples"
    fractions, stds = component_report(x)
    se = torch.sqrt(TARGET.weights * (1 - TARGET.weights) / N)
    assert torch.all((fractions - TARGET.weights).abs() < 4.5 * se), f"{what}: weights {fractions.tolist()}"
    # std of a sample std is about std / sqrt(2 n); allow 5 of those plus 4% bias.
    n_k = TARGET.weights * N
    allowed = TARGET.stds.flatten()[[0, 2, 4]] * (5 / torch.sqrt(2 * n_k) + 0.04)
    assert torch.all((stds - TARGET.stds[:, 0]).abs() < allowed), f"{what}: stds {stds.tolist()}"


@pytest.fixture(scope="module")
def noise_floor():
    reference = TARGET.sample(N, generator=torch.Generator().manual_seed(100))
    other = TARGET.sample(N, generator=torch.Generator().manual_seed(101))
    return reference, metrics.sliced_wasserstein(reference, other, n_projections=128)


@pytest.mark.parametrize("sde_name", SDES)
@pytest.mark.parametrize("name", SAMPLERS)
def test_sampler_reaches_the_exact_mixture(name, sde_name, noise_floor):
    sde = SDES[sde_name]
    steps, options = SAMPLERS[name]
    if sde_name == "cosine" and name in samplers.DETERMINISTIC:
        # The cosine schedule's prior end lies at log-SNR -17 (linear VP: -10), where the default
        # grids spend a share of their steps; 25 steps leave the narrowest component 5-15% too wide.
        steps *= 2
    x, info = samplers.sample(
        name, sde, TARGET.score_fn(sde), (N, 2), steps=steps, generator=torch.Generator().manual_seed(0), **options
    )
    assert_matches_target(x, f"{name}/{sde_name}")
    reference, floor = noise_floor
    distance = metrics.sliced_wasserstein(x, reference, n_projections=128)
    assert distance < 2.0 * floor, f"{name}/{sde_name}: sliced W2 {distance:.4f}, floor {floor:.4f}"


@pytest.mark.parametrize("name", ["euler_maruyama", "predictor_corrector", "dpmpp_2m", "annealed_langevin", "dpmpp_2m_sde"])
def test_a_wrong_score_fails_the_same_checks(name):
    sde = SDES["vp"]
    steps, options = SAMPLERS[name]
    exact = TARGET.score_fn(sde)
    x, _ = samplers.sample(
        name, sde, lambda x, t: 0.8 * exact(x, t), (N, 2), steps=steps, generator=torch.Generator().manual_seed(0), **options
    )
    with pytest.raises(AssertionError):
        assert_matches_target(x, name)


@pytest.mark.parametrize("name", sorted(SAMPLERS))
@pytest.mark.parametrize("steps", [1, 2, 3])
def test_no_sampler_returns_nan_at_few_steps(name, steps):
    for sde in SDES.values():
        x, _ = samplers.sample(
            name,
            sde,
            TARGET.score_fn(sde),
            (64, 2),
            steps=None if name == "probability_flow" else steps,
            generator=torch.Generator().manual_seed(0),
        )
        assert torch.isfinite(x).all(), f"{name}, {steps} steps, {type(sde).__name__}"


@pytest.mark.parametrize("name", sorted(n for n in SAMPLERS if n != "probability_flow"))
def test_per_sample_generators_make_samples_independent_of_the_batch(name):
    sde = SDES["ve"]
    steps = 6
    gens = lambda seeds: [torch.Generator().manual_seed(s) for s in seeds]  # noqa: E731
    big, _ = samplers.sample(name, sde, TARGET.score_fn(sde), (5, 2), steps=steps, generator=gens(range(5)))
    small, _ = samplers.sample(name, sde, TARGET.score_fn(sde), (2, 2), steps=steps, generator=gens([3, 4]))
    assert torch.allclose(big[3:], small, atol=1e-5)


@pytest.mark.parametrize("name", sorted(SAMPLERS))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_samplers_keep_image_shapes_and_dtypes(name, dtype):
    sde = SDES["vp"]
    image_target = oracle.gaussian(torch.zeros(1, 4, 4), 0.5)
    x_T = sde.prior_sampling((3, 1, 4, 4), generator=torch.Generator().manual_seed(0), dtype=dtype)
    x, _ = samplers.sample(
        name,
        sde,
        image_target.score_fn(sde),
        x_T=x_T,
        steps=None if name == "probability_flow" else 4,
        generator=torch.Generator().manual_seed(0),
    )
    assert x.shape == x_T.shape and x.dtype == dtype and torch.isfinite(x).all()


@pytest.mark.parametrize(
    "options, message",
    [
        ({"predictor": "leapfrog"}, "unknown predictor"),
        ({"corrector": "hmc"}, "unknown corrector"),
        ({"order": "sideways"}, "unknown order"),
        ({"snr": -1.0}, "snr must be > 0"),
        ({"corrector_steps": 0}, "corrector_steps must be"),
        ({"step_rule": "magic"}, "unknown step_rule"),
    ],
)
def test_predictor_corrector_rejects_bad_options(options, message):
    sde = SDES["vp"]
    with pytest.raises(ValueError, match=message):
        samplers.sample("predictor_corrector", sde, TARGET.score_fn(sde), (4, 2), steps=3, **options)


def test_predictor_corrector_orders_and_predictors_all_sample_the_target():
    sde = SDES["ve"]
    for predictor in ("reverse_diffusion", "euler_maruyama", "ancestral"):
        for order in ("corrector_first", "predictor_first"):
            x, info = samplers.sample(
                "predictor_corrector",
                sde,
                TARGET.score_fn(sde),
                (N, 2),
                steps=250,
                generator=torch.Generator().manual_seed(0),
                predictor=predictor,
                order=order,
            )
            assert info["nfe"] == 250 * 2 + 1
            assert_matches_target(x, f"pc/{predictor}/{order}")


def test_corrector_only_is_annealed_langevin():
    sde = SDES["vp"]
    common = dict(steps=5, generator=None, time_grid="uniform")
    a, _ = samplers.sample(
        "predictor_corrector",
        sde,
        TARGET.score_fn(sde),
        x_T=torch.ones(3, 2),
        predictor="none",
        order="predictor_first",
        corrector_steps=2,
        **{**common, "generator": torch.Generator().manual_seed(0)},
    )
    b, _ = samplers.sample(
        "annealed_langevin",
        sde,
        TARGET.score_fn(sde),
        x_T=torch.ones(3, 2),
        steps_per_level=2,
        **{**common, "generator": torch.Generator().manual_seed(0)},
    )
    assert torch.allclose(a, b)


def test_ancestral_step_is_ddpm_for_vp():
    """One ancestral step from t to s equals DDPM's posterior mean and std for beta = 1 - (a_t/a_s)^2."""
    sde = SDES["vp"]
    t, s = 0.6, 0.55
    grid = torch.tensor([t, s], dtype=torch.float64)
    x = torch.randn(8, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    a_t, a_s = sde.alpha(grid).tolist()
    beta = 1 - (a_t / a_s) ** 2
    abar_t, abar_s = a_t**2, a_s**2
    x0 = TARGET.denoiser(x, t, sde)
    mean = (math.sqrt(abar_s) * beta / (1 - abar_t)) * x0 + (math.sqrt(1 - beta) * (1 - abar_s) / (1 - abar_t)) * x
    std = math.sqrt(beta * (1 - abar_s) / (1 - abar_t))
    noise = torch.randn(8, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    from scoresde.samplers.ode import GridScales

    out, out_mean = samplers.ancestral_step(GridScales(sde, grid), 0, x, x0, noise)
    assert torch.allclose(out_mean, mean, atol=1e-12)
    assert torch.allclose(out, mean + std * noise, atol=1e-12)
