"""A residual MLP on a 2-D toy distribution under the VE SDE (the SMLD / NCSN limit).

sigma_max follows Song & Ermon (2020, technique 1): about the largest distance between two data
points, which is about 4 for the toy sets here.
"""

from scoresde.config.defaults import get_config as base_config


def get_config():
    config = base_config()
    config.data.dataset = "eight_gaussians"
    config.sde.name = "vesde"
    config.sde.sigma_min = 0.01
    config.sde.sigma_max = 5.0
    return config
