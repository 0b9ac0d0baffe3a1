"""Tuned time grids (scoresde.samplers.tuned_grid): valid grids that beat their starting grid on
starting points they were not tuned on, against the exact probability-flow solution."""

import math

import pytest
import torch

from scoresde import oracle, samplers
from scoresde.samplers.tuned_grid import tune_time_grid
from scoresde.sde_lib import VESDE, VPSDE


def rms(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.sqrt(((a.double() - b.double()) ** 2).mean()))


@pytest.mark.parametrize("sde, name", [(VESDE(0.01, 10.0), "ddim"), (VPSDE(), "dpmpp_2m")], ids=["ve_ddim", "vp_dpmpp_2m"])
def test_tuned_grid_beats_its_start_on_held_out_noise(sde, name):
    mixture = oracle.ring(4, 1.0, 0.1)
    score = mixture.score_fn(sde)

    def run(x_T, grid):
        return samplers.sample(name, sde, score, x_T=x_T, time_grid=grid)[0]

    x_tune = sde.prior_sampling((256, 2), generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    x_test = sde.prior_sampling((512, 2), generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    exact_test = mixture.solve_flow(x_test, sde)
    start = samplers.get_time_grid("log_snr", sde, 5, 1e-3)
    grid, info = tune_time_grid(run, sde, x_tune, 5, reference=mixture.solve_flow(x_tune, sde), eps=1e-3, max_evaluations=150)
    assert grid.shape == (6,) and grid.dtype == torch.float64 and grid[0] == sde.T
    assert bool(torch.all(grid[1:] < grid[:-1])) and grid[-1] > 0
    assert info["rms"] < info["rms_initial"] and 0 < info["evaluations"] <= 151
    assert info["rms_initial"] == pytest.approx(rms(run(x_tune, start), mixture.solve_flow(x_tune, sde)), rel=1e-9)
    before, after = rms(run(x_test, start), exact_test), rms(run(x_test, grid), exact_test)
    assert after < 0.8 * before, (before, after)  # it generalises to other x_T


def test_the_default_reference_is_the_adaptive_flow_of_the_score():
    """Without a reference the tuner solves the flow itself from score_fn (what a user with a
    trained network has); the tuned grid still beats the start against the exact solution."""
    sde, mixture = VESDE(0.01, 10.0), oracle.ring(4, 1.0, 0.1)
    score = mixture.score_fn(sde)

    def run(x_T, grid):
        return samplers.sample("ddim", sde, score, x_T=x_T, time_grid=grid)[0]

    x_T = sde.prior_sampling((128, 2), generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    grid, info = tune_time_grid(run, sde, x_T, 4, score_fn=score, max_evaluations=80)
    exact = mixture.solve_flow(x_T, sde)
    assert rms(run(x_T, grid), exact) < rms(run(x_T, samplers.get_time_grid("log_snr", sde, 4, 1e-3)), exact)
    assert math.isfinite(info["rms"])


def test_tune_time_grid_errors():
    sde = VPSDE()
    x_T = torch.zeros(4, 2, dtype=torch.float64)

    def run(x, grid):
        return x

    with pytest.raises(ValueError, match="reference solution or the score_fn"):
        tune_time_grid(run, sde, x_T, 3)
    with pytest.raises(ValueError, match="must agree"):
        tune_time_grid(run, sde, x_T, 3, reference=torch.zeros(4, 3))
    with pytest.raises(ValueError, match="steps must be an integer"):
        tune_time_grid(run, sde, x_T, 0, reference=x_T)


def test_sample_mode_tunes_the_grid_of_a_trained_model(tmp_path):
    """sampling.time_grid = "tuned": sample mode tunes the solver's grid to the network and records it;
    other modes and stochastic samplers refuse it by name."""
    from scoresde import run_lib
    from tests.helpers import tiny_config

    config = tiny_config(
        **{
            "sampling.sampler": "dpmpp_2m",
            "sampling.steps": 4,
            "sampling.time_grid": "tuned",
            "sampling.tune_samples": 32,
            "sampling.tune_evaluations": 20,
            "training.sample_freq": 0,
        }
    )
    run_lib.train(config, tmp_path)
    figures = run_lib.sample(config, tmp_path)
    grid = torch.tensor(figures["time_grid"])
    assert len(grid) == 5 and bool(torch.all(grid[1:] < grid[:-1]))
    # the search's verdict is kept beside the samples: every candidate judged on held-out noise, the winner used
    import json

    stored = json.loads((tmp_path / "sample" / "dpmpp_2m" / "time_grid.json").read_text())
    candidates = stored["comparison"]["candidates"]
    assert set(candidates) == {*samplers.TIME_GRIDS, "dp", "nelder_mead"}
    winner = stored["comparison"]["winner"]
    assert candidates[winner]["holdout"] == min(c["holdout"] for c in candidates.values())
    assert torch.allclose(grid.double(), torch.tensor(stored["times"], dtype=torch.float64), atol=1e-6)
    assert "step" in stored["checkpoint"]
    # a second run reads the grid back instead of searching again
    stored["times"][1] = 0.5 * (stored["times"][0] + stored["times"][2])  # a visible mark
    stored["log_snr"] = VPSDE().log_snr(torch.tensor(stored["times"], dtype=torch.float64)).tolist()
    (tmp_path / "sample" / "dpmpp_2m" / "time_grid.json").write_text(json.dumps(stored))
    again = run_lib.sample(config, tmp_path)
    assert again["time_grid"][1] == pytest.approx(stored["times"][1], rel=1e-6)
    with pytest.raises(ValueError, match="'tuned' needs a fixed-step ODE solver"):
        run_lib.validate(tiny_config(**{"sampling.time_grid": "tuned", "sampling.sampler": "ancestral"}))
    with pytest.raises(ValueError, match="not by --mode benchmark"):
        run_lib.named_time_grid(config, "benchmark")
