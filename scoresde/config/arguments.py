"""Config sections as the keyword arguments of the library functions they configure, written once.

The command layer calls the library with these, and the config check (`schema`) dry-runs the
library's own argument checks with the same arguments, so a config is judged by the code that will
use it. A config spells "not set" as "" or 0 (ml_collections keeps one type per key); the library
spells it None.
"""

from __future__ import annotations

from typing import Any

from scoresde import data


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
