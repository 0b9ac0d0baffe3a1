"""The demo (`make demo`): a residual MLP on scikit-learn's 8x8 digits with the EDM recipe.

`digits_mlp_edm` (EDM preconditioning, log-normal noise levels, EDM loss weighting, Heun's method
on the Karras grid: 37 evaluations per sample) with the loss logged every 50 steps, so that
loss.png has 120 points. Measured on 2 shared CPU cores (another benchmark running, one torch
thread): 6000 steps and 500 samples in 6 min 20 s of wall time, sliced Wasserstein 0.0435 to the
held-out digits against a noise floor of 0.0449, and 71 % of the samples labelled with probability
> 0.9 by a classifier of clean digits (real held-out digits: 76 %). The VP MLP of `digits_mlp_vp`
reaches 0.0549 and 46 % in the same time.

Run as a module (`python -m configs.digits_demo WORKDIR [--seconds S]`) it prints those figures for
a finished run in words.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from configs.digits_mlp_edm import get_config as digits_edm_config

SEED, TEST_FRACTION, CONFIDENT = 42, 0.1, 0.9  # the split of main.py; "confident": top probability > 0.9


def get_config():
    config = digits_edm_config()
    config.training.log_freq = 50
    return config


def confident_shares(samples):
    """The share of `samples` ((N, 1, 8, 8) in [0, 1]) and of the held-out digits that a logistic
    regression trained on the clean training digits labels with probability > CONFIDENT (the
    classifier of benchmarks/digits_sample_quality.py)."""
    from sklearn.linear_model import LogisticRegression

    from scoresde import data

    train, test = data.train_test_split(data.load_dataset("digits"), TEST_FRACTION, seed=SEED)
    classifier = LogisticRegression(max_iter=2000).fit(train.x.reshape(len(train.x), -1), train.labels)

    def share(x):
        return float((classifier.predict_proba(x.reshape(len(x), -1)).max(axis=1) > CONFIDENT).mean())

    return share(samples), share(test.x)


def summary(workdir: Path, seconds: float | None = None) -> str:
    import numpy as np

    quality = json.loads((workdir / "quality.json").read_text())
    samples = np.load(workdir / "samples.npz")["samples"]
    recognised, real = confident_shares(samples)
    sw, floor = quality["sliced_wasserstein_to_test"], quality["noise_floor_train_to_test"]
    lines = [
        f"pictures: {workdir / 'samples.png'} (64 samples below 8 training digits), {workdir / 'loss.png'} (loss curve)",
        f"samples: sliced Wasserstein {sw:.4f} to the held-out digits, noise floor {floor:.4f} "
        f"({100 * (sw / floor - 1):+.0f} %); {100 * recognised:.0f} % recognised with confidence > {CONFIDENT} "
        f"by a classifier of clean digits (real digits: {100 * real:.0f} %)",
        f"sampler: {quality['sampler']}, {quality['nfe']:g} network evaluations per sample, {quality['n_samples']} samples",
    ]
    if seconds is not None:
        lines.append(f"wall time: {seconds / 60:.1f} minutes (set-up included)")
    return "\n".join(lines)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="Prints the demo's quality figures in words.")
    parser.add_argument("workdir", type=Path)
    parser.add_argument("--seconds", type=float, help="the run's wall time, printed with the figures")
    arguments = parser.parse_args()
    print(summary(arguments.workdir, arguments.seconds))
