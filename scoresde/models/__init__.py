"""Time-conditioned score networks and the weight average used for sampling.

`get_model(name, data_shape, **options)` builds a network by name; `MODELS` lists the names.
"""

from __future__ import annotations

from torch import nn

from scoresde.models.edm_snapshot import load_edm_snapshot
from scoresde.models.ema import ExponentialMovingAverage
from scoresde.models.layers import GaussianFourierProjection, sinusoidal_embedding
from scoresde.models.mlp import ScoreMLP
from scoresde.models.score_sde_pytorch import (
    from_score_sde_pytorch_config,
    load_score_sde_pytorch_checkpoint,
)
from scoresde.models.unet import ScoreUNet

MODELS = {"mlp": ScoreMLP, "unet": ScoreUNet}


def get_model(name: str, data_shape: tuple[int, ...], **options) -> nn.Module:
    """Build the score network `name` for examples of shape `data_shape`.

    Raises:
        ValueError: for an unknown name (listing the valid ones) or invalid options.
    """
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; valid: {', '.join(MODELS)}")
    try:
        return MODELS[name](tuple(data_shape), **options)
    except TypeError as err:  # an unknown keyword argument
        raise ValueError(f"invalid options for model {name!r}: {err}") from None


__all__ = [
    "ExponentialMovingAverage",
    "GaussianFourierProjection",
    "MODELS",
    "ScoreMLP",
    "ScoreUNet",
    "from_score_sde_pytorch_config",
    "get_model",
    "load_edm_snapshot",
    "load_score_sde_pytorch_checkpoint",
    "sinusoidal_embedding",
]
