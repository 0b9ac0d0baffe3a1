"""A published model file in place of a checkpoint: score_sde_pytorch's `.pth` or EDM's `.pkl`.

`config.sampling.checkpoint` names one of our checkpoint directories, or such a file; sample, eval
and the benchmark's checkpoint target then use the file as they use a checkpoint:

    score_sde_pytorch  `checkpoint_<k>.pth` (model and EMA weights, read with weights_only=True) of
                       an NCSN++ / DDPM++ / DDPM network, continuous or discrete-time. The file holds
                       no configuration, so its run's settings come from the JSON file named by
                       config.sampling.checkpoint_settings:
                           {"model": {...}, "data": {...}, "training": {"sde": ..., "continuous": ...}}
                       the values of that run's config.model, config.data and config.training
                       (score_sde keeps configs as Python files, which we never execute: copy them).
    EDM                `network-snapshot-<kimg>.pkl` / `edm-cifar10-32x32-uncond-vp.pkl` ...: its EMA
                       denoiser, read by `scoresde.models.load_edm_snapshot` (an allow-listed
                       unpickler: nothing in the file is imported or executed). The file describes
                       its network fully; it works under any of our SDEs (`score.DenoiserScore`:
                       the denoiser is told sigma(t) / alpha(t)), data in [-1, 1], one-hot labels.

Where the run's config and the file both say something they must agree, or the run is refused
with the values to set: the data shape, the data range (config.data.centered), the class count
and, for score_sde files, the SDE and its parameters (its networks were trained under one SDE).

The "step" of a file is score_sde's stored step, or the kimg in an EDM snapshot's name (0 if none).
"""

from __future__ import annotations

import inspect
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from scoresde.models import score_sde_pytorch
from scoresde.models.edm_snapshot import load_edm_snapshot, snapshot_kimg
from scoresde.score import DenoiserScore
from scoresde.sde_lib import SDE, SDES

SUFFIXES = {".pth": "score_sde_pytorch", ".pt": "score_sde_pytorch", ".pkl": "edm"}


def is_published(path: str | Path) -> bool:
    """Whether config.sampling.checkpoint names a model file (not one of our checkpoint directories).

    Raises:
        ValueError: for a file whose suffix says neither format.
    """
    if not path or not Path(path).is_file():
        return False
    if Path(path).suffix not in SUFFIXES:
        raise ValueError(
            f"config.sampling.checkpoint={str(path)!r} is a file, but neither a score_sde_pytorch checkpoint "
            f"(.pth) nor an EDM snapshot (.pkl); our own checkpoints are directories (checkpoints/step_<k>)"
        )
    return True


@dataclass
class Published:
    """A loaded model file: the network (on the CPU, in eval mode), its score adapter and what the run must agree with."""

    path: Path
    kind: str  # a value of SUFFIXES
    net: torch.nn.Module
    step: int
    data_shape: tuple[int, ...]
    centered: bool
    num_classes: int
    score_fn_for: Callable[[torch.nn.Module, SDE], Callable]
    sde_settings: dict  # config.sde values the file requires (empty: any SDE)

    def check(self, config, data_shape: tuple[int, ...]) -> None:
        """Refuse a run whose config disagrees with the file (module docstring), naming every difference."""
        problems = []
        if tuple(data_shape) != self.data_shape:
            problems.append(f"the network makes examples of shape {self.data_shape}, config.data gives {tuple(data_shape)}")
        if bool(config.data.centered) != self.centered:
            problems.append(f"--config.data.centered={self.centered} (the network's data range)")
        if int(config.model.num_classes) != self.num_classes:
            problems.append(f"--config.model.num_classes={self.num_classes}")
        for key, value in self.sde_settings.items():
            ours = getattr(config.sde, key)
            if (ours.lower() if isinstance(ours, str) else float(ours)) != value:
                problems.append(f"--config.sde.{key}={value}")
        if problems:
            raise ValueError(f"{self.path} does not fit this run's config; set: " + "; ".join(problems))


