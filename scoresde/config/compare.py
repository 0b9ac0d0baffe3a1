"""A checkpoint's config against this run's: the values that decide what the weights compute.

Loading weights under another SDE, parameterisation, time label or architecture runs without an
error and produces garbage, so `check_checkpoint_config` refuses a checkpoint whose saved
config.json differs from the run's config in a model-defining value (training's resume and every
mode that loads a checkpoint call it); `config.allow_config_mismatch` turns the refusal into a warning.
"""

from __future__ import annotations

import inspect
import json
from pathlib import Path
from typing import Any

import ml_collections
from absl import logging

from scoresde.models import MODELS
from scoresde.sde_lib import SDES

# What the weights of a checkpoint compute is fixed by these values (with the SDE's and the network's
# own constructor arguments, read from their signatures): loading the weights under other values runs
# without an error and produces garbage, so a mismatch is refused (config.allow_config_mismatch).
DATA_DEFINING = ("dataset", "pad_to", "image_size", "grayscale", "centered")
ADAPTER_DEFINING = ("name", "parameterization", "time_label", "scale_input", "sigma_data", "num_classes")
NOT_DEFINING = {"data_shape", "dropout", "init_scale"}  # training-only knobs of the constructors


def model_defining_values(config: dict) -> dict[str, Any]:
    """The values of a config (as a plain dict, e.g. a checkpoint's config.json) that decide what
    its network computes: the data's shape and range, the SDE and its parameters, the network's
    architecture and its score adapter. Keys the config lacks are left out."""
    values: dict[str, Any] = {}

    def take(section: str, keys) -> None:
        part = config.get(section) or {}
        for key in keys:
            if key in part:
                values[f"{section}.{key}"] = json.loads(json.dumps(part[key]))  # tuples and lists alike

    take("data", DATA_DEFINING)
    sde, model = config.get("sde") or {}, config.get("model") or {}
    sde_class = SDES.get(str(sde.get("name", "")).lower())
    take("sde", ("name", *(inspect.signature(sde_class).parameters if sde_class else ())))
    if model.get("time_label") == "index":  # the label t (N - 1) / T depends on N
        take("sde", ("num_scales",))
    model_class = MODELS.get(str(model.get("name")))
    take("model", (*ADAPTER_DEFINING, *(set(inspect.signature(model_class).parameters) - NOT_DEFINING if model_class else ())))
    return values


def check_checkpoint_config(config: ml_collections.ConfigDict, directory: str | Path) -> None:
    """Refuse a checkpoint whose saved config.json differs from `config` in a model-defining value.

    With config.allow_config_mismatch the differences are logged as a warning instead. A
    checkpoint without config.json (written by other code) is accepted with a warning.

    Raises:
        ValueError: the differences, one line each, naming the checkpoint; or an unreadable config.json.
    """
    from scoresde.train import checkpoint

    saved = checkpoint.read_config(directory)
    if saved is None:
        logging.warning("checkpoint %s has no config.json: cannot check that it was trained with this config", directory)
        return
    ours, theirs = model_defining_values(config.to_dict()), model_defining_values(saved)
    differences = [
        f"config.{key}: {theirs[key]!r} in the checkpoint, {ours[key]!r} in this run"
        for key in ours
        if key in theirs and ours[key] != theirs[key]
    ]
    if not differences:
        return
    text = f"checkpoint {directory} was written under another model-defining config:\n" + "\n".join(differences)
    if config.allow_config_mismatch:
        logging.warning("%s\nloading it anyway (config.allow_config_mismatch=True)", text)
        return
    raise ValueError(f"{text}\nRun with the checkpoint's values, or set --config.allow_config_mismatch=True to load it anyway")
