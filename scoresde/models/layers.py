"""Building blocks shared by the score networks: embeddings of the time (noise level) label."""

from __future__ import annotations

import math

import torch
from torch import nn


class GaussianFourierProjection(nn.Module):
    """Random Fourier features of a scalar: [sin(2 pi W v), cos(2 pi W v)], W ~ N(0, scale^2).

    Tancik et al. 2020, "Fourier features let networks learn high frequency functions"; used for
    the noise level by Song et al. 2021 (NCSN++). The frequencies W are drawn once and fixed (a
    buffer, saved with the weights, never trained).

    Args:
        embedding_size: number of frequencies; the output has 2 * embedding_size features.
        scale: standard deviation of the frequencies.
    """

    W: torch.Tensor  # the fixed random frequencies (a buffer)

    def __init__(self, embedding_size: int = 128, scale: float = 16.0):
        super().__init__()
        if embedding_size < 1:
            raise ValueError(f"embedding_size must be >= 1, got {embedding_size}")
        if not scale > 0:
            raise ValueError(f"scale must be > 0, got {scale}")
        self.register_buffer("W", torch.randn(embedding_size) * scale)

    def forward(self, v: torch.Tensor) -> torch.Tensor:
        """v: shape (batch,) -> features of shape (batch, 2 * embedding_size)."""
        proj = v[:, None].to(self.W.dtype) * self.W[None, :] * 2 * math.pi
        return torch.cat([torch.sin(proj), torch.cos(proj)], dim=-1)


def sinusoidal_embedding(v: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Transformer-style embedding of a scalar (Vaswani et al. 2017; DDPM's timestep embedding).

    emb_k = sin(v / max_period^(k / (dim/2 - 1))) for the first half, cos for the second.

    Args:
        v: shape (batch,).
        dim: even output size.

    Returns:
        shape (batch, dim).
    """
    if dim % 2 or dim < 4:
        raise ValueError(f"dim must be even and >= 4, got {dim}")
    half = dim // 2
    freqs = torch.exp(torch.arange(half, device=v.device, dtype=torch.float32) * -(math.log(max_period) / (half - 1)))
    args = v.float()[:, None] * freqs[None, :]
    return torch.cat([torch.sin(args), torch.cos(args)], dim=-1)


def variance_scaling_(weight: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
    """In-place uniform init with variance scale / fan_avg (fan_avg = (fan_in + fan_out) / 2).

    DDPM's and NCSN++'s `default_init` (Ho et al. 2020; Song et al. 2021), the "fan_avg, uniform"
    variance scaling of Glorot & Bengio (2010). A scale of 0 stands for 1e-10: layers that close a
    residual branch start almost at zero, so every block starts close to the identity.
    """
    scale = 1e-10 if scale == 0 else scale
    receptive = weight[0][0].numel() if weight.ndim > 2 else 1
    fan_in, fan_out = weight.shape[1] * receptive, weight.shape[0] * receptive
    bound = math.sqrt(3.0 * scale / ((fan_in + fan_out) / 2))
    with torch.no_grad():
        return weight.uniform_(-bound, bound)


def conv2d(in_ch: int, out_ch: int, kernel_size: int = 3, *, init_scale: float = 1.0, **kwargs) -> nn.Conv2d:
    """A conv layer with 'same' padding (odd kernel), variance-scaling weights and a zero bias."""
    conv = nn.Conv2d(in_ch, out_ch, kernel_size, padding=kernel_size // 2, **kwargs)
    variance_scaling_(conv.weight, init_scale)
    assert conv.bias is not None
    nn.init.zeros_(conv.bias)
    return conv


def linear(in_features: int, out_features: int, *, init_scale: float = 1.0) -> nn.Linear:
    """A dense layer with variance-scaling weights and a zero bias."""
    layer = nn.Linear(in_features, out_features)
    variance_scaling_(layer.weight, init_scale)
    nn.init.zeros_(layer.bias)
    return layer


def group_norm(channels: int, groups: int | None = None) -> nn.GroupNorm:
    """GroupNorm with eps 1e-6 and NCSN++'s min(channels // 4, 32) groups, or `groups` groups (DDPM's
    U-Net, Ho et al. 2020, always uses 32).

    Raises:
        ValueError: if the groups do not divide the channels (e.g. 144 channels, 32 groups).
    """
    rule = "min(channels // 4, 32)" if groups is None else "norm_groups"
    groups = max(1, min(channels // 4, 32)) if groups is None else groups
    if groups < 1 or channels % groups:
        raise ValueError(
            f"GroupNorm cannot split {channels} channels into {groups} groups ({rule}); "
            "choose nf so that every level's channel count, and every sum of two levels' counts "
            "(the skip connections), is divisible by its group count"
        )
    return nn.GroupNorm(groups, channels, eps=1e-6)
