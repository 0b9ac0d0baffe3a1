"""EDM's networks (Karras et al. 2022, NVlabs/edm) in plain PyTorch, for the weights of its snapshots.

EDM separates a backbone F from a preconditioning that turns it into a denoiser (Karras et al.
2022, eq. 7 and table 1):

    D(x; sigma) = c_skip(sigma) x + c_out(sigma) F(c_in(sigma) x; c_noise(sigma), class_labels)

    preconditioning  c_skip              c_out                      c_in                  c_noise
    VPPrecond        1                   -sigma                     1/sqrt(sigma^2+1)     (M-1) t(sigma)
    VEPrecond        1                   sigma                      1                     log(sigma/2)
    EDMPrecond       sd^2/(sigma^2+sd^2) sigma sd/sqrt(sigma^2+sd^2) 1/sqrt(sigma^2+sd^2) log(sigma)/4
    iDDPMPrecond     1                   -sigma                     1/sqrt(sigma^2+1)     M-1-j(sigma)

(sd = sigma_data; VP's t(sigma) inverts sigma(t) = sqrt(exp(beta_d t^2/2 + beta_min t) - 1);
iDDPM's j(sigma) is the index of the nearest level of its table `u`). D is E[x0 | x0 + sigma z = x],
so `scoresde.score.DenoiserScore` turns it into a score for any of our SDEs.

The backbones are EDM's `SongUNet` (score_sde's DDPM++ / NCSN++, re-expressed: positional or Fourier
embedding, standard / skip / residual encoder, standard / skip decoder) and `DhariwalUNet` (ADM,
Dhariwal & Nichol 2021). Every class here takes the constructor arguments of EDM's class of the same
name and has its submodule names, so an EDM state_dict loads strictly (`edm_snapshot`); the forward
passes are written here from the architecture (nothing of that project's code is copied).

Things that are easy to get wrong, all reproduced: SongUNet's embedding is [sin, cos] (EDM swaps its
[cos, sin]), its one-hot labels are scaled by sqrt(label_dim) before `map_label`, its positional
frequencies use `endpoint=True`, its blocks use eps 1e-6, one attention head, residual scale
sqrt(1/2) and additive (not adaptive) conditioning; ADM adds `map_label` after `map_layer1`, uses
adaptive scale/shift, eps 1e-5 and C/64 heads; GroupNorm has min(32, C/4) groups; resampling is a
depthwise FIR filter outer(f, f) / sum(f)^2 (times 4, stride-2 transposed, for upsampling).
Everything runs in float32 (`use_fp16` is kept but not used).
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from scoresde.models.unet import EMBEDDING_TYPES

ENCODERS = ("standard", "skip", "residual")
DECODERS = ("standard", "skip")


def _choice(name: str, value: str, valid: Sequence[str]) -> str:
    if value not in valid:
        raise ValueError(f"{name}={value!r}; valid: {', '.join(valid)}")
    return value


class Linear(nn.Module):
    """y = x W^T + b, with W of shape (out_features, in_features) as in EDM."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True, **_init):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.weight = nn.Parameter(torch.randn(out_features, in_features) / math.sqrt(max(in_features, 1)))
        self.bias = nn.Parameter(torch.zeros(out_features)) if bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight, self.bias)


