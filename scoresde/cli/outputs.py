"""What the modes write beside their numbers: sample files, pictures and the quick quality figure."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from scoresde.cli.experiment import Experiment, to_data_space
from scoresde.eval import metrics, plotting

GRID_COLUMNS = 16  # images per row of a before/after grid (`save_image_rows`)
# Held-out examples the quick quality figure compares with: a large set's first rows (of a shuffled
# split: a random subset) are read, not all of it.
QUALITY_MAX_TEST = 10_000


def save_samples_picture(exp: Experiment, samples: np.ndarray, path: Path) -> None:
    """A grid of the first 64 images below a row of real training images, or a scatter plot of toy
    points over the held-out data."""
    if exp.train_data.is_image:
        shown = samples[:64]
        columns = int(np.ceil(np.sqrt(len(shown))))
        real = np.asarray(exp.train_data.x[:columns])
        reference = real if real.shape[1:] == shown.shape[1:] else None
        plotting.save_image_grid(path, shown, nrow=columns, reference=reference)
    else:
        plotting.save_scatter(path, samples, reference=exp.test_data.x, title=path.stem)


def save_image_rows(path: Path, rows: list[np.ndarray]) -> None:
    """One grid row per image set (originals, input, result), the first GRID_COLUMNS images of each."""
    shown = min(len(rows[0]), GRID_COLUMNS)
    plotting.save_image_grid(path, np.concatenate([r[:shown] for r in rows]), nrow=shown)


def quality(exp: Experiment, samples: np.ndarray) -> dict:
    """Sliced Wasserstein distance from the samples to held-out data, next to the same distance from
    as many training examples (the noise floor a perfect model would reach)."""
    test = np.asarray(exp.test_data.x[:QUALITY_MAX_TEST])  # the first rows of a shuffled split: a random subset
    n = min(len(samples), len(exp.train_data.x))
    rng = np.random.default_rng(exp.config.seed)
    train_subset = np.asarray(exp.train_data.x[rng.choice(len(exp.train_data.x), n, replace=False)])
    k = exp.config.eval.n_projections
    return {
        "sliced_wasserstein_to_test": metrics.sliced_wasserstein(samples[:n], test, n_projections=k),
        "noise_floor_train_to_test": metrics.sliced_wasserstein(train_subset, test, n_projections=k),
        "n_samples": n,
        "n_test": len(test),
    }


def write_samples(exp: Experiment, out: Path, x, *, step: int, nfe: float, header: dict, data_space: bool = False) -> dict:
    """Samples `x` (model space; data space with `data_space`) into `out`: samples.npz (data
    space, with step and NFE), samples.png and quality.json ({**header, **quality}); returns the
    figures written."""
    samples = np.asarray(x) if data_space else to_data_space(exp.config, torch.as_tensor(x), exp.train_data.is_image)
    np.savez(out / "samples.npz", samples=samples, step=step, nfe=nfe)
    save_samples_picture(exp, samples, out / "samples.png")
    figures = {**header, **quality(exp, samples)}
    (out / "quality.json").write_text(json.dumps(figures, indent=2))
    return figures
