"""CIFAR-10, NCSN++ deep (8 blocks per level) with the VE SDE; Song et al. 2021, table 3."""

from configs.cifar10.presets import cifar10, ncsnpp


def get_config():
    return ncsnpp(cifar10("vesde"), deep=True)
