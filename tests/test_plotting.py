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
    path = plotting.save_image_grid(tmp_path / "grid" / "digits.png", images, nrow=5, gutter=1)
    with Image.open(path) as picture:
        assert picture.mode == "L"
        grid = np.asarray(picture)
    # 8x8 images are enlarged 8 times: cells of 64 + a 1-pixel gutter.
    assert grid.shape == (2 * 65 + 1, 5 * 65 + 1)
    assert grid[0, 0] == plotting.BORDER_VALUE and grid[65, 1] == plotting.BORDER_VALUE
    assert np.all(grid[1:9, 1:9] == 255) and np.all(grid[1:9, 9:65] == 0)
    assert np.all(grid[1:65, 66:130] == 255)
    assert np.all(grid[66:130, 1:65] == 0)


def test_image_grid_rgb_default_layout(tmp_path):
    images = torch.rand(5, 3, 16, 16)
    path = plotting.save_image_grid(tmp_path / "rgb.png", images, gutter=1)
    with Image.open(path) as picture:
        assert picture.mode == "RGB"
        # nrow = ceil(sqrt(5)) = 3, two rows, scale 4: cells of 64 + 1 pixels.
        assert picture.size == (3 * 65 + 1, 2 * 65 + 1)
        cell = np.asarray(picture)[1:65, 1:65]
    expected = np.round(images[0].numpy().transpose(1, 2, 0) * 255).astype(np.uint8)
    np.testing.assert_array_equal(cell[::4, ::4], expected)


def test_image_grid_explicit_scale(tmp_path):
    path = plotting.save_image_grid(tmp_path / "small.png", np.ones((4, 1, 8, 6)), nrow=4, scale=1, gutter=1)
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


def _grey(path):
    with Image.open(path) as picture:
        assert picture.mode == "L"
        return np.asarray(picture)


@pytest.mark.parametrize("gutter", [0, 3, 7])
def test_image_grid_gutter_and_scale(tmp_path, gutter):
    images = np.zeros((6, 1, 8, 8), np.float32)  # black cells, like the digits' background
    images[:, 0, 0, 0] = 1.0  # one white source pixel per cell: a scale x scale white square
    grid = _grey(plotting.save_image_grid(tmp_path / "g.png", images, nrow=3, scale=5, gutter=gutter))
    cell = 8 * 5
    assert grid.shape == (2 * (cell + gutter) + gutter, 3 * (cell + gutter) + gutter)
    for row in range(2):
        for column in range(3):
            top, left = gutter + row * (cell + gutter), gutter + column * (cell + gutter)
            np.testing.assert_array_equal(grid[top : top + 5, left : left + 5], 255)  # upscaled 5 times
            assert grid[top + 5, left] == 0 and grid[top, left + 5] == 0
            assert np.all(grid[top : top + cell, left + 5 : left + cell] == 0)
            # the gutter before the cell (left and above) is background grey, gutter pixels wide
            np.testing.assert_array_equal(grid[top : top + cell, left - gutter : left], plotting.BORDER_VALUE)
            np.testing.assert_array_equal(grid[top - gutter : top, left : left + cell], plotting.BORDER_VALUE)
    np.testing.assert_array_equal(grid[-gutter:, :] if gutter else grid[:0], plotting.BORDER_VALUE)
    np.testing.assert_array_equal(grid[:, -gutter:] if gutter else grid[:0], plotting.BORDER_VALUE)


def test_image_grid_default_gutter_separates_digits(tmp_path):
    grid = _grey(plotting.save_image_grid(tmp_path / "d.png", np.zeros((64, 1, 8, 8))))
    gutter = plotting.default_gutter(64)
    assert gutter >= 4  # several pixels between 64-pixel cells
    assert grid.shape == (8 * (64 + gutter) + gutter,) * 2
    # between two neighbouring cells: a band of exactly `gutter` grey columns, black on both sides
    row = grid[gutter + 10]
    band = row[gutter + 64 - 1 : gutter + 64 + gutter + 1]
    assert band[0] == 0 and band[-1] == 0 and np.all(band[1:-1] == plotting.BORDER_VALUE)
    assert plotting.BORDER_VALUE not in (0, 255)


