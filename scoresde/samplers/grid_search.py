"""Grid search that never loses to a handcrafted grid: candidates, a held-out verdict, persistence.

Every successful schedule search (Watson et al. 2021; GITS, Chen et al. 2024; DMN; LD3; OSS)
minimises a discrepancy against a fine-step teacher, and every one can overfit: GITS's grids are
2-9x worse than the default grid on some models at 4-5 evaluations. `search_time_grid` therefore
treats each search as a candidate and lets held-out noise decide:

    candidates  the handcrafted grids (`TIME_GRIDS`: rho = 7 Karras, log-SNR, time-uniform,
                time-quadratic), the dynamic-programming grid (`dp_time_grid`) and the
                Nelder-Mead grid (`tune_time_grid`, started from the best handcrafted one);
    verdict     the sampler's distance to the flow's end points on starting points the searches
                never saw, RMS( F(sampler(x_T; grid)) - F(Phi(x_T)) ) with F the identity (pixel L2)
                or a feature map (e.g. the benchmark's classifier features); the smallest wins,
                and a handcrafted grid wins ties, so the result is never worse on that set than
                the best handcrafted grid.

`dp_time_grid` is the GITS construction: on a fine grid t_0 > ... > t_M (log-SNR uniform), solve
the teacher trajectory x*_k from the tuning noise (Heun on a 4x finer grid), and let

    C(a, b) = mean || DDIM(x*_a, D(x*_a, t_a); t_a -> t_b) - x*_b ||^2 / dim

be the local error of one first-order step from fine node a to fine node b (every D(x*_a) comes
from the teacher's own evaluations, so the M(M+1)/2 costs cost no more evaluations). The N-step
sub-grid 0 = k_0 < k_1 < ... < k_N = M minimising sum_j C(k_{j-1}, k_j) is found exactly by
dynamic programming in O(N M^2). As in GITS the cost is DDIM's for every solver; the held-out
verdict then says whether the grid suits the solver at hand.

`interpolate_time_grid` carries a grid to other step counts (log-linear in s = sigma / alpha over
the normalised step index, as Align Your Steps does), and `save_time_grid` / `load_time_grid`
keep it with the checkpoint it was tuned for (a JSON file that names the sampler, the step count,
the checkpoint's identity and the grid's log-SNR, so a grid is never applied to another model,
sampler or SDE without saying so).
"""

from __future__ import annotations

import dataclasses
import math
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch

from scoresde import files
from scoresde.samplers.time_grids import TIME_GRIDS, few_step_end_time, get_time_grid
from scoresde.samplers.tuned_grid import tune_time_grid
from scoresde.sde_lib import SDE

SEARCHES = ("dp", "nelder_mead")  # the searched candidates besides the handcrafted grids
GRID_FILE_FORMAT = "scoresde-time-grid-1"


@dataclasses.dataclass
class GridSearch:
    """The result of `search_time_grid`.

    Attributes:
        grid: the winning grid (float64, steps + 1 times from T down).
        winner: its candidate's name (a `TIME_GRIDS` name, "dp" or "nelder_mead").
        candidates: name -> {"grid": times, "tune": distance on the tuning noise (None for the
            handcrafted ones, which saw none), "holdout": distance on the held-out noise, "seconds"}.
        sampler, steps, options, denoise: what the grid is for.
        best_handcrafted: the handcrafted candidate with the smallest held-out distance.
    """

    grid: torch.Tensor
    winner: str
    candidates: dict[str, dict[str, Any]]
    sampler: str
    steps: int
    options: dict[str, Any]
    denoise: bool | str
    best_handcrafted: str

    @property
    def gain(self) -> float:
        """The best handcrafted grid's held-out distance over the winner's (>= 1)."""
        best = self.candidates[self.best_handcrafted]["holdout"]
        won = self.candidates[self.winner]["holdout"]
        return best / won if won > 0 else math.inf

    def table(self) -> str:
        """The comparison as a markdown table (held-out distance per candidate)."""
        lines = ["| grid | tuning set | held-out | seconds |", "|---|---|---|---|"]
        for name, c in self.candidates.items():
            mark = " (chosen)" if name == self.winner else ""
            tune = "-" if c["tune"] is None else f"{c['tune']:.3g}"
            lines.append(f"| {name}{mark} | {tune} | {c['holdout']:.3g} | {c['seconds']:.1f} |")
        return "\n".join(lines)


