"""Tests of scoresde.metrics against exact values of the sliced Wasserstein distance."""

import numpy as np
import pytest
import torch

from scoresde import metrics


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


def test_identical_clouds_have_zero_distance(rng):
    x = rng.standard_normal((300, 3))
    assert metrics.sliced_wasserstein(x, x) == 0.0
    shuffled = x[rng.permutation(300)]
    assert metrics.sliced_wasserstein(x, shuffled) == pytest.approx(0.0, abs=1e-12)


def test_one_dimensional_values_are_exact():
    # d = 1: every direction is +-1, so SW2 equals the 1-D W2.
    x = np.array([[0.0], [1.0], [2.0]])
    assert metrics.sliced_wasserstein(x, x + 1.0) == pytest.approx(1.0, rel=1e-12)
    # Unequal sizes: the same empirical distribution, and a point against three points.
    assert metrics.sliced_wasserstein(np.array([[0.0], [1.0]]),
                                      np.array([[0.0], [0.0], [1.0], [1.0]])) == 0.0
    w2_squared = (0.0 + 1.0 + 4.0) / 3.0
    assert metrics.sliced_wasserstein(np.array([[0.0]]), x) == pytest.approx(
        np.sqrt(w2_squared), rel=1e-12)


def test_unequal_sizes_match_the_quantile_integral():
    # n = 2 and m = 3: quantile levels 1/3, 1/2, 2/3, 1 give pieces of widths 1/3, 1/6, 1/6, 1/3.
    x = np.array([[0.0], [10.0]])
    y = np.array([[1.0], [2.0], [3.0]])
    expected = (1.0 + 4.0 / 2 + 64.0 / 2 + 49.0) / 3.0  # = 28
    assert metrics.sliced_wasserstein(x, y) ** 2 == pytest.approx(expected, rel=1e-12)
    assert metrics.sliced_wasserstein(y, x) ** 2 == pytest.approx(expected, rel=1e-12)


def test_translation_gives_mean_squared_projection(rng):
    x = rng.standard_normal((200, 3))
    shift = np.array([3.0, -1.0, 2.0])
    value = metrics.sliced_wasserstein(x, x + shift, n_projections=4096, seed=5)
    directions = metrics.random_directions(3, 4096, seed=5)
    assert value**2 == pytest.approx(np.mean((directions @ shift) ** 2), rel=1e-9)
    # For uniform directions in d dimensions E[(theta . v)^2] = |v|^2 / d (here 14 / 3); the
    # Monte Carlo standard error with 4096 directions is about 1.4%.
    assert value**2 == pytest.approx(14.0 / 3.0, rel=0.05)


def test_random_directions_are_unit_and_seeded():
    directions = metrics.random_directions(5, 100, seed=3)
    assert directions.shape == (100, 5)
    np.testing.assert_allclose(np.linalg.norm(directions, axis=1), 1.0, rtol=1e-12)
    np.testing.assert_array_equal(directions, metrics.random_directions(5, 100, seed=3))
    assert not np.allclose(directions, metrics.random_directions(5, 100, seed=4))


def test_images_are_flattened_and_torch_matches_numpy(rng):
    x = rng.random((50, 1, 4, 4))
    y = rng.random((60, 1, 4, 4))
    from_numpy = metrics.sliced_wasserstein(x, y, n_projections=64, seed=2)
    from_torch = metrics.sliced_wasserstein(torch.from_numpy(x).float(),
                                            torch.from_numpy(y), n_projections=64, seed=2)
    flat = metrics.sliced_wasserstein(x.reshape(50, 16), y.reshape(60, 16), n_projections=64,
                                      seed=2)
    assert from_numpy == flat
    assert from_torch == pytest.approx(from_numpy, rel=1e-6)


def test_gaussians_near_noise_floor_and_shifted_far_above(rng):
    data = rng.standard_normal((4000, 2))
    floor = metrics.noise_floor(data, 2000, n_projections=128, seed=0)
    same = metrics.sliced_wasserstein(rng.standard_normal((2000, 2)), data[:2000],
                                      n_projections=128)
    shifted = metrics.sliced_wasserstein(rng.standard_normal((2000, 2)) + 3.0, data[:2000],
                                         n_projections=128)
    assert 0.0 < floor < 0.1
    assert same < 3 * floor + 0.02
    # Shift v = (3, 3): SW2^2 ~ |v|^2 / 2 = 9, so SW2 ~ 3.
    assert shifted == pytest.approx(3.0, rel=0.15)
    assert shifted > 20 * floor


def test_noise_floor_uses_disjoint_subsets():
    # The data are 2n distinct points; disjoint halves can never be identical.
    data = np.arange(10, dtype=np.float64)[:, None]
    assert metrics.noise_floor(data, 5) > 0.0
    assert metrics.noise_floor(data, 5, seed=1) == metrics.noise_floor(data, 5, seed=1)


@pytest.mark.parametrize("n", [0, 6])
def test_noise_floor_errors(n):
    with pytest.raises(ValueError, match="2 n <= len"):
        metrics.noise_floor(np.zeros((10, 2)), n)


def test_shape_errors():
    with pytest.raises(ValueError, match="per-example shapes differ"):
        metrics.sliced_wasserstein(np.zeros((5, 2)), np.zeros((5, 3)))
    with pytest.raises(ValueError, match="non-empty"):
        metrics.sliced_wasserstein(np.zeros((0, 2)), np.zeros((5, 2)))
    with pytest.raises(ValueError, match="n_projections"):
        metrics.sliced_wasserstein(np.zeros((5, 2)), np.zeros((5, 2)), n_projections=0)


def test_non_finite_samples_give_non_finite_distance():
    x = np.zeros((5, 2))
    y = np.zeros((5, 2))
    y[0, 0] = np.nan
    assert np.isnan(metrics.sliced_wasserstein(x, y))
