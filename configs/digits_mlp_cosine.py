"""The digits demo (`digits_mlp_vp`) under the cosine-schedule VP SDE (Nichol & Dhariwal 2021)."""

from configs.digits_mlp_vp import get_config as digits_config


def get_config():
    config = digits_config()
    config.sde.name = "cosinevpsde"
    # DDPM's own sampler: Euler–Maruyama on a uniform grid is unstable in the last steps before T,
    # where beta reaches thousands (beta h = 14 at 500 steps); ancestral steps are exact Gaussians.
    config.sampling.sampler = "ancestral"
    return config
