"""Peers' samplers (k-diffusion, diffusers) at few steps on our exact-score mixture problems (not a test).

Runs `peers.k_diffusion_runs` and `peers.diffusers_runs` (see `benchmarks/peers.py` for how each
peer's convention is mapped and what is measured) and prints, per problem:

  * each peer's best deterministic sampler per budget by rms against the exact probability-flow end
    point (with its grid, counted nfe and sliced Wasserstein distance next to the exact flow's);
  * each peer's best stochastic sampler at 10, 20 and 50 NFE by sliced Wasserstein distance and by
    |NLL gap| (mean -log p_0 of the samples minus that of exact data samples).

First it checks the mappings: k-diffusion's sample_euler / sample_heun against scoresde's ddim /
heun on the same grids (float64), and diffusers' DDIMScheduler against scoresde's ddim on its times.
The peers live outside this project's environment:

    pip install torch==2.13.0 numpy scipy torchdiffeq ml-collections absl-py diffusers   # a separate venv
    pip install --no-deps k-diffusion torchsde trampoline
    PYTHONPATH=. python benchmarks/few_step_peers.py --json peers_few_step.json

A peer that is not installed is skipped with a message. The repository keeps the best record per
(problem, budget, peer, stochastic, metric) of the full run (3904 records, 1.05 MB; k-diffusion
0.1.1.post1, diffusers 0.42.1, 1024 samples, budgets 3-50, 24.5 min on 2 cores) in
`benchmarks/results/peers_few_step_best.json`, which `benchmarks/few_step.py --peers` reads.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import platform
import sys
import time
import warnings
from importlib import metadata
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import peers

STOCHASTIC_BUDGETS = (10, 20, 50)
# torchsde's Brownian tree warns when a query exceeds its interval by round-off (1e-15 relative)
warnings.filterwarnings("ignore", message="Should have t", category=UserWarning)


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def _cell(record: dict | None, metric: str, with_grid: bool = True) -> str:
    if record is None:
        return "- | - | -"
    where = f"{record['sampler']} / {record['grid']}" if with_grid else record["sampler"]
    return f"{where} | {record['nfe']} | {record[metric]:.3g}"


def print_tables(records: list[dict], problem: str, budgets: list[int]) -> None:
    """The problem's deterministic (rms) and stochastic (sw, NLL gap) tables of the peers' best."""
    rows = [r for r in records if r["problem"] == problem]
    if not rows:
        print(f"\n## {problem}: no peer records")
        return
    print(f"\n## {problem}: deterministic, best rms vs the exact flow end point (sw floor {rows[0]['sw_floor']:.4g})\n")
    print("| budget | k-diffusion best (sampler / grid) | nfe | rms | diffusers best (scheduler / spacing) | nfe | rms |")
    print("|---|---|---|---|---|---|---|")
    for budget in budgets:
        cells = [
            _cell(peers.best_peer(records, problem, budget, "rms", False, peer), "rms") for peer in ("k-diffusion", "diffusers")
        ]
        print(f"| {budget} | {cells[0]} | {cells[1]} |")
    stochastic_budgets = [b for b in STOCHASTIC_BUDGETS if b in budgets]
    if not stochastic_budgets:
        return
    print(
        f"\n## {problem}: stochastic, best sw (floor {rows[0]['sw_floor']:.4g}) and best |NLL gap| "
        f"(exact flow's gap {rows[0]['nll_gap_floor']:.3g})\n"
    )
    print("| budget | peer | best sw (sampler / grid) | nfe | sw | best NLL gap (sampler / grid) | nfe | NLL gap |")
    print("|---|---|---|---|---|---|---|---|")
    for budget in stochastic_budgets:
        for peer in ("k-diffusion", "diffusers"):
            sw = peers.best_peer(records, problem, budget, "sw", True, peer)
            nll = peers.best_peer(records, problem, budget, "nll_gap", True, peer)
            if sw is None and nll is None:
                continue
            print(f"| {budget} | {peer} | {_cell(sw, 'sw')} | {_cell(nll, 'nll_gap')} |")


def print_checks(K, diffusers) -> dict:
    """The mapping checks (module docstring); returns them for the JSON file."""
    checks = {}
    if K is not None:
        checks["k_diffusion"] = peers.k_diffusion_mapping_check(K)
        print(f"\nk-diffusion mapping check on {checks['k_diffusion']['problem']}, float64:")
        gap = checks["k_diffusion"]["karras_sigmas_rel_gap"]
        print(f"  get_sigmas_karras vs s of our karras grid: max relative gap {gap:.1e}")
        for name, value in checks["k_diffusion"].items():
            if isinstance(value, dict):
                print(f"  {name}: max |difference| {value['max_abs_diff']:.2e}, nfe (theirs, ours) {value['nfe']}")
    if diffusers is not None:
        checks["diffusers"] = peers.diffusers_mapping_check(diffusers)
        c = checks["diffusers"]
        print(
            f"diffusers mapping check on {c['problem']}: DDIMScheduler (trailing, {c['steps']} steps) vs our ddim on "
            f"t = {c['times'][0]}..{c['times'][-1]} + Tweedie: max |difference| {c['max_abs_diff']:.2e} "
            f"(samples up to {c['max_abs_x']:.2f}), nfe {c['nfe']}"
        )
    return checks


def write_json(path: Path, meta: dict, checks: dict, records: list[dict]) -> None:
    """meta and checks, then one compact record per line (a small file that diffs by record)."""
    lines = [json.dumps(record, separators=(",", ":")) for record in records]
    head = json.dumps({"meta": meta, "checks": checks}, separators=(",", ":"))[:-1]
    path.write_text(head + ',"records":[\n' + ",\n".join(lines) + "\n]}\n")


def run_problem(key: str, samples: int, budgets: list[int], threads: int | None = None) -> tuple[list[dict], float, float]:
    """All peers' records on one problem: (records, seconds for the reference, seconds for the peers)."""
    if threads is not None:
        torch.set_num_threads(threads)
    start = time.perf_counter()
    peers.get_problem(key, samples)
    solved = time.perf_counter() - start
    K, diffusers = peers.load_k_diffusion(), peers.load_diffusers()
    records = []
    if K is not None:
        records += list(peers.k_diffusion_runs(key, samples, budgets, K))
    if diffusers is not None:
        records += list(peers.diffusers_runs(key, samples, budgets, diffusers))
    return records, solved, time.perf_counter() - start - solved


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--problems", nargs="+", default=list(peers.PROBLEMS), choices=list(peers.PROBLEMS))
    parser.add_argument("--budgets", nargs="+", type=int, default=list(peers.BUDGETS))
    parser.add_argument("--samples", type=int, default=1024)
    parser.add_argument("--json", metavar="PATH", help="write the records (and the checks) to this JSON file")
    parser.add_argument("--no-check", action="store_true", help="skip the mapping checks")
    parser.add_argument("--jobs", type=int, default=1, help="problems run in parallel processes (one torch thread each)")
    args = parser.parse_args()
    start = time.perf_counter()
    K = peers.load_k_diffusion()
    if K is None:
        print("k-diffusion is not installed (pip install --no-deps k-diffusion torchsde trampoline): skipped")
    diffusers = peers.load_diffusers()
    if diffusers is None:
        print("diffusers is not installed (pip install diffusers): skipped")
    versions = {name: _version(name) for name in ("torch", "k-diffusion", "diffusers", "torchsde")}
    print(f"{versions}, {torch.get_num_threads()} threads, {args.samples} samples, budgets {args.budgets}")
    if K is not None:
        missing = [s.function for s in peers.K_SAMPLERS if not hasattr(K, s.function)]
        if missing:
            print(f"not in this k-diffusion: {', '.join(sorted(set(missing)))}")
    if args.jobs > 1:  # the problems go to worker processes while this one runs the checks
        with concurrent.futures.ProcessPoolExecutor(args.jobs) as pool:
            futures = [pool.submit(run_problem, key, args.samples, args.budgets, 1) for key in args.problems]
            checks = {} if args.no_check else print_checks(K, diffusers)
            results = [future.result() for future in futures]
    else:
        checks = {} if args.no_check else print_checks(K, diffusers)
        results = (run_problem(key, args.samples, args.budgets) for key in args.problems)
    records = []
    for key, (problem_records, solved, ran) in zip(args.problems, results):
        records += problem_records
        print(f"\n{key}: reference solved in {solved:.0f} s, peers run in {ran:.0f} s")
        print_tables(records, key, args.budgets)
    failures = sorted({(r["peer"], r["sampler"], r["problem"], r["error"]) for r in records if "error" in r})
    if failures:
        print("\nruns that raised (recorded with metrics None):")
        for peer, sampler, problem, error in failures:
            budgets = sorted(
                r["budget"] for r in records if r.get("error") == error and r["sampler"] == sampler and r["problem"] == problem
            )
            print(f"  {peer} {sampler} on {problem} at budgets {budgets}: {error[:200]}")
    wall = time.perf_counter() - start
    print(f"\nwall time {wall:.0f} s")
    if args.json:
        meta = {
            "versions": versions,
            "python": platform.python_version(),
            "threads": torch.get_num_threads() if args.jobs == 1 else f"{args.jobs} processes x 1",
            "samples": args.samples,
            "budgets": args.budgets,
            "problems": args.problems,
            "wall_seconds": round(wall),
        }
        path = Path(args.json)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_json(path, meta, checks, records)
        print(f"wrote {len(records)} records to {path}")


if __name__ == "__main__":
    main()
