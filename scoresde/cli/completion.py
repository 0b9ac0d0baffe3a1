"""The completion modes' shared run: a controllable method with the configured sampler, or by SMC."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

import torch

from scoresde.cli.experiment import Experiment, named_time_grid, sampler_arguments


def complete(config, exp: Experiment, out_root: Path, smc: Callable, replacement: Callable) -> tuple[torch.Tensor, Path, dict]:
    """Runs controllable.method on the chosen images: `smc(**kwargs)` (particles, info) or
    `replacement(sampler, **kwargs)` (x, info) with the configured sampler. Returns one completion
    per image, the output folder out_root/<sampler or smc_K>/ (created) and the summary's common part."""
    c, s = config.controllable, config.sampling
    generator = torch.Generator(exp.device).manual_seed(s.seed)
    start = time.perf_counter()
    if c.method == "smc":
        particles, info = smc(n_particles=c.particles, steps=s.steps, eps=s.eps, generator=generator)
        x = particles[:, 0]  # particles are equally weighted after the final resampling: any one is a draw
    else:
        x, info = replacement(
            s.sampler,
            noise=c.noise or None,
            generator=generator,
            **sampler_arguments(config, named_time_grid(config, "controllable")),
        )
    seconds = time.perf_counter() - start
    out = out_root / (f"smc_{c.particles}" if c.method == "smc" else s.sampler)
    out.mkdir(parents=True, exist_ok=True)
    common = {
        "method": c.method,
        "sampler": s.sampler if c.method != "smc" else "smc_ancestral",
        "n_images": len(x),
        "nfe": info["nfe"],
        "seconds": seconds,
    }
    return x, out, common
