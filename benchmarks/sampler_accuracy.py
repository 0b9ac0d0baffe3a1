"""Sampler accuracy per score evaluation on exact-score Gaussian-mixture problems (not a test).

For each problem (a 2-D ring of 8 narrow Gaussians, std 0.05 at radius 1; a 64-D mixture whose
per-dimension stds span 0.01 to 1) under VE and VP, it prints, for every deterministic sampler
and time grid at each NFE budget:

    rms      RMS error (over samples and coordinates) of the final samples against the exact
             probability-flow ODE solution from the same x_T, taken to zero noise. The reference
             is solved in y = x / alpha, s = sigma / alpha, where dy/ds = -s grad log p(y; s) is
             regular down to s = 0, with scipy's DOP853 at rtol 1e-10 in float64 (independent of
             scoresde's solvers). Samplers end with a zero-noise step: Tweedie's formula, or the
             denoiser extrapolated along the trajectory (`denoise="extrapolate"`); both are run.
    sw       sliced Wasserstein distance to exact data samples, next to the same distance for the
             exact flow from the same x_T (the floor: in 64-D it swings by 2x from one x_T draw
             to another, through the proportions of samples per component).
    nfe      score evaluations actually used (counted).
    wrong    samples whose own RMS error exceeds 0.3: they ended in another mixture component than
             the exact flow. In 64-D one such sample adds about 1.2 / sqrt(n) to `rms`, so at 10 NFE
             the figure is often set by one or two samples near a decision boundary.

With `--tune SAMPLER` it also tunes that sampler's time grid per problem and budget
(`scoresde.samplers.tuned_grid.tune_time_grid`, from the log-SNR and the Karras grid, the better
kept): on other starting points (seed 1, `--tune-samples`) than the ones evaluated (seed 0), and
against the flow solved by our adaptive solver from the score (rtol 1e-6), not the exact
reference, as a user with a trained network would; the rows are labelled grid "tuned".

and, separately, the sampler's own overhead per step (wall time with a free score function) for
4096 x 64 samples. Usage:

    python benchmarks/sampler_accuracy.py                  # full table (several minutes)
    python benchmarks/sampler_accuracy.py --samples 256 --problems ring_ve --budgets 10 20
    python benchmarks/sampler_accuracy.py --overhead-only
    python benchmarks/sampler_accuracy.py --tune unipc --tune-budgets 5 10 20 --budgets 5 10 20 --no-overhead
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout, not an installed copy
from scoresde import oracle, samplers
from scoresde.eval import metrics
from scoresde.samplers.tuned_grid import tune_time_grid
from scoresde.sde_lib import EDMSDE, VESDE, VPSDE, CosineVPSDE

# (label, sampler, options): every fixed-step ODE solver with its defaults, and UniPC's s-variant.
SOLVERS = [(name, name, {}) for name in samplers.DETERMINISTIC] + [
    ("unipc_s3", "unipc", {"predictor_order": 3, "interpolate_in": "s"}),
]
GRIDS = samplers.TIME_GRIDS  # every named grid
DENOISE = ("tweedie", "extrapolate")  # the zero-noise end step (see samplers.sample)
PROBLEMS = {
    "ring_ve": (lambda: oracle.ring(8, 1.0, 0.05), lambda: VESDE(0.01, 10.0), 1e-5),
    "ring_vp": (lambda: oracle.ring(8, 1.0, 0.05), lambda: VPSDE(0.1, 20.0), 1e-4),
    "stiff64_ve": (lambda: oracle.stiff(64, 4, 0.01, 1.0, seed=0), lambda: VESDE(0.01, 50.0), 1e-5),
    "stiff64_vp": (lambda: oracle.stiff(64, 4, 0.01, 1.0, seed=0), lambda: VPSDE(0.1, 20.0), 1e-4),
    # The schedules of issue #9: cosine VP (improved DDPM) and EDM (sigma(t) = t from 80 to 0.002).
    "ring_cosine": (lambda: oracle.ring(8, 1.0, 0.05), lambda: CosineVPSDE(), 1e-4),
    "stiff64_cosine": (lambda: oracle.stiff(64, 4, 0.01, 1.0, seed=0), lambda: CosineVPSDE(), 1e-4),
    "ring_edm": (lambda: oracle.ring(8, 1.0, 0.05), lambda: EDMSDE(80.0), 2e-3),
    "stiff64_edm": (lambda: oracle.stiff(64, 4, 0.01, 1.0, seed=0), lambda: EDMSDE(80.0), 2e-3),
}
# Best figures of other toolkits on problems of this kind (issue #3), RMS at 10 / 20 / 50 NFE.
PEERS = {
    "ring_ve": {10: 1.3e-2, 20: 3.7e-3, 50: 5.6e-4},
    "stiff64_ve": {10: 6.3e-2, 20: 2.5e-2, 50: 1.1e-3},
    "ring_vp": {10: 1.2e-1, 20: 5.1e-2, 50: 1.5e-2},
    "stiff64_vp": {10: 7.2e-2, 20: 3.6e-2, 50: 1.5e-2},
}


def steps_for_budget(name: str, nfe: int) -> int:
    """Steps that use `nfe` evaluations including the final denoising evaluation (by the registry's declaration)."""
    return max((nfe - 1) // samplers.get(name).evaluations(), 1)


def run_problem(key: str, n: int, budgets: list[int]) -> list[dict]:
    make_mixture, make_sde, eps = PROBLEMS[key]
    mixture, sde = make_mixture(), make_sde()
    x_T = sde.prior_sampling((n, *mixture.event_shape), generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    start = time.perf_counter()
    reference = mixture.solve_flow(x_T, sde)
    print(f"\n## {key}: {n} samples, reference solved in {time.perf_counter() - start:.1f} s")
    data = mixture.sample(n, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    # The floor is the distance of the exact flow from the same x_T: a sampler cannot do better,
    # and in 64-D the distance swings by 2x between draws of x_T (component proportions).
    floor = metrics.sliced_wasserstein(reference, data)
    records = []
    for nfe in budgets:
        for label, name, options in SOLVERS:
            for grid in GRIDS:
                for denoise in DENOISE:
                    x, info = samplers.sample(
                        name,
                        sde,
                        mixture.score_fn(sde),
                        x_T=x_T,
                        steps=steps_for_budget(name, nfe),
                        eps=eps,
                        time_grid=grid,
                        denoise=denoise,
                        **options,
                    )
                    per_sample = (x - reference).pow(2).flatten(1).mean(1).sqrt()
                    records.append(
                        {
                            "problem": key,
                            "budget": nfe,
                            "sampler": label,
                            "grid": grid,
                            "denoise": denoise,
                            "nfe": info["nfe"],
                            "rms": (x - reference).pow(2).mean().sqrt().item(),
                            "wrong": int((per_sample > 0.3).sum()),
                            "sw": metrics.sliced_wasserstein(x, data),
                            "sw_floor": floor,
                        }
                    )
    return records


def tuned_records(key: str, n: int, budgets: list[int], name: str, n_tune: int, evaluations: int) -> list[dict]:
    """`name` on a grid tuned per budget (module docstring), evaluated like `run_problem`'s rows."""
    make_mixture, make_sde, eps = PROBLEMS[key]
    mixture, sde = make_mixture(), make_sde()
    score = mixture.score_fn(sde)
    x_T = sde.prior_sampling((n, *mixture.event_shape), generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    exact = mixture.solve_flow(x_T, sde)
    x_tune = sde.prior_sampling((n_tune, *mixture.event_shape), generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    reference = samplers.sample("probability_flow", sde, score, x_T=x_tune, eps=1e-5 * sde.T, rtol=1e-6, atol=1e-6)[0]
    data = mixture.sample(n, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    floor = metrics.sliced_wasserstein(exact, data)
    records = []
    for nfe in budgets:
        steps = steps_for_budget(name, nfe)

        def run(x, grid):
            return samplers.sample(name, sde, score, x_T=x, time_grid=grid, denoise="extrapolate")[0]

        start = time.perf_counter()
        tuned = [
            tune_time_grid(run, sde, x_tune, steps, reference=reference, init=init, eps=eps, max_evaluations=evaluations)
            for init in ("log_snr", "karras")
        ]
        grid, info = min(tuned, key=lambda result: result[1]["rms"])
        seconds = time.perf_counter() - start
        x, sample_info = samplers.sample(name, sde, score, x_T=x_T, time_grid=grid, denoise="extrapolate")
        per_sample = (x - exact).pow(2).flatten(1).mean(1).sqrt()
        records.append(
            {
                "problem": key,
                "budget": nfe,
                "sampler": name,
                "grid": "tuned",
                "denoise": "extrapolate",
                "nfe": sample_info["nfe"],
                "rms": (x - exact).pow(2).mean().sqrt().item(),
                "wrong": int((per_sample > 0.3).sum()),
                "sw": metrics.sliced_wasserstein(x, data),
                "sw_floor": floor,
                "tune_rms": info["rms"],
                "tune_seconds": seconds,
                "grid_times": [round(t, 5) for t in grid.tolist()],
            }
        )
        print(
            f"  tuned {name} at {nfe} NFE in {seconds:.0f} s: tuning-set rms {info['rms_initial']:.2e} -> {info['rms']:.2e}; "
            f"held-out rms {records[-1]['rms']:.2e}; grid {records[-1]['grid_times']}"
        )
    return records


def print_table(records: list[dict]) -> None:
    print("| budget | best sampler / grid / end step | nfe | rms | wrong | peers' best | ratio | sw (exact flow) |")
    print("|---|---|---|---|---|---|---|---|")
    for budget in sorted({r["budget"] for r in records}):
        best = min((r for r in records if r["budget"] == budget), key=lambda r: r["rms"])
        peer = PEERS.get(best["problem"], {}).get(budget)
        ratio = f"{peer / best['rms']:.2f}x" if peer else "-"
        print(
            f"| {budget} | {best['sampler']} / {best['grid']} / {best['denoise']} | {best['nfe']} | {best['rms']:.2e} | "
            f"{best['wrong']} | "
            f"{peer if peer else '-'} | {ratio} | {best['sw']:.4f} ({best['sw_floor']:.4f}) |"
        )
    print("\nall (rms):")
    for name, _, _ in SOLVERS:
        for grid in (*GRIDS, "tuned"):
            for denoise in DENOISE:
                row = [r for r in records if r["sampler"] == name and r["grid"] == grid and r["denoise"] == denoise]
                if row:
                    print(f"  {name:10s} {grid:8s} {denoise:11s} " + "  ".join(f"{r['budget']:>4d}:{r['rms']:.2e}" for r in row))


def overhead_per_step(name: str, steps: int = 50, repeats: int = 9) -> float:
    """Median seconds per step with a score function that costs nothing (4096 x 64, float32)."""
    sde = VPSDE()
    x_T = torch.randn(4096, 64, generator=torch.Generator().manual_seed(0))
    zeros = torch.zeros_like(x_T)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        samplers.sample(
            name,
            sde,
            lambda x, t: zeros,
            x_T=x_T,
            steps=steps,
            time_grid="log_snr",
            denoise=False,
            generator=torch.Generator().manual_seed(0),
        )
        times.append((time.perf_counter() - start) / steps)
    return float(np.median(times))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=1024)
    parser.add_argument(
        "--problems",
        nargs="+",
        default=list(PEERS),
        choices=list(PROBLEMS),
        help="default: the problems with peer figures (VP and VE)",
    )
    parser.add_argument("--budgets", nargs="+", type=int, default=[5, 10, 20, 50, 100])
    parser.add_argument("--no-overhead", action="store_true")
    parser.add_argument("--overhead-only", action="store_true")
    parser.add_argument("--tune", metavar="SAMPLER", help="also tune this deterministic sampler's time grid (see above)")
    parser.add_argument("--tune-budgets", nargs="+", type=int, default=[5, 10, 20])
    parser.add_argument("--tune-samples", type=int, default=4096, help="starting points the grid is tuned on")
    parser.add_argument("--tune-evaluations", type=int, default=800, help="sampler runs per tuning")
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    for key in [] if args.overhead_only else args.problems:
        records = run_problem(key, args.samples, args.budgets)
        if args.tune:
            records += tuned_records(
                key,
                args.samples,
                [b for b in args.tune_budgets if b in args.budgets],
                args.tune,
                args.tune_samples,
                args.tune_evaluations,
            )
        print_table(records)
    if not args.no_overhead:
        print("\n## sampler overhead per step, 4096 x 64 float32, free score (median of 9)")
        for name in ("euler_maruyama", "ancestral", "ddim", "dpmpp_2m", "dpmpp_3m", "ipndm", "lms", "unipc", "heun"):
            print(f"  {name:15s} {overhead_per_step(name) * 1e3:.3f} ms")


if __name__ == "__main__":
    main()
