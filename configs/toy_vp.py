"""A residual MLP on a 2-D toy distribution under the VP SDE (the DDPM limit)."""

from scoresde.config.defaults import get_config as base_config


def get_config():
    config = base_config()
    config.data.dataset = "eight_gaussians"
    config.sde.name = "vpsde"
    return config