class Conv2d(nn.Module):
    """A k x k convolution (k = `kernel`; 0: none, resampling only) with optional FIR up/downsampling.

    The resampling filter is outer(f, f) / sum(f)^2 applied per channel with stride 2 (times 4 and
    transposed for `up`). Unfused, the filter runs before the convolution; `fused_resample`
    (downsampling only, NCSN++'s residual encoder) convolves first, padded by k//2 + (len(f)-1)//2,
    and filters after.
    """

    resample_filter: torch.Tensor | None

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel: int,
        bias: bool = True,
        up: bool = False,
        down: bool = False,
        resample_filter: Sequence[float] = (1, 1),
        fused_resample: bool = False,
        **_init,
    ):
        super().__init__()
        if up and down:
            raise ValueError("a Conv2d resamples up or down, not both")
        self.in_channels, self.out_channels = in_channels, out_channels
        self.up, self.down, self.fused_resample = up, down, fused_resample
        fan_in = in_channels * kernel * kernel
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel, kernel) / math.sqrt(fan_in)) if kernel else None
        self.bias = nn.Parameter(torch.zeros(out_channels)) if kernel and bias else None
        f = torch.as_tensor(list(resample_filter), dtype=torch.float32)
        self.register_buffer("resample_filter", (torch.outer(f, f) / f.sum() ** 2)[None, None] if up or down else None)

    def _resample(self, x: torch.Tensor, padding: int) -> torch.Tensor:
        f = self.resample_filter
        assert f is not None
        channels = x.shape[1]
        if self.up:
            return F.conv_transpose2d(x, (4 * f).expand(channels, 1, -1, -1), groups=channels, stride=2, padding=padding)
        return F.conv2d(x, f.expand(channels, 1, -1, -1), groups=channels, stride=2, padding=padding)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight
        w_pad = w.shape[-1] // 2 if w is not None else 0
        f_pad = (self.resample_filter.shape[-1] - 1) // 2 if self.resample_filter is not None else 0
        if self.fused_resample and self.down and w is not None:
            x = self._resample(F.conv2d(x, w, padding=w_pad + f_pad), padding=0)
        elif self.fused_resample and self.up and w is not None:
            x = F.conv2d(self._resample(x, padding=w_pad + f_pad), w)
        else:
            if self.up or self.down:
                x = self._resample(x, padding=f_pad)
            if w is not None:
                x = F.conv2d(x, w, padding=w_pad)
        return x if self.bias is None else x + self.bias[None, :, None, None]


