"""The Inception-v3 network of FID and the Inception Score, built from a weights file the user
supplies.

FID (Heusel et al., 2017) and the Inception Score (Salimans et al., 2016) are defined on one
particular network: the Inception-v3 graph TensorFlow published on 2015-12-05
(``inception-2015-12-05.tgz``), which the reference TF code of both metrics (TTUR,
openai/improved-gan) loads. Its PyTorch port, distributed by pytorch-fid as
``pt_inception-2015-12-05-6726825d.pth`` (GitHub release ``fid_weights`` of mseitzer/pytorch-fid,
95,628,359 bytes), is what PyTorch FID codes use. Nothing is ever downloaded here: the user
fetches that file once and passes its path to ``load_fid_inception``, which checks its SHA-256,
reads it with ``torch.load(..., weights_only=True)`` and loads it into ``FIDInceptionV3``.

Architecture (facts from pytorch-fid's ``src/pytorch_fid/inception.py``, which builds the FID
network by patching torchvision's ``torchvision/models/inception.py``, and from torch-fidelity's
``feature_extractor_inceptionv3.py`` and ``utils/util_convert_inception_weights.py``, whose map
from the TF graph's tensors to PyTorch names lists the same 94 conv / batch-norm units and ``fc``):

* every convolution is a "ConvBN" unit: Conv2d without bias, BatchNorm2d with eps = 0.001, ReLU;
  its tensors are ``<unit>.conv.weight`` and ``<unit>.bn.{weight, bias, running_mean,
  running_var}``;
* stem: Conv2d_1a_3x3 (3 -> 32, 3x3, stride 2), Conv2d_2a_3x3 (32 -> 32, 3x3), Conv2d_2b_3x3
  (32 -> 64, 3x3, padding 1), max pool 3x3 / 2, Conv2d_3b_1x1 (64 -> 80), Conv2d_4a_3x3
  (80 -> 192, 3x3), max pool 3x3 / 2; a 299 x 299 input becomes 192 x 35 x 35;
* Mixed_5b, 5c, 5d (type A, 192 / 256 / 288 -> 256 / 288 / 288 channels), Mixed_6a (type B,
  -> 768 at 17 x 17), Mixed_6b..6e (type C, 7x7 factorised as 1x7 and 7x1, inner widths
  128, 160, 160, 192), Mixed_7a (type D, -> 1280 at 8 x 8), Mixed_7b and Mixed_7c (type E,
  -> 2048);
* global average pool -> the 2048-d "pool_3" features of FID; ``fc`` (2048 -> 1008, with bias):
  the TF graph's 1008 output classes (torchvision's head has 1000).

The FID network differs from torchvision's Inception-v3 in three ways that change its outputs:
its 3x3 average pools (the pool branches of the A, C and first E blocks) average only over the
window's positions inside the image (TensorFlow's SAME padding, ``count_include_pad=False``);
the pool branch of the last block, Mixed_7c, takes a 3x3 *max* pool where torchvision averages;
and it has 1008 classes and no auxiliary classifier. Its parameters number 23,850,960: that is
torchvision's 27,161,264 (its documented ``num_params``) minus the 3,326,696 of the auxiliary
classifier plus 8 x 2049 for the 8 extra classes, and it is the count that third-party code
prints for pytorch-fid's loaded ``fid_inception_v3()``.

Input: images N x C x H x W with C = 3 (RGB) or C = 1 (repeated to 3), values in [0, 1] (or in
[-1, 1] with ``centered=True``). As pytorch-fid does, they are resized to 299 x 299 with
``F.interpolate(mode="bilinear", align_corners=False)`` and mapped to [-1, 1] by x -> 2 x - 1,
the range the graph was trained on. TTUR's TensorFlow code resizes with TF1's own bilinear
kernel, so values agree with pytorch-fid's (the usual PyTorch FIDs), not bit for bit with TTUR.
"""

from __future__ import annotations

