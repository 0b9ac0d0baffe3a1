"""2x up- and down-sampling of images: FIR filters (StyleGAN2 / NCSN++) in plain PyTorch.

Every resampler here is one function of `upfirdn2d`, the composition

    upsample by zero insertion (factor `up`)  ->  pad by (p0, p1)  ->  convolve with the 2-D FIR
    kernel k  ->  keep every `down`-th sample,

the operation StyleGAN2 (Karras et al. 2020, app. B) and NCSN++ (Song et al. 2021, app. H) use to
resample without aliasing. It is built here from standard convolutions (`conv_transpose2d` with
stride `up` for the zero insertion, a depthwise `conv2d` with stride `down` for the filter), so it
runs anywhere PyTorch runs: no compiled extension.

With a 1-D kernel [k_0 .. k_{K-1}] the 2-D kernel is the normalised outer product
k k^T / (sum k)^2. A factor-2 upsampling multiplies it by 4 (the zeros inserted carry no mass), so
both directions preserve a constant image: sampling a constant by `upsample_fir` and `downsample_fir`
gives back the same constant away from the borders.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from scoresde.models.layers import conv2d

RESAMPLE_DIRECTIONS = ("up", "down")


def fir_kernel_2d(kernel: Sequence[float], gain: float = 1.0) -> torch.Tensor:
    """The separable 2-D FIR kernel gain * k k^T / (sum k)^2 of a 1-D kernel (a 2-D one is just normalised)."""
    k = torch.as_tensor(kernel, dtype=torch.float64)
    if k.ndim == 1:
        k = torch.outer(k, k)
    if k.ndim != 2 or k.shape[0] != k.shape[1] or k.numel() == 0:
        raise ValueError(f"a FIR kernel must be a non-empty 1-D sequence or a square 2-D array, got shape {tuple(k.shape)}")
    if k.sum() == 0:
        raise ValueError("a FIR kernel must not sum to zero")
    return k / k.sum() * gain


def upfirdn2d(
    x: torch.Tensor, kernel: torch.Tensor, *, up: int = 1, down: int = 1, pad: tuple[int, int] = (0, 0)
) -> torch.Tensor:
    """Zero-insertion upsampling by `up`, padding by `pad` (before, after; the same on both axes),
    true convolution with the square 2-D `kernel`, and decimation by `down`, per channel.

    Output side: (H up + p0 + p1 - K) // down + 1 for input side H and kernel size K.
    Negative padding crops.
    """
    batch, channels, height, width = x.shape
    size = kernel.shape[-1]
    # A true convolution is a cross-correlation with the flipped kernel.
    weight = kernel.flip(0, 1).to(dtype=x.dtype, device=x.device).expand(channels, 1, size, size)
    p0, p1 = pad
    if up > 1:
        # conv_transpose2d(x, w, stride=up) = zero insertion followed by a full convolution with w,
        # whose output starts K - 1 samples before the zero-inserted signal: crop/pad to (p0, p1).
        unit = torch.zeros(channels, 1, up, up, dtype=x.dtype, device=x.device)
        unit[:, :, 0, 0] = 1
        x = F.conv_transpose2d(x, unit, stride=up, groups=channels)  # zeros after every sample
    x = F.pad(x, (p0, p1, p0, p1))
    return F.conv2d(x, weight, stride=down, groups=channels)


def upsample_fir(x: torch.Tensor, kernel: Sequence[float] = (1, 3, 3, 1), factor: int = 2) -> torch.Tensor:
    """FIR upsampling by `factor`: (batch, C, H, W) -> (batch, C, factor H, factor W)."""
    k = fir_kernel_2d(kernel, gain=factor**2)
    p = k.shape[0] - factor
    return upfirdn2d(x, k, up=factor, pad=((p + 1) // 2 + factor - 1, p // 2))


def downsample_fir(x: torch.Tensor, kernel: Sequence[float] = (1, 3, 3, 1), factor: int = 2) -> torch.Tensor:
    """FIR downsampling by `factor`: (batch, C, H, W) -> (batch, C, H / factor, W / factor)."""
    k = fir_kernel_2d(kernel)
    p = k.shape[0] - factor
    return upfirdn2d(x, k, down=factor, pad=((p + 1) // 2, p // 2))


def upsample_conv_fir(x: torch.Tensor, weight: torch.Tensor, kernel: Sequence[float], factor: int = 2) -> torch.Tensor:
    """A convolution with `weight` (out, in, kh, kw) fused with FIR upsampling by `factor`.

    The convolution runs on the zero-inserted grid (a transposed convolution with the flipped
    kernel), and the FIR filter then interpolates; the padding makes the output exactly factor x
    the input size, as in StyleGAN2's `upsample_conv_2d`.
    """
    k = fir_kernel_2d(kernel, gain=factor**2)
    p = (k.shape[0] - factor) - (weight.shape[-1] - 1)
    y = F.conv_transpose2d(x, weight.flip(2, 3).transpose(0, 1), stride=factor)
    return upfirdn2d(y, k, pad=((p + 1) // 2 + factor - 1, p // 2 + 1))


def conv_downsample_fir(x: torch.Tensor, weight: torch.Tensor, kernel: Sequence[float], factor: int = 2) -> torch.Tensor:
    """FIR low-pass filtering followed by a strided convolution with `weight`: downsampling by `factor`."""
    k = fir_kernel_2d(kernel)
    p = (k.shape[0] - factor) + (weight.shape[-1] - 1)
    return F.conv2d(upfirdn2d(x, k, pad=((p + 1) // 2, p // 2)), weight, stride=factor)


def upsample_nearest(x: torch.Tensor, factor: int = 2) -> torch.Tensor:
    return F.interpolate(x, scale_factor=factor, mode="nearest")


def downsample_average(x: torch.Tensor, factor: int = 2) -> torch.Tensor:
    return F.avg_pool2d(x, factor, stride=factor)


def resample(x: torch.Tensor, direction: str, fir_kernel: Sequence[float] | None) -> torch.Tensor:
    """2x up or down without learned weights: FIR when a kernel is given, else nearest / average."""
    if direction == "up":
        return upsample_fir(x, fir_kernel) if fir_kernel else upsample_nearest(x)
    return downsample_fir(x, fir_kernel) if fir_kernel else downsample_average(x)


class Resample(nn.Module):
    """2x up- or down-sampling of a feature map, optionally with a learned 3x3 convolution.

    - FIR (`fir_kernel` given): with a convolution, the convolution is fused with the resampling
      (`upsample_conv_fir` / `conv_downsample_fir`); without, plain `upsample_fir` / `downsample_fir`.
    - No FIR: nearest-neighbour upsampling then a 3x3 convolution (DDPM), or a stride-2 3x3
      convolution after padding one row and column at the end (DDPM's downsampling), or average
      pooling without a convolution.

    Args:
        direction: "up" or "down".
        in_ch, out_ch: channels (out_ch defaults to in_ch; a change needs `with_conv`).
        with_conv: learn a 3x3 convolution (`self.conv`).
        fir_kernel: the 1-D FIR kernel, e.g. (1, 3, 3, 1); None for nearest / average.
    """

    def __init__(
        self,
        direction: str,
        in_ch: int,
        out_ch: int | None = None,
        *,
        with_conv: bool = True,
        fir_kernel: Sequence[float] | None = None,
    ):
        super().__init__()
        if direction not in RESAMPLE_DIRECTIONS:
            raise ValueError(f"unknown direction {direction!r}; valid: {', '.join(RESAMPLE_DIRECTIONS)}")
        out_ch = out_ch or in_ch
        if out_ch != in_ch and not with_conv:
            raise ValueError(f"changing channels ({in_ch} -> {out_ch}) needs with_conv=True")
        self.direction = direction
        self.fir_kernel = tuple(fir_kernel) if fir_kernel else None
        self.conv = conv2d(in_ch, out_ch, 3) if with_conv else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.conv is None:
            return resample(x, self.direction, self.fir_kernel)
        assert self.conv.bias is not None
        w, b = self.conv.weight, self.conv.bias[None, :, None, None]
        if self.fir_kernel:
            if self.direction == "up":
                return upsample_conv_fir(x, w, self.fir_kernel) + b
            return conv_downsample_fir(x, w, self.fir_kernel) + b
        if self.direction == "up":
            return self.conv(upsample_nearest(x))
        return F.conv2d(F.pad(x, (0, 1, 0, 1)), w, self.conv.bias, stride=2)
