"""Tests of scoresde.eval.plotting: the files exist, open with Pillow and have the expected size."""

import numpy as np
import pytest
import torch
from PIL import Image

from scoresde.eval import plotting


@pytest.fixture
def points():
    return np.random.default_rng(0).standard_normal((200, 2))


def test_scatter_one_and_two_panels(tmp_path, points):
    single = plotting.save_scatter(tmp_path / "a" / "single.png", points, title="samples")
    double = plotting.save_scatter(
        tmp_path / "b" / "double.png", torch.from_numpy(points), reference=points + 1.0, limits=(-4.0, 4.0)
    )
    with Image.open(single) as image_single, Image.open(double) as image_double:
        assert image_single.format == "PNG" and image_double.format == "PNG"
        width_single, height_single = image_single.size
        width_double, height_double = image_double.size
    assert height_single == height_double
    assert width_double == 2 * width_single


def test_scatter_ignores_non_finite_samples(tmp_path, points):
    points[:10] = np.nan
    points[10] = np.inf
    path = plotting.save_scatter(tmp_path / "nan.png", points, reference=np.zeros((5, 2)))
    assert path.stat().st_size > 0


@pytest.mark.parametrize(
    "samples, reference",
    [
        (np.zeros((10, 3)), None),
        (np.zeros(10), None),
        (np.zeros((0, 2)), None),
        (np.zeros((10, 2)), np.zeros((10, 2, 1))),
    ],
)
def test_scatter_shape_errors(tmp_path, samples, reference):
    with pytest.raises(ValueError, match=r"shape \(n, 2\)"):
        plotting.save_scatter(tmp_path / "bad.png", samples, reference)
    assert not (tmp_path / "bad.png").exists()


def test_scatter_bad_limits(tmp_path, points):
    with pytest.raises(ValueError, match="low < high"):
        plotting.save_scatter(tmp_path / "bad.png", points, limits=(1.0, -1.0))


def test_image_grid_size_scale_and_pixels(tmp_path):
    images = np.zeros((10, 1, 8, 8), np.float32)
    images[0, 0, 0, 0] = 1.0
    images[1] = 2.0  # clipped to 1
    path = plotting.save_image_grid(tmp_path / "grid" / "digits.png", images, nrow=5)
    with Image.open(path) as picture:
        assert picture.mode == "L"
        grid = np.asarray(picture)
    # 8x8 images are enlarged 8 times: cells of 64 + 1 border pixels.
    assert grid.shape == (2 * 65 + 1, 5 * 65 + 1)
    assert grid[0, 0] == plotting.BORDER_VALUE and grid[65, 1] == plotting.BORDER_VALUE
    assert np.all(grid[1:9, 1:9] == 255) and np.all(grid[1:9, 9:65] == 0)
    assert np.all(grid[1:65, 66:130] == 255)
    assert np.all(grid[66:130, 1:65] == 0)


def test_image_grid_rgb_default_layout(tmp_path):
    images = torch.rand(5, 3, 16, 16)
    path = plotting.save_image_grid(tmp_path / "rgb.png", images)
    with Image.open(path) as picture:
        assert picture.mode == "RGB"
        # nrow = ceil(sqrt(5)) = 3, two rows, scale 4: cells of 64 + 1 pixels.
        assert picture.size == (3 * 65 + 1, 2 * 65 + 1)
        cell = np.asarray(picture)[1:65, 1:65]
    expected = np.round(images[0].numpy().transpose(1, 2, 0) * 255).astype(np.uint8)
    np.testing.assert_array_equal(cell[::4, ::4], expected)


def test_image_grid_explicit_scale(tmp_path):
    path = plotting.save_image_grid(tmp_path / "small.png", np.ones((4, 1, 8, 6)), nrow=4, scale=1)
    with Image.open(path) as picture:
        assert picture.size == (4 * 7 + 1, 9 + 1)


@pytest.mark.parametrize("shape", [(4, 8, 8), (4, 2, 8, 8), (0, 1, 8, 8)])
def test_image_grid_shape_errors(tmp_path, shape):
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        plotting.save_image_grid(tmp_path / "bad.png", np.zeros(shape))


def test_image_grid_bad_nrow(tmp_path):
    with pytest.raises(ValueError, match="nrow"):
        plotting.save_image_grid(tmp_path / "bad.png", np.zeros((2, 1, 8, 8)), nrow=0)


@pytest.mark.parametrize(
    "losses",
    [
        np.linspace(2.0, 0.1, 300),
        np.linspace(1.0, -1.0, 300),
        np.array([1.0, np.nan, 0.5, np.inf, 0.2]),
    ],
)
def test_loss_curve(tmp_path, losses):
    steps = np.arange(len(losses)) * 10
    path = plotting.save_loss_curve(tmp_path / "curves" / "loss.png", steps, losses, title="loss")
    with Image.open(path) as picture:
        assert picture.format == "PNG" and picture.size == (600, 400)


def test_loss_curve_errors(tmp_path):
    with pytest.raises(ValueError, match="same length"):
        plotting.save_loss_curve(tmp_path / "bad.png", np.arange(3), np.ones(4))
    with pytest.raises(ValueError, match="same length"):
        plotting.save_loss_curve(tmp_path / "bad.png", np.zeros((2, 2)), np.ones((2, 2)))
    with pytest.raises(ValueError, match="window"):
        plotting.save_loss_curve(tmp_path / "bad.png", np.arange(3), np.ones(3), window=0)
