"""Tests of scoresde.eval.metrics against exact values of the sliced Wasserstein distance."""

import numpy as np
import pytest
import torch

from scoresde.eval import metrics


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
    assert metrics.sliced_wasserstein(np.array([[0.0], [1.0]]), np.array([[0.0], [0.0], [1.0], [1.0]])) == 0.0
    w2_squared = (0.0 + 1.0 + 4.0) / 3.0
    assert metrics.sliced_wasserstein(np.array([[0.0]]), x) == pytest.approx(np.sqrt(w2_squared), rel=1e-12)


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
    from_torch = metrics.sliced_wasserstein(torch.from_numpy(x).float(), torch.from_numpy(y), n_projections=64, seed=2)
    flat = metrics.sliced_wasserstein(x.reshape(50, 16), y.reshape(60, 16), n_projections=64, seed=2)
    assert from_numpy == flat
    assert from_torch == pytest.approx(from_numpy, rel=1e-6)


def test_gaussians_near_noise_floor_and_shifted_far_above(rng):
    data = rng.standard_normal((4000, 2))
    floor = metrics.noise_floor(data, 2000, n_projections=128, seed=0)
    same = metrics.sliced_wasserstein(rng.standard_normal((2000, 2)), data[:2000], n_projections=128)
    shifted = metrics.sliced_wasserstein(rng.standard_normal((2000, 2)) + 3.0, data[:2000], n_projections=128)
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


# -- Frechet distance --------------------------------------------------------------------------
FULL_COV_1 = np.array([[2.0, 0.5, 0.0], [0.5, 1.0, 0.3], [0.0, 0.3, 0.5]])
FULL_COV_2 = np.array([[1.0, -0.4, 0.2], [-0.4, 1.5, 0.0], [0.2, 0.0, 0.8]])


def test_frechet_distance_of_diagonal_gaussians_is_closed_form():
    mu1, mu2 = np.array([0.0, 1.0, -2.0]), np.array([1.0, 1.0, 0.5])
    a, b = np.array([1.0, 4.0, 0.25]), np.array([9.0, 1.0, 0.25])
    # Commuting covariances: tr(C1 + C2 - 2 (C1 C2)^{1/2}) = sum (sqrt(a_i) - sqrt(b_i))^2.
    expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)  # 7.25 + 5
    value = metrics.frechet_distance(mu1, np.diag(a), mu2, np.diag(b))
    assert value == pytest.approx(expected, rel=1e-12)
    assert value == pytest.approx(12.25, rel=1e-12)


def test_frechet_distance_with_full_covariances_matches_sqrtm():
    scipy_linalg = pytest.importorskip("scipy.linalg")
    assert not np.allclose(FULL_COV_1 @ FULL_COV_2, FULL_COV_2 @ FULL_COV_1)
    mu1, mu2 = np.zeros(3), np.array([1.0, -0.5, 0.3])
    # Independent route: the (non-symmetric) square root of C1 C2, whose eigenvalues are those of
    # C1^{1/2} C2 C1^{1/2}.
    root = scipy_linalg.sqrtm(FULL_COV_1 @ FULL_COV_2)
    expected = np.sum((mu1 - mu2) ** 2) + np.trace(FULL_COV_1) + np.trace(FULL_COV_2) - 2.0 * np.trace(root).real
    value = metrics.frechet_distance(mu1, FULL_COV_1, mu2, FULL_COV_2)
    assert value == pytest.approx(expected, rel=1e-10)
    assert metrics.frechet_distance(mu2, FULL_COV_2, mu1, FULL_COV_1) == pytest.approx(value, rel=1e-10)
    # Torch inputs give the same value.
    assert metrics.frechet_distance(
        torch.from_numpy(mu1), torch.from_numpy(FULL_COV_1), torch.from_numpy(mu2), torch.from_numpy(FULL_COV_2)
    ) == pytest.approx(value, rel=1e-12)


