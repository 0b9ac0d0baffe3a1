"""Named vs searched time grids on a trained network at 4-10 evaluations (not a test).

    python main.py --config configs/digits_unet_vp.py --workdir runs/demo-unet --mode train
    python benchmarks/few_step_network.py runs/demo-unet

The checkpoint target of `--mode benchmark` (EMA weights of the newest checkpoint; FD and KID in
the feature space of the classifier trained on the same digits, each with its noise floor from as
many real training digits; `flow_rms` against the network's own adaptive flow at rtol 1e-5) scores:

    named     each solver of --solvers on every named grid, ending at config.sampling.eps, and with
              `samplers.sample`'s defaults ("defaults": its grid `samplers.default_time_grid`, ending
              where `samplers.few_step_end_time` puts a few-step grid);
    searched  `samplers.search_time_grid` for each solver of --search and each budget: tuned on
              --tune-samples starting points of their own against the network's adaptive flow
              (rtol 1e-5, solved once for all budgets; the first search's seconds include it),
              every candidate judged on as many others (never the benchmark's own samples); the
              seconds each search took are printed.

Writes <workdir>/few_step/records.jsonl (resumable: finished runs are not redone) and prints the
tables.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout, not an installed copy
from scoresde import samplers
from scoresde.cli import benchmark as cli_benchmark
from scoresde.eval import benchmark as bench


def defaults(name: str):
    """`name` with `samplers.sample`'s default grid and end (time_grid=None, eps=None)."""

    def run(sde, score_fn, *, x_T, steps, eps, generator):
        return samplers.sample(name, sde, score_fn, x_T=x_T, steps=steps, eps=None, generator=generator)

    return run


class Searched:
    """`name` on the grid `search_time_grid` finds for each step count (searched once per count)."""

    def __init__(self, name: str, tune_samples: int, max_evaluations: int):
        self.name, self.tune_samples, self.max_evaluations = name, tune_samples, max_evaluations
        self.references: dict[int, torch.Tensor] = {}  # the network's adaptive flow from each noise set, solved once
        self.grids: dict[int, torch.Tensor] = {}
        self.seconds: dict[int, float] = {}
        self.tables: dict[int, str] = {}

    def __call__(self, sde, score_fn, *, x_T, steps, eps, generator):
        if len(x_T) == 1:  # the benchmark's dry run that counts evaluations: any grid of `steps` steps
            return samplers.sample(self.name, sde, score_fn, x_T=x_T, steps=steps, eps=eps, generator=generator)
        if steps not in self.grids:
            shape = (self.tune_samples, *x_T.shape[1:])

            def noise(seed: int) -> torch.Tensor:
                return sde.prior_sampling(shape, generator=torch.Generator(x_T.device).manual_seed(seed), device=x_T.device)

            start = time.perf_counter()
            x_tune, x_holdout = noise(104729), noise(1299709)
            for seed, x in ((104729, x_tune), (1299709, x_holdout)):
                if seed not in self.references:  # what search_time_grid would solve itself, for every budget
                    self.references[seed] = samplers.sample(
                        "probability_flow", sde, score_fn, x_T=x, eps=1e-5 * sde.T, rtol=1e-5, atol=1e-5
                    )[0]
            result = samplers.search_time_grid(
                self.name,
                sde,
                score_fn,
                steps,
                x_tune=x_tune,
                x_holdout=x_holdout,
                reference_tune=self.references[104729],
                reference_holdout=self.references[1299709],
                eps=None,  # its named candidates end where samplers.sample's defaults end them
                max_evaluations=self.max_evaluations,
            )
            self.seconds[steps] = time.perf_counter() - start
            self.grids[steps], self.tables[steps] = result.grid, result.table()
            print(
                f"searched {self.name}, {steps} steps, in {self.seconds[steps]:.0f} s: {result.winner} "
                f"({result.gain:.2f}x below {result.best_handcrafted} on held-out noise)",
                flush=True,
            )
        return samplers.sample(self.name, sde, score_fn, x_T=x_T, time_grid=self.grids[steps], generator=generator)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("workdir")
    parser.add_argument("--config", default="configs.benchmark.digits_fast", help="a config module (import path)")
    parser.add_argument("--budgets", type=int, nargs="+", default=[4, 5, 6, 8, 10])
    parser.add_argument("--solvers", nargs="+", default=["unipc", "dpmpp_3m", "ipndm", "heun"])
    parser.add_argument("--search", nargs="+", default=["unipc"])
    parser.add_argument("--n-samples", type=int, default=500)
    parser.add_argument("--tune-samples", type=int, default=128)
    parser.add_argument("--tune-evaluations", type=int, default=150)
    args = parser.parse_args()
    config = importlib.import_module(args.config).get_config()
    config.benchmark.n_samples = args.n_samples
    workdir = Path(args.workdir)
    target = cli_benchmark._checkpoint_target(config, workdir)
    grid = [bench.Sampler(f"{name}@{g}", name, {}, g) for name in args.solvers for g in samplers.TIME_GRIDS]
    grid += [bench.Sampler(f"{name} defaults", defaults(name)) for name in args.solvers]
    searches = [Searched(name, args.tune_samples, args.tune_evaluations) for name in args.search]
    grid += [bench.Sampler(f"{s.name} searched", s) for s in searches]
    out = workdir / "few_step"
    out.mkdir(exist_ok=True)
    records = bench.run(target, grid, args.budgets, seeds=[0], records_path=out / bench.RECORDS_FILE)
    rows = bench.summarize(records, target.metric_names)
    print(bench.markdown_table(rows, target.metric_names))
    for s in searches:
        print(f"{s.name}: search seconds by steps {json.dumps({k: round(v) for k, v in s.seconds.items()})}")
    print(f"floors: fd {target.fd_floor:.4g}, kid {target.kid_floor:.4g} ({args.n_samples} samples)")


if __name__ == "__main__":
    main()
