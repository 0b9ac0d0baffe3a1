"""Controllable generation against exact conditionals: inpainting by replacement, and guidance.

    python benchmarks/controllable_accuracy.py                 # both SDEs, default samplers and steps
    python benchmarks/controllable_accuracy.py --n 20000 --steps 10 100 1000
    python benchmarks/controllable_accuracy.py --steps 10 30 100 300 1000 --no-guidance \
        --plot docs/figures/inpainting_bias.png          # the README's figure

Problem: a 2-D mixture of two Gaussians, means (-1, -1) and (1, 1), std 0.5, weights 0.7 / 0.3,
so the two coordinates are coupled only through the component. Given the first coordinate y,
the exact conditional of the second is the mixture of N(-1, 0.25) and N(1, 0.25) with posterior
weights (`GaussianMixture.condition`), here P(component 2 | y). Inpainting the second coordinate
with the exact joint score by replacement (`scoresde.controllable.inpaint`) is compared with it:
the mean, standard deviation and P(x_2 > 0) of the inpainted coordinate against the exact
values, in units of their Monte-Carlo standard error (|z| > 3 is a real deviation). Then the same
with sequential Monte Carlo (`scoresde.controllable.smc_inpaint`), exact as particles and steps grow.

Guidance: classes = components; classifier guidance with the exact noise-conditional classifier
and classifier-free guidance with the exact class-conditional score, at scale 1 (which must be
exact) and at other scales, by the weight of the guided class among the samples (the component of
a sample is read from its nearest mean).
"""

from __future__ import annotations

import argparse
import math
import platform
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from scoresde import controllable, samplers
from scoresde.oracle import GaussianMixture
from scoresde.sde_lib import VESDE, VPSDE

SDES = {"vpsde": lambda: VPSDE(), "vesde": lambda: VESDE(sigma_min=0.01, sigma_max=20.0)}


def problem() -> GaussianMixture:
    return GaussianMixture(torch.tensor([0.7, 0.3]), torch.tensor([[-1.0, -1.0], [1.0, 1.0]]), 0.5)


def exact_stats(mix: GaussianMixture, y: float) -> dict:
    cond = mix.condition(torch.tensor([True, False]), torch.tensor([y, 0.0]))
    w, mu, sd = cond.weights, cond.means[:, 0], cond.stds[:, 0]
    mean = float((w * mu).sum())
    var = float((w * (sd**2 + mu**2)).sum()) - mean**2
    positive = float((w * 0.5 * torch.erfc(-mu / (sd * math.sqrt(2)))).sum())
    return {"mean": mean, "std": math.sqrt(var), "p_pos": positive}


def z_scores(x: torch.Tensor, exact: dict) -> tuple[dict, dict]:
    n = x.numel()
    got = {"mean": float(x.mean()), "std": float(x.std()), "p_pos": float((x > 0).double().mean())}
    se = {
        "mean": exact["std"] / math.sqrt(n),
        "std": exact["std"] / math.sqrt(2 * n),
        "p_pos": math.sqrt(exact["p_pos"] * (1 - exact["p_pos"]) / n),
    }
    return got, {k: (got[k] - exact[k]) / se[k] for k in got}


