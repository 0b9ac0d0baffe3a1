"""Datasets: 2-D toy distributions, scikit-learn's digits and user images in ``.npz`` files.

Everything here is plain numpy and deterministic given a seed. Image data is returned as float32
NCHW arrays in [0, 1]; ``to_model_range`` maps it to the range the model works in ([-1, 1] when
``centered``). Toy data is returned raw (roughly zero mean, per-coordinate standard deviation about
1) and is fed to the model unchanged.

``batch_indices`` is a pure function of (dataset size, batch size, step, seed), so a training loop
that restarts from a checkpoint at step ``k`` sees exactly the batches it would have seen without
the restart, with no data-loader state to store.

Library code: this module never reads flags or configs and never prints.
"""

import dataclasses
import os
from typing import TypeVar

import numpy as np
import torch

TOY_DATASETS = ("eight_gaussians", "two_moons", "swiss_roll", "checkerboard")
IMAGE_DATASETS = ("digits", "npz")
DATASETS = TOY_DATASETS + IMAGE_DATASETS

DEFAULT_TOY_SIZE = 10000
IMAGE_KEYS = ("images", "x")
LABEL_KEYS = ("labels", "y")
DIGITS_SIZE = 8
DIGITS_MAX_VALUE = 16.0

ArrayT = TypeVar("ArrayT", np.ndarray, torch.Tensor)


@dataclasses.dataclass(frozen=True, eq=False)
class Dataset:
    """An in-memory dataset.

    Attributes:
        x: float32 array. Toy data: shape (N, 2), raw values. Image data: shape (N, C, H, W) in
            [0, 1].
        labels: int64 array of shape (N,), or None when the data has no labels.
        name: the dataset name it was loaded under (one of ``DATASETS``).
        is_image: True for NCHW image data, False for low-dimensional point data.
    """

    x: np.ndarray
    labels: np.ndarray | None
    name: str
    is_image: bool

    def __post_init__(self) -> None:
        if self.labels is not None and len(self.labels) != len(self.x):
            raise ValueError(
                f"labels have length {len(self.labels)} but there are {len(self.x)} examples"
            )

    @property
    def shape(self) -> tuple[int, ...]:
        """The shape of one example, e.g. ``(2,)`` or ``(1, 8, 8)``."""
        return tuple(self.x.shape[1:])

    def __len__(self) -> int:
        return len(self.x)


# ---------------------------------------------------------------------------------------------
# Toy distributions
# ---------------------------------------------------------------------------------------------


def _eight_gaussians(rng: np.random.Generator, n: int) -> np.ndarray:
    # Centres on a circle of radius 2 at angles k*pi/4, isotropic noise of std 0.2, all divided by
    # sqrt(2): per-coordinate variance (2 + 0.04) / 2 = 1.02, mean exactly 0.
    angles = rng.integers(0, 8, size=n) * (np.pi / 4.0)
    centres = 2.0 * np.stack([np.cos(angles), np.sin(angles)], axis=1)
    return (centres + 0.2 * rng.standard_normal((n, 2))) / np.sqrt(2.0)


def _two_moons(rng: np.random.Generator, n: int) -> np.ndarray:
    # Upper moon (cos s, sin s) and lower moon (1 - cos s, 1/2 - sin s), s ~ U[0, pi], noise std
    # 0.1; shifted by the exact mean (1/2, 1/4) and scaled by sqrt(2) (mean square coordinate ~1).
    s = rng.uniform(0.0, np.pi, size=n)
    lower = rng.integers(0, 2, size=n).astype(bool)
    upper_moon = np.stack([np.cos(s), np.sin(s)], axis=1)
    lower_moon = np.stack([1.0 - np.cos(s), 0.5 - np.sin(s)], axis=1)
    points = np.where(lower[:, None], lower_moon, upper_moon)
    points = points + 0.1 * rng.standard_normal((n, 2))
    return (points - np.array([0.5, 0.25])) * np.sqrt(2.0)


