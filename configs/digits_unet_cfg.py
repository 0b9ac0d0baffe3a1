"""The digits U-Net (configs/digits_unet_vp.py) made class-conditional for classifier-free guidance.

A learned class embedding is added to the time embedding; 10 % of the training labels are replaced
by "no class", so the one network learns both the conditional and the unconditional score. About
30 min to train on 2 CPU cores, about 4 min on one GPU (--config.device=cuda).

    python main.py --config configs/digits_unet_cfg.py --workdir runs/unet_cfg                      # train
    python main.py --config configs/digits_unet_cfg.py --workdir runs/unet_cfg --mode conditional   # guided grids
"""

from configs.digits_unet_vp import get_config as digits_unet_config


def get_config():
    config = digits_unet_config()
    config.model.num_classes = 10
    config.training.label_dropout = 0.1
    config.sampling.sampler = "dpmpp_2m"
    config.sampling.steps = 50
    config.controllable.guidance = "free"
    config.controllable.scales = "0,1,2,4"
    return config
