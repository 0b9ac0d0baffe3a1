"""A noise-conditional classifier p_t(c | x(t)) for classifier guidance (Song et al. 2021, app. I.4).

Trained with cross-entropy on diffused data x(t) = alpha(t) x(0) + sigma(t) z, t ~ U[eps, T]
(`--mode train_classifier`, `scoresde.cli.train_classifier`); its input gradient grad_x log p_t(c | x) is the
guidance term of `scoresde.controllable.classifier_guidance`.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from scoresde.models.layers import GaussianFourierProjection
from scoresde.models.mlp import ResidualMLPBlock
from scoresde.sde_lib import SDE, broadcast_to_data


class NoiseConditionalClassifier(nn.Module):
    """logits = net(x, t): a residual MLP over the flattened input, told the time by Fourier features.

    The input is scaled by 1 / sqrt(alpha^2 sigma_data^2 + sigma^2) so that it has about unit
    variance at every t (EDM's c_in), which the network needs under VE where sigma reaches 50.

    Args:
        data_shape: per-example shape.
        n_classes: number of classes (>= 2).
        sde: the SDE whose alpha(t), sigma(t) scale the input.
        width, depth, embed_dim, fourier_scale, dropout: as `ScoreMLP`.
        sigma_data: the data's assumed standard deviation.
    """

    def __init__(
        self,
        data_shape: tuple[int, ...],
        n_classes: int,
        sde: SDE,
        *,
        width: int = 256,
        depth: int = 3,
        embed_dim: int = 128,
        fourier_scale: float = 16.0,
        dropout: float = 0.0,
        sigma_data: float = 0.5,
    ):
        super().__init__()
        if n_classes < 2:
            raise ValueError(f"a classifier needs n_classes >= 2, got {n_classes}")
        if width < 1 or depth < 1 or embed_dim < 4 or embed_dim % 2:
            raise ValueError(f"need width >= 1, depth >= 1, even embed_dim >= 4; got {width}, {depth}, {embed_dim}")
        self.data_shape, self.n_classes, self.sde, self.sigma_data = tuple(data_shape), n_classes, sde, sigma_data
        self.fourier = GaussianFourierProjection(embed_dim // 2, fourier_scale)
        self.time_mlp = nn.Sequential(nn.Linear(embed_dim, embed_dim), nn.SiLU(), nn.Linear(embed_dim, embed_dim))
        self.input = nn.Linear(math.prod(self.data_shape), width)
        self.blocks = nn.ModuleList(ResidualMLPBlock(width, embed_dim, dropout) for _ in range(depth))
        self.output_norm = nn.LayerNorm(width)
        self.output = nn.Linear(width, n_classes)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        if tuple(x.shape[1:]) != self.data_shape:
            raise ValueError(f"expected inputs of shape (batch, {', '.join(map(str, self.data_shape))}), got {tuple(x.shape)}")
        if t.ndim == 0:
            t = t.expand(x.shape[0])
        alpha, sigma = self.sde.scales(t)
        x_in = x * broadcast_to_data(torch.rsqrt(alpha**2 * self.sigma_data**2 + sigma**2), x)
        emb = self.time_mlp(self.fourier(t).to(self.input.weight.dtype))
        h = self.input(x_in.reshape(x.shape[0], -1).to(self.input.weight.dtype))
        for block in self.blocks:
            h = block(h, emb)
        return self.output(nn.functional.silu(self.output_norm(h)))
