"""A residual MLP on a 2-D toy distribution under the cosine-schedule VP SDE (improved DDPM)."""

from scoresde.config.defaults import get_config as base_config


def get_config():
    config = base_config()
    config.data.dataset = "eight_gaussians"
    config.sde.name = "cosinevpsde"
    # DDPM's own sampler: Euler–Maruyama on a uniform grid is unstable in the last steps before T,
    # where beta reaches thousands (beta h = 14 at 500 steps); ancestral steps are exact Gaussians.
    config.sampling.sampler = "ancestral"
    return config
