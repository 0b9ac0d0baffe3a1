"""The demo: a residual MLP on scikit-learn's 8x8 handwritten digits under the VP SDE.

Sized to train in a few minutes on 2 CPU cores (see `make demo`).
"""

from scoresde.config.defaults import get_config as base_config


def get_config():
    config = base_config()
    config.data.dataset = "digits"
    config.data.test_fraction = 0.1
    config.sde.name = "vpsde"
    config.model.width = 512
    config.model.depth = 4
    config.training.batch_size = 128
    config.training.n_steps = 6000
    config.training.checkpoint_freq = 1000
    config.training.sample_freq = 3000
    config.training.log_freq = 200
    config.optim.lr = 5e-4
    config.optim.warmup = 500
    config.sampling.n_samples = 500
    config.sampling.batch_size = 500
    return config
