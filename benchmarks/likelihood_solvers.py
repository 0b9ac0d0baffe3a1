"""Likelihood solvers: NFE, time and error against exact Gaussian-mixture log-densities.

    python benchmarks/likelihood_solvers.py                    # 2-D and 16-D mixtures, VP and VE, 64 examples
    python benchmarks/likelihood_solvers.py --dims 2 64 --n 128 --tols 1e-3 1e-5 --repeats 3

Every solver integrates the same probability-flow ODE with the exact score and exact divergence,
and the log-density at T is the exact one (so the error is the solver's alone): our per-sample
Dormand–Prince 5(4) ("dopri5"), torchdiffeq's dopri5 with shared steps ("torchdiffeq"), and scipy's
RK45 on the flattened batch, score_sde_pytorch's way ("scipy"), at each tolerance (score_sde uses
rtol = atol = 1e-5). Reported: the largest and the mean absolute error in nats over the examples,
batched function evaluations (each one score evaluation plus D backward passes), the evaluations
each example took part in on average (per-sample steps: fewer than the batch's), and wall time
(median of --repeats). Machine, threads and torch version are printed first.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from scoresde import likelihood
from scoresde.oracle import GaussianMixture
from scoresde.sde_lib import VESDE, VPSDE, subVPSDE

SDES = {"vpsde": VPSDE, "subvpsde": subVPSDE, "vesde": VESDE}


def mixture(dim: int) -> GaussianMixture:
    g = torch.Generator().manual_seed(dim)
    return GaussianMixture(
        torch.tensor([0.5, 0.3, 0.2]), 2 * torch.randn(3, dim, generator=g), 0.3 + 0.5 * torch.rand(3, dim, generator=g)
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dims", nargs="+", type=int, default=[2, 16])
    parser.add_argument("--sdes", nargs="+", default=["vpsde", "vesde"], choices=list(SDES))
    parser.add_argument("--methods", nargs="+", default=["dopri5", "torchdiffeq", "scipy"])
    parser.add_argument("--tols", nargs="+", type=float, default=[1e-5])
    parser.add_argument("--n", type=int, default=64, help="examples per problem")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(
        f"{platform.processor() or platform.machine()}, {args.threads} threads, torch {torch.__version__}, float64, "
        f"{args.n} examples, median of {args.repeats}"
    )
    print(f"{'problem':<16}{'tol':>8}{'method':>13}{'max err':>11}{'mean err':>11}{'NFE':>7}{'NFE/ex':>8}{'seconds':>9}")
    for dim in args.dims:
        mix = mixture(dim)
        x = mix.sample(args.n, generator=torch.Generator().manual_seed(0)).double()
        for sde_name in args.sdes:
            sde = SDES[sde_name]()
            truth = mix.log_prob(x, sde, torch.full((args.n,), likelihood.DEFAULT_START_TIME, dtype=torch.float64))

            def exact_prior(z, sde=sde):
                return mix.log_prob(z, sde, torch.full((z.shape[0],), sde.T, dtype=z.dtype))

            for tol in args.tols:
                for method in args.methods:
                    times = []
                    for _ in range(args.repeats):
                        start = time.perf_counter()
                        logp, info = likelihood.log_likelihood(
                            sde, mix.score_fn(sde), x, rtol=tol, atol=tol, method=method, prior_logp=exact_prior
                        )
                        times.append(time.perf_counter() - start)
                    error = (logp - truth).abs()
                    print(
                        f"{f'{dim}-D {sde_name}':<16}{tol:>8.0e}{method:>13}{float(error.max()):>11.2e}"
                        f"{float(error.mean()):>11.2e}{info['nfe']:>7}{float(info['nfe_per_sample'].float().mean()):>8.1f}"
                        f"{statistics.median(times):>9.2f}"
                    )


if __name__ == "__main__":
    main()
