"""The few-step frontier on the exact-score problems: 3-10 evaluations, named vs searched grids, and noise (not a test).

For each problem of `sampler_accuracy.PROBLEMS` and each budget B (score evaluations, the final
denoising evaluation included; every solver takes the most steps that fit, by its registry
declaration):

    named     every fixed-step ODE solver x every named grid x both end steps (Tweedie,
              extrapolation) x both grid ends (the problem's eps, and `samplers.few_step_end_time`'s
              default for few steps; `--ends`), with and without the analytical first step (AFS,
              one evaluation saved, so one step more): the best row by RMS to the exact flow from
              the same x_T.
    searched  the three best solvers of the named rows (each with its best end step and AFS
              setting) and UniPC with the extrapolated end, each with its grid from
              `samplers.search_time_grid`: tuned on 1024 starting points of seed 1 against our own
              adaptive solution of the flow (as a user with a network would), each candidate
              judged on 1024 others of seed 2; of these the solver whose winner is best on seed 2
              is reported, evaluated on seed 0 against the exact flow (three disjoint noise sets).
              The seconds spent searching (for that solver) are printed.
    stochastic  (with --stochastic) our stochastic solvers at 10, 20, 50 evaluations: sliced
              Wasserstein distance to exact data samples and the NLL gap (mean -log p_0 of the
              samples minus that of exact data samples), over their grids.

Each RMS is printed with its flips in brackets: how many of the samples end in another mixture
component than the exact flow from the same x_T (`flips`), and the RMS over the others. In 64-D one flipped sample of 1024 can
carry most of the squared error, so a few-step RMS there says as much about x_T near a decision
boundary as about the solver's accuracy elsewhere.

Peers: `--peers FILE` reads the records written by `benchmarks/few_step_peers.py` (k-diffusion and
diffusers, their own code, on the same problems and x_T) and prints the ratio of their best to ours.

    python benchmarks/few_step.py --problems ring_vp --budgets 4 5
    python benchmarks/few_step.py --stochastic --peers benchmarks/results/peers_few_step_best.json --json few_step.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout, not an installed copy
sys.path.insert(0, str(Path(__file__).resolve().parent))
from sampler_accuracy import PROBLEMS

from scoresde import samplers
from scoresde.eval import metrics

GRIDS = samplers.TIME_GRIDS
DENOISE = ("tweedie", "extrapolate")
SOLVERS = [(name, name, {}) for name in samplers.deterministic()] + [
    ("unipc_s3", "unipc", {"predictor_order": 3, "interpolate_in": "s"}),
]
STOCHASTIC = [
    ("dpmpp_2m_sde", "dpmpp_2m_sde", {}),
    ("dpmpp_3m_sde", "dpmpp_3m_sde", {}),
    ("sa_solver", "sa_solver", {}),
    ("edm_stochastic", "edm_stochastic", {}),
    ("restart", "restart", {}),
    ("ancestral", "ancestral", {}),
]
STOCHASTIC_BUDGETS = (10, 20, 50)


def steps_for(name: str, options: dict, budget: int, afs: bool) -> int | None:
    """The most steps of sampler `name` whose evaluations (final denoising included) fit `budget`."""
    info = samplers.get(name)
    spare = budget - 1 - info.fixed_evaluations(options) + int(afs)
    steps = spare // info.evaluations(options)
    return steps if steps >= 1 else None


def rms(x: torch.Tensor, reference: torch.Tensor) -> float:
    return float((x - reference).pow(2).mean().sqrt())


def component_of(problem: "Problem", x: torch.Tensor) -> torch.Tensor:
    """The mixture component each sample most likely belongs to (argmax of its responsibilities)."""
    return problem.mixture.responsibilities(x).argmax(dim=1)


def flips(problem: "Problem", x: torch.Tensor) -> int:
    """Samples that end in another component than the exact flow from the same x_T: in 64-D a
    handful of these (x_T near a decision boundary) can carry most of the RMS."""
    return int((component_of(problem, x) != problem.exact_component).sum())


def rms_unflipped(problem: "Problem", x: torch.Tensor) -> float:
    """The RMS over the samples that end in the exact flow's component (`flips` left out)."""
    kept = component_of(problem, x) == problem.exact_component
    return rms(x[kept], problem.exact[kept]) if bool(kept.any()) else float("nan")


