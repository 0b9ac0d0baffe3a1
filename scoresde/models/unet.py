"""The score U-Net: NCSN++ and DDPM++ (Song et al. 2021, "Score-Based Generative Modeling through
Stochastic Differential Equations", sec. 4.4 and app. H), in plain PyTorch.

One class, `ScoreUNet`, covers the family. Its keyword arguments are the architecture choices of
the paper (and the names of score_sde_pytorch's `config.model` fields, so that its configurations
translate one to one, see `scoresde.models.score_sde_pytorch`):

    resblock_type       "biggan" (resampling inside residual blocks, BigGAN, Brock et al. 2019)
                        or "ddpm" (separate resampling layers, Ho et al. 2020)
    fir, fir_kernel     anti-aliased FIR resampling (StyleGAN2) instead of nearest / average
    skip_rescale        residual sums divided by sqrt(2)
    progressive         output path: "none", "output_skip" (sum of upsampled per-level outputs)
                        or "residual" (a residual pyramid through the up path)
    progressive_input   input path: "none", "input_skip" (downsampled image combined at every level)
                        or "residual"
    attn_resolutions    feature-map sizes with single-head self-attention
    embedding_type      "fourier" (Gaussian Fourier features, fixed random frequencies) or
                        "positional" (the sinusoidal embedding of transformers and DDPM)

Layout of the network and of its weights (keys read `down.16x16.blocks.0.conv_0.weight`):

    time_embed        label -> embedding -> dense_0 -> SiLU -> dense_1 (4 nf features); plus
    class_embed       a learned vector per class (and one for "no class") when num_classes > 0
    input_conv        3x3, channels -> nf
    down.<R>x<R>      per resolution R: `blocks` (residual) each followed by an `attentions` entry
                      at attention resolutions; then (all but the last level) `downsample`, and
                      `input_pyramid` for the progressive input path
    middle            block_0, attention, block_1
    up.<R>x<R>        per resolution, coarse to fine: num_res_blocks + 1 `blocks` fed with the
                      skip connections, `attention`, the progressive output pieces
                      (`pyramid_norm` + `pyramid_conv`, or `pyramid_upsample`), then `upsample`
    output_norm, output_conv
"""

from __future__ import annotations

import math
from typing import Sequence, cast

import torch
import torch.nn.functional as F
from torch import nn

from scoresde.models.layers import (
    GaussianFourierProjection,
    conv2d,
    group_norm,
    linear,
    sinusoidal_embedding,
)
from scoresde.models.resampling import Resample, resample

RESBLOCK_TYPES = ("biggan", "ddpm")
PROGRESSIVE = ("none", "output_skip", "residual")
PROGRESSIVE_INPUT = ("none", "input_skip", "residual")
PROGRESSIVE_COMBINE = ("sum", "cat")
EMBEDDING_TYPES = ("fourier", "positional")
_SQRT_HALF = 1 / math.sqrt(2.0)


class ResBlock(nn.Module):
    """A time-conditioned residual block, optionally resampling by 2.

        h = conv_0(SiLU(norm_0(x)))   [x and h resampled after norm_0 in a BigGAN up/down block]
        h = h + time_proj(SiLU(temb))
        h = conv_1(dropout(SiLU(norm_1(h))))
        out = skip(x) + h             (divided by sqrt(2) with skip_rescale)

    `skip` is a 1x1 convolution when the channels change or the block resamples, else the identity.
    `conv_1` starts at (almost) zero weights (init_scale 0), so the block starts as the identity.

    Args:
        in_ch, out_ch: channels.
        temb_dim: size of the time embedding (None: unconditional, no `time_proj`).
        resample: None, "up" or "down" (only BigGAN-style blocks resample).
        fir_kernel: the FIR kernel for resampling (None: nearest / average).
        dropout: dropout before conv_1.
        skip_rescale: divide the sum by sqrt(2).
        init_scale: variance scale of conv_1's initial weights.
        norm_groups: GroupNorm groups (None: NCSN++'s min(channels // 4, 32)).
    """

    def __init__(
        self,
        in_ch: int,
        out_ch: int | None = None,
        *,
        temb_dim: int | None = None,
        resample: str | None = None,
        fir_kernel: Sequence[float] | None = None,
        dropout: float = 0.0,
        skip_rescale: bool = True,
        init_scale: float = 0.0,
        norm_groups: int | None = None,
    ):
        super().__init__()
        out_ch = out_ch or in_ch
        self.resample = resample
        self.fir_kernel = tuple(fir_kernel) if fir_kernel else None
        self.skip_rescale = skip_rescale
        self.norm_0 = group_norm(in_ch, norm_groups)
        self.conv_0 = conv2d(in_ch, out_ch, 3)
        self.time_proj = linear(temb_dim, out_ch) if temb_dim else None
        self.norm_1 = group_norm(out_ch, norm_groups)
        self.dropout = nn.Dropout(dropout)
        self.conv_1 = conv2d(out_ch, out_ch, 3, init_scale=init_scale)
        self.skip = conv2d(in_ch, out_ch, 1) if (in_ch != out_ch or resample) else None

    def forward(self, x: torch.Tensor, temb: torch.Tensor | None = None) -> torch.Tensor:
        h = F.silu(self.norm_0(x))
        if self.resample:
            h = resample(h, self.resample, self.fir_kernel)
            x = resample(x, self.resample, self.fir_kernel)
        h = self.conv_0(h)
        if self.time_proj is not None and temb is not None:
            h = h + self.time_proj(F.silu(temb))[:, :, None, None]
        h = self.conv_1(self.dropout(F.silu(self.norm_1(h))))
        if self.skip is not None:
            x = self.skip(x)
        return (x + h) * _SQRT_HALF if self.skip_rescale else x + h