def _swiss_roll(rng: np.random.Generator, n: int) -> np.ndarray:
    # 2-D spiral (s cos s, s sin s) with s ~ U[1.5 pi, 4.5 pi], noise std 0.5; the exact mean of
    # the spiral, (2, 2 / (3 pi)), is subtracted and the result divided by 7 (std about 0.95).
    s = rng.uniform(1.5 * np.pi, 4.5 * np.pi, size=n)
    points = np.stack([s * np.cos(s), s * np.sin(s)], axis=1)
    points = points + 0.5 * rng.standard_normal((n, 2))
    return (points - np.array([2.0, 2.0 / (3.0 * np.pi)])) / 7.0


def _checkerboard(rng: np.random.Generator, n: int) -> np.ndarray:
    # Uniform on the 8 "black" unit squares (i + j even) of a 4x4 board covering [-2, 2]^2:
    # mean exactly 0, per-coordinate std sqrt(4/3) ~ 1.15.
    cell = rng.integers(0, 8, size=n)
    row = cell // 2
    col = 2 * (cell % 2) + row % 2
    corner = np.stack([col, row], axis=1).astype(np.float64) - 2.0
    return corner + rng.uniform(0.0, 1.0, size=(n, 2))


_TOY_SAMPLERS = {
    "eight_gaussians": _eight_gaussians,
    "two_moons": _two_moons,
    "swiss_roll": _swiss_roll,
    "checkerboard": _checkerboard,
}


def make_toy(name: str, n: int, seed: int = 0) -> np.ndarray:
    """Draws ``n`` points from a 2-D toy distribution.

    The distributions (all with roughly zero mean and per-coordinate standard deviation about 1):

    * ``eight_gaussians``: equal mixture of 8 Gaussians, std 0.2/sqrt(2), centred on a circle of
      radius sqrt(2) at angles k*pi/4.
    * ``two_moons``: two interleaved half circles of radius sqrt(2) with noise std 0.1*sqrt(2).
    * ``swiss_roll``: the spiral (s cos s, s sin s), s ~ U[1.5 pi, 4.5 pi], with noise std 0.5,
      centred and divided by 7.
    * ``checkerboard``: uniform on the 8 alternate unit squares of a 4x4 board on [-2, 2]^2.

    Args:
        name: one of ``TOY_DATASETS``.
        n: number of points, at least 1.
        seed: seed of the ``np.random.default_rng`` generator; the output is a deterministic
            function of (name, n, seed).

    Returns:
        float32 array of shape (n, 2).

    Raises:
        ValueError: if ``name`` is not a toy dataset or ``n < 1``.
    """
    if name not in _TOY_SAMPLERS:
        raise ValueError(f"unknown toy dataset {name!r}; valid names: {', '.join(TOY_DATASETS)}")
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    rng = np.random.default_rng(seed)
    return _TOY_SAMPLERS[name](rng, n).astype(np.float32)


# ---------------------------------------------------------------------------------------------
# Images
# ---------------------------------------------------------------------------------------------


def pad_images(images: np.ndarray, size: int) -> np.ndarray:
    """Zero-pads NCHW images symmetrically to ``size`` x ``size``.

    Args:
        images: array of shape (N, C, H, W).
        size: target height and width; ``size - H`` and ``size - W`` must be even and >= 0.

    Returns:
        array of shape (N, C, size, size) and the input's dtype; the original image occupies the
        centre block ``[:, :, p:p + H, q:q + W]`` with ``p = (size - H) // 2``,
        ``q = (size - W) // 2``.

    Raises:
        ValueError: if ``images`` is not 4-D, or ``size`` is smaller than the images or leaves an
            odd margin.
    """
    if images.ndim != 4:
        raise ValueError(f"expected NCHW images (4-D), got shape {tuple(images.shape)}")
    height, width = images.shape[2:]
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)):
        raise ValueError(f"pad size must be an integer, got {size!r}")
    if size < max(height, width):
        raise ValueError(f"cannot pad {height}x{width} images to {size}x{size}: size is smaller")
    if (size - height) % 2 or (size - width) % 2:
        raise ValueError(
            f"cannot pad {height}x{width} images symmetrically to {size}x{size}: "
            "the difference must be even"
        )
    top, left = (size - height) // 2, (size - width) // 2
    widths = ((0, 0), (0, 0), (top, top), (left, left))
    return np.pad(images, widths, mode="constant", constant_values=0)


