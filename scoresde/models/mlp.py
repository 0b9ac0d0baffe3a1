"""A residual MLP score network for low-dimensional data (2-D toys, 8x8 digits)."""

from __future__ import annotations

import math

import torch
from torch import nn

from scoresde.models.layers import GaussianFourierProjection, sinusoidal_embedding

TIME_EMBEDDINGS = ("fourier", "sinusoidal")


class ResidualMLPBlock(nn.Module):
    """h + W2 act(W1 act(LayerNorm(h)) + time_proj(emb)): a pre-norm residual block with time input."""

    def __init__(self, width: int, embed_dim: int, dropout: float = 0.0):
        super().__init__()
        self.norm = nn.LayerNorm(width)
        self.linear1 = nn.Linear(width, width)
        self.time_proj = nn.Linear(embed_dim, width)
        self.linear2 = nn.Linear(width, width)
        self.dropout = nn.Dropout(dropout)
        self.act = nn.SiLU()

    def forward(self, h: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        u = self.linear1(self.act(self.norm(h))) + self.time_proj(emb)
        return h + self.linear2(self.dropout(self.act(u)))


class ScoreMLP(nn.Module):
    """Time-conditioned residual MLP: flattens x, returns an output shaped like x.

    Called as `net(x, label, class_labels=None)` with x of shape (batch, *data_shape) and a real
    label of shape (batch,) (the time or noise level, per the adapter's `time_label`).

    Args:
        data_shape: per-example shape, e.g. (2,) or (1, 8, 8).
        width: hidden width.
        depth: number of residual blocks.
        embed_dim: size of the time embedding.
        time_embedding: "fourier" (Gaussian Fourier features, fixed random frequencies) or
            "sinusoidal".
        fourier_scale: std of the Fourier frequencies.
        dropout: dropout inside the residual blocks.
        num_classes: > 0 adds class conditioning: a learned embedding per class, added to the
            time embedding; the extra index num_classes (also used when `class_labels` is None)
            means "no class", the unconditional model of classifier-free guidance.

    Raises:
        ValueError: for impossible sizes or an unknown embedding.
    """

    def __init__(
        self,
        data_shape: tuple[int, ...],
        *,
        width: int = 256,
        depth: int = 3,
        embed_dim: int = 128,
        time_embedding: str = "fourier",
        fourier_scale: float = 16.0,
        dropout: float = 0.0,
        num_classes: int = 0,
    ):
        super().__init__()
        if num_classes < 0:
            raise ValueError(f"num_classes must be >= 0, got {num_classes}")
        if width < 1 or depth < 1 or embed_dim < 4 or embed_dim % 2:
            raise ValueError(f"need width >= 1, depth >= 1, even embed_dim >= 4; got {width}, {depth}, {embed_dim}")
        if time_embedding not in TIME_EMBEDDINGS:
            raise ValueError(f"unknown time_embedding {time_embedding!r}; valid: {', '.join(TIME_EMBEDDINGS)}")
        self.data_shape = tuple(data_shape)
        self.embed_dim = embed_dim
        self.time_embedding = time_embedding
        dim = math.prod(self.data_shape)
        if time_embedding == "fourier":
            self.fourier = GaussianFourierProjection(embed_dim // 2, fourier_scale)
        self.time_mlp = nn.Sequential(nn.Linear(embed_dim, embed_dim), nn.SiLU(), nn.Linear(embed_dim, embed_dim))
        self.input = nn.Linear(dim, width)
        self.blocks = nn.ModuleList(ResidualMLPBlock(width, embed_dim, dropout) for _ in range(depth))
        self.output_norm = nn.LayerNorm(width)
        self.output = nn.Linear(width, dim)
        self.num_classes = num_classes
        self.class_embed = nn.Embedding(num_classes + 1, embed_dim) if num_classes else None

    def embed(self, label: torch.Tensor) -> torch.Tensor:
        if self.time_embedding == "fourier":
            emb = self.fourier(label)
        else:
            emb = sinusoidal_embedding(label, self.embed_dim)
        return self.time_mlp(emb.to(self.input.weight.dtype))

    def forward(self, x: torch.Tensor, label: torch.Tensor, class_labels: torch.Tensor | None = None) -> torch.Tensor:
        if tuple(x.shape[1:]) != self.data_shape:
            raise ValueError(f"expected inputs of shape (batch, {', '.join(map(str, self.data_shape))}), got {tuple(x.shape)}")
        if label.ndim == 0:
            label = label.expand(x.shape[0])
        emb = self.embed(label)
        if self.class_embed is not None:
            if class_labels is None:
                class_labels = torch.full((x.shape[0],), self.num_classes, dtype=torch.long, device=x.device)
            elif class_labels.min() < 0 or class_labels.max() > self.num_classes:
                raise ValueError(f"class labels must lie in [0, {self.num_classes}] ({self.num_classes} = no class)")
            emb = emb + self.class_embed(class_labels)
        elif class_labels is not None:
            raise ValueError("class labels given to an unconditional network (built with num_classes=0)")
        h = self.input(x.reshape(x.shape[0], -1))
        for block in self.blocks:
            h = block(h, emb)
        return self.output(nn.functional.silu(self.output_norm(h))).reshape(x.shape)
