"""Config sections as the keyword arguments of the library functions they configure, written once.

The command layer calls the library with these, and the config check (`schema`) dry-runs the
library's own argument checks with the same arguments, so a config is judged by the code that will
use it. A config spells "not set" as "" or 0 (ml_collections keeps one type per key); the library
spells it None.
"""

from __future__ import annotations

import inspect
from typing import Any

from scoresde import data
from scoresde.models import MODELS


def dataset_options(config) -> dict[str, Any]:
    """`data.load_dataset`'s arguments from config.data (all but the seed, which is config.seed)."""
    d = config.data
    return {
        "name": d.dataset,
        "n": d.n_examples if d.dataset in data.TOY_DATASETS else None,
        "path": d.path or None,
        "pad_to": d.pad_to or None,
        "image_size": d.image_size or None,
        "grayscale": d.grayscale,
    }


def sampler_options(config, name: str | None = None) -> dict[str, Any]:
    """The options of sampler `name` (default: config.sampling.sampler): its section config.sampling.<name>."""
    section = config.sampling.get(name or config.sampling.sampler)
    return section.to_dict() if section is not None else {}


def model_options(config) -> dict[str, Any]:
    """`models.get_model`'s options for config.model.name from config.model: the keys in the
    network's signature (config.model holds the options of every network: the MLP's width, the
    U-Net's nf, ...)."""
    accepted = inspect.signature(MODELS[config.model.name]).parameters
    return {k: v for k, v in config.model.items() if k in accepted and k != "data_shape"}


def score_options(config) -> dict[str, Any]:
    """`score.NetworkScore`'s options (how the network's output becomes a score) from config.model."""
    m = config.model
    return {
        "parameterization": m.parameterization,
        "time_label": m.time_label,
        "scale_input": m.scale_input,
        "sigma_data": m.sigma_data,
    }


def loop_policies(config) -> dict[str, Any]:
    """The training loop's settings that every loop of a run shares (the score network's and the
    classifier's): precision, the non-finite guard, logging, progress, reading ahead (thread and worker processes)."""
    t = config.training
    return {
        "precision": t.precision,
        "nonfinite": t.nonfinite,
        "log_freq": t.log_freq,
        "progress": t.progress,
        "tensorboard": t.tensorboard,
        "prefetch": config.data.prefetch,
        "num_workers": config.data.num_workers,
    }