def _flow_end(sde: SDE, score_fn: Callable, x_T: torch.Tensor) -> torch.Tensor:
    """The probability-flow ODE's end point at t = 1e-5 T from x_T, by the adaptive solver at rtol = atol = 1e-6,
    then Tweedie's step (what `tune_time_grid` uses when it is given no reference)."""
    from scoresde import samplers

    return samplers.sample("probability_flow", sde, score_fn, x_T=x_T, eps=1e-5 * sde.T, rtol=1e-6, atol=1e-6)[0]


def _refined(sde: SDE, grid: torch.Tensor, factor: int) -> torch.Tensor:
    """`grid` with every interval split into `factor` intervals equal in log-SNR (its nodes kept)."""
    lam = sde.log_snr(grid)
    parts = [grid[:1]]
    for k in range(len(grid) - 1):
        inner = torch.linspace(float(lam[k]), float(lam[k + 1]), factor + 1, dtype=torch.float64)[1:-1]
        parts += [sde.t_from_log_snr(inner).clamp(float(grid[k + 1]), float(grid[k])), grid[k + 1 : k + 2]]
    return torch.cat(parts)


def teacher_trajectory(
    sde: SDE, score_fn: Callable, x_T: torch.Tensor, fine_grid: torch.Tensor, refine: int = 4
) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """(x*_k, D(x*_k, t_k)) at every fine-grid time but the last's D, by Heun on the grid refined `refine` times."""
    from scoresde import samplers

    states, denoised = [x_T], []

    def keep(step) -> None:
        if (step["i"] + 1) % refine == 0:
            states.append(step["x"])
        if step["i"] % refine == 0:
            denoised.append(step["denoised"])

    samplers.sample("heun", sde, score_fn, x_T=x_T, time_grid=_refined(sde, fine_grid, refine), denoise=False, callback=keep)
    return states, denoised


def dp_time_grid(
    sde: SDE,
    score_fn: Callable,
    x_T: torch.Tensor,
    steps: int,
    *,
    eps: float = 1e-3,
    fine_steps: int = 64,
    refine: int = 4,
) -> tuple[torch.Tensor, dict]:
    """The `steps`-interval sub-grid of a fine log-SNR grid minimising the summed local DDIM error
    against the teacher trajectory from x_T (module docstring; GITS, Chen et al. 2024, sec. 4).

    Args:
        sde, score_fn: the model.
        x_T: the tuning batch of starting points.
        steps: the number of intervals N of the result (<= fine_steps).
        eps: the final time (the fine grid's last).
        fine_steps: M, the fine grid's intervals (the candidate times).
        refine: the teacher's Heun steps per fine interval (8 M evaluations in all).

    Returns:
        (grid, info): the grid (float64, from T to eps) and info with "cost" (the minimal summed
        local error), "fine_grid", "evaluations" (the teacher's).

    Raises:
        ValueError: steps < 1 or steps > fine_steps.
    """
    if not isinstance(steps, int) or steps < 1 or steps > fine_steps:
        raise ValueError(f"steps must be an integer in [1, fine_steps={fine_steps}], got {steps!r}")
    fine = get_time_grid("log_snr", sde, fine_steps, eps)
    states, denoised = teacher_trajectory(sde, score_fn, x_T, fine, refine)
    t64 = fine.to(torch.float64)
    alpha, sigma = sde.alpha(t64).tolist(), sde.sigma(t64).tolist()
    lam = (0.5 * sde.log_snr(t64)).tolist()
    M, dim = fine_steps, states[0][0].numel()
    cost = np.full((M + 1, M + 1), np.inf)
    for a in range(M):
        xa, da = states[a].double(), denoised[a].double()
        for b in range(a + 1, M + 1):
            pred = xa * (sigma[b] / sigma[a]) - alpha[b] * math.expm1(-(lam[b] - lam[a])) * da
            cost[a, b] = float(((pred - states[b].double()) ** 2).sum()) / (len(xa) * dim)
    # best[k][b]: the least cost of reaching fine node b from node 0 in k steps
    best = np.full((steps + 1, M + 1), np.inf)
    came_from = np.zeros((steps + 1, M + 1), dtype=int)
    best[0, 0] = 0.0
    for k in range(1, steps + 1):
        totals = best[k - 1][:, None] + cost  # [a, b]
        came_from[k] = np.argmin(totals, axis=0)
        best[k] = totals[came_from[k], np.arange(M + 1)]
    path = [M]
    for k in range(steps, 0, -1):
        path.append(int(came_from[k, path[-1]]))
    path.reverse()
    return fine[path].clone(), {"cost": float(best[steps, M]), "fine_grid": fine, "evaluations": 2 * refine * M}


