"""`--mode sample`: samples of a checkpoint with the configured sampler, sharded and resumable.

Sample i uses its own seed config.sampling.seed + i (`scoresde.eval.shards`, as `--mode eval`):
the samples are written in shards of config.eval.shard_size under workdir/sample/<sampler>/shards/,
so a killed run resumes from the shards it wrote, `torchrun` splits the shards over processes,
and the samples are the same whatever the number of processes. A changed sampler, grid,
checkpoint or step count draws afresh. Then writes workdir/sample/<sampler>/: samples.npz (data
space, with the checkpoint's step, the NFE and the seeds), samples.png and quality.json
(checkpoint, NFE, the time grid, the sliced Wasserstein figure); with sampling.time_grid = "tuned"
also time_grid.json, the searched grid with its held-out comparison, reused by later runs on the
same checkpoint.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from absl import logging
from tqdm.auto import tqdm

from scoresde.cli.experiment import (
    Experiment,
    checkpoint_step,
    load_trained,
    process_group,
    sampler_from_spec,
    sampling_identity,
    seed_draw,
)
from scoresde.cli.outputs import write_samples
from scoresde.eval import shards
from scoresde.train import distributed

SHARDS_DIR = "shards"
GRID_FILE = "time_grid.json"  # sampling.time_grid = "tuned": the searched grid and its comparison


def sample(config, workdir: str | Path) -> dict:
    """Load a checkpoint (EMA weights unless config.sampling.use_ema is False) and write samples."""
    workdir, s = Path(workdir), config.sampling
    with process_group(config) as (ctx, device):
        exp, found = load_trained(config, workdir, Experiment(config, device))
        out = workdir / "sample" / s.sampler
        out.mkdir(parents=True, exist_ok=True)  # before the work: a directory that cannot be made fails now
        tuned = s.time_grid == "tuned"
        sampler = sampler_from_spec(config, s.sampler, "sample", config_grid=not tuned)
        step = checkpoint_step(found)
        # a searched grid is kept next to the samples, for this checkpoint: a rerun reads it back
        time_grid = exp.tuned_time_grid(s.seed, out / GRID_FILE, f"{found.name} step {step}") if tuned else sampler.time_grid
        plan = shards.Plan(s.n_samples, config.eval.shard_size, s.seed, sampling_identity(exp, sampler, time_grid, step))
        with tqdm(total=s.n_samples, desc="sampling", unit="sample", disable=None if ctx.is_main else True) as bar:
            bar.update(s.n_samples - sum(len(plan.seeds(k)) for k in shards.missing(out / SHARDS_DIR, plan)))
            shards.draw(
                out / SHARDS_DIR,
                plan,
                seed_draw(exp, sampler, time_grid),
                is_image=exp.train_data.is_image,
                batch_size=s.batch_size,
                rank=ctx.rank,
                world=ctx.world_size,
                progress=bar.update,
                replace=True,
            )
        distributed.barrier(ctx)
        if not ctx.is_main:
            return {}
        stored = np.concatenate(list(shards.samples(out / SHARDS_DIR, plan)))
        x = stored.astype(np.float32) / 255.0 if stored.dtype == np.uint8 else stored  # data space (images quantised)
        info = shards.sampling_info(out / SHARDS_DIR, plan)
        header = {
            "checkpoint": str(found),
            "ema": s.use_ema,
            "nfe": info["nfe"],
            "time_grid": info["time_grid"],
            "seeds": [plan.first_seed, plan.first_seed + plan.num_samples - 1],
        }
        figures = write_samples(exp, out, x, step=step, nfe=info["nfe"], header=header, data_space=True)
        logging.info("wrote %s; quality: %s", out, json.dumps(figures))
        return figures
