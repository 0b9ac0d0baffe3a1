"""A user-defined SDE, written here without touching the library, works everywhere.

`ConstantRateVP` is what a user would write: a subclass of `scoresde.sde_lib.SDE` with only
alpha(t) and sigma(t). It is the VP SDE with a constant beta,

    dx = -beta/2 x dt + sqrt(beta) dw,   alpha(t) = exp(-beta t / 2),   sigma(t)^2 = 1 - alpha(t)^2,

whose drift, diffusion, log-SNR inverse t = log(1 + e^-lambda) / beta and prior are known in closed
form, so what the base class derives can be checked exactly. Then every sampler, the fixed-step ODE
solvers' orders and the DSM loss run on it against exact answers. (The likelihood of issue #7 will
join these checks when it exists.)
"""

import math

import pytest
import torch

from scoresde import losses, oracle, samplers
from scoresde.sde_lib import SDE, broadcast_to_data
from tests.problems import GaussianData
from tests.test_ode_solvers import ORDERS
from tests.test_sampler_distributions import SAMPLERS, TARGET, N, assert_matches_target

pytestmark = pytest.mark.usefixtures("single_thread")


class ConstantRateVP(SDE):
    """dx = -beta/2 x dt + sqrt(beta) dw: only the perturbation kernel is written."""

    def __init__(self, beta: float = 12.0, N: int = 1000):
        super().__init__(N)
        self.rate = beta

    def _alpha(self, t):
        return torch.exp(-0.5 * self.rate * t)

    def _sigma(self, t):
        return torch.sqrt(-torch.expm1(-self.rate * t))


SDE_UNDER_TEST = ConstantRateVP()


def test_derived_coefficients_are_the_closed_forms(make_generator):
    sde = SDE_UNDER_TEST
    t = torch.tensor([0.0, 1e-6, 0.01, 0.5, 1.0], dtype=torch.float64)
    x = torch.randn(5, 3, generator=make_generator(0), dtype=torch.float64)
    drift, diffusion = sde.sde(x, t)
    torch.testing.assert_close(drift, -6.0 * x, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(diffusion, torch.full((5,), math.sqrt(12.0), dtype=torch.float64), rtol=1e-8, atol=0)
    lam = sde.log_snr(t[1:])
    torch.testing.assert_close(sde.t_from_log_snr(lam), torch.log1p(torch.exp(-lam)) / 12.0, rtol=1e-10, atol=1e-15)
    prior_std = math.sqrt(-math.expm1(-12.0))
    z = torch.randn(4, 3, generator=make_generator(1), dtype=torch.float64)
    torch.testing.assert_close(sde.prior_logp(z), torch.distributions.Normal(0.0, prior_std).log_prob(z).sum(1))
    torch.testing.assert_close(sde.prior_sampling((4, 3), generator=make_generator(1), dtype=torch.float64), prior_std * z)
    with torch.inference_mode():  # the autograd derivation in t works even here
        torch.testing.assert_close(sde.sde(x, t)[1], diffusion)


def test_marginals_match_a_simulation_of_the_forward_sde(make_generator):
    """20k Euler–Maruyama paths of the derived SDE from x0 = 1.5 against N(alpha x0, sigma^2)."""
    sde, n, steps = SDE_UNDER_TEST, 20000, 500
    generator = make_generator(2)
    x = torch.full((n, 1), 1.5, dtype=torch.float64)
    dt = sde.T / steps
    for k in range(steps):
        drift, diffusion = sde.sde(x, torch.full((n,), (k + 0.5) * dt, dtype=torch.float64))
        x = x + drift * dt + broadcast_to_data(diffusion, x) * math.sqrt(dt) * torch.randn(x.shape, generator=generator).double()
        if k + 1 in (25, 100, 500):
            t = (k + 1) * dt
            mean, var = 1.5 * math.exp(-6.0 * t), -math.expm1(-12.0 * t)
            assert abs(x.mean().item() - mean) < 5 * math.sqrt(var / n), (t, x.mean().item(), mean)
            assert abs(x.var().item() - var) < 5 * var * math.sqrt(2.0 / n), (t, x.var().item(), var)


@pytest.mark.parametrize("name", SAMPLERS)
def test_every_sampler_reaches_the_exact_mixture(name):
    sde = SDE_UNDER_TEST
    steps, options = SAMPLERS[name]
    # sigma(t) ~ sqrt(beta t) near 0: the final time that leaves noise of about 0.01 is 1e-5, and
    # a uniform grid in t would take its last step from sigma = 0.15 to 0.01, so the grid is
    # uniform in log-SNR (which also runs the derived inverse of the log-SNR).
    grid = {} if name == "probability_flow" else {"time_grid": "log_snr"}
    x, _ = samplers.sample(
        name,
        sde,
        TARGET.score_fn(sde),
        (N, 2),
        steps=steps,
        eps=1e-5,
        generator=torch.Generator().manual_seed(0),
        **grid,
        **options,
    )
    assert_matches_target(x, f"{name}/user-defined SDE")


GAUSSIAN = oracle.gaussian(torch.tensor([0.5, -0.5, 0.0]), torch.tensor([0.05, 0.3, 1.0]))


@pytest.mark.parametrize("name, order, steps", ORDERS)
def test_fixed_step_solvers_keep_their_order(name, order, steps):
    sde = SDE_UNDER_TEST
    x_T = sde.prior_sampling((128, 3), generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    exact = GAUSSIAN.flow(x_T, sde.T, 1e-3, sde)
    errors = []
    for n in steps:
        x, _ = samplers.sample(name, sde, GAUSSIAN.score_fn(sde), x_T=x_T, steps=n, eps=1e-3, denoise=False, time_grid="karras")
        errors.append((x - exact).pow(2).mean().sqrt().item())
    slope = -math.log(errors[-1] / errors[0]) / math.log(steps[-1] / steps[0])
    assert slope > order - 0.35, (name, errors, slope)


def test_dsm_loss_at_the_exact_score_has_its_closed_form_mean(make_generator):
    """For N(m, s^2 I) data and the exact score, E || sigma s + z ||^2 / d = alpha^2 s^2 / v, v = alpha^2 s^2 + sigma^2."""
    sde = SDE_UNDER_TEST
    problem = GaussianData(torch.tensor([0.5, -1.0]), 0.8)
    for t_value in (0.01, 0.1, 0.4):
        x0 = problem.sample_data(20000, make_generator(3))
        t = torch.full((20000,), t_value, dtype=torch.float64)
        loss = losses.dsm_loss(problem.score(sde), sde, x0, t=t, generator=make_generator(4))
        alpha2, sigma2 = math.exp(-12.0 * t_value), -math.expm1(-12.0 * t_value)
        expected = alpha2 * 0.64 / (alpha2 * 0.64 + sigma2)
        se = loss.std().item() / math.sqrt(loss.numel())
        assert abs(loss.mean().item() - expected) < 5 * se, (t_value, loss.mean().item(), expected, se)
        # A score off by a constant c: the loss grows by sigma^2 c^2 (the cross term has mean zero).
        shifted = losses.dsm_loss(lambda x, tt: problem.score(sde)(x, tt) + 0.5, sde, x0, t=t, generator=make_generator(4))
        gap = shifted - loss  # same x0, t and z: a paired difference
        gap_se = gap.std().item() / math.sqrt(gap.numel())
        assert abs(gap.mean().item() - 0.25 * sigma2) < 5 * gap_se and 0.25 * sigma2 > 10 * gap_se
