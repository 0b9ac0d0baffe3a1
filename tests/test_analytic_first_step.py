"""The analytical first step (AFS) from a config and in benchmark specs: the Gaussian is the
training data's own (mean and std, measured in the model's space), the first evaluation is saved
and counted as saved, and a draw with AFS is not mistaken for one without."""

import numpy as np
import pytest
import torch

from scoresde import run_lib, samplers
from scoresde.cli.experiment import sampling_identity, seed_draw
from scoresde.config import schema
from scoresde.eval import benchmark as bench
from tests.helpers import tiny_config


def experiment(afs: bool):
    return run_lib.Experiment(
        tiny_config(**{"sampling.sampler": "ddim", "sampling.steps": 4, "sampling.analytic_first_step": afs})
    )


def test_the_config_flag_uses_the_training_datas_moments_and_saves_one_evaluation():
    on, off = experiment(True), experiment(False)
    assert off.analytic_first_step() is None
    mean, std = on.analytic_first_step()
    x = on.x_train.double()
    assert mean == pytest.approx(float(x.mean()), rel=1e-12) and std == pytest.approx(float(x.std()), rel=1e-12)
    x_on, info_on = on.sample(16, seed=3)
    x_off, info_off = off.sample(16, seed=3)
    assert info_on["nfe"] == info_off["nfe"] - 1 == 4  # 4 steps + Tweedie, the first evaluation free
    # the first step took the Gaussian's score, not the network's: a different draw, as the library's
    expected, _ = samplers.sample(
        "ddim",
        on.sde,
        on.score_fn,
        x_T=None,
        shape=x_on.shape,
        steps=4,
        eps=on.config.sampling.eps,
        generator=torch.Generator().manual_seed(3),
        analytic_first_step=(mean, std),
    )
    torch.testing.assert_close(x_on, expected)
    assert not torch.allclose(x_on, x_off)


def test_sharded_draws_name_the_gaussian_they_assumed():
    on, off = experiment(True), experiment(False)
    sampler = bench.Sampler("ddim")
    about_on = sampling_identity(on, sampler, None, 0)
    assert about_on["analytic_first_step"] == list(on.analytic_first_step())
    assert "analytic_first_step" not in sampling_identity(off, sampler, None, 0)
    images, info = seed_draw(on, sampler, None)(np.arange(4))
    assert info["nfe"] == 4 and images.shape[0] == 4


def test_benchmark_specs_take_the_gaussian_and_count_the_saved_evaluation():
    spec = bench.parse_sampler_spec("dpmpp_2m:analytic_first_step=0.5")
    assert spec.options == {"analytic_first_step": 0.5}
    assert bench.evaluations_per_step(spec, None) == (1, 0)
    assert bench.evaluations_per_step(bench.parse_sampler_spec("dpmpp_2m"), None) == (1, 1)
    assert bench.evaluations_per_step(bench.parse_sampler_spec("heun:analytic_first_step=0.5"), None) == (2, 0)


@pytest.mark.parametrize("value, message", [("-1.0", "s_d >= 0"), ("wide", "pair"), ("1e999", "finite")])
def test_bad_gaussians_in_specs_are_refused_by_name(value, message):
    config = tiny_config(**{"benchmark.samplers": (f"ddim:analytic_first_step={value}",)})
    with pytest.raises(ValueError, match=f"analytic_first_step.*{message}"):
        schema.check(config)


@pytest.mark.parametrize("value", [(1.0, 2.0, 3.0), (float("nan"), 1.0), (0.0, -1.0), True, "0.5"])
def test_bad_gaussians_are_refused_by_the_library(value):
    with pytest.raises(ValueError, match="analytic_first_step"):
        samplers.gaussian_moments(value)
    assert samplers.gaussian_moments((0.25, 0.5)) == (0.25, 0.5) and samplers.gaussian_moments(2) == (0.0, 2.0)


def test_sampling_never_builds_the_training_examples():
    """Only training reads the training split into the model's range: sample mode (and the AFS
    moments, from a bounded subset) leave `Experiment.x_train` unbuilt."""
    exp = experiment(True)
    exp.sample(4, seed=0)
    assert exp.analytic_first_step() is not None and "x_train" not in vars(exp)
    assert len(exp.x_train) == len(exp.train_data) and "x_train" in vars(exp)  # built on first use