def load_digits(pad_to: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Loads scikit-learn's bundled 8x8 handwritten digits (1797 images, classes 0-9).

    Args:
        pad_to: if given, zero-pad each image symmetrically to ``pad_to`` x ``pad_to`` (e.g. 16,
            so that a U-Net can halve the resolution several times). Must be >= 8 and even.

    Returns:
        ``(images, labels)``: float32 images of shape (1797, 1, S, S) in [0, 1] (S = 8 or
        ``pad_to``; the raw 0..16 grey levels divided by 16), and int64 labels of shape (1797,).

    Raises:
        ValueError: if ``pad_to`` is smaller than 8 or ``pad_to - 8`` is odd.
    """
    # Imported here: scikit-learn is only needed for this dataset and is slow to import.
    from sklearn.datasets import load_digits as sklearn_load_digits

    bunch = sklearn_load_digits()
    images = (bunch.images / DIGITS_MAX_VALUE).astype(np.float32)[:, None, :, :]
    if pad_to is not None:
        images = pad_images(images, pad_to)
    return images, bunch.target.astype(np.int64)


def _image_key(found: list[str], key: str | None) -> str:
    if key is not None:
        if key not in found:
            raise ValueError(f"no array {key!r} in the .npz file; keys found: {found}")
        return key
    for candidate in IMAGE_KEYS:
        if candidate in found:
            return candidate
    raise ValueError(
        f"no images in the .npz file: expected one of the keys {list(IMAGE_KEYS)}, "
        f"keys found: {found}"
    )


def _images_to_nchw(images: np.ndarray, key: str) -> np.ndarray:
    if images.dtype != np.uint8:
        raise ValueError(
            f"array {key!r} must have dtype uint8 (grey levels 0..255), found {images.dtype}"
        )
    if images.ndim == 3:
        images = images[..., None]
    if images.ndim != 4:
        raise ValueError(
            f"array {key!r} must have shape N x H x W or N x H x W x C, found {images.shape}"
        )
    if images.shape[0] == 0 or 0 in images.shape[1:3]:
        raise ValueError(f"array {key!r} is empty (shape {images.shape})")
    if images.shape[3] not in (1, 3):
        raise ValueError(
            f"array {key!r} must be channels-last with C = 1 or 3, found shape {images.shape}; "
            "transpose channels-first data to N x H x W x C"
        )
    return np.ascontiguousarray(images.transpose(0, 3, 1, 2), dtype=np.float32) / 255.0


def _checked_labels(labels: np.ndarray, key: str, n: int) -> np.ndarray:
    if not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels {key!r} must have an integer dtype, found {labels.dtype}")
    if labels.shape != (n,):
        raise ValueError(
            f"labels {key!r} must have shape ({n},) to match the images, found {labels.shape}"
        )
    return labels.astype(np.int64)


def load_npz(path: str | os.PathLike, *,
             key: str | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """Loads user images from an ``.npz`` file.

    The file holds uint8 images of shape N x H x W x C (C = 1 or 3) or N x H x W (treated as
    C = 1) under ``key``, or else under ``images`` or ``x``; optional integer labels of shape (N,)
    under ``labels`` or ``y``. The file is read with ``allow_pickle=False``.

    Args:
        path: path of the ``.npz`` file.
        key: name of the image array; by default the first of ``images``, ``x`` present.

    Returns:
        ``(images, labels)``: float32 images of shape (N, C, H, W) in [0, 1] (grey levels divided
        by 255), and int64 labels of shape (N,) or None if the file has none.

    Raises:
        FileNotFoundError: if ``path`` does not exist.
        ValueError: if there is no image array, the images are not uint8, have the wrong number
            of dimensions or channels, or are empty, or the labels are not integers of length N.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no such .npz file: {os.fspath(path)!r}")
    with np.load(path, allow_pickle=False) as archive:
        found = list(archive.files)
        image_key = _image_key(found, key)
        images = _images_to_nchw(archive[image_key], image_key)
        label_keys = [k for k in LABEL_KEYS if k in found and k != image_key]
        labels = None
        if label_keys:
            labels = _checked_labels(archive[label_keys[0]], label_keys[0], len(images))
    return images, labels


def to_model_range(x: ArrayT, centered: bool) -> ArrayT:
    """Maps data in [0, 1] to the model's range: [-1, 1] if ``centered`` else [0, 1].

    Args:
        x: numpy array or torch tensor of any shape, values in [0, 1].
        centered: whether the model works on centred data.

    Returns:
        ``2 x - 1`` if ``centered`` else ``x`` itself, same type and shape.
    """
    return x * 2.0 - 1.0 if centered else x


def from_model_range(x: ArrayT, centered: bool) -> ArrayT:
    """Inverts ``to_model_range``: maps model outputs back to [0, 1] (without clipping).

    Args:
        x: numpy array or torch tensor of any shape in the model's range.
        centered: whether the model works on centred data.

    Returns:
        ``(x + 1) / 2`` if ``centered`` else ``x`` itself, same type and shape.
    """
    return (x + 1.0) / 2.0 if centered else x


def to_numpy(x: np.ndarray | torch.Tensor, dtype: type = np.float64) -> np.ndarray:
    """Converts an array or tensor to a numpy array (used by ``metrics`` and ``plotting``).

    Args:
        x: numpy array, torch tensor (any device and dtype, with or without grad) or nested
            sequence of numbers, of any shape.
        dtype: numpy dtype of the result.

    Returns:
        numpy array of the same shape and the given dtype (a copy only when needed).
    """
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu()
        if x.dtype == torch.bfloat16:
            x = x.float()
        x = x.numpy()
    return np.asarray(x, dtype=dtype)


# ---------------------------------------------------------------------------------------------
# Datasets, splits, batches
# ---------------------------------------------------------------------------------------------


def _random_subset(x: np.ndarray, labels: np.ndarray | None, n: int,
                   seed: int) -> tuple[np.ndarray, np.ndarray | None]:
    if n > len(x):
        raise ValueError(f"asked for n={n} examples but the dataset has only {len(x)}")
    keep = np.sort(np.random.default_rng(seed).permutation(len(x))[:n])
    return x[keep], None if labels is None else labels[keep]


def _check_dataset_options(name: str, n: int | None, path: str | None,
                           pad_to: int | None) -> None:
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; valid names: {', '.join(DATASETS)}")
    if n is not None and n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    if name == "npz" and path is None:
        raise ValueError("dataset 'npz' needs a path to the .npz file")
    if name != "npz" and path is not None:
        raise ValueError(f"path is only used by the 'npz' dataset, not by {name!r}")
    if name in TOY_DATASETS and pad_to is not None:
        raise ValueError(f"pad_to only applies to image datasets, not to {name!r}")


def load_dataset(name: str, *, n: int | None = None, seed: int = 0, path: str | None = None,
                 pad_to: int | None = None) -> Dataset:
    """Loads a dataset by name.

    Args:
        name: one of ``DATASETS``: a toy name (``TOY_DATASETS``), ``"digits"`` or ``"npz"``.
        n: number of examples. Toy data: the number of points drawn (default 10000). Image data:
            if given, a random subset of ``n`` images (chosen with ``seed``, kept in file order);
            by default all images.
        seed: seed for drawing toy points or choosing the image subset.
        path: the ``.npz`` file for ``name="npz"`` (see ``load_npz``); only valid there.
        pad_to: zero-pad images symmetrically to ``pad_to`` x ``pad_to`` (image data only).

    Returns:
        A ``Dataset``; toy data of shape (n, 2) without labels, image data NCHW in [0, 1].

    Raises:
        ValueError: for an unknown name, ``n < 1`` or more than available, a missing or
            superfluous ``path``, ``pad_to`` with toy data or an invalid ``pad_to``, and the
            errors of ``load_npz``.
        FileNotFoundError: if the ``.npz`` file does not exist.
    """
    _check_dataset_options(name, n, path, pad_to)
    if name in TOY_DATASETS:
        x = make_toy(name, DEFAULT_TOY_SIZE if n is None else n, seed)
        return Dataset(x=x, labels=None, name=name, is_image=False)
    if name == "digits":
        x, labels = load_digits(pad_to)
    else:
        x, labels = load_npz(path)
        if pad_to is not None:
            x = pad_images(x, pad_to)
    if n is not None:
        x, labels = _random_subset(x, labels, n, seed)
    return Dataset(x=x, labels=labels, name=name, is_image=True)


def train_test_split(data: Dataset, test_fraction: float, seed: int) -> tuple[Dataset, Dataset]:
    """Splits a dataset into disjoint train and test parts after a seeded shuffle.

    Args:
        data: the dataset to split.
        test_fraction: fraction of examples in the test part, in (0, 1); the test part has
            ``round(test_fraction * len(data))`` examples.
        seed: seed of the shuffle; the split is a deterministic function of it.

    Returns:
        ``(train, test)`` datasets with the same name and kind as ``data``.

    Raises:
        ValueError: if ``test_fraction`` is not in (0, 1) or either part would be empty.
    """
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    n_test = int(round(test_fraction * len(data)))
    if n_test < 1 or n_test > len(data) - 1:
        raise ValueError(
            f"test_fraction={test_fraction} of {len(data)} examples leaves an empty part"
        )
    order = np.random.default_rng(seed).permutation(len(data))
    parts = []
    for index in (order[n_test:], order[:n_test]):
        labels = None if data.labels is None else data.labels[index]
        parts.append(dataclasses.replace(data, x=data.x[index], labels=labels))
    return parts[0], parts[1]


def batch_indices(n: int, batch_size: int, step: int, seed: int) -> np.ndarray:
    """Indices of minibatch number ``step`` in an epoch-wise shuffled pass over ``n`` examples.

    Each epoch has ``n // batch_size`` batches taken consecutively from a permutation drawn by
    ``np.random.default_rng([seed, epoch])``; the last ``n % batch_size`` examples of each
    permutation are dropped. Because the result is a pure function of the arguments, training can
    resume at any step without storing data-loader state, and every index appears exactly once in
    an epoch when ``batch_size`` divides ``n``.

    Args:
        n: dataset size.
        batch_size: examples per batch, 1 <= batch_size <= n.
        step: 0-based global step; epoch = step // (n // batch_size).
        seed: non-negative seed.

    Returns:
        int64 array of shape (batch_size,) with distinct indices in [0, n).

    Raises:
        ValueError: if ``n < 1``, ``batch_size`` is not in [1, n], or ``step`` or ``seed`` is
            negative.
    """
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    if not 1 <= batch_size <= n:
        raise ValueError(f"batch_size must be in [1, n={n}], got {batch_size}")
    if step < 0 or seed < 0:
        raise ValueError(f"step and seed must be non-negative, got step={step}, seed={seed}")
    epoch, position = divmod(step, n // batch_size)
    permutation = np.random.default_rng([seed, epoch]).permutation(n)
    return permutation[position * batch_size:(position + 1) * batch_size].astype(np.int64)