class SelfAttention(nn.Module):
    """Single-head self-attention over the pixels of a feature map, with a residual connection.

        q, k, v = qkv(norm(x)) (1x1 convolutions),  a = softmax(q^T k / sqrt(C)) v,
        out = x + proj(a)      (divided by sqrt(2) with skip_rescale)

    (The attention block of DDPM / NCSN++; `proj` starts at almost zero.)
    """

    def __init__(self, channels: int, *, skip_rescale: bool = True, init_scale: float = 0.0, norm_groups: int | None = None):
        super().__init__()
        self.skip_rescale = skip_rescale
        self.norm = group_norm(channels, norm_groups)
        self.qkv = conv2d(channels, 3 * channels, 1)
        for part in self.qkv.weight.data.chunk(3):  # each of q, k, v initialised as its own layer
            nn.init.uniform_(part, -math.sqrt(3.0 / channels), math.sqrt(3.0 / channels))
        self.proj = conv2d(channels, channels, 1, init_scale=init_scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, channels, height, width = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(batch, 3, channels, height * width).transpose(-1, -2).unbind(1)
        a = F.scaled_dot_product_attention(q, k, v)  # (batch, pixels, channels)
        h = self.proj(a.transpose(-1, -2).reshape(batch, channels, height, width))
        return (x + h) * _SQRT_HALF if self.skip_rescale else x + h


class TimeEmbedding(nn.Module):
    """label -> Fourier or sinusoidal features -> dense_0 -> SiLU -> dense_1.

    With `log_label` the features are those of log(label): NCSN++ is told sigma and embeds log sigma.
    """

    def __init__(self, nf: int, out_dim: int, *, embedding_type: str, fourier_scale: float, log_label: bool):
        super().__init__()
        self.nf = nf
        self.embedding_type = embedding_type
        self.log_label = log_label
        self.fourier = GaussianFourierProjection(nf, fourier_scale) if embedding_type == "fourier" else None
        self.dense_0 = linear(2 * nf if self.fourier is not None else nf, out_dim)
        self.dense_1 = linear(out_dim, out_dim)

    def forward(self, label: torch.Tensor) -> torch.Tensor:
        v = torch.log(label) if self.log_label else label
        features = self.fourier(v) if self.fourier is not None else sinusoidal_embedding(v, self.nf)
        return self.dense_1(F.silu(self.dense_0(features.to(self.dense_0.weight.dtype))))


class DownLevel(nn.Module):
    """One resolution of the down path (see the module docstring)."""

    def __init__(self) -> None:
        super().__init__()
        self.blocks = nn.ModuleList()
        self.attentions = nn.ModuleList()
        self.downsample: nn.Module | None = None
        self.input_pyramid: nn.Module | None = None


class UpLevel(nn.Module):
    """One resolution of the up path (see the module docstring)."""

    def __init__(self) -> None:
        super().__init__()
        self.blocks = nn.ModuleList()
        self.attention: nn.Module | None = None
        self.pyramid_norm: nn.Module | None = None
        self.pyramid_conv: nn.Module | None = None
        self.pyramid_upsample: nn.Module | None = None
        self.upsample: nn.Module | None = None


def _level_name(resolution: int) -> str:
    return f"{resolution}x{resolution}"


class ScoreUNet(nn.Module):
    """NCSN++ / DDPM++ score network: `net(x, label, class_labels=None)` -> tensor shaped like x.

    Args:
        data_shape: (channels, size, size); size must be divisible by 2^(len(ch_mult) - 1).
        nf: base channel count; level i has nf * ch_mult[i] channels.
        ch_mult: channel multipliers, one per resolution (coarsening by 2 between levels).
        num_res_blocks: residual blocks per level in the down path (one more in the up path).
        attn_resolutions: feature-map sizes that get self-attention.
        dropout: dropout inside residual blocks.
        resblock_type: "biggan" or "ddpm" (see the module docstring).
        resamp_with_conv: "ddpm" blocks: learned convolutions in the resampling layers.
        fir: FIR resampling with `fir_kernel` (else nearest / average).
        fir_kernel: 1-D FIR kernel.
        skip_rescale: residual sums divided by sqrt(2).
        progressive, progressive_input, progressive_combine: the progressive paths; combine "sum"
            or "cat" for `input_skip`.
        embedding_type: "fourier" or "positional".
        fourier_scale: std of the Fourier frequencies.
        log_label: embed log(label) (NCSN++ is told sigma and embeds log sigma).
        conditional: time-conditioned (the label is ignored otherwise).
        scale_by_sigma: divide the output by the label (which must then be sigma): NCSN++'s
            output scaling for VE.
        center_input: map x to 2x - 1 first (score_sde's networks for data in [0, 1]).
        num_classes: > 0 adds class conditioning: `class_labels` in [0, num_classes), where the
            extra index num_classes (also used when `class_labels` is None) means "no class",
            for classifier-free guidance.
        init_scale: initial variance scale of the layers that close residual branches.
        norm_groups: groups of every GroupNorm (None: NCSN++'s min(channels // 4, 32); DDPM's
            U-Net, Ho et al. 2020, uses 32).

    Raises:
        ValueError: for unknown option names, impossible sizes, or channel counts GroupNorm
            cannot split.
    """

    def __init__(
        self,
        data_shape: tuple[int, ...],
        *,
        nf: int = 128,
        ch_mult: Sequence[int] = (1, 2, 2, 2),
        num_res_blocks: int = 2,
        attn_resolutions: Sequence[int] = (16,),
        dropout: float = 0.1,
        resblock_type: str = "biggan",
        resamp_with_conv: bool = True,
        fir: bool = True,
        fir_kernel: Sequence[int] = (1, 3, 3, 1),
        skip_rescale: bool = True,
        progressive: str = "none",
        progressive_input: str = "residual",
        progressive_combine: str = "sum",
        embedding_type: str = "fourier",
        fourier_scale: float = 16.0,
        log_label: bool = False,
        conditional: bool = True,
        scale_by_sigma: bool = False,
        center_input: bool = False,
        num_classes: int = 0,
        init_scale: float = 0.0,
        norm_groups: int | None = None,
    ):
        self._check(**{k: v for k, v in locals().items() if k not in ("self", "__class__")})  # every argument, by name
        super().__init__()
        channels, size = data_shape[0], data_shape[1]
        self.data_shape = tuple(data_shape)
        self.num_resolutions = len(ch_mult)
        self.attn_resolutions = tuple(attn_resolutions)
        self.progressive, self.progressive_input = progressive, progressive_input
        self.progressive_combine = progressive_combine
        self.skip_rescale = skip_rescale
        self.scale_by_sigma = scale_by_sigma
        self.center_input = center_input
        self.conditional = conditional
        self.num_classes = num_classes
        self.fir_kernel = tuple(fir_kernel) if fir else None

        temb_dim = 4 * nf
        self.time_embed = (
            TimeEmbedding(nf, temb_dim, embedding_type=embedding_type, fourier_scale=fourier_scale, log_label=log_label)
            if conditional
            else None
        )
        self.class_embed = nn.Embedding(num_classes + 1, temb_dim) if num_classes else None
        temb = temb_dim if (conditional or num_classes) else None

        def block(in_ch, out_ch=None, resample=None):
            return ResBlock(
                in_ch,
                out_ch,
                temb_dim=temb,
                resample=resample,
                fir_kernel=self.fir_kernel,
                dropout=dropout,
                skip_rescale=skip_rescale,
                init_scale=init_scale,
                norm_groups=norm_groups,
            )

        def attention(ch):
            return SelfAttention(ch, skip_rescale=skip_rescale, init_scale=init_scale, norm_groups=norm_groups)

        def resampler(direction, in_ch, out_ch=None, with_conv=resamp_with_conv):
            return Resample(direction, in_ch, out_ch, with_conv=with_conv, fir_kernel=self.fir_kernel)

        self.input_conv = conv2d(channels, nf, 3)
        skip_channels, in_ch, pyramid_ch = [nf], nf, channels
        resolutions = [size // 2**i for i in range(self.num_resolutions)]
        self.down = nn.ModuleDict()
        for i, mult in enumerate(ch_mult):
            level = DownLevel()
            for _ in range(num_res_blocks):
                level.blocks.append(block(in_ch, nf * mult))
                in_ch = nf * mult
                if resolutions[i] in self.attn_resolutions:
                    level.attentions.append(attention(in_ch))
                skip_channels.append(in_ch)
            if i != self.num_resolutions - 1:
                level.downsample = block(in_ch, resample="down") if resblock_type == "biggan" else resampler("down", in_ch)
                if progressive_input == "input_skip":
                    level.input_pyramid = conv2d(pyramid_ch, in_ch, 1)  # combines the downsampled image
                    in_ch = 2 * in_ch if progressive_combine == "cat" else in_ch
                elif progressive_input == "residual":
                    level.input_pyramid = resampler("down", pyramid_ch, in_ch, with_conv=True)
                    pyramid_ch = in_ch
                skip_channels.append(in_ch)
            self.down[_level_name(resolutions[i])] = level

        self.middle = nn.ModuleDict({"block_0": block(in_ch), "attention": attention(in_ch), "block_1": block(in_ch)})

        self.up = nn.ModuleDict()
        pyramid_ch = 0
        for i in reversed(range(self.num_resolutions)):
            up_level = UpLevel()
            for _ in range(num_res_blocks + 1):
                out_ch = nf * ch_mult[i]
                up_level.blocks.append(block(in_ch + skip_channels.pop(), out_ch))
                in_ch = out_ch
            if resolutions[i] in self.attn_resolutions:
                up_level.attention = attention(in_ch)
            if progressive == "output_skip" or (progressive == "residual" and i == self.num_resolutions - 1):
                up_level.pyramid_norm = group_norm(in_ch, norm_groups)
                if progressive == "output_skip":
                    up_level.pyramid_conv = conv2d(in_ch, channels, 3, init_scale=init_scale)
                    pyramid_ch = channels
                else:
                    up_level.pyramid_conv = conv2d(in_ch, in_ch, 3)
                    pyramid_ch = in_ch
            elif progressive == "residual":
                up_level.pyramid_upsample = resampler("up", pyramid_ch, in_ch, with_conv=True)
                pyramid_ch = in_ch
            if i != 0:
                up_level.upsample = block(in_ch, resample="up") if resblock_type == "biggan" else resampler("up", in_ch)
            self.up[_level_name(resolutions[i])] = up_level
        assert not skip_channels

        if progressive != "output_skip":
            self.output_norm = group_norm(in_ch, norm_groups)
            self.output_conv = conv2d(in_ch, channels, 3, init_scale=init_scale)

    @staticmethod
    def _check(
        *,
        data_shape,
        nf,
        ch_mult,
        num_res_blocks,
        dropout,
        resblock_type,
        progressive,
        progressive_input,
        progressive_combine,
        embedding_type,
        num_classes,
        **unchecked,
    ) -> None:
        """Raise a ValueError naming the first impossible constructor argument (before any layer is built)."""
        for value, name, valid in [
            (resblock_type, "resblock_type", RESBLOCK_TYPES),
            (progressive, "progressive", PROGRESSIVE),
            (progressive_input, "progressive_input", PROGRESSIVE_INPUT),
            (progressive_combine, "progressive_combine", PROGRESSIVE_COMBINE),
            (embedding_type, "embedding_type", EMBEDDING_TYPES),
        ]:
            if value not in valid:
                raise ValueError(f"unknown {name} {value!r}; valid: {', '.join(valid)}")
        if len(data_shape) != 3 or data_shape[1] != data_shape[2] or min(data_shape) < 1:
            raise ValueError(f"the U-Net needs square images of shape (channels, size, size), got {tuple(data_shape)}")
        if not ch_mult or min(ch_mult) < 1 or nf < 1 or num_res_blocks < 1:
            raise ValueError(
                f"need nf >= 1, num_res_blocks >= 1 and positive ch_mult; got {nf}, {num_res_blocks}, {tuple(ch_mult)}"
            )
        factor = 2 ** (len(ch_mult) - 1)
        if data_shape[1] % factor:
            raise ValueError(
                f"image size {data_shape[1]} is not divisible by the total down-sampling factor "
                f"{factor} (= 2^(len(ch_mult) - 1) for ch_mult={tuple(ch_mult)})"
            )
        if not 0 <= dropout < 1:
            raise ValueError(f"dropout must lie in [0, 1), got {dropout}")
        if num_classes < 0:
            raise ValueError(f"num_classes must be >= 0, got {num_classes}")
        if embedding_type == "positional" and (nf < 4 or nf % 2):
            raise ValueError(f"positional embeddings need an even nf >= 4, got {nf}")

    def embed(self, label: torch.Tensor, class_labels: torch.Tensor | None) -> torch.Tensor | None:
        temb = self.time_embed(label) if self.time_embed is not None else None
        if self.class_embed is not None:
            if class_labels is None:
                class_labels = torch.full(label.shape, self.num_classes, dtype=torch.long, device=label.device)
            elif class_labels.min() < 0 or class_labels.max() > self.num_classes:
                raise ValueError(f"class labels must lie in [0, {self.num_classes}] ({self.num_classes} = no class)")
            c = self.class_embed(class_labels)
            temb = c if temb is None else temb + c
        return temb

    def down_levels(self) -> list[DownLevel]:
        """The down path's levels, finest resolution first."""
        return [cast(DownLevel, level) for level in self.down.values()]

    def up_levels(self) -> list[UpLevel]:
        """The up path's levels, coarsest resolution first."""
        return [cast(UpLevel, level) for level in self.up.values()]

    def forward(self, x: torch.Tensor, label: torch.Tensor, class_labels: torch.Tensor | None = None) -> torch.Tensor:
        if tuple(x.shape[1:]) != self.data_shape:
            raise ValueError(f"expected inputs of shape (batch, {', '.join(map(str, self.data_shape))}), got {tuple(x.shape)}")
        if label.ndim == 0:
            label = label.expand(x.shape[0])
        temb = self.embed(label, class_labels)
        if self.center_input:
            x = 2 * x - 1
        h = self.input_conv(x)
        skips, pyramid = [h], x
        for level in self.down_levels():
            for i, block in enumerate(level.blocks):
                h = block(h, temb)
                if len(level.attentions):
                    h = level.attentions[i](h)
                skips.append(h)
            if level.downsample is None:
                continue
            h = level.downsample(h, temb) if isinstance(level.downsample, ResBlock) else level.downsample(h)
            if level.input_pyramid is None:  # progressive_input == "none"
                pass
            elif self.progressive_input == "input_skip":
                pyramid = resample(pyramid, "down", self.fir_kernel)
                projected = level.input_pyramid(pyramid)
                h = torch.cat([projected, h], dim=1) if self.progressive_combine == "cat" else projected + h
            else:  # "residual"
                pyramid = level.input_pyramid(pyramid)
                pyramid = (pyramid + h) * _SQRT_HALF if self.skip_rescale else pyramid + h
                h = pyramid
            skips.append(h)

        h = self.middle["block_0"](h, temb)
        h = self.middle["attention"](h)
        h = self.middle["block_1"](h, temb)

        out_pyramid: torch.Tensor | None = None
        for up_level in self.up_levels():
            for block in up_level.blocks:
                h = block(torch.cat([h, skips.pop()], dim=1), temb)
            if up_level.attention is not None:
                h = up_level.attention(h)
            if up_level.pyramid_norm is not None:
                assert up_level.pyramid_conv is not None
                out = up_level.pyramid_conv(F.silu(up_level.pyramid_norm(h)))
                if self.progressive == "output_skip" and out_pyramid is not None:
                    out_pyramid = resample(out_pyramid, "up", self.fir_kernel) + out
                else:
                    out_pyramid = out
            elif up_level.pyramid_upsample is not None:
                out_pyramid = up_level.pyramid_upsample(out_pyramid)
                out_pyramid = (out_pyramid + h) * _SQRT_HALF if self.skip_rescale else out_pyramid + h
                h = out_pyramid
            if up_level.upsample is not None:
                h = up_level.upsample(h, temb) if isinstance(up_level.upsample, ResBlock) else up_level.upsample(h)

        if self.progressive == "output_skip":
            assert out_pyramid is not None
            h = out_pyramid
        else:
            h = self.output_conv(F.silu(self.output_norm(h)))
        if self.scale_by_sigma:
            h = h / label.reshape(-1, *([1] * (h.ndim - 1)))
        return h