class GroupNorm(nn.Module):
    """GroupNorm with min(num_groups, C // min_channels_per_group) groups (EDM's rule)."""

    def __init__(self, num_channels: int, num_groups: int = 32, min_channels_per_group: int = 4, eps: float = 1e-5):
        super().__init__()
        self.num_groups = min(num_groups, num_channels // min_channels_per_group)
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(num_channels))
        self.bias = nn.Parameter(torch.zeros(num_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.group_norm(x, self.num_groups, self.weight, self.bias, self.eps)


class UNetBlock(nn.Module):
    """EDM's U-Net block (the union of DDPM++, NCSN++ and ADM blocks), optional resampling and attention.

        h = conv0(silu(norm0(x)));  h = silu(norm1(h) (1 + scale) + shift)  (adaptive_scale)
                                        or silu(norm1(h + affine(emb)))     (additive)
        x = (conv1(dropout(h)) + skip(x)) * skip_scale
        x = (proj(attention(norm2(x))) + x) * skip_scale                      (with attention)

    Attention is softmax(q^T k / sqrt(c)) over positions with `num_heads` heads (default C / 64),
    its q, k, v read from `qkv` as (heads, C/heads, 3) per position.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        emb_channels: int,
        up: bool = False,
        down: bool = False,
        attention: bool = False,
        num_heads: int | None = None,
        channels_per_head: int = 64,
        dropout: float = 0.0,
        skip_scale: float = 1.0,
        eps: float = 1e-5,
        resample_filter: Sequence[float] = (1, 1),
        resample_proj: bool = False,
        adaptive_scale: bool = True,
        **_init,
    ):
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.num_heads = 0 if not attention else num_heads if num_heads is not None else out_channels // channels_per_head
        self.dropout, self.skip_scale, self.adaptive_scale = dropout, float(skip_scale), adaptive_scale
        self.norm0 = GroupNorm(in_channels, eps=eps)
        self.conv0 = Conv2d(in_channels, out_channels, 3, up=up, down=down, resample_filter=resample_filter)
        self.affine = Linear(emb_channels, out_channels * (2 if adaptive_scale else 1))
        self.norm1 = GroupNorm(out_channels, eps=eps)
        self.conv1 = Conv2d(out_channels, out_channels, 3)
        self.skip = None
        if out_channels != in_channels or up or down:
            kernel = 1 if resample_proj or out_channels != in_channels else 0
            self.skip = Conv2d(in_channels, out_channels, kernel, up=up, down=down, resample_filter=resample_filter)
        if self.num_heads:
            self.norm2 = GroupNorm(out_channels, eps=eps)
            self.qkv = Conv2d(out_channels, out_channels * 3, 1)
            self.proj = Conv2d(out_channels, out_channels, 1)

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv0(F.silu(self.norm0(x)))
        params = self.affine(emb)[:, :, None, None]
        if self.adaptive_scale:
            scale, shift = params.chunk(2, dim=1)
            h = F.silu(torch.addcmul(shift, self.norm1(h), scale + 1))
        else:
            h = F.silu(self.norm1(h + params))
        h = self.conv1(F.dropout(h, p=self.dropout, training=self.training))
        x = (h + (self.skip(x) if self.skip is not None else x)) * self.skip_scale
        if not self.num_heads:
            return x
        batch, channels, height, width = x.shape
        qkv = self.qkv(self.norm2(x)).reshape(batch * self.num_heads, channels // self.num_heads, 3, height * width)
        q, k, v = (part.transpose(1, 2) for part in qkv.unbind(2))  # (batch * heads, positions, channels / heads)
        attended = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(x.shape)
        return (self.proj(attended) + x) * self.skip_scale


class PositionalEmbedding(nn.Module):
    """[cos(v w_i), sin(v w_i)], w_i = max_positions^(-i / (C/2 - endpoint)), i < C/2 (Vaswani et al. 2017)."""

    def __init__(self, num_channels: int, max_positions: int = 10000, endpoint: bool = False):
        super().__init__()
        self.num_channels, self.max_positions, self.endpoint = num_channels, max_positions, endpoint

    def forward(self, v: torch.Tensor) -> torch.Tensor:
        half = self.num_channels // 2
        freqs = (1.0 / self.max_positions) ** (
            torch.arange(half, dtype=torch.float32, device=v.device) / (half - (1 if self.endpoint else 0))
        )
        angles = torch.outer(v, freqs.to(v.dtype))
        return torch.cat([angles.cos(), angles.sin()], dim=1)


class FourierEmbedding(nn.Module):
    """[cos(2 pi v f_i), sin(2 pi v f_i)] with fixed random frequencies f ~ N(0, scale^2) (NCSN++)."""

    freqs: torch.Tensor

    def __init__(self, num_channels: int, scale: float = 16.0):
        super().__init__()
        self.register_buffer("freqs", torch.randn(num_channels // 2) * scale)

    def forward(self, v: torch.Tensor) -> torch.Tensor:
        angles = torch.outer(v, (2 * np.pi * self.freqs).to(v.dtype))
        return torch.cat([angles.cos(), angles.sin()], dim=1)


def _emb_with_extras(net: nn.Module, emb: torch.Tensor, augment_labels: torch.Tensor | None) -> torch.Tensor:
    """Add the augmentation labels' embedding (EDM's non-leaky augmentation; None at sampling time)."""
    map_augment = getattr(net, "map_augment", None)
    if isinstance(map_augment, nn.Module) and augment_labels is not None:
        emb = emb + map_augment(augment_labels)
    return emb


class SongUNet(nn.Module):
    """EDM's DDPM++ / NCSN++ (`ddpmpp`: positional, standard encoder, filter [1,1]; `ncsnpp`: Fourier,
    residual encoder, filter [1,3,3,1], channel_mult_noise 2). `forward(x, noise_labels, class_labels)`.

    Levels run from `img_resolution` down by halves, one per `channel_mult` entry; the encoder has
    `num_blocks` blocks per level, the decoder `num_blocks + 1` (each concatenating one encoder
    output), attention where the resolution is in `attn_resolutions` (and in the bottleneck).
    """

    def __init__(
        self,
        img_resolution: int,
        in_channels: int,
        out_channels: int,
        label_dim: int = 0,
        augment_dim: int = 0,
        model_channels: int = 128,
        channel_mult: Sequence[int] = (1, 2, 2, 2),
        channel_mult_emb: int = 4,
        num_blocks: int = 4,
        attn_resolutions: Sequence[int] = (16,),
        dropout: float = 0.10,
        label_dropout: float = 0.0,
        embedding_type: str = "positional",
        channel_mult_noise: int = 1,
        encoder_type: str = "standard",
        decoder_type: str = "standard",
        resample_filter: Sequence[float] = (1, 1),
    ):
        super().__init__()
        _choice("embedding_type", embedding_type, EMBEDDING_TYPES)
        _choice("encoder_type", encoder_type, ENCODERS)
        _choice("decoder_type", decoder_type, DECODERS)
        emb_channels, noise_channels = model_channels * channel_mult_emb, model_channels * channel_mult_noise
        self.label_dropout = label_dropout
        block: dict[str, Any] = dict(
            emb_channels=emb_channels,
            num_heads=1,
            dropout=dropout,
            skip_scale=math.sqrt(0.5),
            eps=1e-6,
            resample_filter=resample_filter,
            resample_proj=True,
            adaptive_scale=False,
        )
        self.map_noise: nn.Module = (
            PositionalEmbedding(noise_channels, endpoint=True)
            if embedding_type == "positional"
            else FourierEmbedding(noise_channels)
        )
        self.map_label = Linear(label_dim, noise_channels) if label_dim else None
        self.map_augment = Linear(augment_dim, noise_channels, bias=False) if augment_dim else None
        self.map_layer0 = Linear(noise_channels, emb_channels)
        self.map_layer1 = Linear(emb_channels, emb_channels)

        self.enc = nn.ModuleDict()
        cout = caux = in_channels
        for level, mult in enumerate(channel_mult):
            res = img_resolution >> level
            if level == 0:
                self.enc[f"{res}x{res}_conv"] = Conv2d(cout, model_channels, 3)
                cout = model_channels
            else:
                self.enc[f"{res}x{res}_down"] = UNetBlock(cout, cout, down=True, **block)
                if encoder_type == "skip":
                    self.enc[f"{res}x{res}_aux_down"] = Conv2d(caux, caux, 0, down=True, resample_filter=resample_filter)
                    self.enc[f"{res}x{res}_aux_skip"] = Conv2d(caux, cout, 1)
                if encoder_type == "residual":
                    self.enc[f"{res}x{res}_aux_residual"] = Conv2d(
                        caux, cout, 3, down=True, resample_filter=resample_filter, fused_resample=True
                    )
                    caux = cout
            for idx in range(num_blocks):
                cin, cout = cout, model_channels * mult
                self.enc[f"{res}x{res}_block{idx}"] = UNetBlock(cin, cout, attention=res in attn_resolutions, **block)
        skips = [int(b.out_channels) for name, b in self.enc.items() if "aux" not in name]  # type: ignore[arg-type]

        self.dec = nn.ModuleDict()
        for level, mult in reversed(list(enumerate(channel_mult))):
            res = img_resolution >> level
            if level == len(channel_mult) - 1:
                self.dec[f"{res}x{res}_in0"] = UNetBlock(cout, cout, attention=True, **block)
                self.dec[f"{res}x{res}_in1"] = UNetBlock(cout, cout, **block)
            else:
                self.dec[f"{res}x{res}_up"] = UNetBlock(cout, cout, up=True, **block)
            for idx in range(num_blocks + 1):
                cin, cout = cout + skips.pop(), model_channels * mult
                attention = idx == num_blocks and res in attn_resolutions
                self.dec[f"{res}x{res}_block{idx}"] = UNetBlock(cin, cout, attention=attention, **block)
            if decoder_type == "skip" or level == 0:
                if decoder_type == "skip" and level < len(channel_mult) - 1:
                    self.dec[f"{res}x{res}_aux_up"] = Conv2d(
                        out_channels, out_channels, 0, up=True, resample_filter=resample_filter
                    )
                self.dec[f"{res}x{res}_aux_norm"] = GroupNorm(cout, eps=1e-6)
                self.dec[f"{res}x{res}_aux_conv"] = Conv2d(cout, out_channels, 3)

    def forward(
        self,
        x: torch.Tensor,
        noise_labels: torch.Tensor,
        class_labels: torch.Tensor | None = None,
        augment_labels: torch.Tensor | None = None,
    ) -> torch.Tensor:
        emb = self.map_noise(noise_labels)
        emb = emb.reshape(emb.shape[0], 2, -1).flip(1).reshape(emb.shape)  # [cos, sin] -> [sin, cos]
        if self.map_label is not None and class_labels is not None:
            emb = emb + self.map_label(class_labels * math.sqrt(self.map_label.in_features))
        emb = _emb_with_extras(self, emb, augment_labels)
        emb = F.silu(self.map_layer1(F.silu(self.map_layer0(emb))))

        skips: list[torch.Tensor] = []
        aux = x
        for name, layer in self.enc.items():
            if "aux_down" in name:
                aux = layer(aux)
            elif "aux_skip" in name:
                x = skips[-1] = x + layer(aux)
            elif "aux_residual" in name:
                x = skips[-1] = aux = (x + layer(aux)) / math.sqrt(2)
            else:
                x = layer(x, emb) if isinstance(layer, UNetBlock) else layer(x)
                skips.append(x)

        out: torch.Tensor | None = None
        tmp = x
        for name, layer in self.dec.items():
            if "aux_up" in name:
                out = layer(out)
            elif "aux_norm" in name:
                tmp = layer(x)
            elif "aux_conv" in name:
                tmp = layer(F.silu(tmp))
                out = tmp if out is None else tmp + out
            else:
                if "_block" in name:
                    x = torch.cat([x, skips.pop()], dim=1)
                x = layer(x, emb)
        assert out is not None
        return out


class DhariwalUNet(nn.Module):
    """EDM's ADM (Dhariwal & Nichol 2021): adaptive scale/shift blocks, C/64 attention heads, labels
    added to the embedding after `map_layer1`. `forward(x, noise_labels, class_labels)`."""

    def __init__(
        self,
        img_resolution: int,
        in_channels: int,
        out_channels: int,
        label_dim: int = 0,
        augment_dim: int = 0,
        model_channels: int = 192,
        channel_mult: Sequence[int] = (1, 2, 3, 4),
        channel_mult_emb: int = 4,
        num_blocks: int = 3,
        attn_resolutions: Sequence[int] = (32, 16, 8),
        dropout: float = 0.10,
        label_dropout: float = 0.0,
    ):
        super().__init__()
        emb_channels = model_channels * channel_mult_emb
        self.label_dropout = label_dropout
        block: dict[str, Any] = dict(emb_channels=emb_channels, channels_per_head=64, dropout=dropout)
        self.map_noise = PositionalEmbedding(model_channels)
        self.map_augment = Linear(augment_dim, model_channels, bias=False) if augment_dim else None
        self.map_layer0 = Linear(model_channels, emb_channels)
        self.map_layer1 = Linear(emb_channels, emb_channels)
        self.map_label = Linear(label_dim, emb_channels, bias=False) if label_dim else None

        self.enc = nn.ModuleDict()
        cout = in_channels
        for level, mult in enumerate(channel_mult):
            res = img_resolution >> level
            if level == 0:
                self.enc[f"{res}x{res}_conv"] = Conv2d(cout, model_channels * mult, 3)
                cout = model_channels * mult
            else:
                self.enc[f"{res}x{res}_down"] = UNetBlock(cout, cout, down=True, **block)
            for idx in range(num_blocks):
                cin, cout = cout, model_channels * mult
                self.enc[f"{res}x{res}_block{idx}"] = UNetBlock(cin, cout, attention=res in attn_resolutions, **block)
        skips = [int(b.out_channels) for b in self.enc.values()]  # type: ignore[arg-type]

        self.dec = nn.ModuleDict()
        for level, mult in reversed(list(enumerate(channel_mult))):
            res = img_resolution >> level
            if level == len(channel_mult) - 1:
                self.dec[f"{res}x{res}_in0"] = UNetBlock(cout, cout, attention=True, **block)
                self.dec[f"{res}x{res}_in1"] = UNetBlock(cout, cout, **block)
            else:
                self.dec[f"{res}x{res}_up"] = UNetBlock(cout, cout, up=True, **block)
            for idx in range(num_blocks + 1):
                cin, cout = cout + skips.pop(), model_channels * mult
                self.dec[f"{res}x{res}_block{idx}"] = UNetBlock(cin, cout, attention=res in attn_resolutions, **block)
        self.out_norm = GroupNorm(cout)
        self.out_conv = Conv2d(cout, out_channels, 3)

    def forward(
        self,
        x: torch.Tensor,
        noise_labels: torch.Tensor,
        class_labels: torch.Tensor | None = None,
        augment_labels: torch.Tensor | None = None,
    ) -> torch.Tensor:
        emb = _emb_with_extras(self, self.map_noise(noise_labels), augment_labels)
        emb = self.map_layer1(F.silu(self.map_layer0(emb)))
        if self.map_label is not None and class_labels is not None:
            emb = emb + self.map_label(class_labels)
        emb = F.silu(emb)
        skips = []
        for layer in self.enc.values():
            x = layer(x, emb) if isinstance(layer, UNetBlock) else layer(x)
            skips.append(x)
        for name, layer in self.dec.items():
            if "_block" in name:
                x = torch.cat([x, skips.pop()], dim=1)
            x = layer(x, emb)
        return self.out_conv(F.silu(self.out_norm(x)))


BACKBONES = {"SongUNet": SongUNet, "DhariwalUNet": DhariwalUNet}


class Precond(nn.Module):
    """D(x; sigma) = c_skip x + c_out F(c_in x; c_noise, class_labels) (module docstring), float32.

    `net(x, sigma, class_labels=None)`: x (batch, C, H, W), sigma a scalar or (batch,), class_labels
    one-hot (batch, label_dim) or None (zeros: no class, for a conditional network).
    """

    default_model = "SongUNet"
    output_factor = 1  # iDDPM's backbone also predicts variances: twice the image channels

    def __init__(
        self,
        img_resolution: int,
        img_channels: int,
        label_dim: int = 0,
        use_fp16: bool = False,
        model_type: str | None = None,
        **model_kwargs,
    ):
        super().__init__()
        self.img_resolution, self.img_channels, self.label_dim = img_resolution, img_channels, label_dim
        self.use_fp16 = use_fp16
        self.model_type = _choice("model_type", model_type or self.default_model, list(BACKBONES))
        self.model = BACKBONES[self.model_type](
            img_resolution=img_resolution,
            in_channels=img_channels,
            out_channels=img_channels * self.output_factor,
            label_dim=label_dim,
            **model_kwargs,
        )

    def coefficients(self, sigma: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(c_skip, c_out, c_in, c_noise) at noise level sigma (shape (batch, 1, 1, 1))."""
        raise NotImplementedError

    def forward(self, x: torch.Tensor, sigma: torch.Tensor | float, class_labels: torch.Tensor | None = None) -> torch.Tensor:
        x = x.to(torch.float32)
        sigma = torch.as_tensor(sigma, dtype=torch.float32, device=x.device).reshape(-1, 1, 1, 1)
        sigma = sigma.expand(x.shape[0], 1, 1, 1)
        labels = None
        if self.label_dim:
            labels = (
                torch.zeros(1, self.label_dim, device=x.device)
                if class_labels is None
                else class_labels.to(torch.float32).reshape(-1, self.label_dim)
            )
        c_skip, c_out, c_in, c_noise = self.coefficients(sigma)
        out = self.model(c_in * x, c_noise.flatten(), class_labels=labels)
        return c_skip * x + c_out * out[:, : self.img_channels].to(torch.float32)


