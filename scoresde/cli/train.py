"""`--mode train`: train (resuming from the newest complete checkpoint) and write samples at the end.

Work directory:

    checkpoints/step_<k>/   complete checkpoints, `latest` names the newest (see scoresde.train.checkpoint)
    checkpoints-meta/       the single preemption checkpoint, written more often
    metrics.jsonl           one JSON record per log interval: step, loss, lr, steps/s
    metrics.dropped.jsonl   records of steps lost to an interruption and unreadable lines, kept
    .lock                   held (flock) by the run using the directory (scoresde.cli.workdir)
    tensorboard/            the same scalars as TensorBoard events (when tensorboard is installed)
    samples/step_<k>.png    sample pictures during training
    samples.npz, samples.png, loss.png, quality.json   written at the end of training
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from absl import logging

from scoresde.cli.experiment import Experiment, process_group, to_data_space, validate
from scoresde.cli.outputs import save_samples_picture, write_samples
from scoresde.eval import plotting
from scoresde.train import distributed, loop


def train(config, workdir: str | Path) -> dict:
    """Train (resuming from the newest complete checkpoint in workdir) and write samples at the end.

    Under torchrun every process runs this; rank 0 writes (see scoresde.train.loop).

    Returns:
        The quality figures of the final samples (an empty dict on ranks other than 0).

    Raises:
        loop.TrainingInterrupted: SIGTERM / SIGINT (a checkpoint at the current step is written).
        loop.NonFiniteLossError: the loss diverged and config.training.nonfinite is "stop".
    """
    workdir = Path(workdir)
    validate(config)
    with process_group(config) as (ctx, device):
        exp = Experiment(config, device=device)
        trainer = exp.trainer(workdir, ctx)
        start = trainer.resume(config.training.resume_from)
        c = config.training

        def pictures(done: int) -> None:
            if c.sample_freq and done % c.sample_freq == 0 and done != c.n_steps:
                n = min(config.sampling.n_samples, 256)
                x, info = trainer.sample(exp.sample, n, seed=config.sampling.seed, interruptible=True)
                if ctx.is_main and not info["interrupted"]:
                    path = workdir / "samples" / f"step_{done:08d}.png"
                    save_samples_picture(exp, to_data_space(config, torch.as_tensor(x), exp.train_data.is_image), path)

        trainer.run(start, on_step=pictures)
        x, info = trainer.sample(exp.sample, config.sampling.n_samples, seed=config.sampling.seed, progress=c.progress)
        figures = {}
        if ctx.is_main:
            header = {"step": c.n_steps, "sampler": config.sampling.sampler, "nfe": info["nfe"]}
            figures = write_samples(exp, workdir, x, step=c.n_steps, nfe=info["nfe"], header=header)
            records = loop.read_metrics(workdir / loop.METRICS_FILE)
            if records:
                steps, values = [r["step"] for r in records], [r["loss"] for r in records]
                plotting.save_loss_curve(workdir / "loss.png", steps, values, title="training loss", warmup=config.optim.warmup)
            logging.info("quality: %s", json.dumps(figures))
        distributed.barrier(ctx)
        return figures
