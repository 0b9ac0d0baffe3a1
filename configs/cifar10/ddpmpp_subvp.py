"""CIFAR-10, DDPM++ with the sub-VP SDE; Song et al. 2021, table 3."""

from configs.cifar10.presets import cifar10, ddpmpp


def get_config():
    return ddpmpp(cifar10("subvpsde"))
