"""`--mode train_classifier`: the noise-conditional classifier of classifier guidance, on the config's data.

Writes workdir/classifier/: checkpoints (resumed like training) and accuracy.json (the accuracy on
the test split at several noise levels).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from absl import logging
from tqdm.auto import tqdm

from scoresde import checkpoint, data, losses
from scoresde.cli.experiment import Experiment, labels_of, newest_checkpoint, to_model_tensor
from scoresde.models.classifier import NoiseConditionalClassifier
from scoresde.models.ema import ExponentialMovingAverage

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


def train_classifier(config, workdir: str | Path) -> dict:
    """Train the noise-conditional classifier of config.classifier (resumes from its newest checkpoint).

    Cross-entropy on x(t) = alpha(t) x(0) + sigma(t) z with t ~ U[training.eps, T], Adam, batches
    and noise drawn from (seed, step) so a resumed run repeats the same steps.
    """
    workdir = Path(workdir)
    exp = Experiment(config)
    c = config.classifier
    model = build_classifier(config, exp)
    ema = ExponentialMovingAverage(model, decay=c.ema_decay)
    optimizer = torch.optim.Adam(model.parameters(), lr=c.lr)
    root = workdir / CLASSIFIER_DIR
    for path in checkpoint.clean_partial(root):
        logging.info("removed the partial checkpoint %s", path)
    found = checkpoint.latest(root)
    start = checkpoint.restore(found, model, ema, optimizer)[0] if found else 0
    y_train = labels_of(config, exp.train_data).to(exp.device)
    x_train = exp.x_train
    bar = tqdm(total=c.n_steps, initial=start, desc="classifier", disable=None)
    model.train()
    for step in range(start, c.n_steps):
        idx = torch.as_tensor(data.batch_indices(len(x_train), c.batch_size, step, config.seed), device=exp.device)
        generator = torch.Generator(exp.device).manual_seed(config.seed * 1_000_003 + step + 7)
        x0, y = x_train[idx], y_train[idx]
        t = losses.sample_time(len(idx), exp.sde, config.training.eps, generator=generator, device=exp.device, dtype=x0.dtype)
        mean, std = exp.sde.marginal_prob(x0, t)
        xt = mean + std.reshape(-1, *[1] * (x0.ndim - 1)) * torch.randn(x0.shape, generator=generator, device=exp.device)
        loss = torch.nn.functional.cross_entropy(model(xt, t), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        ema.update(model)
        bar.update(1)
        bar.set_postfix(loss=f"{loss.item():.3f}", refresh=False)
        done = step + 1
        if done % c.checkpoint_freq == 0 or done == c.n_steps:
            checkpoint.save(root, done, model, ema, optimizer, config.to_dict(), keep=2)
    bar.close()
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
    return summary