def test_image_grid_reference_row(tmp_path):
    samples = np.zeros((8, 1, 4, 4), np.float32)
    reference = np.ones((10, 1, 4, 4), np.float32)  # only the first nrow = 4 are shown
    reference[4:] = 0.5
    path = plotting.save_image_grid(
        tmp_path / "r.png", samples, nrow=4, scale=4, gutter=2, reference=reference, reference_label="real", samples_label="model"
    )
    grid = _grey(path)
    cell, gutter, band = 16, 2, plotting.LABEL_HEIGHT
    block = cell + 2 * gutter  # one row of cells with its gutters
    assert grid.shape == (2 * band + block + 2 * (cell + gutter) + gutter, 4 * (cell + gutter) + gutter)
    # two labelled dark bands (text drawn at their left end, plain at the right end)
    assert np.all(grid[:band, -3:] == plotting.BAND_VALUE)
    assert np.all(grid[band + block : 2 * band + block, -3:] == plotting.BAND_VALUE)
    assert grid[:band].max() > 150 and grid[band + block : 2 * band + block].max() > 150  # the labels, light on dark
    # the reference row: four white cells, then the black samples below the second band
    for column in range(4):
        left = gutter + column * (cell + gutter)
        assert np.all(grid[band + gutter : band + gutter + cell, left : left + cell] == 255)
        top = 2 * band + block + gutter
        assert np.all(grid[top : top + cell, left : left + cell] == 0)
    assert not np.any(grid == 128 - 1)  # nothing of the unshown 0.5 (-> 128) references except the grey
    without = _grey(plotting.save_image_grid(tmp_path / "n.png", samples, nrow=4, scale=4, gutter=2))
    np.testing.assert_array_equal(grid[2 * band + block :], without)


def test_image_grid_reference_errors(tmp_path):
    with pytest.raises(ValueError, match="reference"):
        plotting.save_image_grid(tmp_path / "bad.png", np.zeros((4, 1, 8, 8)), reference=np.zeros((4, 1, 8, 6)))
    with pytest.raises(ValueError, match="gutter"):
        plotting.save_image_grid(tmp_path / "bad.png", np.zeros((4, 1, 8, 8)), gutter=-1)


def test_loss_curve_draws_points_smoothed_line_and_warmup():
    steps = np.arange(1, 101) * 10
    losses = 1.0 / np.sqrt(steps) * np.exp(np.random.default_rng(0).normal(0, 0.3, len(steps)))
    losses[5] = np.nan
    figure = plotting.loss_curve_figure(steps, losses, window=9, warmup=150)
    (axes,) = figure.axes
    points, smoothed = axes.get_lines()
    assert points.get_linestyle() == "None" and points.get_marker() not in (None, "", "None")
    assert len(points.get_xdata()) == 99  # the non-finite loss is left out
    assert smoothed.get_linestyle() == "-" and len(smoothed.get_xdata()) == 99
    raw, average = np.asarray(points.get_ydata()), np.asarray(smoothed.get_ydata())
    assert np.std(np.diff(np.log(average))) < 0.5 * np.std(np.diff(np.log(raw)))  # smoother
    assert smoothed.get_color() != points.get_color()
    (span,) = axes.patches
    x_low, x_high = sorted(span.get_path().transformed(span.get_patch_transform()).vertices[:, 0][[0, 2]])
    assert (x_low, x_high) == pytest.approx((0.0, 150.0))
    assert axes.get_yscale() == "log"
    assert "warm-up" in " ".join(t.get_text() for t in axes.get_legend().get_texts())


def test_loss_curve_without_warmup_and_few_points():
    figure = plotting.loss_curve_figure([0, 10, 20], [1.0, -0.5, 0.2])
    (axes,) = figure.axes
    assert len(axes.get_lines()) == 2 and not axes.patches
    assert axes.get_yscale() == "linear"
    np.testing.assert_allclose(axes.get_lines()[1].get_ydata(), [0.25, 0.7 / 3, -0.15])  # centred, shrunk ends


def test_scatter_density_behind_samples(points):
    from matplotlib.collections import PathCollection, QuadMesh

    reference = np.concatenate([points, [[np.nan, 0.0]]])
    figure = plotting.scatter_figure(points + 0.1, reference, limits=(-5.0, 5.0))
    data_axes, sample_axes = figure.axes
    meshes = [c for c in sample_axes.collections if isinstance(c, QuadMesh)]
    scatters = [c for c in sample_axes.collections if isinstance(c, PathCollection)]
    assert len(meshes) == 1 and len(scatters) == 1
    assert meshes[0].get_zorder() < scatters[0].get_zorder()
    counts = meshes[0].get_array()
    assert counts.shape[0] == plotting.DENSITY_BINS**2 or counts.shape == (plotting.DENSITY_BINS,) * 2
    assert counts.sum() == len(points)  # every finite reference point within the limits
    assert not any(isinstance(c, QuadMesh) for c in data_axes.collections)
    alone = plotting.scatter_figure(points)
    assert not any(isinstance(c, QuadMesh) for c in alone.axes[0].collections)
