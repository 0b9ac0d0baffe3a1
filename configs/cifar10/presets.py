"""Shared presets for the CIFAR-10 configurations of Song et al. (2021), table 3 / app. H.

`cifar10(sde_name)` holds what every CIFAR-10 run shares (data, optimiser, training); `ncsnpp` and
`ddpmpp` set the two architectures. The conventions match score_sde_pytorch, so a network trained
here is the same function as one trained there (and its checkpoints load either way):

    NCSN++ (VE):  label sigma, Fourier features of log sigma, output divided by sigma, data in [0, 1]
                  (the network maps x to 2x - 1)
    DDPM++ (VP, sub-VP): label 999 t, sinusoidal embedding, predicts the noise, data in [-1, 1]

These are for GPUs: a training step of NCSN++ at batch 128 is minutes on a 2-core CPU.
"""

from scoresde.config.defaults import get_config as base_config


def cifar10(sde_name: str):
    config = base_config()
    config.data.dataset = "cifar10"
    config.data.path = "data"  # torchvision's root folder (see the README's "Data" section)
    config.data.random_flip = True
    config.data.test_fraction = 0.02
    config.sde.name = sde_name
    config.model.name = "unet"
    config.model.scale_input = False
    config.model.dropout = 0.1
    config.model.nf = 128
    config.model.ch_mult = (1, 2, 2, 2)
    config.model.num_res_blocks = 4
    config.model.attn_resolutions = (16,)
    config.training.batch_size = 128
    config.training.n_steps = 1_300_000
    config.training.checkpoint_freq = 50_000
    config.training.sample_freq = 50_000
    config.training.log_freq = 100
    config.training.reduce = "sum"
    config.optim.lr = 2e-4
    config.optim.warmup = 5000
    config.optim.grad_clip = 1.0
    config.sampling.n_samples = 64
    config.sampling.batch_size = 64
    return config


def ncsnpp(config, *, deep: bool = False):
    """NCSN++: FIR resampling, residual input pyramid, Fourier embedding of log sigma, output / sigma."""
    m = config.model
    m.resblock_type, m.fir, m.progressive, m.progressive_input = "biggan", True, "none", "residual"
    m.embedding_type, m.fourier_scale, m.log_label = "fourier", 16.0, True
    m.scale_by_sigma, m.parameterization, m.time_label = True, "score", "sigma"
    m.center_input, config.data.centered = True, False
    m.ema_decay = 0.999
    m.num_res_blocks = 8 if deep else 4
    config.sampling.sampler = "predictor_corrector"
    pc = config.sampling.predictor_corrector
    pc.predictor, pc.corrector = "reverse_diffusion", "langevin"
    return config


def ddpmpp(config, *, deep: bool = False):
    """DDPM++: no FIR, no progressive paths, sinusoidal embedding of 999 t, predicts the noise."""
    m = config.model
    m.resblock_type, m.fir, m.progressive, m.progressive_input = "biggan", False, "none", "none"
    m.embedding_type, m.log_label, m.scale_by_sigma = "positional", False, False
    m.parameterization, m.time_label = "eps", "999t"
    m.center_input, config.data.centered = False, True
    m.ema_decay = 0.9999
    m.num_res_blocks = 8 if deep else 4
    config.training.reduce = "mean"
    config.sampling.sampler = "predictor_corrector"
    pc = config.sampling.predictor_corrector
    pc.predictor, pc.corrector = "euler_maruyama", "none"
    return config
