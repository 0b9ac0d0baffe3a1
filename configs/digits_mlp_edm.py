"""The digits demo (`digits_mlp_vp`) with the EDM recipe of `toy_edm`.

Digits in [-1, 1]^64 are at most about 12 apart, so sigma_max = 20.
"""

from configs.digits_mlp_vp import get_config as digits_config
from configs.toy_edm import edm_recipe


def get_config():
    return edm_recipe(digits_config(), sigma_max=20.0)