def save_bias_plot(path: Path, records: list[dict], exact: float, y: float) -> None:
    """P(x_2 > 0 | x_1 = y) against steps, one line per method, one panel per SDE, the exact value dashed."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    sdes = list(dict.fromkeys(r["sde"] for r in records))
    figure = Figure(figsize=(5.0 * len(sdes), 3.8))
    FigureCanvasAgg(figure)
    for i, sde_name in enumerate(sdes):
        axes = figure.add_subplot(1, len(sdes), i + 1)
        rows = [r for r in records if r["sde"] == sde_name]
        for method in dict.fromkeys(r["method"] for r in rows):
            line = sorted((r for r in rows if r["method"] == method), key=lambda r: r["steps"])
            axes.errorbar(
                [r["steps"] for r in line],
                [r["p_pos"] for r in line],
                yerr=[2 * r["se"] for r in line],
                marker="o",
                markersize=3,
                linewidth=2.0 if method.startswith("SMC") else 1.0,
                capsize=2,
                label=method,
            )
        axes.axhline(exact, color="black", linestyle="--", linewidth=1, label="exact conditional")
        axes.set(xscale="log", xlabel="sampler steps", ylabel=f"P(x_2 > 0 | x_1 = {y:g})", ylim=(0, 1), title=sde_name)
        axes.grid(True, which="both", alpha=0.3)
        if i == 0:
            axes.legend(fontsize=7, loc="lower right")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=8000, help="samples per cell")
    parser.add_argument("--y", type=float, default=0.3, help="the known first coordinate")
    parser.add_argument("--steps", nargs="+", type=int, default=[10, 100, 1000])
    parser.add_argument(
        "--samplers", nargs="+", default=["ancestral", "euler_maruyama", "predictor_corrector", "ddim", "dpmpp_2m"]
    )
    parser.add_argument("--sdes", nargs="+", default=list(SDES), choices=list(SDES))
    parser.add_argument("--scales", nargs="+", type=float, default=[0.0, 1.0, 2.0, 4.0])
    parser.add_argument("--particles", type=int, default=4000, help="SMC particles")
    parser.add_argument("--smc-seeds", type=int, default=5, help="independent SMC runs (forward paths) per cell")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-guidance", action="store_true", help="only the inpainting tables")
    parser.add_argument("--plot", type=Path, help="write P(x_2 > 0) against steps, one panel per SDE, to this PNG")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    mix = problem()
    exact = exact_stats(mix, args.y)
    print(
        f"{platform.processor() or platform.machine()}, {args.threads} threads, torch {torch.__version__}, float64, "
        f"{args.n} samples per cell"
    )
    print(
        f"inpainting x_2 given x_1 = {args.y}: exact mean {exact['mean']:.4f}, std {exact['std']:.4f}, "
        f"P(x_2 > 0) {exact['p_pos']:.4f}"
    )
    print(f"{'sde':<7}{'sampler':<21}{'steps':>6}{'NFE':>6}{'mean':>9}{'z':>7}{'std':>8}{'z':>7}{'P(>0)':>8}{'z':>7}{'s':>6}")
    mask = torch.tensor([1.0, 0.0])
    records = []  # for the plot: P(x_2 > 0) with its standard error per (sde, method, steps)
    for sde_name in args.sdes:
        sde = SDES[sde_name]()
        score = mix.score_fn(sde)
        for sampler in args.samplers:
            for steps in args.steps:
                known = torch.tensor([args.y, 0.0], dtype=torch.float64).expand(args.n, 2).clone()
                start = time.perf_counter()
                x, info = controllable.inpaint(
                    sampler, sde, score, known, mask, steps=steps, generator=torch.Generator().manual_seed(steps)
                )
                got, z = z_scores(x[:, 1], exact)
                records.append(
                    {
                        "sde": sde_name,
                        "method": f"replacement, {sampler}",
                        "steps": steps,
                        "p_pos": got["p_pos"],
                        "se": math.sqrt(got["p_pos"] * (1 - got["p_pos"]) / args.n),
                    }
                )
                print(
                    f"{sde_name:<7}{sampler:<21}{steps:>6}{info['nfe']:>6}{got['mean']:>9.4f}{z['mean']:>7.1f}"
                    f"{got['std']:>8.4f}{z['std']:>7.1f}{got['p_pos']:>8.4f}{z['p_pos']:>7.1f}{time.perf_counter() - start:>6.1f}"
                )

    print(
        f"\nSMC inpainting (scoresde.controllable.smc_inpaint), one path per seed, {args.particles} particles, "
        f"mean over {args.smc_seeds} seeds (z uses the spread over seeds)"
    )
    print(f"{'sde':<7}{'steps':>6}{'mean':>9}{'z':>7}{'std':>8}{'P(>0)':>8}{'z':>7}{'min ESS':>9}{'s':>6}")
    for sde_name in args.sdes:
        sde = SDES[sde_name]()
        for steps in args.steps:
            rows, start = [], time.perf_counter()
            for seed in range(args.smc_seeds):
                x, info = controllable.smc_inpaint(
                    sde,
                    mix.score_fn(sde),
                    torch.tensor([[args.y, 0.0]], dtype=torch.float64),
                    mask,
                    n_particles=args.particles,
                    steps=steps,
                    generator=torch.Generator().manual_seed(seed),
                )
                u = x[0, :, 1]
                rows.append((float(u.mean()), float(u.std()), float((u > 0).double().mean()), info["min_ess"]))
            r = torch.tensor(rows, dtype=torch.float64)
            spread = r.std(0) / math.sqrt(len(rows)) if len(rows) > 1 else torch.full((4,), float("nan"))
            m = r.mean(0)
            records.append(
                {
                    "sde": sde_name,
                    "method": f"SMC, {args.particles} particles",
                    "steps": steps,
                    "p_pos": float(m[2]),
                    "se": float(spread[2]),
                }
            )
            print(
                f"{sde_name:<7}{steps:>6}{m[0]:>9.4f}{(m[0] - exact['mean']) / spread[0]:>7.1f}{m[1]:>8.4f}{m[2]:>8.4f}"
                f"{(m[2] - exact['p_pos']) / spread[2]:>7.1f}{m[3]:>9.0f}{time.perf_counter() - start:>6.1f}"
            )

    if args.plot:
        save_bias_plot(args.plot, records, exact["p_pos"], args.y)
        print(f"\nwrote {args.plot}")
    if args.no_guidance:
        return
    print("\nguidance towards class 1 (prior weight 0.3); the fraction of samples in class 1 (exact at scale 1: 1.0)")
    print(f"{'sde':<7}{'guidance':<12}{'sampler':<16}{'scale':>6}{'class 1':>9}{'mean x_1':>10}{'std x_1':>9}")
    classes = torch.tensor([0, 1])
    for sde_name in args.sdes:
        sde = SDES[sde_name]()
        labels = torch.ones(args.n, dtype=torch.long)
        for guidance in controllable.GUIDANCE:
            for sampler, steps in (("ancestral", 500), ("dpmpp_2m", 50)):
                for scale in args.scales:
                    if guidance == "classifier":

                        def classifier(x, t):
                            return mix.class_log_posterior(x, sde, t, classes)

                        score = controllable.classifier_guidance(mix.score_fn(sde), classifier, labels, scale)
                    else:
                        score = controllable.classifier_free_guidance(mix.class_score_fn(sde, classes), labels, scale)
                    x, _ = samplers.sample(
                        sampler,
                        sde,
                        score,
                        (args.n, 2),
                        steps=steps,
                        x_T=None,
                        generator=torch.Generator().manual_seed(1),
                        device="cpu",
                    )
                    x = x.double()
                    nearest = ((x.unsqueeze(1) - mix.means.unsqueeze(0)) ** 2).sum(2).argmin(1)
                    in_class = nearest == 1
                    print(
                        f"{sde_name:<7}{guidance:<12}{sampler:<16}{scale:>6.1f}{float(in_class.double().mean()):>9.4f}"
                        f"{float(x[in_class, 0].mean()):>10.4f}{float(x[in_class, 0].std()):>9.4f}"
                    )


if __name__ == "__main__":
    main()
