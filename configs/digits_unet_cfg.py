"""The digits U-Net (configs/digits_unet_vp.py) made class-conditional for classifier-free guidance.

A learned class embedding is added to the time embedding; 10 % of the training labels are replaced
by "no class", so the one network learns both the conditional and the unconditional score. About
30 min to train on 2 CPU cores, about 4 min on one GPU (--config.device=cuda).

    python main.py --config configs/digits_unet_cfg.py --workdir runs/unet_cfg                      # train
    python main.py --config configs/digits_unet_cfg.py --workdir runs/unet_cfg --mode conditional   # guided grids
"""

from configs.digits_mlp_cfg import with_classifier_free_guidance
from configs.digits_unet_vp import get_config as digits_unet_config


def get_config():
    return with_classifier_free_guidance(digits_unet_config())
