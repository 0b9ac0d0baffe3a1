"""Tests of the per-SDE default grids (`samplers.SDE_DEFAULT_GRIDS`, `samplers.default_time_grid`):
the table is well formed, `sample` and every caller use it, and where it overrides a solver's own
default grid the override is more accurate against the exact flow (the 2-D ring of
benchmarks/default_grids.py, which measured the table on this and a 64-D problem)."""

import math

import pytest
import torch

from scoresde import oracle, samplers
from scoresde.sde_lib import EDMSDE, VESDE, VPSDE, CosineVPSDE, subVPSDE

pytestmark = pytest.mark.usefixtures("single_thread")


def test_the_table_names_registered_ode_solvers_and_named_grids():
    for sde_class, halves in samplers.SDE_DEFAULT_GRIDS.items():
        assert len(halves) == 2, sde_class
        for choices in halves:
            for solver, grid in choices.items():
                assert samplers.get(solver).kind == "ode", (sde_class, solver)
                assert grid in samplers.TIME_GRIDS, (sde_class, solver, grid)


def test_the_default_follows_the_sde_solver_and_step_count():
    few, many = samplers.FEW_STEPS, samplers.FEW_STEPS + 1
    assert samplers.default_time_grid("unipc", CosineVPSDE(), few) == "time_quadratic"
    assert samplers.default_time_grid("heun", CosineVPSDE(), few) == "log_snr"
    assert samplers.default_time_grid("unipc", VPSDE(), few) == "time_quadratic"
    assert samplers.default_time_grid("unipc", VPSDE(), many) == samplers.get("unipc").default_grid
    assert samplers.default_time_grid("heun", EDMSDE(), few) == "karras"  # EDM's own choice, kept
    # stochastic samplers, and SDEs the table does not list, keep the sampler's own default
    assert samplers.default_time_grid("dpmpp_2m_sde", VPSDE(), few) == samplers.get("dpmpp_2m_sde").default_grid
    assert samplers.default_time_grid("ipndm", subVPSDE(), few) == samplers.get("ipndm").default_grid


def test_a_subclass_takes_its_parents_row():
    class MyVP(VPSDE):
        pass

    assert samplers.default_time_grid("ddim", MyVP(), 6) == samplers.default_time_grid("ddim", VPSDE(), 6) == "time_quadratic"


def test_a_row_of_ones_own_is_used(monkeypatch):
    class MySDE(subVPSDE):
        pass

    monkeypatch.setitem(samplers.SDE_DEFAULT_GRIDS, MySDE, ({"unipc": "karras"}, {}))
    assert samplers.default_time_grid("unipc", MySDE(), samplers.FEW_STEPS) == "karras"
    assert samplers.default_time_grid("unipc", MySDE(), samplers.FEW_STEPS + 1) == samplers.get("unipc").default_grid
    assert samplers.default_time_grid("unipc", subVPSDE(), 4) == samplers.get("unipc").default_grid


def test_sample_integrates_over_the_default_and_says_so():
    sde, ring = CosineVPSDE(), oracle.ring(4, 1.0, 0.1)
    x_T = sde.prior_sampling((3, 2), generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    _, info = samplers.sample("dpmpp_2m", sde, ring.score_fn(sde), x_T=x_T, steps=6)
    expected = samplers.get_time_grid("time_quadratic", sde, 6, samplers.few_step_end_time(sde, 6, samplers.DEFAULT_END_TIME))
    assert torch.equal(info["time_grid"], expected)
    assert torch.equal(samplers.resolve_time_grid("dpmpp_2m", sde, 6), expected)
    # a named grid is obeyed as given
    _, info = samplers.sample("dpmpp_2m", sde, ring.score_fn(sde), x_T=x_T, steps=6, time_grid="log_snr")
    assert torch.equal(info["time_grid"], samplers.resolve_time_grid("dpmpp_2m", sde, 6, time_grid="log_snr"))
    assert not torch.equal(info["time_grid"], expected)


OVERRIDES = [  # (SDE, solver): overrides by at least 1.6x on the ring in benchmarks/default_grids.py
    (CosineVPSDE(), "unipc"),
    (CosineVPSDE(), "heun"),
    (VPSDE(0.1, 20.0), "ipndm"),
    (VESDE(0.01, 10.0), "ipndm"),
    (EDMSDE(80.0), "ipndm"),
]


@pytest.mark.parametrize(("sde", "solver"), OVERRIDES, ids=[f"{type(s).__name__}-{n}" for s, n in OVERRIDES])
def test_an_override_is_more_accurate_than_the_solvers_own_grid(sde, solver):
    """At 4, 6 and 8 evaluations (geometric mean of the RMS to the exact flow from the same x_T)."""
    ring = oracle.ring(8, 1.0, 0.05)
    x_T = sde.prior_sampling((256, 2), generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    exact = ring.solve_flow(x_T, sde)
    own = samplers.get(solver).default_grid
    logs = {"default": 0.0, "own": 0.0}
    for budget in (4, 6, 8):
        info = samplers.get(solver)
        steps = (budget - 1 - info.fixed_evaluations({})) // info.evaluations({})
        assert samplers.default_time_grid(solver, sde, steps) != own
        for label, grid in (("default", None), ("own", own)):
            x, _ = samplers.sample(solver, sde, ring.score_fn(sde), x_T=x_T, steps=steps, time_grid=grid)
            logs[label] += math.log(float((x - exact).pow(2).mean().sqrt()))
    assert logs["default"] < logs["own"] - math.log(1.2), logs


def test_the_readme_shows_the_table():
    from pathlib import Path

    assert samplers.sde_default_grids_markdown() in (Path(__file__).resolve().parents[1] / "README.md").read_text()


def test_a_replaced_built_in_solver_keeps_its_own_declared_grid():
    """The table was measured for the built-in loops; a replacement registered under the same name
    gets the grid it declares."""
    original, measured = samplers.get("ipndm"), samplers.default_time_grid("ipndm", VPSDE(), 6)
    assert measured != "karras"
    samplers.register("ipndm", samplers.ddim, kind="ode", order=1, default_grid="karras", replace=True)
    try:
        assert samplers.default_time_grid("ipndm", VPSDE(), 6) == "karras"
    finally:
        samplers.REGISTRY["ipndm"] = original
    assert samplers.default_time_grid("ipndm", VPSDE(), 6) == measured