def _distance(x: torch.Tensor, reference: torch.Tensor, features: Callable | None) -> float:
    if features is not None:
        x, reference = features(x), features(reference)
    value = float(torch.sqrt(((x.double() - reference.double()) ** 2).mean()))
    return value if math.isfinite(value) else math.inf


def search_time_grid(
    sampler: str,
    sde: SDE,
    score_fn: Callable,
    steps: int,
    *,
    x_tune: torch.Tensor,
    x_holdout: torch.Tensor,
    options: Mapping[str, Any] | None = None,
    eps: float | None = None,
    denoise: bool | str = True,
    searches: Sequence[str] = SEARCHES,
    handcrafted: Sequence[str] = TIME_GRIDS,
    reference_tune: torch.Tensor | None = None,
    reference_holdout: torch.Tensor | None = None,
    features: Callable[[torch.Tensor], torch.Tensor] | None = None,
    max_evaluations: int = 400,
    fine_steps: int = 64,
    analytic_first_step: float | tuple[float, float] | None = None,
) -> GridSearch:
    """The best grid of `steps` intervals for a deterministic sampler, judged on held-out noise (module docstring).

    Args:
        sampler: a fixed-step ODE solver (`samplers.deterministic()`).
        sde, score_fn: the model (an exact score or a network's).
        steps: the grid's intervals.
        x_tune: starting points the searches tune on.
        x_holdout: other starting points, on which every candidate is judged.
        options: the sampler's options.
        eps: the handcrafted grids' final time (the searches start from it; Nelder-Mead may move it);
            default `samplers.sample`'s: `few_step_end_time(sde, steps, 1e-3)`.
        denoise: the sampler's final step (`samplers.sample`).
        searches: which searches to run ("dp", "nelder_mead"); () compares the handcrafted grids only.
        handcrafted: the named grids to compare against.
        reference_tune, reference_holdout: the flow's end points from x_tune and x_holdout;
            solved by the adaptive solver from score_fn (rtol 1e-6) when omitted.
        features: a map of samples to features in which distances are taken (default: the samples).
        max_evaluations: Nelder-Mead's sampler runs.
        fine_steps: the DP search's candidate times.
        analytic_first_step: the sampler's analytical first step (`samplers.sample`), off by default.

    Returns:
        A `GridSearch` (its `table()` shows the comparison).

    Raises:
        ValueError: a stochastic or unknown sampler, an unknown search or grid name, or starting
            points of different event shapes.
    """
    from scoresde import samplers

    if eps is None:
        eps = few_step_end_time(sde, steps, samplers.DEFAULT_END_TIME)
    info = samplers.get(sampler)
    if not info.deterministic:
        raise ValueError(
            f"search_time_grid needs a fixed-step ODE solver ({', '.join(samplers.deterministic())}), got {sampler!r}: "
            "grids are judged against the flow's end points from the same noise"
        )
    unknown = [s for s in searches if s not in SEARCHES]
    if unknown:
        raise ValueError(f"unknown searches {unknown}; valid: {', '.join(SEARCHES)}")
    bad = [g for g in handcrafted if g not in TIME_GRIDS]
    if bad or not handcrafted:
        raise ValueError(f"handcrafted must name at least one of {', '.join(TIME_GRIDS)}, got {list(handcrafted)}")
    if x_tune.shape[1:] != x_holdout.shape[1:]:
        raise ValueError(f"x_tune {tuple(x_tune.shape)} and x_holdout {tuple(x_holdout.shape)} differ in shape")
    options = dict(options or {})
    samplers.check_options(sampler, options)

    def run(x: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
        return samplers.sample(
            sampler, sde, score_fn, x_T=x, time_grid=grid, denoise=denoise, analytic_first_step=analytic_first_step, **options
        )[0]

    if reference_holdout is None:
        reference_holdout = _flow_end(sde, score_fn, x_holdout)
    candidates: dict[str, dict[str, Any]] = {}

    def judge(name: str, grid: torch.Tensor, tune: float | None, started: float) -> None:
        holdout = _distance(run(x_holdout, grid), reference_holdout, features)
        candidates[name] = {"grid": grid, "tune": tune, "holdout": holdout, "seconds": time.perf_counter() - started}

    for name in handcrafted:
        started = time.perf_counter()
        judge(name, get_time_grid(name, sde, steps, eps), None, started)
    best_handcrafted = min(handcrafted, key=lambda n: candidates[n]["holdout"])
    if reference_tune is None:
        reference_tune = _flow_end(sde, score_fn, x_tune) if searches else x_tune
    if "dp" in searches:
        started = time.perf_counter()
        grid, _ = dp_time_grid(sde, score_fn, x_tune, steps, eps=eps, fine_steps=max(fine_steps, steps))
        judge("dp", grid, _distance(run(x_tune, grid), reference_tune, features), started)
    if "nelder_mead" in searches:
        started = time.perf_counter()
        init = min(handcrafted, key=lambda n: _distance(run(x_tune, candidates[n]["grid"]), reference_tune, features))
        grid, tuned = tune_time_grid(
            run,
            sde,
            x_tune,
            steps,
            reference=reference_tune,
            init=init,
            eps=eps,
            max_evaluations=max_evaluations,
            features=features,
        )
        judge("nelder_mead", grid, tuned["rms"], started)
    winner = min(candidates, key=lambda n: candidates[n]["holdout"])  # a handcrafted grid wins ties: it comes first
    return GridSearch(
        grid=candidates[winner]["grid"],
        winner=winner,
        candidates=candidates,
        sampler=sampler,
        steps=steps,
        options=options,
        denoise=denoise,
        best_handcrafted=best_handcrafted,
    )


def interpolate_time_grid(grid: Sequence[float] | torch.Tensor, sde: SDE, steps: int) -> torch.Tensor:
    """`grid` carried to `steps` intervals: log s (s = sigma / alpha) interpolated linearly in the
    normalised step index i / n (Sabour et al. 2024, "Align Your Steps", sec. 3.3). The end points
    are kept; `steps` = n returns the grid itself (to round-off).

    Raises:
        ValueError: a grid that is not a valid decreasing grid, ends at zero noise, or steps < 1.
    """
    grid = get_time_grid(torch.as_tensor(grid, dtype=torch.float64), sde, None, 1e-3)
    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be an integer >= 1, got {steps!r}")
    log_s = -0.5 * sde.log_snr(grid)
    if not bool(torch.isfinite(log_s).all()):
        raise ValueError("a grid that reaches zero noise cannot be interpolated in log s; end it at eps > 0")
    old = np.linspace(0.0, 1.0, len(grid))
    new = np.interp(np.linspace(0.0, 1.0, steps + 1), old, log_s.numpy())
    out = sde.t_from_log_snr(torch.as_tensor(-2.0 * new, dtype=torch.float64))
    out[0], out[-1] = grid[0], grid[-1]
    return out


def save_time_grid(
    path: str | Path,
    grid: torch.Tensor | GridSearch,
    sde: SDE,
    *,
    sampler: str,
    checkpoint: str | None = None,
    comparison: Mapping[str, Any] | None = None,
) -> None:
    """Write a tuned grid as JSON (atomically): its times, their log-SNR under `sde`, the sampler, the
    step count and the identity of the checkpoint it was tuned for (any string: a sha256, a path
    and step); a `GridSearch` also stores its comparison."""
    if isinstance(grid, GridSearch):
        comparison = {n: {k: v for k, v in c.items() if k != "grid"} for n, c in grid.candidates.items()}
        comparison = {"winner": grid.winner, "candidates": comparison, "options": grid.options}
        grid = grid.grid
    grid = torch.as_tensor(grid, dtype=torch.float64)
    record = {
        "format": GRID_FILE_FORMAT,
        "sampler": sampler,
        "steps": len(grid) - 1,
        "checkpoint": checkpoint,
        "times": grid.tolist(),
        "log_snr": sde.log_snr(grid).tolist(),
        "comparison": dict(comparison or {}),
    }
    import json

    files.write_atomic(path, json.dumps(record, indent=1, default=str))


def load_time_grid(
    path: str | Path,
    sde: SDE,
    *,
    sampler: str | None = None,
    checkpoint: str | None = None,
    steps: int | None = None,
) -> torch.Tensor:
    """A grid written by `save_time_grid`, checked against what it is about to be used for.

    Args:
        sde: the SDE it will be used with (its log-SNR at the stored times must match).
        sampler, checkpoint: when given, must be the stored ones.
        steps: when given and different from the stored count, the grid is interpolated
            (`interpolate_time_grid`).

    Raises:
        ValueError: not a grid file, or a sampler, checkpoint or SDE other than the one it was tuned for
            (named, with both values).
    """
    record = files.read_json(path)
    if not isinstance(record, dict) or record.get("format") != GRID_FILE_FORMAT:
        raise ValueError(f"{path} is not a time-grid file written by save_time_grid (format {GRID_FILE_FORMAT!r})")
    for key, wanted in (("sampler", sampler), ("checkpoint", checkpoint)):
        if wanted is not None and record.get(key) != wanted:
            raise ValueError(f"{path}: the grid was tuned for {key} {record.get(key)!r}, not {wanted!r}; tune it again")
    grid = get_time_grid(torch.tensor(record["times"], dtype=torch.float64), sde, None, 1e-3)
    stored = torch.tensor(record["log_snr"], dtype=torch.float64)
    here = sde.log_snr(grid)
    finite = torch.isfinite(stored) & torch.isfinite(here)
    if not torch.allclose(here[finite], stored[finite], rtol=1e-6, atol=1e-6) or not torch.equal(
        torch.isfinite(stored), torch.isfinite(here)
    ):
        raise ValueError(f"{path}: the grid was tuned under another SDE (its log-SNR at the stored times differs)")
    if steps is not None and steps != len(grid) - 1:
        grid = interpolate_time_grid(grid, sde, steps)
    return grid


__all__ = [
    "GridSearch",
    "SEARCHES",
    "dp_time_grid",
    "interpolate_time_grid",
    "load_time_grid",
    "save_time_grid",
    "search_time_grid",
    "teacher_trajectory",
]