class VPPrecond(Precond):
    """VP preconditioning, sigma(t) = sqrt(exp(beta_d t^2 / 2 + beta_min t) - 1) (Karras et al. 2022, table 1)."""

    def __init__(self, img_resolution, img_channels, label_dim=0, use_fp16=False, beta_d=19.9, beta_min=0.1, M=1000,
                 epsilon_t=1e-5, model_type=None, **model_kwargs):  # fmt: skip
        super().__init__(img_resolution, img_channels, label_dim, use_fp16, model_type, **model_kwargs)
        self.beta_d, self.beta_min, self.M, self.epsilon_t = float(beta_d), float(beta_min), int(M), float(epsilon_t)
        self.sigma_min, self.sigma_max = float(self.sigma(epsilon_t)), float(self.sigma(1.0))

    def sigma(self, t: torch.Tensor | float) -> torch.Tensor:
        t = torch.as_tensor(t, dtype=torch.float32)
        return torch.sqrt(torch.expm1(0.5 * self.beta_d * t**2 + self.beta_min * t))

    def sigma_inv(self, sigma: torch.Tensor) -> torch.Tensor:
        """t(sigma): the positive root of beta_d t^2 / 2 + beta_min t = log(1 + sigma^2)."""
        return (torch.sqrt(self.beta_min**2 + 2 * self.beta_d * torch.log1p(sigma**2)) - self.beta_min) / self.beta_d

    def coefficients(self, sigma):
        return torch.ones_like(sigma), -sigma, torch.rsqrt(sigma**2 + 1), (self.M - 1) * self.sigma_inv(sigma)