def test_frechet_distance_of_a_gaussian_to_itself_is_zero(rng):
    x = rng.standard_normal((500, 8)) @ rng.standard_normal((8, 8))
    mean, cov = metrics.gaussian_statistics(x)
    # The covariance has trace ~ 60; round-off leaves about 1e-16 of that.
    assert metrics.frechet_distance(mean, cov, mean, cov) == pytest.approx(0.0, abs=1e-10)
    assert metrics.frechet_distance_from_samples(x, x) == pytest.approx(0.0, abs=1e-10)
    # A singular covariance (rank 2 in 8 dimensions) works too.
    low_rank = rng.standard_normal((2, 8))
    singular = low_rank.T @ low_rank
    assert metrics.frechet_distance(mean, singular, mean, singular) == pytest.approx(0.0, abs=1e-7)


def test_gaussian_statistics_match_numpy(rng):
    x = rng.standard_normal((40, 2, 3))
    mean, cov = metrics.gaussian_statistics(torch.from_numpy(x))
    np.testing.assert_allclose(mean, x.reshape(40, 6).mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(cov, np.cov(x.reshape(40, 6), rowvar=False), rtol=1e-12, atol=1e-15)
    mean1, cov1 = metrics.gaussian_statistics(np.arange(4.0)[:, None])
    assert mean1.shape == (1,) and cov1.shape == (1, 1) and cov1[0, 0] == pytest.approx(5 / 3)


def test_frechet_distance_from_samples_converges_to_closed_form(rng):
    n = 20000
    mu1, mu2 = np.zeros(3), np.array([1.0, -0.5, 0.3])
    x = rng.multivariate_normal(mu1, FULL_COV_1, n)
    y = rng.multivariate_normal(mu2, FULL_COV_2, n)
    exact = metrics.frechet_distance(mu1, FULL_COV_1, mu2, FULL_COV_2)  # ~2.02
    estimate = metrics.frechet_distance_from_samples(x, y)
    # The fluctuation is dominated by the mean term |mu1 - mu2 + e|^2 with e ~ N(0, (C1 + C2)/n):
    # its standard deviation is 2 sqrt(v^T (C1 + C2) v / n) ~ 0.027 (200 seeds gave 0.028 for
    # the whole estimate), and the upward bias is O(tr(C) / n) ~ 3e-4. Five standard deviations:
    delta = mu1 - mu2
    tolerance = 5 * 2 * np.sqrt(delta @ (FULL_COV_1 + FULL_COV_2) @ delta / n)
    assert estimate == pytest.approx(exact, abs=tolerance)
    assert metrics.frechet_distance_from_samples(y, x) == pytest.approx(estimate, rel=1e-10)


def test_frechet_distance_errors():
    with pytest.raises(ValueError, match="means must be vectors"):
        metrics.frechet_distance(np.zeros(2), np.eye(2), np.zeros(3), np.eye(3))
    with pytest.raises(ValueError, match="covariances must have shape"):
        metrics.frechet_distance(np.zeros(2), np.eye(2), np.zeros(2), np.eye(3))
    with pytest.raises(ValueError, match="at least 2"):
        metrics.frechet_distance_from_samples(np.zeros((1, 2)), np.zeros((5, 2)))
    with pytest.raises(ValueError, match="n >= 2"):
        metrics.gaussian_statistics(np.zeros((1, 3)))


# -- kernel (inception) distance ---------------------------------------------------------------
def _direct_unbiased_mmd2(x, y, degree, gamma, coef0):
    def kernel(a, b):
        return (gamma * float(np.dot(a, b)) + coef0) ** degree

    n, m = len(x), len(y)
    xx = sum(kernel(x[i], x[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    yy = sum(kernel(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    xy = sum(kernel(x[i], y[j]) for i in range(n) for j in range(m)) / (n * m)
    return xx + yy - 2 * xy


def test_polynomial_mmd2_matches_the_direct_formula(rng):
    x, y = rng.standard_normal((5, 3)), rng.standard_normal((7, 3)) + 0.3
    expected = _direct_unbiased_mmd2(x, y, 3, 1 / 3, 1.0)
    assert metrics.polynomial_mmd2(x, y) == pytest.approx(expected, rel=1e-12)
    expected = _direct_unbiased_mmd2(x, y, 2, 0.7, 0.5)
    assert metrics.polynomial_mmd2(x, y, degree=2, gamma=0.7, coef0=0.5) == pytest.approx(expected, rel=1e-12)
    # With subsets as large as the clouds every subset holds everything: the full estimate.
    x6 = rng.standard_normal((6, 3))
    y6 = rng.standard_normal((6, 3))
    mean, std = metrics.kernel_inception_distance(x6, y6, n_subsets=3, subset_size=6)
    assert mean == pytest.approx(_direct_unbiased_mmd2(x6, y6, 3, 1 / 3, 1.0), rel=1e-12)
    assert std == pytest.approx(0.0, abs=1e-12)
    assert metrics.kid is metrics.kernel_inception_distance


def test_kid_is_unbiased_for_identical_distributions_and_positive_for_shifted():
    draws = 400
    same = np.array([metrics.polynomial_mmd2(*np.random.default_rng(s).standard_normal((2, 50, 4))) for s in range(draws)])
    # Unbiased: the mean of independent estimates is 0 within 3 standard errors, and single
    # estimates are negative about half of the time.
    assert abs(same.mean()) < 3 * same.std(ddof=1) / np.sqrt(draws)
    assert 0.3 < np.mean(same < 0) < 0.7
    rng = np.random.default_rng(7)
    x = rng.standard_normal((400, 4))
    mean_same, std_same = metrics.kernel_inception_distance(
        rng.standard_normal((400, 4)), x, n_subsets=20, subset_size=100, seed=1
    )
    mean_shifted, std_shifted = metrics.kernel_inception_distance(
        rng.standard_normal((400, 4)) + 1.0, x, n_subsets=20, subset_size=100, seed=1
    )
    assert abs(mean_same) < 3 * std_same
    # A shift of 1 per coordinate: the mean is several single-subset standard deviations away.
    assert mean_shifted > 4 * std_shifted > 0
    assert mean_shifted > 20 * abs(mean_same)


def test_kid_subsets_are_seeded_and_sizes_capped(rng):
    x, y = rng.standard_normal((30, 2)), rng.standard_normal((20, 2))
    first = metrics.kernel_inception_distance(x, y, n_subsets=5, subset_size=10, seed=3)
    assert first == metrics.kernel_inception_distance(x, y, n_subsets=5, subset_size=10, seed=3)
    assert first != metrics.kernel_inception_distance(x, y, n_subsets=5, subset_size=10, seed=4)
    # subset_size beyond min(n, m) = 20 is capped there.
    assert metrics.kernel_inception_distance(x, y, n_subsets=4, subset_size=1000, seed=2) == metrics.kernel_inception_distance(
        x, y, n_subsets=4, subset_size=20, seed=2
    )
    assert np.isnan(metrics.kernel_inception_distance(x, y, n_subsets=1, subset_size=5)[1])


def test_kid_errors():
    x = np.zeros((10, 2))
    with pytest.raises(ValueError, match="n_subsets >= 1 and subset_size >= 2"):
        metrics.kernel_inception_distance(x, x, n_subsets=0)
    with pytest.raises(ValueError, match="n_subsets >= 1 and subset_size >= 2"):
        metrics.kernel_inception_distance(x, x, subset_size=1)
    with pytest.raises(ValueError, match="degree"):
        metrics.polynomial_mmd2(x, x, degree=0)
    with pytest.raises(ValueError, match="gamma"):
        metrics.polynomial_mmd2(x, x, gamma=-1.0)
    with pytest.raises(ValueError, match="at least 2"):
        metrics.polynomial_mmd2(x[:1], x)
    with pytest.raises(ValueError, match="per-example shapes differ"):
        metrics.kernel_inception_distance(x, np.zeros((10, 3)))


# -- energy distance and the generic noise floor -----------------------------------------------
def test_energy_distance_exact_values():
    # Point masses at a and b: 2 |a - b| (within terms vanish), in any dimension.
    a, b = np.array([1.0, 2.0, 2.0]), np.array([-1.0, 0.0, 1.0])
    assert metrics.energy_distance(np.tile(a, (4, 1)), np.tile(b, (3, 1))) == pytest.approx(2 * 3.0, rel=1e-12)
    # x = {0, 2}, y = {1, 3}: cross mean (1 + 3 + 1 + 1)/4 = 1.5, within means 2 and 2:
    # 3 - 4 = -1 (the unbiased estimate can be negative).
    assert metrics.energy_distance(np.array([[0.0], [2.0]]), np.array([[1.0], [3.0]])) == pytest.approx(-1.0, rel=1e-12)


def test_energy_distance_of_gaussian_and_point_mass():
    scipy_stats = pytest.importorskip("scipy.stats")
    # X ~ N(0, 1) against the point mass at c: 2 E|X - c| - E|X - X'| with
    # E|X - c| = c (2 Phi(c) - 1) + 2 phi(c) and E|X - X'| = 2 / sqrt(pi).
    c = 1.0
    exact = 2 * (c * (2 * scipy_stats.norm.cdf(c) - 1) + 2 * scipy_stats.norm.pdf(c)) - 2 / np.sqrt(np.pi)  # ~1.205
    x = np.random.default_rng(3).standard_normal((4000, 1))
    # Over 50 seeds the estimate with 2000 points had standard deviation 0.037, so ~0.026 here;
    # the tolerance is about 4 of those.
    assert metrics.energy_distance(x, np.full((2, 1), c)) == pytest.approx(exact, abs=0.1)


def test_energy_distance_at_noise_floor_and_shifted_far_above():
    rng = np.random.default_rng(11)
    reference = rng.standard_normal((4000, 2))
    floor_mean, floor_std = metrics.two_sample_noise_floor(metrics.energy_distance, reference, 1000, n_repeats=10, seed=0)
    assert abs(floor_mean) < 2 * floor_std  # the estimate is unbiased
    same = metrics.energy_distance(rng.standard_normal((1000, 2)), reference[:1000])
    shifted = metrics.energy_distance(rng.standard_normal((1000, 2)) + [0.5, 0.0], reference[:1000])
    assert abs(same - floor_mean) < 4 * floor_std
    assert shifted > floor_mean + 20 * floor_std
    # Torch tensors and images are accepted and flattened.
    assert metrics.energy_distance(
        torch.from_numpy(reference[:50]).reshape(50, 1, 2), reference[50:100].reshape(50, 1, 2)
    ) == pytest.approx(metrics.energy_distance(reference[:50], reference[50:100]), rel=1e-12)


def test_two_sample_noise_floor_uses_disjoint_parts_of_the_requested_sizes():
    reference = np.arange(30, dtype=np.float64)[:, None]
    seen = []

    def metric(first, second):
        seen.append((first[:, 0].copy(), second[:, 0].copy()))
        return float(len(first) + 100 * len(second))

    mean, std = metrics.two_sample_noise_floor(metric, reference, 10, m=15, n_repeats=3, seed=2)
    assert (mean, std) == (1510.0, 0.0)
    assert len(seen) == 3
    for first, second in seen:
        assert len(set(first)) == 10 and len(set(second)) == 15
        assert not set(first) & set(second)
    assert not np.array_equal(seen[0][0], seen[1][0])
    # Seeded, and the existing sliced Wasserstein floor is the special case m = n.
    data = np.random.default_rng(0).standard_normal((100, 2))
    assert metrics.two_sample_noise_floor(metrics.energy_distance, data, 20, seed=4) == metrics.two_sample_noise_floor(
        metrics.energy_distance, data, 20, seed=4
    )
    assert np.isnan(metrics.two_sample_noise_floor(metrics.energy_distance, data, 20, n_repeats=1)[1])


@pytest.mark.parametrize("kwargs", [dict(n=0), dict(n=20), dict(n=10, m=11), dict(n=5, m=0)])
def test_two_sample_noise_floor_size_errors(kwargs):
    with pytest.raises(ValueError, match="n \\+ m <= len"):
        metrics.two_sample_noise_floor(metrics.energy_distance, np.zeros((20, 2)), **kwargs)


def test_two_sample_noise_floor_repeat_error():
    with pytest.raises(ValueError, match="n_repeats"):
        metrics.two_sample_noise_floor(metrics.energy_distance, np.zeros((20, 2)), 5, n_repeats=0)


# -- precision and recall ----------------------------------------------------------------------
MODES = np.array([[10.0, 10.0], [10.0, -10.0], [-10.0, 10.0], [-10.0, -10.0]])


def test_precision_recall_of_identical_and_disjoint_distributions():
    rng = np.random.default_rng(5)
    real = MODES[np.arange(2000) % 4] + rng.standard_normal((2000, 2))
    fake = MODES[np.arange(2000) % 4] + rng.standard_normal((2000, 2))
    precision, recall = metrics.precision_recall(real, fake)
    # Only points in the tails fall outside the k = 3 balls (about 2% in 2-D at this size).
    assert precision > 0.95 and recall > 0.95
    assert metrics.precision_recall(real, real) == (1.0, 1.0)
    assert metrics.precision_recall(real, fake + 100.0) == (0.0, 0.0)


def test_precision_recall_when_samples_cover_half_of_the_modes():
    rng = np.random.default_rng(6)
    real = MODES[np.arange(2000) % 4] + rng.standard_normal((2000, 2))
    fake = MODES[np.arange(1000) % 2] + rng.standard_normal((1000, 2))
    precision, recall = metrics.precision_recall(real, fake)
    assert precision > 0.95
    # The two covered modes hold half the real points, of which ~97% lie in the fake balls.
    assert recall == pytest.approx(0.5, abs=0.04)
    assert recall <= 0.5


def test_distance_blocks_give_the_same_results_as_one_block(rng, monkeypatch):
    a, b = rng.standard_normal((23, 4)), rng.standard_normal((17, 4))
    blocks = list(metrics._squared_distance_blocks(a, b, max_entries=40))
    assert len(blocks) == 12 and all(block.shape[0] <= 2 for _, _, block in blocks)
    np.testing.assert_allclose(
        np.vstack([block for _, _, block in blocks]), ((a[:, None, :] - b[None, :, :]) ** 2).sum(axis=2), rtol=1e-10
    )
    x, y = rng.standard_normal((60, 3)), rng.standard_normal((50, 3)) + 0.2
    one_block = metrics.energy_distance(x, y), metrics.precision_recall(x, y)
    original = metrics._squared_distance_blocks
    monkeypatch.setattr(metrics, "_squared_distance_blocks", lambda a, b: original(a, b, max_entries=130))
    assert metrics.energy_distance(x, y) == pytest.approx(one_block[0], rel=1e-12)
    assert metrics.precision_recall(x, y) == one_block[1]


def test_precision_recall_in_high_dimension(rng):
    # d = 1000 with 1500 points: distances come in blocks of at most ~4M entries, never as an
    # (n, n, d) array of differences.
    real = rng.standard_normal((1500, 1000))
    precision, recall = metrics.precision_recall(torch.from_numpy(real).float(), real[:700] * 1.0)
    assert precision == 1.0  # every fake point is a real point
    assert 0.0 <= recall <= 1.0


def test_precision_recall_k_counts_neighbours_other_than_the_point():
    # Real points 0, 1, 3 on a line, k = 1: radii 1, 1, 2, so the balls cover [-1, 5].
    real = np.array([[0.0], [1.0], [3.0]])
    fake = np.array([[-0.9], [2.5], [4.9], [5.1], [-1.1]])
    precision, _ = metrics.precision_recall(real, fake, k=1)
    assert precision == pytest.approx(3 / 5)
    with pytest.raises(ValueError, match="at least 2 examples"):
        metrics.precision_recall(real[:1], fake, k=1)
    with pytest.raises(ValueError, match="k must be a positive integer"):
        metrics.precision_recall(real, fake, k=0)


# -- confidence intervals ----------------------------------------------------------------------
def test_mean_confidence_interval_by_hand():
    # Values 1..4: mean 2.5, s^2 = 5/3, t_{0.975, 3} = 3.182446305 (tables: 3.182).
    mean, half_width = metrics.mean_confidence_interval([1.0, 2.0, 3.0, 4.0])
    assert mean == 2.5
    assert half_width == pytest.approx(3.182446305284263 * np.sqrt(5 / 3) / 2, rel=1e-9)
    # 90%: t_{0.95, 3} = 2.353363435.
    assert metrics.mean_confidence_interval(torch.tensor([1.0, 2.0, 3.0, 4.0]), level=0.9)[1] == pytest.approx(
        2.353363434801823 * np.sqrt(5 / 3) / 2, rel=1e-9
    )
    mean, half_width = metrics.mean_confidence_interval([3.0])
    assert mean == 3.0 and np.isnan(half_width)
    with pytest.raises(ValueError, match="at least one"):
        metrics.mean_confidence_interval([])
    with pytest.raises(ValueError, match="level"):
        metrics.mean_confidence_interval([1.0, 2.0], level=1.0)
