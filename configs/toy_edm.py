"""A residual MLP on a 2-D toy distribution under the EDM SDE (sigma(t) = t), trained and sampled
as Karras et al. (2022) do: preconditioned network, log-normal noise levels, EDM loss weighting,
Heun's method on the rho = 7 grid.

sigma_max is 10 rather than the paper's 80 (chosen for CIFAR-10): like VE's, it only needs to exceed
the largest distance between data points, about 4 here.
"""

from scoresde.config.defaults import get_config as base_config


def edm_recipe(config, sigma_max: float):
    """The EDM choices shared by the toy and digits configs."""
    config.sde.name = "edmsde"
    config.sde.sigma_max = sigma_max
    config.model.parameterization = "edm"  # D = c_skip x + c_out F(c_in x, c_noise)
    config.model.time_label = "log_sigma"  # c_noise: a function of log sigma
    config.training.time_distribution = "log_normal"  # log sigma ~ N(-1.2, 1.2^2)
    config.training.weighting = "edm"
    config.sampling.sampler = "heun"
    config.sampling.steps = 18  # 35 evaluations, the paper's CIFAR-10 setting
    config.sampling.time_grid = "karras"
    config.sampling.eps = 0.002  # sigma_min
    return config


def get_config():
    config = base_config()
    config.data.dataset = "eight_gaussians"
    return edm_recipe(config, sigma_max=10.0)