class VEPrecond(Precond):
    """VE preconditioning: D = x + sigma F(x; log(sigma / 2)) (Karras et al. 2022, table 1)."""

    def __init__(self, img_resolution, img_channels, label_dim=0, use_fp16=False, sigma_min=0.02, sigma_max=100,
                 model_type=None, **model_kwargs):  # fmt: skip
        super().__init__(img_resolution, img_channels, label_dim, use_fp16, model_type, **model_kwargs)
        self.sigma_min, self.sigma_max = float(sigma_min), float(sigma_max)

    def coefficients(self, sigma):
        return torch.ones_like(sigma), sigma, torch.ones_like(sigma), torch.log(0.5 * sigma)


class EDMPrecond(Precond):
    """EDM's preconditioning with data standard deviation sigma_data (Karras et al. 2022, eq. 7)."""

    default_model = "DhariwalUNet"

    def __init__(self, img_resolution, img_channels, label_dim=0, use_fp16=False, sigma_min=0.0,
                 sigma_max=float("inf"), sigma_data=0.5, model_type=None, **model_kwargs):  # fmt: skip
        super().__init__(img_resolution, img_channels, label_dim, use_fp16, model_type, **model_kwargs)
        self.sigma_min, self.sigma_max, self.sigma_data = float(sigma_min), float(sigma_max), float(sigma_data)

    def coefficients(self, sigma):
        total = sigma**2 + self.sigma_data**2
        return self.sigma_data**2 / total, sigma * self.sigma_data * torch.rsqrt(total), torch.rsqrt(total), torch.log(sigma) / 4


