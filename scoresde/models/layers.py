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

    def __init__(self, embedding_size: int = 128, scale: float = 16.0):
        super().__init__()
        if embedding_size < 1:
            raise ValueError(f"embedding_size must be >= 1, got {embedding_size}")
        if not scale > 0:
            raise ValueError(f"scale must be > 0, got {scale}")
        self.register_buffer("W", torch.randn(embedding_size) * scale)

    def forward(self, v: torch.Tensor) -> torch.Tensor:
        """v: shape (batch,) -> features of shape (batch, 2 * embedding_size)."""
        proj = v[:, None].to(self.W.dtype) * self.W[None, :] * (2 * math.pi)
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
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=v.device, dtype=torch.float32) / (half - 1))
    args = v.float()[:, None] * freqs[None, :]
    return torch.cat([torch.sin(args), torch.cos(args)], dim=-1)
