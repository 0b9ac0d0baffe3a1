"""An NCSN++-style U-Net on scikit-learn's digits (8x8, zero-padded to 16x16) under the VP SDE.

The real image run of the README (`make demo-unet`): about 30 minutes on 2 CPU cores. The network is
NCSN++'s architecture (BigGAN blocks, FIR resampling, residual input pyramid, Fourier time features)
scaled down: nf=32, three levels (16, 8, 4), attention at 8x8, 1.3 M parameters. Sampling uses a
fast ODE solver (UniPC, 25 steps) so that the final grid costs seconds, not minutes.
"""

from scoresde.config.defaults import get_config as base_config


def get_config():
    config = base_config()
    config.data.dataset = "digits"
    config.data.pad_to = 16
    config.data.test_fraction = 0.1
    config.sde.name = "vpsde"
    config.model.name = "unet"
    config.model.nf = 32
    config.model.ch_mult = (1, 2, 2)
    config.model.num_res_blocks = 1
    config.model.attn_resolutions = (8,)
    config.model.dropout = 0.0
    config.model.ema_decay = 0.999
    config.training.batch_size = 64
    config.training.n_steps = 5000
    config.training.checkpoint_freq = 500
    config.training.sample_freq = 2500
    config.training.log_freq = 100
    config.optim.lr = 1e-3
    config.optim.warmup = 200
    config.sampling.sampler = "unipc"
    config.sampling.steps = 25
    config.sampling.time_grid = "log_snr"
    config.sampling.n_samples = 500
    config.sampling.batch_size = 250
    return config
