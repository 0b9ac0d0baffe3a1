"""Which named grid should each (SDE, solver) use when the caller names none? (not a test)

What a user who never tunes gets: `samplers.sample(name, sde, score, x_T=..., steps=S,
time_grid=g)` with every other argument at its default (the end time of `few_step_end_time`, the
Tweedie end step, no AFS), and up to `samplers.FEW_STEPS` steps also with eps=1e-3 (what the run
modes pass, config.sampling.eps), for every fixed-step ODE solver, every named grid and every
budget, on the exact-score problems of `sampler_accuracy.PROBLEMS` (a 2-D ring and a 64-D mixture
with stds 0.01-1 per SDE); RMS to the exact flow from the same x_T.

Per (SDE, solver, step band) the table prints, for each grid and each case (problem and end), the
geometric mean over budgets of its RMS over the best grid's in that cell (1.00 = best
everywhere); the grid the rule of `samplers.SDE_DEFAULT_GRIDS` derives is marked *, the one
`samplers.default_time_grid` declares [d], and `--check` fails where they differ. Budgets count
evaluations, the final denoising one included; each solver takes the most steps that fit.

    python benchmarks/default_grids.py --json default_grids.json
    python benchmarks/default_grids.py --problems ring_vp stiff64_vp --budgets 4 6 10
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout, not an installed copy
sys.path.insert(0, str(Path(__file__).resolve().parent))
from few_step import Problem, flips, rms, steps_for
from sampler_accuracy import PROBLEMS

from scoresde import samplers

GAIN, MAX_LOSS = 1.2, 1.25  # the rule of samplers.SDE_DEFAULT_GRIDS (its comment)
# The grid ends measured: `sample`'s default (eps=None: the few-step end up to 12 steps) and the
# explicit eps the run modes pass (config.sampling.eps = 1e-3); the rule must hold for both.
ENDS = (("default", None), ("1e-3", samplers.DEFAULT_END_TIME))


def band_of(steps: int) -> int:
    """0: at most `samplers.FEW_STEPS` steps, 1: more (the two halves of an SDE_DEFAULT_GRIDS row)."""
    return int(steps > samplers.FEW_STEPS)


def measure(problem: Problem, budgets) -> list[dict]:
    rows = []
    for budget in budgets:
        for name in samplers.deterministic():
            steps = steps_for(name, {}, budget, afs=False)
            if steps is None:
                continue
            for end, eps in ENDS if steps <= samplers.FEW_STEPS else ENDS[:1]:  # the same end beyond
                for grid in samplers.TIME_GRIDS:
                    x, info = samplers.sample(
                        name, problem.sde, problem.score, x_T=problem.x_T, steps=steps, eps=eps, time_grid=grid
                    )
                    rows.append(
                        {
                            "problem": problem.key,
                            "sde": type(problem.sde).__name__,
                            "end": end,
                            "budget": budget,
                            "sampler": name,
                            "grid": grid,
                            "steps": steps,
                            "nfe": info["nfe"],
                            "rms": rms(x, problem.exact),
                            "flips": flips(problem, x),
                        }
                    )
    return rows


def ratios(rows: list[dict]) -> dict[tuple, dict[str, list[float]]]:
    """(sde, sampler, band) -> grid -> per case (problem and grid end), the geometric mean over its
    budgets of rms / the best grid's rms in that (case, budget) cell."""
    cells: dict[tuple, dict[str, float]] = defaultdict(dict)
    for r in rows:
        case = f"{r['problem']} ({r.get('end', 'default')} end)"
        cells[(r["sde"], r["sampler"], band_of(r["steps"]), case, r["budget"])][r["grid"]] = r["rms"]
    logs: dict[tuple, dict[str, dict[str, list[float]]]] = defaultdict(lambda: defaultdict(lambda: defaultdict(list)))
    for (sde, sampler, band, problem, _), by_grid in cells.items():
        best = min(by_grid.values())
        for grid, value in by_grid.items():
            logs[(sde, sampler, band)][grid][problem].append(math.log(value / best))
    return {
        key: {g: [math.exp(sum(v) / len(v)) for _, v in sorted(per.items())] for g, per in by_grid.items()}
        for key, by_grid in logs.items()
    }


def geometric(values: list[float]) -> float:
    return math.exp(sum(math.log(v) for v in values) / len(values))


def derived_choice(by_grid: dict[str, list[float]], own: str) -> str | None:
    """The grid to use instead of the solver's own `own`: the one with the largest geometric-mean
    gain over `own`, if that is at least GAIN and it is no more than MAX_LOSS worse in any case."""
    gains = {
        g: geometric([o / v for o, v in zip(by_grid[own], values)])
        for g, values in by_grid.items()
        if all(v <= MAX_LOSS * o for o, v in zip(by_grid[own], values))
    }
    best = max(gains, key=gains.__getitem__)
    return best if best != own and gains[best] >= GAIN else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--problems", nargs="+", default=list(PROBLEMS), choices=list(PROBLEMS))
    parser.add_argument("--budgets", nargs="+", type=int, default=[4, 5, 6, 8, 10, 20, 50])
    parser.add_argument("--samples", type=int, default=512)
    parser.add_argument("--json", help="write all rows here")
    parser.add_argument("--from-json", help="print the table of rows written before, without measuring")
    parser.add_argument("--check", action="store_true", help="exit 1 where samplers.SDE_DEFAULT_GRIDS disagrees")
    args = parser.parse_args()

    sdes = {type(make_sde()).__name__: make_sde() for _, make_sde, _ in PROBLEMS.values()}
    rows: list[dict] = []
    if args.from_json:
        rows = json.loads(Path(args.from_json).read_text())
        args.budgets = sorted({r["budget"] for r in rows})
    for key in [] if args.from_json else args.problems:
        start = time.perf_counter()
        rows += measure(Problem(key, args.samples), args.budgets)
        print(f"{key}: {time.perf_counter() - start:.0f} s", flush=True)
        if args.json:  # after each problem, so that an interrupted run keeps what it measured
            Path(args.json).write_text(json.dumps(rows, indent=1))

    table = ratios(rows)
    print("\nRMS over the best grid per (case, budget) cell, geometric mean over budgets, per case (ring /")
    print("64-D, with sample's default end, then with eps 1e-3); * the derived default, [d] samplers.default_time_grid's\n")
    print(f"| SDE | solver | steps | {' | '.join(samplers.TIME_GRIDS)} |")
    print("|---|---|---|" + "---|" * len(samplers.TIME_GRIDS))
    mismatches = []
    for (sde_name, sampler, band), by_grid in sorted(table.items()):
        own = samplers.get(sampler).default_grid
        derived = derived_choice(by_grid, own) or own
        declared = samplers.default_time_grid(sampler, sdes[sde_name], samplers.FEW_STEPS + band)
        if derived != declared:
            mismatches.append(f"{sde_name} {sampler} {'many' if band else 'few'} steps: measured {derived}, declared {declared}")
        cells = [
            " / ".join(f"{v:.2f}" for v in by_grid[g]) + ("*" if g == derived else "") + (" [d]" if g == declared else "")
            for g in samplers.TIME_GRIDS
        ]
        label = f"> {samplers.FEW_STEPS}" if band else f"<= {samplers.FEW_STEPS}"
        print(f"| {sde_name} | {sampler} | {label} | {' | '.join(cells)} |")
    print()
    print("\n".join(mismatches) or "samplers.SDE_DEFAULT_GRIDS agrees with these measurements")
    if args.check and mismatches:
        sys.exit(1)


if __name__ == "__main__":
    main()
