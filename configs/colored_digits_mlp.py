"""The demo's residual MLP on the colour digits (3x8x8), for --mode colorize.

Every class has its own stroke hue, all of equal brightness (scoresde.data.load_colored_digits), so
colouring a gray digit right means recognising it; the colorize summary reports how often the
class's hue comes back.

    python main.py --config configs/colored_digits_mlp.py --workdir runs/color                  # train (~6 min)
    python main.py --config configs/colored_digits_mlp.py --workdir runs/color --mode colorize
"""

from configs.digits_mlp_vp import get_config as digits_config


def get_config():
    config = digits_config()
    config.data.dataset = "colored_digits"
    config.sampling.sampler = "predictor_corrector"
    config.sampling.steps = 500
    return config
