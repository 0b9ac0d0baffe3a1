"""Sampler overhead per step: ours against k-diffusion's, in one process, interleaved (not a test).

    pip install --no-deps k-diffusion torchsde trampoline     # only for this script
    python benchmarks/peer_overhead.py

The score (or denoiser) costs nothing (it returns a fixed tensor of zeros), so the time per step is
the sampler's own arithmetic and bookkeeping: 4096 x 64 float32 samples, 50 steps, the median of 9
rounds after 2 warm-up rounds. Rounds interleave the samplers so that this machine's speed drift
(about 30 % on the 2-core VM) hits all of them alike. k-diffusion's `sampling` module is loaded
without its package `__init__` (which imports training-only dependencies); torchvision, imported
by its utils for image helpers the samplers never call, is stubbed when it is not installed.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import time
import types
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from scoresde import samplers
from scoresde.sde_lib import VPSDE


def load_k_diffusion_sampling():
    """k_diffusion.sampling without k_diffusion/__init__.py, or None when k-diffusion is not installed."""
    spec = importlib.util.find_spec("k_diffusion")
    if spec is None or not spec.submodule_search_locations:
        return None
    if importlib.util.find_spec("torchvision") is None:
        for name in ("torchvision", "torchvision.transforms", "torchvision.transforms.functional"):
            sys.modules.setdefault(name, types.ModuleType(name))
    package = types.ModuleType("k_diffusion")
    package.__path__ = list(spec.submodule_search_locations)
    sys.modules["k_diffusion"] = package
    import k_diffusion.sampling

    return k_diffusion.sampling


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    x0 = torch.randn(4096, 64, generator=torch.Generator().manual_seed(0))
    zeros = torch.zeros_like(x0)

    def ours(name):
        return lambda: samplers.sample(
            name, VPSDE(), lambda x, t: zeros, x_T=x0, steps=args.steps, time_grid="log_snr", denoise=False
        )

    cases = {f"scoresde {name}": ours(name) for name in ("ddim", "dpmpp_2m", "dpmpp_3m", "unipc", "ipndm", "lms")}
    K = load_k_diffusion_sampling()
    if K is None:
        print("k-diffusion is not installed (pip install --no-deps k-diffusion torchsde trampoline): ours only")
    else:
        sigmas = K.get_sigmas_karras(args.steps, 0.002, 80.0)

        def theirs(fn):
            return lambda: fn(lambda x, sigma, **kwargs: zeros, x0.clone(), sigmas, disable=True)

        cases.update(
            {
                "k-diffusion dpmpp_2m": theirs(K.sample_dpmpp_2m),
                "k-diffusion lms": theirs(K.sample_lms),
                "k-diffusion euler": theirs(K.sample_euler),
            }
        )
    times = {name: [] for name in cases}
    for round_ in range(2 + args.rounds):
        for name, run in cases.items():
            start = time.perf_counter()
            run()
            if round_ >= 2:
                times[name].append((time.perf_counter() - start) / args.steps)
    print(
        f"torch {torch.__version__}, {args.threads} threads, 4096 x 64 float32, {args.steps} steps, free score, "
        f"median of {args.rounds} interleaved rounds"
    )
    for name, values in times.items():
        print(f"  {name:22s} {1e3 * np.median(values):.3f} ms per step (min {1e3 * min(values):.3f})")


if __name__ == "__main__":
    main()