class Problem:
    def __init__(self, key: str, n: int):
        make_mixture, make_sde, self.eps = PROBLEMS[key]
        self.key, self.mixture, self.sde = key, make_mixture(), make_sde()
        self.score = self.mixture.score_fn(self.sde)
        shape = (n, *self.mixture.event_shape)

        def noise(seed: int) -> torch.Tensor:
            return self.sde.prior_sampling(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)

        self.x_T, self.x_tune, self.x_holdout = noise(0), noise(1), noise(2)
        self.exact = self.mixture.solve_flow(self.x_T, self.sde)
        self.exact_component = component_of(self, self.exact)
        self.data = self.mixture.sample(n, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
        self.sw_floor = metrics.sliced_wasserstein(self.exact, self.data)
        self.nll_data = float(-self.mixture.log_prob(self.data).mean())

    def run(self, name, options, steps, grid, denoise, afs=False, seed=0, eps=None):
        return samplers.sample(
            name,
            self.sde,
            self.score,
            x_T=self.x_T,
            steps=None if not isinstance(grid, str) else steps,
            eps=self.eps if eps is None else eps,
            time_grid=grid,
            denoise=denoise,
            analytic_first_step=self.sigma_data() if afs else None,
            generator=[torch.Generator().manual_seed(seed * 100_003 + i) for i in range(len(self.x_T))]
            if not samplers.get(name).deterministic
            else None,
            **options,
        )

    def sigma_data(self) -> float:
        """The data's overall std (what the analytical first step's Gaussian assumes)."""
        return float(self.mixture.covariance_diagonal().mean().sqrt())


def end_times(problem: Problem, steps: int, ends: str) -> dict[str, float]:
    """The grid ends to try: the problem's eps ("eps"), `samplers.few_step_end_time`'s ("few-step"), or both."""
    found = {"eps": problem.eps, "few-step": samplers.few_step_end_time(problem.sde, steps, problem.eps)}
    return found if ends == "both" else {ends: found[ends]}


def named_rows(problem: Problem, budgets, ends: str = "both") -> list[dict]:
    rows = []
    for budget in budgets:
        for label, name, options in SOLVERS:
            for afs in (False, True):
                steps = steps_for(name, options, budget, afs)
                if steps is None:
                    continue
                for end, eps in end_times(problem, steps, ends).items():
                    for grid in GRIDS:
                        for denoise in DENOISE:
                            x, info = problem.run(name, options, steps, grid, denoise, afs, eps=eps)
                            rows.append(
                                {
                                    "problem": problem.key,
                                    "budget": budget,
                                    "sampler": label,
                                    "grid": grid,
                                    "denoise": denoise,
                                    "afs": afs,
                                    "end": end,
                                    "eps": eps,
                                    "steps": steps,
                                    "nfe": info["nfe"],
                                    "rms": rms(x, problem.exact),
                                    "flips": flips(problem, x),
                                    "rms_unflipped": rms_unflipped(problem, x),
                                }
                            )
    return rows


def searched_row(problem: Problem, best: dict, evaluations: int) -> dict:
    label, name, options = next(s for s in SOLVERS if s[0] == best["sampler"])
    start = time.perf_counter()
    result = samplers.search_time_grid(
        name,
        problem.sde,
        problem.score,
        best["steps"],
        x_tune=problem.x_tune,
        x_holdout=problem.x_holdout,
        options=options,
        eps=best["eps"],
        denoise=best["denoise"],
        max_evaluations=evaluations,
        analytic_first_step=problem.sigma_data() if best["afs"] else None,
    )
    seconds = time.perf_counter() - start
    x, info = problem.run(name, options, None, result.grid, best["denoise"], best["afs"])
    return {
        **best,
        "grid": f"searched ({result.winner})",
        "winner": result.winner,
        "nfe": info["nfe"],
        "rms": rms(x, problem.exact),
        "flips": flips(problem, x),
        "rms_unflipped": rms_unflipped(problem, x),
        "search_seconds": seconds,
        "holdout": {k: v["holdout"] for k, v in result.candidates.items()},
        "times": [round(t, 6) for t in result.grid.tolist()],
    }


def search_starts(block: list[dict], count: int) -> list[dict]:
    """The best named row of each of the `count` best solvers (by their best named row), plus UniPC
    with the extrapolated end step (the tuned setting of benchmarks/sampler_accuracy.py)."""
    best_of: dict[str, dict] = {}
    for row in sorted(block, key=lambda r: r["rms"]):
        best_of.setdefault(row["sampler"], row)
    starts = list(best_of.values())[:count]
    unipc = [r for r in block if r["sampler"] == "unipc" and r["denoise"] == "extrapolate" and not r["afs"]]
    if unipc and all(r["sampler"] != "unipc" for r in starts):
        starts.append(min(unipc, key=lambda r: r["rms"]))
    return starts


def stochastic_rows(problem: Problem) -> list[dict]:
    rows = []
    for budget in STOCHASTIC_BUDGETS:
        for label, name, options in STOCHASTIC:
            steps = steps_for(name, options, budget, False)
            if steps is None:
                continue
            for grid in GRIDS:
                x, info = problem.run(name, options, steps, grid, True, seed=3)
                rows.append(
                    {
                        "problem": problem.key,
                        "budget": budget,
                        "sampler": label,
                        "grid": grid,
                        "nfe": info["nfe"],
                        "sw": metrics.sliced_wasserstein(x, problem.data),
                        "nll_gap": float(-problem.mixture.log_prob(x).mean()) - problem.nll_data,
                        "sw_floor": problem.sw_floor,
                    }
                )
    return rows


def peer_best(peers: list[dict], problem: str, budget: int, metric: str, stochastic: bool):
    rows = [
        r
        for r in peers
        if r["problem"] == problem
        and r["budget"] == budget
        and bool(r.get("stochastic")) == stochastic
        and r.get(metric) is not None
    ]
    return min(rows, key=lambda r: abs(r[metric])) if rows else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--problems", nargs="+", default=["ring_ve", "ring_vp", "stiff64_ve", "stiff64_vp"], choices=list(PROBLEMS)
    )
    parser.add_argument("--budgets", nargs="+", type=int, default=[3, 4, 5, 6, 8, 10])
    parser.add_argument("--samples", type=int, default=1024)
    parser.add_argument("--search-budgets", nargs="*", type=int, default=None, help="default: all budgets")
    parser.add_argument("--search-evaluations", type=int, default=400)
    parser.add_argument("--search-solvers", type=int, default=3, help="search the grids of this many best solvers")
    parser.add_argument("--stochastic", action="store_true")
    parser.add_argument("--peers", help="records of benchmarks/few_step_peers.py")
    parser.add_argument("--json", help="write all rows here")
    parser.add_argument(
        "--ends",
        choices=("both", "eps", "few-step"),
        default="both",
        help="grid ends of the named rows: the problem's eps, samplers.few_step_end_time's, or both",
    )
    args = parser.parse_args()
    peers = json.loads(Path(args.peers).read_text()) if args.peers else []
    peers = peers["records"] if isinstance(peers, dict) else peers
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.samples} samples per run")
    everything = []
    for key in args.problems:
        start = time.perf_counter()
        problem = Problem(key, args.samples)
        rows = named_rows(problem, args.budgets, args.ends)
        print(f"\n## {key} (named grids: {time.perf_counter() - start:.0f} s)\n")
        print(
            "| NFE | best named: sampler / grid / end / AFS | rms (flips: rms of the rest) | searched: winner "
            "| rms (flips: rest) | search s | best peer | peer rms | peer / named | peer / searched |"
        )
        print("|---|---|---|---|---|---|---|---|---|---|")
        for budget in args.budgets:
            block = [r for r in rows if r["budget"] == budget]
            if not block:
                continue
            best = min(block, key=lambda r: r["rms"])
            searched = None
            if args.search_budgets is None or budget in args.search_budgets:
                tried = [searched_row(problem, row, args.search_evaluations) for row in search_starts(block, args.search_solvers)]
                rows += tried
                searched = min(tried, key=lambda r: r["holdout"][r["winner"]])  # chosen on held-out noise, not here
            peer = peer_best(peers, key, budget, "rms", False)
            cells = [
                str(budget),
                f"{best['sampler']} / {best['grid']} / {best['denoise']} / {'AFS' if best['afs'] else '-'} / {best['end']} end",
                f"{best['rms']:.2e} ({best['flips']}: {best['rms_unflipped']:.1e})",
                f"{searched['sampler']} / {searched['grid']}" if searched else "-",
                f"{searched['rms']:.2e} ({searched['flips']}: {searched['rms_unflipped']:.1e})" if searched else "-",
                f"{searched['search_seconds']:.0f}" if searched else "-",
                peer["sampler"] if peer else "-",
                f"{peer['rms']:.2e}" if peer else "-",
                f"{peer['rms'] / best['rms']:.2f}x" if peer else "-",
                f"{peer['rms'] / searched['rms']:.2f}x" if peer and searched else "-",
            ]
            print("| " + " | ".join(cells) + " |")
        if args.stochastic:
            srows = stochastic_rows(problem)
            rows += srows
            print(f"\n### {key}, stochastic (sw floor {problem.sw_floor:.4f})\n")
            print(
                "| NFE | best by sw: sampler / grid | sw | nll gap | best peer by sw | sw | nll gap | best by nll gap | nll gap |"
            )
            print("|---|---|---|---|---|---|---|---|---|")
            for budget in STOCHASTIC_BUDGETS:
                block = [r for r in srows if r["budget"] == budget]
                by_sw = min(block, key=lambda r: r["sw"])
                by_nll = min(block, key=lambda r: abs(r["nll_gap"]))
                peer = peer_best(peers, key, budget, "sw", True)
                print(
                    f"| {budget} | {by_sw['sampler']} / {by_sw['grid']} | {by_sw['sw']:.4f} | {by_sw['nll_gap']:.3f} | "
                    + (
                        f"{peer['sampler']} | {peer['sw']:.4f} | {peer.get('nll_gap', float('nan')):.3f} | "
                        if peer
                        else "- | - | - | "
                    )
                    + f"{by_nll['sampler']} / {by_nll['grid']} | {by_nll['nll_gap']:.3f} |"
                )
        everything += rows
        if args.json:
            Path(args.json).write_text(json.dumps(everything, indent=0))


if __name__ == "__main__":
    main()
