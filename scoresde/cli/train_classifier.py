"""`--mode train_classifier`: the noise-conditional classifier of classifier guidance, on the config's data.

Writes workdir/classifier/: checkpoints step_<k>/ (resumed like training), metrics.jsonl (and
TensorBoard events) of the loss, and accuracy.json (the accuracy on the test split at several
noise levels).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from absl import logging

from scoresde.cli.experiment import (
    Experiment,
    labels_of,
    newest_checkpoint,
    process_group,
    to_model_tensor,
    validate,
)
from scoresde.config import arguments
from scoresde.models.classifier import NoiseConditionalClassifier
from scoresde.models.ema import ExponentialMovingAverage
from scoresde.train import checkpoint, distributed, loop, objectives

CLASSIFIER_DIR = "classifier"


def build_classifier(config, exp: Experiment) -> NoiseConditionalClassifier:
    c = config.classifier
    n_classes = int(labels_of(config, exp.train_data).max()) + 1
    torch.manual_seed(config.seed)
    return NoiseConditionalClassifier(
        exp.train_data.shape,
        n_classes,
        exp.sde,
        width=c.width,
        depth=c.depth,
        embed_dim=c.embed_dim,
        fourier_scale=c.fourier_scale,
        dropout=c.dropout,
        sigma_data=config.model.sigma_data,
    ).to(exp.device)


def noisy_accuracy(classifier, exp: Experiment, x: torch.Tensor, y: torch.Tensor, times=(0.01, 0.1, 0.3, 0.5, 0.8, 1.0)) -> dict:
    """Accuracy of the noise-conditional classifier on x(t) = alpha x + sigma z at several t / T."""
    generator = torch.Generator(exp.device).manual_seed(1)
    out = {}
    classifier.eval()
    with torch.no_grad():
        for fraction in times:
            t = torch.full((len(x),), fraction * exp.sde.T, device=exp.device)
            mean, std = exp.sde.marginal_prob(x, t)
            xt = mean + std.reshape(-1, *[1] * (x.ndim - 1)) * torch.randn(x.shape, generator=generator, device=exp.device)
            out[f"{fraction:g}T"] = float((classifier(xt, t).argmax(1).cpu() == y).float().mean())
    return out


def classifier_settings(config) -> loop.Settings:
    """The training loop's settings for the classifier: its own steps, batch, learning rate and
    checkpoints (in workdir/classifier/, two kept, no meta checkpoints); the loop-wide policies
    (precision, non-finite guard, logging) of config.training."""
    c = config.classifier
    return loop.Settings(
        n_steps=c.n_steps,
        batch_size=c.batch_size,
        lr=c.lr,
        seed=config.seed,
        checkpoint_freq=c.checkpoint_freq,
        keep_checkpoints=2,
        checkpoints="",  # the checkpoints are the classifier folder's step_<k>/
        meta_checkpoints="",
        name="classifier",
        **arguments.loop_policies(config),
    )


def train_classifier(config, workdir: str | Path) -> dict:
    """Train the noise-conditional classifier of config.classifier (resumes from its newest checkpoint).

    Cross-entropy on x(t) = alpha(t) x(0) + sigma(t) z with t ~ U[training.eps, T]
    (`objectives.NoisyClassification`), Adam, through the training loop (`train.loop.Trainer`): exact
    resume, SIGTERM / SIGINT checkpoints, the non-finite guard and DDP under torchrun.
    """
    workdir = Path(workdir)
    validate(config)
    with process_group(config) as (ctx, device):
        exp = Experiment(config, device=device)
        model = build_classifier(config, exp)
        ema = ExponentialMovingAverage(model, decay=config.classifier.ema_decay)
        optimizer = torch.optim.Adam(model.parameters(), lr=config.classifier.lr)
        objective = objectives.NoisyClassification(
            exp.sde, exp.x_train, labels_of(config, exp.train_data).to(exp.device), seed=config.seed, eps=config.training.eps
        )
        root = workdir / CLASSIFIER_DIR
        settings = classifier_settings(config)
        trainer = loop.Trainer(
            model, ema, optimizer, objective, settings, root, ctx, device=exp.device, run_config=config.to_dict()
        )
        trainer.run(trainer.resume())
        summary: dict = {}
        if ctx.is_main:
            found = newest_checkpoint(root, "train the classifier first")
            checkpoint.load_weights(found, model, ema=True)
            x_test = to_model_tensor(config, exp.test_data, exp.device)
            summary = {
                "checkpoint": str(found),
                "step": checkpoint.step_of(found),
                "n_classes": model.n_classes,
                "test_accuracy_at_t": noisy_accuracy(model, exp, x_test, labels_of(config, exp.test_data)),
            }
            (root / "accuracy.json").write_text(json.dumps(summary, indent=2))
            logging.info("noise-conditional classifier: %s", json.dumps(summary))
        distributed.barrier(ctx)
        return summary