import hashlib
import os
import pickle
from collections.abc import Mapping

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

FID_WEIGHTS_FILENAME = "pt_inception-2015-12-05-6726825d.pth"
FID_WEIGHTS_URL = "https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/" + FID_WEIGHTS_FILENAME
# Full SHA-256 of pytorch-fid's file. torch.hub names files <name>-<first 8 hex digits of the
# SHA-256>.<ext>, and the digest starts with the 6726825d of the file name; the full digest is the
# one third-party projects that pin this file record next to its release URL (with its size,
# 95,628,359 bytes). The same digest is recorded for torch-fidelity's copy,
# weights-inception-2015-12-05-6726825d.pth (release v0.2.0 of toshas/torch-fidelity).
FID_WEIGHTS_SHA256 = "6726825d0af5f729cebd5821db510b11b1cfad8faad88a03f1befd49fb9129b2"

INPUT_SIZE = 299
MIN_INPUT_SIZE = 75  # the smallest input for which Mixed_7a's stride-2 3x3 windows still fit
FEATURE_DIM = 2048
N_CLASSES = 1008
N_PARAMETERS = 23_850_960


# ---------------------------------------------------------------------------------------------
# Building blocks
# ---------------------------------------------------------------------------------------------
class _ConvBN(nn.Module):
    """relu(BatchNorm(conv(x))): Conv2d without bias, BatchNorm2d with eps = 0.001 (the TF graph's
    batch-norm epsilon), then ReLU. Keyword arguments go to ``nn.Conv2d``."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int | tuple[int, int], **conv_options) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, bias=False, **conv_options)
        self.bn = nn.BatchNorm2d(out_channels, eps=0.001)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)))


def _tf_average_pool(x: torch.Tensor) -> torch.Tensor:
    """3x3 average pool, stride 1, SAME padding, dividing by the number of in-image positions
    (TensorFlow's ``avg_pool`` ignores the padding; ``count_include_pad=False``)."""
    return F.avg_pool2d(x, kernel_size=3, stride=1, padding=1, count_include_pad=False)


def _max_pool_same(x: torch.Tensor) -> torch.Tensor:
    """3x3 max pool, stride 1, padding 1 (the pool branch of Mixed_7c in the FID graph)."""
    return F.max_pool2d(x, kernel_size=3, stride=1, padding=1)


def _max_pool_reduce(x: torch.Tensor) -> torch.Tensor:
    """3x3 max pool with stride 2 and no padding (stem and grid reductions)."""
    return F.max_pool2d(x, kernel_size=3, stride=2)


class _MixedA(nn.Module):
    """35 x 35 block: 1x1 (64) | 1x1 (48) -> 5x5 (64) | 1x1 (64) -> 3x3 (96) -> 3x3 (96) |
    average pool -> 1x1 (``pool_channels``); out = 224 + ``pool_channels`` channels."""

    def __init__(self, in_channels: int, pool_channels: int) -> None:
        super().__init__()
        self.branch1x1 = _ConvBN(in_channels, 64, 1)
        self.branch5x5_1 = _ConvBN(in_channels, 48, 1)
        self.branch5x5_2 = _ConvBN(48, 64, 5, padding=2)
        self.branch3x3dbl_1 = _ConvBN(in_channels, 64, 1)
        self.branch3x3dbl_2 = _ConvBN(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = _ConvBN(96, 96, 3, padding=1)
        self.branch_pool = _ConvBN(in_channels, pool_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat(
            [
                self.branch1x1(x),
                self.branch5x5_2(self.branch5x5_1(x)),
                self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
                self.branch_pool(_tf_average_pool(x)),
            ],
            dim=1,
        )


class _MixedB(nn.Module):
    """35 -> 17 reduction: 3x3/2 (384) | 1x1 (64) -> 3x3 (96) -> 3x3/2 (96) | max pool 3x3/2;
    out = 480 + ``in_channels`` channels."""

    def __init__(self, in_channels: int) -> None:
        super().__init__()
        self.branch3x3 = _ConvBN(in_channels, 384, 3, stride=2)
        self.branch3x3dbl_1 = _ConvBN(in_channels, 64, 1)
        self.branch3x3dbl_2 = _ConvBN(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = _ConvBN(96, 96, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat(
            [
                self.branch3x3(x),
                self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
                _max_pool_reduce(x),
            ],
            dim=1,
        )


class _MixedC(nn.Module):
    """17 x 17 block with 7x7 convolutions factorised into 1x7 and 7x1 of inner width c:
    1x1 (192) | 1x1 (c) -> 1x7 (c) -> 7x1 (192) | 1x1 (c) -> 7x1 -> 1x7 -> 7x1 (c) -> 1x7 (192) |
    average pool -> 1x1 (192); out = 768 channels."""

    def __init__(self, in_channels: int, inner: int) -> None:
        super().__init__()
        row = dict(kernel_size=(1, 7), padding=(0, 3))
        column = dict(kernel_size=(7, 1), padding=(3, 0))
        self.branch1x1 = _ConvBN(in_channels, 192, 1)
        self.branch7x7_1 = _ConvBN(in_channels, inner, 1)
        self.branch7x7_2 = _ConvBN(inner, inner, **row)
        self.branch7x7_3 = _ConvBN(inner, 192, **column)
        self.branch7x7dbl_1 = _ConvBN(in_channels, inner, 1)
        self.branch7x7dbl_2 = _ConvBN(inner, inner, **column)
        self.branch7x7dbl_3 = _ConvBN(inner, inner, **row)
        self.branch7x7dbl_4 = _ConvBN(inner, inner, **column)
        self.branch7x7dbl_5 = _ConvBN(inner, 192, **row)
        self.branch_pool = _ConvBN(in_channels, 192, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        double = self.branch7x7dbl_1(x)
        for layer in (self.branch7x7dbl_2, self.branch7x7dbl_3, self.branch7x7dbl_4, self.branch7x7dbl_5):
            double = layer(double)
        return torch.cat(
            [
                self.branch1x1(x),
                self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x))),
                double,
                self.branch_pool(_tf_average_pool(x)),
            ],
            dim=1,
        )


class _MixedD(nn.Module):
    """17 -> 8 reduction: 1x1 (192) -> 3x3/2 (320) | 1x1 (192) -> 1x7 -> 7x1 -> 3x3/2 (192) |
    max pool 3x3/2; out = 512 + ``in_channels`` channels."""

    def __init__(self, in_channels: int) -> None:
        super().__init__()
        self.branch3x3_1 = _ConvBN(in_channels, 192, 1)
        self.branch3x3_2 = _ConvBN(192, 320, 3, stride=2)
        self.branch7x7x3_1 = _ConvBN(in_channels, 192, 1)
        self.branch7x7x3_2 = _ConvBN(192, 192, (1, 7), padding=(0, 3))
        self.branch7x7x3_3 = _ConvBN(192, 192, (7, 1), padding=(3, 0))
        self.branch7x7x3_4 = _ConvBN(192, 192, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tower = self.branch7x7x3_1(x)
        for layer in (self.branch7x7x3_2, self.branch7x7x3_3, self.branch7x7x3_4):
            tower = layer(tower)
        return torch.cat([self.branch3x3_2(self.branch3x3_1(x)), tower, _max_pool_reduce(x)], dim=1)


class _MixedE(nn.Module):
    """8 x 8 block with split 1x3 / 3x1 outputs: 1x1 (320) | 1x1 (384) -> [1x3 (384), 3x1 (384)] |
    1x1 (448) -> 3x3 (384) -> [1x3 (384), 3x1 (384)] | pool -> 1x1 (192); out = 2048 channels.

    ``max_pool`` selects the pool of the last branch: the FID graph averages in Mixed_7b
    (without the padding) and takes the maximum in Mixed_7c.
    """

    def __init__(self, in_channels: int, max_pool: bool) -> None:
        super().__init__()
        self.max_pool = max_pool
        self.branch1x1 = _ConvBN(in_channels, 320, 1)
        self.branch3x3_1 = _ConvBN(in_channels, 384, 1)
        self.branch3x3_2a = _ConvBN(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3_2b = _ConvBN(384, 384, (3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = _ConvBN(in_channels, 448, 1)
        self.branch3x3dbl_2 = _ConvBN(448, 384, 3, padding=1)
        self.branch3x3dbl_3a = _ConvBN(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = _ConvBN(384, 384, (3, 1), padding=(1, 0))
        self.branch_pool = _ConvBN(in_channels, 192, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        single = self.branch3x3_1(x)
        double = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        pooled = _max_pool_same(x) if self.max_pool else _tf_average_pool(x)
        return torch.cat(
            [
                self.branch1x1(x),
                self.branch3x3_2a(single),
                self.branch3x3_2b(single),
                self.branch3x3dbl_3a(double),
                self.branch3x3dbl_3b(double),
                self.branch_pool(pooled),
            ],
            dim=1,
        )


# ---------------------------------------------------------------------------------------------
# The network
# ---------------------------------------------------------------------------------------------
class FIDInceptionV3(nn.Module):
    """Inception-v3 as in the FID / Inception Score TensorFlow graph of 2015-12-05 (see the module
    docstring for the layers and their sources).

    The submodule names reproduce the keys of pytorch-fid's ``pt_inception-2015-12-05-6726825d.pth``
    (``Conv2d_1a_3x3.conv.weight``, ``Mixed_5b.branch1x1.bn.running_mean``, ...,
    ``fc.weight`` of shape (1008, 2048)), so the file's state dict loads with ``strict=True``.
    Each BatchNorm also has PyTorch's ``num_batches_tracked`` counter, which the file may lack
    (``load_fid_inception`` then sets it to 0); it is unused in eval mode. Freshly constructed,
    the weights are PyTorch's default random initialisation: use ``load_fid_inception`` for the
    real network.

    Args:
        resize_input: resize every input to 299 x 299 (bilinear, ``align_corners=False``), as FID
            requires. With False the input is used at its own size, which must be at least
            75 x 75; the features then differ from FID's (this exists for quick tests).
    """

    def __init__(self, *, resize_input: bool = True) -> None:
        super().__init__()
        self.resize_input = resize_input
        self.Conv2d_1a_3x3 = _ConvBN(3, 32, 3, stride=2)
        self.Conv2d_2a_3x3 = _ConvBN(32, 32, 3)
        self.Conv2d_2b_3x3 = _ConvBN(32, 64, 3, padding=1)
        self.Conv2d_3b_1x1 = _ConvBN(64, 80, 1)
        self.Conv2d_4a_3x3 = _ConvBN(80, 192, 3)
        self.Mixed_5b = _MixedA(192, pool_channels=32)
        self.Mixed_5c = _MixedA(256, pool_channels=64)
        self.Mixed_5d = _MixedA(288, pool_channels=64)
        self.Mixed_6a = _MixedB(288)
        self.Mixed_6b = _MixedC(768, inner=128)
        self.Mixed_6c = _MixedC(768, inner=160)
        self.Mixed_6d = _MixedC(768, inner=160)
        self.Mixed_6e = _MixedC(768, inner=192)
        self.Mixed_7a = _MixedD(768)
        self.Mixed_7b = _MixedE(1280, max_pool=False)
        self.Mixed_7c = _MixedE(2048, max_pool=True)
        self.fc = nn.Linear(FEATURE_DIM, N_CLASSES)

    def preprocess(self, images: torch.Tensor, *, centered: bool = False) -> torch.Tensor:
        """Images -> the network's input: 3 channels, 299 x 299, values in [-1, 1].

        x in [0, 1] is mapped by 2 x - 1 (``centered=False``) or taken as already in [-1, 1]
        (``centered=True``); one channel is repeated to three; the size is changed by bilinear
        interpolation (``align_corners=False``, as pytorch-fid) unless it already is 299 x 299 or
        ``resize_input`` is False. Values are not clipped.

        Raises:
            ValueError: if ``images`` is not a floating N x C x H x W tensor with C in {1, 3}, or
                (``resize_input=False``) H or W is below 75.
        """
        if not isinstance(images, torch.Tensor) or images.ndim != 4 or images.shape[1] not in (1, 3):
            shape = tuple(images.shape) if hasattr(images, "shape") else type(images).__name__
            raise ValueError(f"images must be a tensor of shape (N, C, H, W) with C = 1 or 3, got {shape}")
        if not images.is_floating_point():
            raise ValueError(
                f"images must be floating point in [0, 1] (or [-1, 1] with "
                f"centered=True), got dtype {images.dtype}; convert uint8 images "
                f"with x / 255"
            )
        weight = self.Conv2d_1a_3x3.conv.weight
        x = images.to(device=weight.device, dtype=weight.dtype)
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        height, width = x.shape[-2:]
        if self.resize_input and (height, width) != (INPUT_SIZE, INPUT_SIZE):
            x = F.interpolate(x, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear", align_corners=False)
        elif min(height, width) < MIN_INPUT_SIZE:
            raise ValueError(
                f"without resizing the images must be at least {MIN_INPUT_SIZE} x {MIN_INPUT_SIZE}, got {height} x {width}"
            )
        return x if centered else 2.0 * x - 1.0

    def forward(
        self, images: torch.Tensor, *, centered: bool = False, logits_bias: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Pool features and class logits of a batch of images.

        Args:
            images: tensor (N, C, H, W), C = 1 or 3, floating point, values in [0, 1] (or in
                [-1, 1] if ``centered``); see ``preprocess``.
            centered: whether the images are in [-1, 1] rather than [0, 1].
            logits_bias: add ``fc.bias`` to the logits. The reference Inception Score code of
                Salimans et al. (openai/improved-gan, ``inception_score/model.py``) multiplies
                the pool features by the weights of ``softmax/logits/MatMul`` only, without the
                bias, and torch-fidelity's Inception Score does the same; the default False
                reproduces that, so that ``inception_score`` of these logits compares with
                published values.

        Returns:
            (features, logits): tensors (N, 2048), the global average of Mixed_7c's output (the
            "pool_3" features of FID), and (N, 1008), features @ fc.weight^T (+ fc.bias).
        """
        x = self.preprocess(images, centered=centered)
        for layer in (self.Conv2d_1a_3x3, self.Conv2d_2a_3x3, self.Conv2d_2b_3x3):
            x = layer(x)
        x = self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(_max_pool_reduce(x)))
        x = _max_pool_reduce(x)
        for block in (
            self.Mixed_5b,
            self.Mixed_5c,
            self.Mixed_5d,
            self.Mixed_6a,
            self.Mixed_6b,
            self.Mixed_6c,
            self.Mixed_6d,
            self.Mixed_6e,
            self.Mixed_7a,
            self.Mixed_7b,
            self.Mixed_7c,
        ):
            x = block(x)
        features = x.mean(dim=(2, 3))
        logits = F.linear(features, self.fc.weight, self.fc.bias if logits_bias else None)
        return features, logits


# ---------------------------------------------------------------------------------------------
# Loading the weights
# ---------------------------------------------------------------------------------------------
def sha256_of_file(path: str | os.PathLike, chunk_size: int = 1 << 20) -> str:
    """SHA-256 of a file's bytes, read in chunks of ``chunk_size`` bytes (constant memory).

    Args:
        path: the file.
        chunk_size: bytes per read, at least 1.

    Returns:
        the digest as 64 lower-case hex digits (as ``sha256sum`` prints it).

    Raises:
        FileNotFoundError: if there is no file at ``path``.
        ValueError: if ``chunk_size < 1``.
    """
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while chunk := file.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


def _is_optional_key(key: str) -> bool:
    """BatchNorm's ``num_batches_tracked`` counters: not part of the converted TF weights, unused
    in eval mode, and absent from state dicts written before PyTorch 0.4.1."""
    return key.endswith("num_batches_tracked")


def _listed(keys: list[str], limit: int = 5) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f" and {len(keys) - limit} more" if len(keys) > limit else "")


def _checked_state_dict(state: object, model: FIDInceptionV3, source: str) -> dict[str, torch.Tensor]:
    """The state dict with the model's exact keys, or a ValueError that names what does not fit.

    Every parameter and running statistic of ``model`` must be present with its shape and no other
    key may be; missing ``num_batches_tracked`` counters are filled with 0, and every tensor gets
    the model's dtype (``model`` may live on the meta device: only its keys, shapes and dtypes are
    used).
    """
    if not isinstance(state, Mapping):
        raise ValueError(
            f"{source} holds a {type(state).__name__}, not a state dict (a mapping "
            f"from names such as 'Conv2d_1a_3x3.conv.weight' to tensors)"
        )
    expected = model.state_dict()
    not_tensors = [str(key) for key, value in state.items() if not isinstance(value, torch.Tensor)]
    missing = [key for key in expected if key not in state and not _is_optional_key(key)]
    unexpected = [str(key) for key in state if key not in expected]
    wrong_shapes = [
        f"{key} {tuple(state[key].shape)} (expected {tuple(expected[key].shape)})"
        for key in expected
        if isinstance(state.get(key), torch.Tensor) and state[key].shape != expected[key].shape
    ]
    problems = []
    if not_tensors:
        problems.append(f"{len(not_tensors)} values that are not tensors: {_listed(not_tensors)}")
    if missing:
        problems.append(f"{len(missing)} missing keys: {_listed(missing)}")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected keys: {_listed(unexpected)}")
    if wrong_shapes:
        problems.append(f"{len(wrong_shapes)} tensors of the wrong shape: {_listed(wrong_shapes)}")
    if problems:
        raise ValueError(f"{source} does not fit FIDInceptionV3 (the weights of {FID_WEIGHTS_FILENAME}): " + "; ".join(problems))
    return {
        key: state[key].to(value.dtype) if key in state else torch.zeros(value.shape, dtype=value.dtype)
        for key, value in expected.items()
    }


def load_fid_inception(
    path: str | os.PathLike, *, device: str | torch.device = "cpu", check_hash: bool = True, expected_sha256: str | None = None
) -> FIDInceptionV3:
    """The FID Inception network with the weights of a local copy of pytorch-fid's file.

    Steps: the file must exist; with ``check_hash`` its SHA-256 (``sha256_of_file``, streamed)
    must equal ``FID_WEIGHTS_SHA256``, the full digest of ``pt_inception-2015-12-05-6726825d.pth``
    (whose name carries its first 8 hex digits, torch.hub's convention); it is read with
    ``torch.load(path, map_location="cpu", weights_only=True)``, which unpickles tensors and
    containers only, never arbitrary objects; its keys and shapes must be exactly those of
    ``FIDInceptionV3`` (BatchNorm ``num_batches_tracked`` counters may be absent); and it is loaded
    with ``load_state_dict(strict=True, assign=True)`` into a model built on the meta device (so
    no random initialisation is computed), tensors cast to float32. Nothing is ever downloaded.

    Args:
        path: the weights file, e.g. a download of ``FID_WEIGHTS_URL``.
        device: where the returned model lives.
        check_hash: verify the SHA-256. Pass False only for other weights of the same
            architecture (e.g. in tests); FID values are only comparable with the real file.
        expected_sha256: the digest to require (64 hex digits); default ``FID_WEIGHTS_SHA256``.

    Returns:
        the model in eval mode, on ``device``, with ``requires_grad`` off for every parameter.

    Raises:
        FileNotFoundError: if there is no file at ``path``.
        ValueError: if the digest differs (naming both), the file cannot be read with
            ``weights_only=True``, or its tensors do not fit the architecture (naming a few
            missing, unexpected or mis-shaped keys).
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"no Inception weights file at '{path}'. Download {FID_WEIGHTS_FILENAME} from the "
            f"'fid_weights' release of pytorch-fid on GitHub ({FID_WEIGHTS_URL}) and pass its "
            f"path; nothing is downloaded automatically"
        )
    expected = (expected_sha256 or FID_WEIGHTS_SHA256).lower()
    if len(expected) != 64 or any(c not in "0123456789abcdef" for c in expected):
        raise ValueError(f"expected_sha256 must be 64 hexadecimal digits, got {expected_sha256!r}")
    if check_hash:
        actual = sha256_of_file(path)
        if actual != expected:
            raise ValueError(
                f"SHA-256 of '{path}' is {actual}, expected {expected} (the digest of "
                f"pytorch-fid's {FID_WEIGHTS_FILENAME}): the file is corrupt, truncated or other "
                f"weights; FIDs computed with it would not be comparable. Use check_hash=False "
                f"only for deliberately different weights of this architecture"
            )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError) as error:
        raise ValueError(f"cannot read '{path}' as PyTorch weights with weights_only=True: {error}") from error
    with torch.device("meta"):  # no random initialisation of 24M parameters to overwrite
        model = FIDInceptionV3()
    model.load_state_dict(_checked_state_dict(state, model, f"'{path}'"), strict=True, assign=True)
    model.requires_grad_(False)
    return model.eval().to(device)


# ---------------------------------------------------------------------------------------------
# Features of many images
# ---------------------------------------------------------------------------------------------
@torch.no_grad()
def inception_features(
    model: FIDInceptionV3,
    images: np.ndarray | torch.Tensor,
    *,
    batch_size: int = 50,
    centered: bool = False,
    logits_bias: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Pool features (for FID / KID) and logits (for the Inception Score) of N images, in batches.

    Each batch is moved to the model's device and run under ``torch.no_grad()`` with the model in
    eval mode (BatchNorm uses its running statistics, so an image's outputs do not depend on the
    rest of its batch); the model's previous mode is restored afterwards. Feed the features of
    generated and reference images to ``metrics.frechet_distance_from_samples`` (FID) or
    ``metrics.kernel_inception_distance`` (KID), and the logits to ``metrics.inception_score``.

    Args:
        model: an ``FIDInceptionV3``, normally from ``load_fid_inception``.
        images: array or tensor (N, C, H, W), C = 1 or 3, floating point in [0, 1] (or [-1, 1]
            with ``centered``); it may stay on the CPU while the model is on a GPU.
        batch_size: images per forward pass, at least 1.
        centered: whether the images are in [-1, 1].
        logits_bias: add the fc bias to the logits (see ``FIDInceptionV3.forward``).

    Returns:
        (features, logits): float32 numpy arrays of shapes (N, 2048) and (N, 1008).

    Raises:
        ValueError: if ``batch_size < 1``, there are no images, or the images are not floating
            N x C x H x W with C in {1, 3}.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    images = torch.as_tensor(images)
    if images.ndim != 4 or len(images) == 0:
        raise ValueError(f"images must have shape (N, C, H, W) with N >= 1, got {tuple(images.shape)}")
    was_training = model.training
    model.eval()
    features, logits = [], []
    try:
        for start in range(0, len(images), batch_size):
            batch_features, batch_logits = model(images[start : start + batch_size], centered=centered, logits_bias=logits_bias)
            features.append(batch_features.float().cpu().numpy())
            logits.append(batch_logits.float().cpu().numpy())
    finally:
        model.train(was_training)
    return np.concatenate(features), np.concatenate(logits)
