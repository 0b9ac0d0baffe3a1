"""A class-conditional residual MLP on the digits, trained with label dropout for classifier-free guidance.

The demo's network and schedule (configs/digits_mlp_vp.py) plus a class embedding; 10 % of the
training labels are replaced by "no class", so the one network also learns the unconditional score.

    python main.py --config configs/digits_mlp_cfg.py --workdir runs/cfg                      # train (~5 min)
    python main.py --config configs/digits_mlp_cfg.py --workdir runs/cfg --mode conditional   # guided grids
"""

from configs.digits_mlp_vp import get_config as digits_config


def with_classifier_free_guidance(config):
    """A class embedding, 10 % of the labels dropped to "no class", and guided grids at scales 0, 1, 2, 4."""
    config.model.num_classes = 10
    config.training.label_dropout = 0.1
    config.sampling.sampler = "dpmpp_2m"
    config.sampling.steps = 50
    config.controllable.guidance = "free"
    config.controllable.scales = "0,1,2,4"
    return config


def get_config():
    return with_classifier_free_guidance(digits_config())
