"""`--mode sample`: samples of a checkpoint with the configured sampler.

Writes workdir/sample/<sampler>/: samples.npz (data space, with the checkpoint's step and the NFE),
samples.png and quality.json (checkpoint, NFE, the time grid, the sliced Wasserstein figure).
"""

from __future__ import annotations

import json
from pathlib import Path

from absl import logging

from scoresde.cli.experiment import load_trained
from scoresde.cli.outputs import write_samples
from scoresde.train import checkpoint


def sample(config, workdir: str | Path) -> dict:
    """Load a checkpoint (EMA weights unless config.sampling.use_ema is False) and write samples."""
    workdir = Path(workdir)
    exp, found = load_trained(config, workdir)
    out = workdir / "sample" / config.sampling.sampler
    out.mkdir(parents=True, exist_ok=True)  # before the work: a directory that cannot be made fails now
    x, info = exp.sample(config.sampling.n_samples, seed=config.sampling.seed, progress=True)
    header = {
        "checkpoint": str(found),
        "ema": config.sampling.use_ema,
        "nfe": info["nfe"],
        "time_grid": [round(t, 6) for t in info["time_grid"].tolist()],
    }
    figures = write_samples(exp, out, x, step=checkpoint.step_of(found), nfe=info["nfe"], header=header)
    logging.info("wrote %s; quality: %s", out, json.dumps(figures))
    return figures
