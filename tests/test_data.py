"""Tests of scoresde.data: toy distributions, digits, .npz loading, splits and batches."""

import numpy as np
import pytest
import torch

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
    np.testing.assert_allclose(data.from_model_range(data.to_model_range(values, centered),
                                                     centered), values)
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
    ],
)
def test_load_dataset_errors(kwargs, message):
    name = kwargs.pop("name")
    with pytest.raises(ValueError, match=message):
        data.load_dataset(name, **kwargs)


def test_dataset_rejects_mismatched_labels():
    with pytest.raises(ValueError, match="length 2"):
        data.Dataset(x=np.zeros((3, 2), np.float32), labels=np.zeros(2, np.int64), name="toy",
                     is_image=False)


# --- split and batches ------------------------------------------------------------------------


def test_train_test_split_is_a_deterministic_partition():
    dataset = data.Dataset(x=np.arange(20, dtype=np.float32)[:, None], labels=np.arange(20),
                           name="toy", is_image=False)
    train, test = data.train_test_split(dataset, 0.25, seed=1)
    assert len(train) == 15 and len(test) == 5
    np.testing.assert_array_equal(train.x[:, 0], train.labels)
    np.testing.assert_array_equal(np.sort(np.concatenate([train.labels, test.labels])),
                                  np.arange(20))
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


@pytest.mark.parametrize("args", [(5, 6, 0, 0), (5, 0, 0, 0), (0, 1, 0, 0), (5, 2, -1, 0),
                                  (5, 2, 0, -1)])
def test_batch_indices_errors(args):
    with pytest.raises(ValueError):
        data.batch_indices(*args)
