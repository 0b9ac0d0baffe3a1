"""Time the paper's CIFAR-10 score networks on the CPU: forward pass and training step.

    python benchmarks/unet_speed.py                      # NCSN++ and DDPM++, batch 8, 2 threads
    python benchmarks/unet_speed.py --configs ncsnpp_ve --batch 8 --threads 2 --repeats 5 --profile

A training step is forward + backward + Adam step on the denoising loss's shape of work (a random
target), in train mode (dropout on); a forward pass is in eval mode without gradients. Figures are
medians over `--repeats` rounds after one warm-up round. Each round times our network and "before",
the same network with FIR resampling and attention computed the straightforward way (upfirdn on a
(batch x channels, 1, H, W) view, attention by einsums with an explicit softmax, as a direct port of
the reference does), interleaved, so the ratio is not blurred by this machine's drifting speed; the
printed max |diff| is their output difference relative to the output scale. `--profile` prints the
operators that take the time.

Reference (from issue 4, same machine kind, batch 8, 2 threads): score_sde_pytorch's own NCSN++
takes about 5.7 s per training step and 1.24 s per forward, its DDPM++ about 3.7 s and 1.0 s.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root, for `configs`
import torch.nn.functional as F

from scoresde import run_lib
from scoresde.models import resampling
from scoresde.models.unet import SelfAttention

REFERENCE = {"ncsnpp_ve": (5.7, 1.24), "ddpmpp_vp": (3.7, 1.0)}  # score_sde_pytorch: (train step, forward) seconds


# --- the "before": the same network computed the way a straightforward port computes it --------------
# Written here from the formulas, to measure on the same machine at the same moment what our
# formulation saves (this VM's speed drifts by tens of percent over minutes, so comparing with
# figures taken at another time says little). Outputs are identical to float32 round-off.


def naive_upfirdn2d(x, kernel, *, up=1, down=1, pad=(0, 0)):
    """upfirdn by its definition on a (batch * channels, 1, H, W) view: zero insertion by reshaping,
    padding, a single-channel convolution, decimation by slicing."""
    batch, channels, height, width = x.shape
    y = x.reshape(-1, height, 1, width, 1)
    y = F.pad(y, (0, up - 1, 0, 0, 0, up - 1)).reshape(-1, 1, height * up, width * up)
    y = F.pad(y, (pad[0], pad[1], pad[0], pad[1]))
    y = F.conv2d(y, kernel.flip(0, 1).to(x.dtype)[None, None])
    y = y[:, :, ::down, ::down]
    return y.reshape(batch, channels, y.shape[-2], y.shape[-1])


def naive_attention(self, x):
    """Self-attention with three separate 1x1 layers as einsums and an explicit softmax over pixels."""
    batch, channels, height, width = x.shape
    h = self.norm(x)
    w_all, b_all = self.qkv.weight[:, :, 0, 0], self.qkv.bias
    q, k, v = (torch.einsum("bchw,oc->bohw", h, w) + b[None, :, None, None] for w, b in zip(w_all.chunk(3), b_all.chunk(3)))
    weights = torch.einsum("bchw,bcij->bhwij", q, k) * channels**-0.5
    weights = torch.softmax(weights.reshape(batch, height, width, height * width), dim=-1)
    a = torch.einsum("bhwij,bcij->bchw", weights.reshape(batch, height, width, height, width), v)
    out = torch.einsum("bchw,oc->bohw", a, self.proj.weight[:, :, 0, 0]) + self.proj.bias[None, :, None, None]
    return (x + out) * 2**-0.5 if self.skip_rescale else x + out


class naive_formulation:
    """Context manager: swap in the straightforward FIR and attention."""

    def __enter__(self):
        self.saved = resampling.upfirdn2d, SelfAttention.forward
        resampling.upfirdn2d, SelfAttention.forward = naive_upfirdn2d, naive_attention

    def __exit__(self, *exc):
        resampling.upfirdn2d, SelfAttention.forward = self.saved


def build(name: str) -> torch.nn.Module:
    config = importlib.import_module(f"configs.cifar10.{name}").get_config()
    return run_lib.build_model(config, (3, 32, 32))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configs", nargs="+", default=["ncsnpp_ve", "ddpmpp_vp"], help="names under configs/cifar10")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--profile", action="store_true", help="print the top operators of one training step")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(
        f"torch {torch.__version__}, {args.threads} threads, batch {args.batch}, median of {args.repeats}, "
        "ours and the straightforward formulation interleaved"
    )
    print(f"{'config':<14}{'params':>8}{'':>3}{'train step':>12}{'forward':>10}{'max |diff|':>12}")
    for name in args.configs:
        torch.manual_seed(0)
        net = build(name)
        with torch.no_grad():  # move off the near-zero initialisation so that outputs are comparable
            for p in net.parameters():
                p.add_(0.02 * torch.randn_like(p))
        optimizer = torch.optim.Adam(net.parameters(), lr=1e-8)
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
                return net(x, labels)

        times = {(kind, variant): [] for kind in ("train", "forward") for variant in ("ours", "before")}
        for repeat in range(args.repeats + 1):  # the first round warms up
            for variant in ("ours", "before"):
                for kind, fn in (("train", train_step), ("forward", forward)):
                    with naive_formulation() if variant == "before" else contextlib.nullcontext():
                        start = time.perf_counter()
                        fn()
                        if repeat:
                            times[kind, variant].append(time.perf_counter() - start)
        ours = forward()
        with naive_formulation():
            diff = (forward() - ours).abs().max().item() / ours.abs().max().item()
        n_params = sum(p.numel() for p in net.parameters()) / 1e6
        med = {key: statistics.median(value) for key, value in times.items()}
        for variant in ("before", "ours"):
            print(
                f"{name:<14}{n_params:>7.1f}M{'':>3}{med['train', variant]:>11.2f}s{med['forward', variant]:>9.2f}s"
                f"{'' if variant == 'ours' else f'{diff:>12.1e}'}  {variant}"
            )
        print(
            f"{'':<25}{med['train', 'before'] / med['train', 'ours']:>11.2f}x"
            f"{med['forward', 'before'] / med['forward', 'ours']:>9.2f}x  speed-up"
        )
        if name in REFERENCE:
            print(
                f"{'':<25}{REFERENCE[name][0]:>11.2f}s{REFERENCE[name][1]:>9.2f}s  score_sde_pytorch (issue 4's figures, "
                "another time on this machine kind)"
            )
        if args.profile:
            from torch.profiler import ProfilerActivity, profile

            with profile(activities=[ProfilerActivity.CPU]) as prof:
                train_step()
            print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15))


if __name__ == "__main__":
    main()
