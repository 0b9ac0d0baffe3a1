"""`--mode conditional`: class-conditional samples of every class at each guidance scale.

Classifier guidance (with the classifier of --mode train_classifier) or classifier-free guidance
(a model trained with config.model.num_classes > 0). Writes workdir/conditional/: one grid per
scale and <guidance>.json with how often a classifier trained on clean data recognises the
requested class.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np
import torch
from absl import logging

from scoresde import controllable, data, samplers
from scoresde.cli.experiment import (
    feature_classifier,
    labels_of,
    load_trained,
    named_time_grid,
    newest_checkpoint,
    predicted_classes,
    sampler_arguments,
    to_data_space,
)
from scoresde.cli.train_classifier import CLASSIFIER_DIR, build_classifier
from scoresde.eval import plotting
from scoresde.train import checkpoint


def parse_scales(text: str) -> list[float]:
    """ "0,1,3" -> [0.0, 1.0, 3.0].

    Raises:
        ValueError: an empty list or a value that is not a finite number.
    """
    try:
        scales = [float(v) for v in str(text).split(",") if v.strip()]
    except ValueError:
        raise ValueError(f"config.controllable.scales must be comma-separated numbers, got {text!r}") from None
    if not scales or not all(math.isfinite(s) for s in scales):
        raise ValueError(f"config.controllable.scales must be comma-separated finite numbers, got {text!r}")
    return scales


def conditional(config, workdir: str | Path) -> dict:
    """Class-conditional samples of every class at each of controllable.scales (module docstring)."""
    workdir = Path(workdir)
    c, s = config.controllable, config.sampling
    scales = parse_scales(c.scales)
    exp, found = load_trained(config, workdir)
    n_classes = int(labels_of(config, exp.train_data).max()) + 1
    if c.guidance == "free":
        if not config.model.num_classes:
            raise ValueError("classifier-free guidance needs a class-conditional model: train with config.model.num_classes > 0")
        guided_for = lambda labels, scale: controllable.classifier_free_guidance(exp.score_fn, labels, scale)  # noqa: E731
    elif c.guidance == "classifier":
        classifier = build_classifier(config, exp)
        path = newest_checkpoint(Path(c.classifier_workdir or workdir) / CLASSIFIER_DIR, "run --mode train_classifier first")
        checkpoint.load_weights(path, classifier, ema=True)
        classifier.eval()
        guided_for = lambda labels, scale: controllable.classifier_guidance(exp.score_fn, classifier, labels, scale)  # noqa: E731
    else:
        raise ValueError(f"config.controllable.guidance: unknown {c.guidance!r}; valid: {', '.join(controllable.GUIDANCE)}")
    clean, clean_info = feature_classifier(exp, workdir)
    labels = torch.arange(n_classes).repeat_interleave(c.n_per_class).to(exp.device)
    out = workdir / "conditional"
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for scale in scales:
        generator = torch.Generator(exp.device).manual_seed(s.seed)
        start = time.perf_counter()
        x, info = samplers.sample(
            s.sampler,
            exp.sde,
            guided_for(labels, scale),
            (len(labels), *exp.train_data.shape),
            generator=generator,
            device=exp.device,
            **sampler_arguments(config, named_time_grid(config, "controllable")),
        )
        seconds = time.perf_counter() - start
        images = to_data_space(config, x, exp.train_data.is_image)
        recognised = float(
            (predicted_classes(clean, torch.as_tensor(to_model_tensor_like(config, images))) == labels.cpu()).float().mean()
        )
        rows.append(
            {
                "scale": scale,
                "recognised": recognised,
                "nfe": info["nfe"],
                "seconds": seconds,
                "network_evaluations_per_score": controllable.network_evaluations_per_score(c.guidance, scale),
            }
        )
        shown = min(c.n_per_class, 10)
        grid = images.reshape(n_classes, c.n_per_class, *images.shape[1:])[:, :shown].reshape(-1, *images.shape[1:])
        if exp.train_data.is_image:
            plotting.save_image_grid(out / f"{c.guidance}_scale{scale:g}.png", grid, nrow=shown)
        logging.info("%s guidance, scale %g: %.1f%% recognised as the requested class", c.guidance, scale, 100 * recognised)
    summary = {
        "checkpoint": str(found),
        "guidance": c.guidance,
        "sampler": s.sampler,
        "steps": s.steps,
        "n_per_class": c.n_per_class,
        "n_classes": n_classes,
        "clean_classifier_test_accuracy": clean_info["test_accuracy"],
        "results": rows,
    }
    (out / f"{c.guidance}.json").write_text(json.dumps(summary, indent=2))
    return summary


def to_model_tensor_like(config, images: np.ndarray) -> np.ndarray:
    """Images in [0, 1] back to the model's range (what the clean classifier was trained on)."""
    return data.to_model_range(images, config.data.centered).astype(np.float32)