class iDDPMPrecond(Precond):  # EDM's class name, as its snapshots store it
    """Improved DDPM's discrete cosine schedule (Nichol & Dhariwal 2021) as EDM wraps it: the noise
    levels u_j, u_M = 0, u_{j-1} = sqrt((u_j^2 + 1) / max(abar(j-1) / abar(j), C_1) - 1) with
    abar(j) = sin(pi j / (2 M (C_2 + 1)))^2; sigma is told as the index M - 1 - j of its nearest level."""

    default_model = "DhariwalUNet"
    output_factor = 2
    u: torch.Tensor

    def __init__(self, img_resolution, img_channels, label_dim=0, use_fp16=False, C_1=0.001, C_2=0.008, M=1000,
                 model_type=None, **model_kwargs):  # fmt: skip
        super().__init__(img_resolution, img_channels, label_dim, use_fp16, model_type, **model_kwargs)
        self.C_1, self.C_2, self.M = float(C_1), float(C_2), int(M)
        self.register_buffer("u", self.noise_levels())
        self.sigma_min, self.sigma_max = float(self.u[self.M - 1]), float(self.u[0])

    def noise_levels(self) -> torch.Tensor:
        """The table u_0 > ... > u_M = 0 (class docstring), in float32 as EDM keeps it."""

        def alpha_bar(j: int) -> torch.Tensor:
            return torch.sin(torch.tensor(0.5 * np.pi * j / self.M / (self.C_2 + 1))) ** 2

        u = torch.zeros(self.M + 1)
        for j in range(self.M, 0, -1):
            u[j - 1] = torch.sqrt((u[j] ** 2 + 1) / (alpha_bar(j - 1) / alpha_bar(j)).clip(min=self.C_1) - 1)
        return u

    def coefficients(self, sigma):
        index = torch.argmin((sigma.reshape(-1, 1) - self.u.to(sigma.device)[None, :]).abs(), dim=1)
        c_noise = (self.M - 1 - index).to(torch.float32).reshape(sigma.shape)
        return torch.ones_like(sigma), -sigma, torch.rsqrt(sigma**2 + 1), c_noise


PRECONDITIONINGS = {cls.__name__: cls for cls in (VPPrecond, VEPrecond, EDMPrecond, iDDPMPrecond)}
