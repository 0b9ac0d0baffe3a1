"""Grid search that never loses (`scoresde.samplers.grid_search`): the held-out verdict, the DP search,
interpolation to other step counts, and grid files that refuse another model, sampler or SDE."""

import itertools
import json
import math

import pytest
import torch

from scoresde import oracle, samplers
from scoresde.samplers import grid_search
from scoresde.samplers.grid_search import (
    dp_time_grid,
    interpolate_time_grid,
    load_time_grid,
    save_time_grid,
    search_time_grid,
    teacher_trajectory,
)
from scoresde.sde_lib import EDMSDE, VESDE, VPSDE

RING = oracle.ring(8, 1.0, 0.05)


def noise(sde, n, seed):
    return sde.prior_sampling((n, 2), generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def search_ring(sampler: str, steps: int, x_tune, x_holdout, max_evaluations: int):
    """search_time_grid on the ring under VP, judged against the exact flow."""
    sde = VPSDE()
    return search_time_grid(
        sampler,
        sde,
        RING.score_fn(sde),
        steps,
        x_tune=x_tune,
        x_holdout=x_holdout,
        reference_tune=RING.solve_flow(x_tune, sde),
        reference_holdout=RING.solve_flow(x_holdout, sde),
        max_evaluations=max_evaluations,
        eps=1e-3,  # the construction of these tests (samplers.few_step_end_time would end them later)
    )


def test_a_search_that_overfits_loses_to_the_best_handcrafted_grid_and_is_not_returned():
    """Tuned on one starting point, Nelder-Mead fits it to 1e-5 but is worse on other noise than the
    best named grid: the verdict on held-out noise returns the named grid."""
    sde = VPSDE()
    x_tune, x_holdout = noise(sde, 1, 3), noise(sde, 256, 2)
    result = search_ring("dpmpp_2m", 6, x_tune, x_holdout, max_evaluations=300)
    c = result.candidates
    assert c["nelder_mead"]["tune"] < 1e-4  # it fitted its one point
    assert c["nelder_mead"]["holdout"] > c[result.best_handcrafted]["holdout"]  # ... and does not generalise
    assert result.winner == result.best_handcrafted and result.winner in samplers.TIME_GRIDS
    assert torch.equal(result.grid, c[result.winner]["grid"]) and result.gain == 1.0
    # every candidate's held-out figure is the sampler's distance to the flow on that grid
    x = samplers.sample("dpmpp_2m", sde, RING.score_fn(sde), x_T=x_holdout, time_grid=result.grid)[0]
    exact = RING.solve_flow(x_holdout, sde)
    assert c[result.winner]["holdout"] == pytest.approx(float(torch.sqrt(((x - exact) ** 2).mean())), rel=1e-9)
    assert "| nelder_mead |" in result.table() and "(chosen)" in result.table()


def test_with_enough_tuning_noise_a_searched_grid_wins_and_the_win_is_measured():
    sde = VPSDE()
    result = search_ring("unipc", 4, noise(sde, 256, 1), noise(sde, 256, 2), max_evaluations=150)
    assert result.winner in grid_search.SEARCHES
    assert result.gain > 2.0
    assert result.candidates[result.winner]["holdout"] == min(c["holdout"] for c in result.candidates.values())


def test_the_dp_search_finds_the_cheapest_sub_grid():
    """Against brute force over every 3-step sub-grid of a 9-node fine grid, with the costs recomputed here."""
    sde = VESDE(0.01, 10.0)
    x_T = noise(sde, 64, 0)
    score = RING.score_fn(sde)
    grid, info = dp_time_grid(sde, score, x_T, 3, eps=1e-4, fine_steps=8)
    fine = info["fine_grid"]
    states, denoised = teacher_trajectory(sde, score, x_T, fine)
    a_, s_ = sde.alpha(fine), sde.sigma(fine)

    def cost(a, b):
        h = 0.5 * (sde.log_snr(fine[b]) - sde.log_snr(fine[a]))
        pred = states[a] * (s_[b] / s_[a]) - a_[b] * torch.expm1(-h) * denoised[a]
        return float(((pred - states[b]) ** 2).mean())

    totals = {}
    for inner in itertools.combinations(range(1, 8), 2):
        path = (0, *inner, 8)
        totals[path] = sum(cost(a, b) for a, b in zip(path, path[1:]))
    best = min(totals, key=totals.get)
    assert torch.equal(grid, fine[list(best)])
    assert info["cost"] == pytest.approx(totals[best], rel=1e-9)


def test_the_teacher_trajectory_is_the_flow():
    sde = EDMSDE(80.0)
    x_T = noise(sde, 16, 0)
    fine = samplers.get_time_grid("log_snr", sde, 16, 2e-3)
    states, denoised = teacher_trajectory(sde, RING.score_fn(sde), x_T, fine, refine=8)
    assert len(states) == 17 and len(denoised) == 16
    # the end state, denoised by Tweedie, against the exact flow's end point
    reference = RING.solve_flow(x_T, sde)
    x0 = (states[-1] + sde.sigma(fine[-1]) ** 2 * RING.score(states[-1], float(fine[-1]), sde)) / sde.alpha(fine[-1])
    assert float((x0 - reference).abs().max()) < 5e-3


def test_distances_can_be_taken_in_a_feature_space():
    sde = VPSDE()
    x_tune, x_holdout = noise(sde, 64, 1), noise(sde, 64, 2)
    ref = RING.solve_flow(x_holdout, sde)
    features = lambda x: x[:, :1] * 10.0  # noqa: E731 (only the first coordinate counts)
    result = search_time_grid(
        "ddim",
        sde,
        RING.score_fn(sde),
        3,
        x_tune=x_tune,
        x_holdout=x_holdout,
        reference_holdout=ref,
        searches=(),
        features=features,
    )
    x = samplers.sample("ddim", sde, RING.score_fn(sde), x_T=x_holdout, time_grid=result.grid)[0]
    assert result.candidates[result.winner]["holdout"] == pytest.approx(
        float(torch.sqrt(((features(x) - features(ref)) ** 2).mean()))
    )
    assert set(result.candidates) == set(samplers.TIME_GRIDS)


def test_search_refuses_what_it_cannot_judge():
    sde = VPSDE()
    x = noise(sde, 4, 0)
    score = RING.score_fn(sde)
    with pytest.raises(ValueError, match="needs a fixed-step ODE solver"):
        search_time_grid("dpmpp_2m_sde", sde, score, 3, x_tune=x, x_holdout=x)
    with pytest.raises(ValueError, match="unknown searches"):
        search_time_grid("ddim", sde, score, 3, x_tune=x, x_holdout=x, searches=("genetic",))
    with pytest.raises(ValueError, match="handcrafted must name"):
        search_time_grid("ddim", sde, score, 3, x_tune=x, x_holdout=x, handcrafted=("karas",))
    with pytest.raises(ValueError, match="differ in shape"):
        search_time_grid("ddim", sde, score, 3, x_tune=x, x_holdout=torch.zeros(4, 3))
    with pytest.raises(ValueError, match="steps must be an integer in"):
        dp_time_grid(sde, score, x, 9, fine_steps=8)


@pytest.mark.parametrize("sde", [VPSDE(), VESDE(0.01, 50.0), EDMSDE(80.0)], ids=["vp", "ve", "edm"])
def test_interpolation_is_log_linear_in_s(sde):
    """A log-SNR grid is linear in log s, so carried to any step count it is that count's log-SNR grid."""
    grid = samplers.get_time_grid("log_snr", sde, 6, 2e-3)
    for steps in (3, 6, 11):
        assert torch.allclose(
            interpolate_time_grid(grid, sde, steps), samplers.get_time_grid("log_snr", sde, steps, 2e-3), rtol=1e-8
        )
    karras = samplers.get_time_grid("karras", sde, 8, 2e-3)
    half = interpolate_time_grid(karras, sde, 4)
    assert torch.allclose(half, karras[::2], rtol=1e-9)  # the nodes fall on the old ones


def test_a_grid_to_zero_noise_is_not_interpolated():
    sde = EDMSDE(80.0)
    with pytest.raises(ValueError, match="zero noise"):
        interpolate_time_grid(torch.tensor([80.0, 1.0, 0.0], dtype=torch.float64), sde, 3)


def test_a_saved_grid_loads_only_for_what_it_was_tuned_for(tmp_path):
    sde = VPSDE()
    grid = samplers.get_time_grid("karras", sde, 5, 1e-3)
    path = tmp_path / "grid.json"
    save_time_grid(path, grid, sde, sampler="unipc", checkpoint="sha256:abc")
    assert torch.equal(load_time_grid(path, sde, sampler="unipc", checkpoint="sha256:abc"), grid)
    assert load_time_grid(path, sde, steps=10).shape == (11,)
    with pytest.raises(ValueError, match="tuned for sampler 'unipc', not 'heun'"):
        load_time_grid(path, sde, sampler="heun")
    with pytest.raises(ValueError, match="tuned for checkpoint 'sha256:abc', not 'sha256:def'"):
        load_time_grid(path, sde, checkpoint="sha256:def")
    with pytest.raises(ValueError, match="another SDE"):
        load_time_grid(path, VPSDE(beta_max=10.0))
    path.write_text(json.dumps({"times": [1.0, 0.5]}))
    with pytest.raises(ValueError, match="not a time-grid file"):
        load_time_grid(path, sde)
    path.write_text("{ not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_time_grid(path, sde)


def test_a_search_result_is_saved_with_its_comparison(tmp_path):
    sde = VPSDE()
    x = noise(sde, 16, 0)
    result = search_time_grid("ddim", sde, RING.score_fn(sde), 3, x_tune=x, x_holdout=x, searches=("dp",))
    save_time_grid(tmp_path / "g.json", result, sde, sampler="ddim")
    stored = json.loads((tmp_path / "g.json").read_text())
    assert stored["comparison"]["winner"] == result.winner
    assert set(stored["comparison"]["candidates"]) == set(result.candidates)
    assert all(math.isfinite(c["holdout"]) for c in stored["comparison"]["candidates"].values())