def load(config, *, ema: bool) -> Published:
    """The model file named by config.sampling.checkpoint (`is_published`), with EMA or raw weights.

    Raises:
        ValueError: unreadable or refused files (see the loader), or missing settings.
    """
    path = Path(config.sampling.checkpoint)
    if SUFFIXES[path.suffix] == "edm":
        return _edm(path, ema)
    return _score_sde_pytorch(path, config.sampling.checkpoint_settings, ema)


def _edm(path: Path, ema: bool) -> Published:
    if not ema:
        raise ValueError(f"{path} is an EDM snapshot, which keeps only the EMA weights; set --config.sampling.use_ema=True")
    net = load_edm_snapshot(path)
    labels = int(net.label_dim)

    def score_fn_for(module: torch.nn.Module, sde: SDE) -> Callable:
        return DenoiserScore(module, sde, num_classes=labels)

    shape = (int(net.img_channels), int(net.img_resolution), int(net.img_resolution))
    return Published(path, "edm", net, snapshot_kimg(path), shape, True, labels, score_fn_for, {})


def _score_sde_pytorch(path: Path, settings_path: str, ema: bool) -> Published:
    settings = read_settings(path, settings_path)
    model, data, training = settings["model"], settings["data"], settings["training"]
    net = score_sde_pytorch.load_score_sde_pytorch_checkpoint(path, model, data, ema=ema)
    # our SDE of the same name, with the parameters its constructor takes that score_sde keeps in config.model
    parameters = [k for k in inspect.signature(SDES[training["sde"]]).parameters if k in model]
    sde_settings = {"name": training["sde"], **{k: float(model[k]) for k in parameters}}
    continuous = bool(training["continuous"])
    if not continuous and training["sde"] in score_sde_pytorch.DISCRETE_TIME_SDES:
        sde_settings["num_scales"] = float(model["num_scales"])  # the chain the labels index

    def score_fn_for(module: torch.nn.Module, sde: SDE) -> Callable:
        return score_sde_pytorch.score_fn_for(module, sde, training["sde"], continuous=continuous)

    shape = (int(data["num_channels"]), int(data["image_size"]), int(data["image_size"]))
    return Published(path, "score_sde_pytorch", net, step_of(path), shape, bool(data["centered"]), 0, score_fn_for, sde_settings)


def step_of(path: Path) -> int:
    """A model file's step: score_sde_pytorch's stored `step`, or an EDM snapshot's kimg."""
    if SUFFIXES.get(Path(path).suffix) == "edm":
        return snapshot_kimg(path)
    return int(score_sde_pytorch.read_checkpoint(path).get("step", 0))


def read_settings(path: Path, settings_path: str) -> dict:
    """The JSON settings of a score_sde_pytorch checkpoint (module docstring), checked for their parts.

    Raises:
        ValueError: no settings file given, unreadable JSON, or missing parts (named).
    """
    if not settings_path:
        raise ValueError(
            f"{path} is a score_sde_pytorch checkpoint, which holds no configuration: write its run's settings as "
            'JSON {"model": {...}, "data": {...}, "training": {"sde": ..., "continuous": ...}} and pass '
            "--config.sampling.checkpoint_settings=FILE"
        )
    try:
        settings = json.loads(Path(settings_path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"config.sampling.checkpoint_settings={settings_path!r} is not a readable JSON file ({err})") from None
    parts = settings if isinstance(settings, dict) else {}
    missing = [k for k in ("model", "data", "training") if not isinstance(parts.get(k), dict)]
    missing += [f"training.{k}" for k in ("sde", "continuous") if not missing and k not in settings["training"]]
    if missing:
        raise ValueError(f"{settings_path}: the settings lack {', '.join(missing)}")
    if settings["training"]["sde"] not in score_sde_pytorch.TRAINING_SDES:
        valid = ", ".join(score_sde_pytorch.TRAINING_SDES)
        raise ValueError(f"{settings_path}: training.sde={settings['training']['sde']!r}; valid: {valid}")
    return settings
