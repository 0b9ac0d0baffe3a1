"""Time the paper's CIFAR-10 score networks on the CPU: forward pass and training step.

    python benchmarks/unet_speed.py                      # NCSN++ and DDPM++, batch 8, 2 threads
    python benchmarks/unet_speed.py --configs ncsnpp_ve --batch 8 --threads 2 --repeats 5 --profile

A training step is forward + backward + Adam step on the denoising loss's shape of work (a random
target), in train mode (dropout on); a forward pass is in eval mode without gradients. Figures are
medians over `--repeats` runs after one warm-up. `--profile` prints the operators that take the time.

Reference (from issue 4, same machine kind, batch 8, 2 threads): score_sde_pytorch's own NCSN++
takes about 5.7 s per training step and 1.24 s per forward, its DDPM++ about 3.7 s and 1.0 s.
"""

from __future__ import annotations

import argparse
import importlib
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root, for `configs`
from scoresde import run_lib  # noqa: E402

REFERENCE = {"ncsnpp_ve": (5.7, 1.24), "ddpmpp_vp": (3.7, 1.0)}  # score_sde_pytorch: (train step, forward) seconds


def build(name: str) -> torch.nn.Module:
    config = importlib.import_module(f"configs.cifar10.{name}").get_config()
    return run_lib.build_model(config, (3, 32, 32))


def median_seconds(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configs", nargs="+", default=["ncsnpp_ve", "ddpmpp_vp"], help="names under configs/cifar10")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--profile", action="store_true", help="print the top operators of one training step")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} threads, batch {args.batch}, median of {args.repeats}")
    print(f"{'config':<20}{'params':>10}{'train step':>13}{'forward':>10}{'vs score_sde (train, fwd)':>28}")
    for name in args.configs:
        torch.manual_seed(0)
        net = build(name)
        optimizer = torch.optim.Adam(net.parameters(), lr=2e-4)
        x = torch.rand(args.batch, 3, 32, 32)
        labels = torch.rand(args.batch) * 10 + 0.1

        def train_step():
            net.train()
            loss = (net(x, labels) - x).square().mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

        def forward():
            net.eval()
            with torch.no_grad():
                net(x, labels)

        train, fwd = median_seconds(train_step, args.repeats), median_seconds(forward, args.repeats)
        n_params = sum(p.numel() for p in net.parameters())
        speedup = ""
        if name in REFERENCE:
            speedup = f"{REFERENCE[name][0] / train:.2f}x, {REFERENCE[name][1] / fwd:.2f}x"
        print(f"{name:<20}{n_params / 1e6:>9.1f}M{train:>12.2f}s{fwd:>9.2f}s{speedup:>28}", flush=True)
        if args.profile:
            from torch.profiler import ProfilerActivity, profile

            with profile(activities=[ProfilerActivity.CPU]) as prof:
                train_step()
            print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15))


if __name__ == "__main__":
    main()
