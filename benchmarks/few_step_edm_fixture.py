"""Named vs searched time grids on an EDM network snapshot at 4-10 evaluations (not a test).

    python benchmarks/few_step_edm_fixture.py                      # ../shared/fixtures/edm/edm_ddpmpp_uncond.pkl
    python benchmarks/few_step_edm_fixture.py --snapshot my-network-snapshot.pkl --samples 256

The snapshot is read without running its code (`models.edm_snapshot.load_edm_snapshot`) and used
as `DenoiserScore` under the EDM SDE (sigma from 80 down). The fixture's weights are random (toy
widths), so FD / KID mean nothing there; what is measured is the solver's fidelity to the
network's own flow: the RMS distance to the adaptive probability-flow solution (rtol 1e-6) from the
same x_T, for each solver on every named grid, ending at sigma = 0.002 (EDM's sigma_min) or where
`samplers.few_step_end_time` puts a few-step grid, and for UniPC on the grid of
`samplers.search_time_grid` (tuned and judged on two other noise sets; its seconds printed).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout, not an installed copy
from scoresde import samplers
from scoresde.models.edm_snapshot import load_edm_snapshot
from scoresde.score import DenoiserScore
from scoresde.sde_lib import EDMSDE

FIXTURE = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "edm" / "edm_ddpmpp_uncond.pkl"
SOLVERS = ("unipc", "dpmpp_3m", "ipndm", "heun")
EDM_END = 0.002  # EDM's sigma_min (t = sigma under EDMSDE)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--snapshot", default=str(FIXTURE))
    parser.add_argument("--samples", type=int, default=128)
    parser.add_argument("--budgets", type=int, nargs="+", default=[4, 5, 6, 8, 10])
    parser.add_argument("--search-evaluations", type=int, default=150)
    args = parser.parse_args()
    net = load_edm_snapshot(args.snapshot).eval()
    sde = EDMSDE(80.0)
    score = DenoiserScore(net, sde, num_classes=int(net.label_dim))
    shape = (args.samples, int(net.img_channels), int(net.img_resolution), int(net.img_resolution))

    def noise(seed: int) -> torch.Tensor:
        return sde.prior_sampling(shape, generator=torch.Generator().manual_seed(seed))

    x_T, x_tune, x_holdout = noise(0), noise(1), noise(2)
    start = time.perf_counter()
    with torch.no_grad():
        exact, info = samplers.sample("probability_flow", sde, score, x_T=x_T, eps=1e-5, rtol=1e-6, atol=1e-6)
    print(
        f"{args.snapshot}: {args.samples} samples {tuple(shape[1:])}; reference flow {info['nfe']} NFE, "
        f"{time.perf_counter() - start:.0f} s; torch {torch.__version__}, {torch.get_num_threads()} threads"
    )

    def rms(x: torch.Tensor) -> float:
        return float((x.double() - exact.double()).pow(2).mean().sqrt())

    print(
        "| NFE | best named: solver / grid / end | rms | best named ending at sigma 0.002 | rms "
        "| UniPC searched: winner | rms | search s |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for budget in args.budgets:
        rows = []
        for name in SOLVERS:
            steps = (budget - 1) // samplers.get(name).evaluations()
            if steps < 1:
                continue
            for grid in samplers.TIME_GRIDS:
                for end, eps in (("sigma 0.002", EDM_END), ("few-step", samplers.few_step_end_time(sde, steps, EDM_END))):
                    with torch.no_grad():
                        x, _ = samplers.sample(name, sde, score, x_T=x_T, steps=steps, eps=eps, time_grid=grid)
                    rows.append((rms(x), name, grid, end, steps))
        best = min(rows)
        best_old = min(r for r in rows if r[3] == "sigma 0.002")
        start = time.perf_counter()
        with torch.no_grad():
            result = samplers.search_time_grid(
                "unipc", sde, score, budget - 1, x_tune=x_tune, x_holdout=x_holdout, max_evaluations=args.search_evaluations
            )
            x, _ = samplers.sample("unipc", sde, score, x_T=x_T, time_grid=result.grid)
        seconds = time.perf_counter() - start
        print(
            f"| {budget} | {best[1]} / {best[2]} / {best[3]} | {best[0]:.2e} | {best_old[1]} / {best_old[2]} | "
            f"{best_old[0]:.2e} | {result.winner} | {rms(x):.2e} | {seconds:.0f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
