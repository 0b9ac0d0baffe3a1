"""Sample-quality metrics that need no network: two-sample distances, their noise floors, and
confidence intervals over seeds.

All metrics compare two point clouds x (n, ...) and y (m, ...) whose examples are flattened to
d = prod(...) features; inputs may be numpy arrays or torch tensors, and everything is computed in
float64 numpy. The features can be raw data or the activations of any feature extractor.

* ``sliced_wasserstein``: sliced 2-Wasserstein distance (Rabin et al., 2011; Bonneel et al.,
  2015). Between distributions mu and nu on R^d,

      SW_2(mu, nu)^2 = E_{theta ~ U(S^{d-1})} [ W_2^2(theta#mu, theta#nu) ],

  the 1-D Wasserstein distances between the projections onto random unit directions theta,
  averaged over directions. In 1-D, W_2^2(p, q) = int_0^1 (F_p^{-1}(u) - F_q^{-1}(u))^2 du with
  the quantile functions F^{-1}. Here the expectation is a Monte Carlo average over
  ``n_projections`` seeded directions and the 1-D distances are exact for the empirical
  distributions of the two point clouds.
* ``frechet_distance`` / ``frechet_distance_from_samples``: the 2-Wasserstein distance between
  Gaussians fitted to the two clouds (the formula behind FID).
* ``kernel_inception_distance`` (alias ``kid``) / ``polynomial_mmd2``: unbiased squared maximum
  mean discrepancy with a cubic polynomial kernel (the formula behind KID).
* ``energy_distance``: Szekely and Rizzo's energy distance, unbiased within-sample terms.
* ``precision_recall``: k-nearest-neighbour improved precision and recall.

Finite samples of one and the same law never score zero on most of these: ``noise_floor`` (sliced
Wasserstein) and ``two_sample_noise_floor`` (any metric) give the value a perfect sampler reaches
at the same sample sizes, from disjoint parts of the reference sample. ``mean_confidence_interval``
summarises a metric over repeated seeds.
"""

from collections.abc import Callable

import numpy as np
import torch

from scoresde.data import to_numpy


def random_directions(dim: int, n_projections: int, seed: int = 0) -> np.ndarray:
    """Unit directions drawn uniformly on the sphere, as used by ``sliced_wasserstein``.

    Args:
        dim: dimension d of the space.
        n_projections: number P of directions.
        seed: seed of the ``np.random.default_rng`` generator.

    Returns:
        float64 array of shape (P, d) whose rows have unit norm.

    Raises:
        ValueError: if ``dim`` or ``n_projections`` is smaller than 1.
    """
    if dim < 1 or n_projections < 1:
        raise ValueError(f"dim and n_projections must be >= 1, got {dim} and {n_projections}")
    gaussian = np.random.default_rng(seed).standard_normal((n_projections, dim))
    return gaussian / np.linalg.norm(gaussian, axis=1, keepdims=True)


def _flatten_pair(x: np.ndarray | torch.Tensor, y: np.ndarray | torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    x, y = to_numpy(x), to_numpy(y)
    if x.ndim == 0 or y.ndim == 0 or len(x) == 0 or len(y) == 0:
        raise ValueError(f"need two non-empty point clouds of shape (n, ...), got {x.shape} and {y.shape}")
    if x.shape[1:] != y.shape[1:]:
        raise ValueError(f"per-example shapes differ: {x.shape[1:]} and {y.shape[1:]} (full shapes {x.shape}, {y.shape})")
    return x.reshape(len(x), -1), y.reshape(len(y), -1)


def _squared_w2_1d(x_sorted: np.ndarray, y_sorted: np.ndarray) -> np.ndarray:
    """Exact squared W2 between 1-D empirical distributions, column by column.

    The quantile functions of n and m equally weighted points are step functions with jumps at
    i/n and j/m; on every interval between consecutive jumps of either both are constant, so the
    integral of their squared difference is a weighted sum. For n == m this is the mean squared
    difference of the sorted samples.

    Args:
        x_sorted: array of shape (n, P), each column sorted ascending.
        y_sorted: array of shape (m, P), each column sorted ascending.

    Returns:
        array of shape (P,).
    """
    n, m = len(x_sorted), len(y_sorted)
    levels = np.union1d(np.arange(1, n + 1) / n, np.arange(1, m + 1) / m)
    levels[-1] = 1.0
    widths = np.diff(levels, prepend=0.0)
    midpoints = levels - widths / 2.0
    x_rows = np.minimum((midpoints * n).astype(np.int64), n - 1)
    y_rows = np.minimum((midpoints * m).astype(np.int64), m - 1)
    difference = x_sorted[x_rows] - y_sorted[y_rows]
    return widths @ difference**2


def sliced_wasserstein(
    x: np.ndarray | torch.Tensor, y: np.ndarray | torch.Tensor, *, n_projections: int = 256, seed: int = 0
) -> float:
    """Sliced 2-Wasserstein distance between two point clouds (Bonneel et al., 2015).

    Computes sqrt( (1/P) sum_p W_2^2(theta_p . x, theta_p . y) ) with P = ``n_projections`` unit
    directions ``random_directions(d, P, seed)`` and the exact 1-D W2 between the empirical
    distributions of the projections (sorted samples for equal sizes, piecewise-constant
    quantile functions otherwise). For two clouds differing by a translation v the result is
    sqrt(mean_p (theta_p . v)^2), whose square has expectation |v|^2 / d.

    Args:
        x: samples of shape (n, ...); examples are flattened to d = prod(...) features.
        y: samples of shape (m, ...) with the same per-example shape as ``x``.
        n_projections: number of random directions P.
        seed: seed of the directions; use the same seed to compare runs.

    Returns:
        the distance, a non-negative float (nan or inf if an input has non-finite values).

    Raises:
        ValueError: if a cloud is empty, the per-example shapes differ or
            ``n_projections < 1``.
    """
    x_flat, y_flat = _flatten_pair(x, y)
    directions = random_directions(x_flat.shape[1], n_projections, seed)
    x_projected = np.sort(x_flat @ directions.T, axis=0)
    y_projected = np.sort(y_flat @ directions.T, axis=0)
    return float(np.sqrt(np.mean(_squared_w2_1d(x_projected, y_projected))))


def noise_floor(data: np.ndarray | torch.Tensor, n: int, *, n_projections: int = 256, seed: int = 0) -> float:
    """Sliced Wasserstein distance between two disjoint random subsets of ``data`` of size n.

    This is what a perfect sampler scores against ``n`` data points: ``sliced_wasserstein`` of
    ``n`` samples from a finite set of points is never zero, and a sampler is only
    distinguishable from the data when its distance is clearly above this floor.

    Args:
        data: data points of shape (N, ...), N >= 2 n.
        n: size of each subset, at least 1.
        n_projections: number of random directions (as in ``sliced_wasserstein``).
        seed: seed of both the subset choice and the directions.

    Returns:
        the distance between the two subsets.

    Raises:
        ValueError: if ``n < 1`` or ``2 n > N``.
    """
    data = to_numpy(data)
    if n < 1 or 2 * n > len(data):
        raise ValueError(f"need 1 <= n and 2 n <= len(data) = {len(data)}, got n = {n}")
    order = np.random.default_rng(seed).permutation(len(data))
    first, second = data[order[:n]], data[order[n : 2 * n]]
    return sliced_wasserstein(first, second, n_projections=n_projections, seed=seed)


# ---------------------------------------------------------------------------------------------
# Shared helpers
# ---------------------------------------------------------------------------------------------
def _flatten_one(x: np.ndarray | torch.Tensor, name: str, min_size: int = 1) -> np.ndarray:
    x = to_numpy(x)
    if x.ndim == 0 or len(x) < min_size:
        raise ValueError(f"{name} must have shape (n, ...) with n >= {min_size}, got shape {x.shape}")
    return x.reshape(len(x), -1)


def _check_sizes(x: np.ndarray, y: np.ndarray, min_size: int, what: str) -> None:
    if len(x) < min_size or len(y) < min_size:
        raise ValueError(f"{what} needs at least {min_size} examples in each cloud, got {len(x)} and {len(y)}")


def _squared_distance_blocks(a: np.ndarray, b: np.ndarray, max_entries: int = 1 << 22):
    """Yields (start, stop, block) with block[i, j] = |a[start + i] - b[j]|^2, row block by row
    block, so that no block has more than about ``max_entries`` entries (32 MiB in float64).

    Uses |a|^2 + |b|^2 - 2 a.b (matrix products), clipped at 0; callers centre the points first so
    that the cancellation error, of order 1e-16 |a|^2, stays small.
    """
    a_norms = np.einsum("ij,ij->i", a, a)
    b_norms = np.einsum("ij,ij->i", b, b)
    rows = max(1, max_entries // max(1, len(b)))
    for start in range(0, len(a), rows):
        stop = min(start + rows, len(a))
        block = a_norms[start:stop, None] + b_norms[None, :] - 2.0 * (a[start:stop] @ b.T)
        np.maximum(block, 0.0, out=block)
        yield start, stop, block


def _sample_std(values: np.ndarray) -> float:
    """Standard deviation with the n - 1 denominator; nan for a single value."""
    return float(np.std(values, ddof=1)) if len(values) > 1 else float("nan")


# ---------------------------------------------------------------------------------------------
# Frechet distance between Gaussians
# ---------------------------------------------------------------------------------------------
def gaussian_statistics(features: np.ndarray | torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Mean and covariance of a point cloud, the Gaussian fit used by ``frechet_distance``.

    mean = (1/n) sum_i x_i and cov = (1/(n-1)) sum_i (x_i - mean)(x_i - mean)^T (the unbiased
    sample covariance, as ``np.cov``).

    Args:
        features: samples of shape (n, ...), n >= 2; examples are flattened to d features.

    Returns:
        (mean, cov): float64 arrays of shapes (d,) and (d, d).

    Raises:
        ValueError: if there are fewer than 2 examples.
    """
    x = _flatten_one(features, "features", min_size=2)
    mean = x.mean(axis=0)
    centred = x - mean
    cov = centred.T @ centred / (len(x) - 1)
    return mean, cov


def _symmetric_sqrt(matrix: np.ndarray) -> np.ndarray:
    """Principal square root of a symmetric positive semi-definite matrix (negative eigenvalues
    from round-off are clipped to 0)."""
    eigenvalues, eigenvectors = np.linalg.eigh((matrix + matrix.T) / 2.0)
    return (eigenvectors * np.sqrt(np.clip(eigenvalues, 0.0, None))) @ eigenvectors.T


def frechet_distance(
    mu1: np.ndarray | torch.Tensor,
    cov1: np.ndarray | torch.Tensor,
    mu2: np.ndarray | torch.Tensor,
    cov2: np.ndarray | torch.Tensor,
) -> float:
    """Squared Frechet (2-Wasserstein) distance between N(mu1, C1) and N(mu2, C2).

        d^2 = |mu1 - mu2|^2 + tr(C1 + C2 - 2 (C1^{1/2} C2 C1^{1/2})^{1/2})

    (Dowson and Landau, 1982; Olkin and Pukelsheim, 1982); evaluated on the statistics of
    Inception features it is FID (Heusel et al., 2017). Like FID, the value is the *squared*
    distance.

    The trace of the matrix square root is computed stably as sum_i sqrt(lambda_i) over the
    eigenvalues lambda_i of the symmetric positive semi-definite matrix C1^{1/2} C2 C1^{1/2}
    (``numpy.linalg.eigh``; round-off negatives are clipped to 0), with C1^{1/2} itself from an
    eigendecomposition. These are also the square roots of the eigenvalues of C1 C2, so the
    formula is symmetric in its two arguments. The result is clipped at 0 against round-off.

    Args:
        mu1: mean of shape (d,).
        cov1: symmetric positive semi-definite covariance of shape (d, d).
        mu2: mean of shape (d,).
        cov2: covariance of shape (d, d).

    Returns:
        the squared distance, a non-negative float.

    Raises:
        ValueError: if the shapes are not (d,), (d, d), (d,), (d, d) for one d.
    """
    mu1, mu2 = to_numpy(mu1), to_numpy(mu2)
    cov1, cov2 = to_numpy(cov1), to_numpy(cov2)
    if mu1.ndim != 1 or mu1.shape != mu2.shape:
        raise ValueError(f"means must be vectors of one shape (d,), got {mu1.shape} and {mu2.shape}")
    d = len(mu1)
    if cov1.shape != (d, d) or cov2.shape != (d, d):
        raise ValueError(f"covariances must have shape ({d}, {d}) to match the means, got {cov1.shape} and {cov2.shape}")
    root1 = _symmetric_sqrt(cov1)
    middle = root1 @ cov2 @ root1
    eigenvalues = np.linalg.eigh((middle + middle.T) / 2.0)[0]
    trace_of_root = np.sum(np.sqrt(np.clip(eigenvalues, 0.0, None)))
    difference = mu1 - mu2
    value = difference @ difference + np.trace(cov1) + np.trace(cov2) - 2.0 * trace_of_root
    return float(max(value, 0.0))


def frechet_distance_from_samples(x: np.ndarray | torch.Tensor, y: np.ndarray | torch.Tensor) -> float:
    """``frechet_distance`` between the Gaussians fitted by ``gaussian_statistics`` to x and y.

    The plug-in estimate is biased upwards, by an amount that shrinks as the sample sizes grow
    (Chong and Forsyth, 2020), and it cannot see differences beyond means and covariances: only
    compare values computed at equal sample sizes, next to ``two_sample_noise_floor``.

    Args:
        x: samples of shape (n, ...), n >= 2.
        y: samples of shape (m, ...), m >= 2, with the same per-example shape.

    Returns:
        the squared Frechet distance, a non-negative float.

    Raises:
        ValueError: if a cloud has fewer than 2 examples or the per-example shapes differ.
    """
    x_flat, y_flat = _flatten_pair(x, y)
    _check_sizes(x_flat, y_flat, 2, "frechet_distance_from_samples")
    return frechet_distance(*gaussian_statistics(x_flat), *gaussian_statistics(y_flat))


# ---------------------------------------------------------------------------------------------
# Kernel (inception) distance: unbiased MMD^2 with a polynomial kernel
# ---------------------------------------------------------------------------------------------
def _check_kernel(degree: int, gamma: float | None, d: int) -> float:
    if int(degree) != degree or degree < 1:
        raise ValueError(f"degree must be a positive integer, got {degree}")
    if gamma is None:
        return 1.0 / d
    if not gamma > 0:
        raise ValueError(f"gamma must be positive, got {gamma}")
    return float(gamma)


def _polynomial_mmd2(x: np.ndarray, y: np.ndarray, degree: int, gamma: float, coef0: float) -> float:
    n, m = len(x), len(y)
    k_xx = (gamma * (x @ x.T) + coef0) ** degree
    k_yy = (gamma * (y @ y.T) + coef0) ** degree
    k_xy = (gamma * (x @ y.T) + coef0) ** degree
    within_x = (k_xx.sum() - np.trace(k_xx)) / (n * (n - 1))
    within_y = (k_yy.sum() - np.trace(k_yy)) / (m * (m - 1))
    return float(within_x + within_y - 2.0 * k_xy.mean())


def polynomial_mmd2(
    x: np.ndarray | torch.Tensor, y: np.ndarray | torch.Tensor, *, degree: int = 3, gamma: float | None = None, coef0: float = 1.0
) -> float:
    """Unbiased estimate of the squared maximum mean discrepancy with a polynomial kernel.

    With k(a, b) = (gamma a.b + coef0)^degree and samples x_1..x_n, y_1..y_m,

        MMD^2_u = 1/(n(n-1)) sum_{i != j} k(x_i, x_j) + 1/(m(m-1)) sum_{i != j} k(y_i, y_j)
                  - 2/(n m) sum_{i, j} k(x_i, y_j)

    (Gretton et al., 2012, Lemma 6, with the cross term averaged over all pairs). Its expectation
    is the population MMD^2, zero when both samples come from one law, so single estimates are
    negative about half the time in that case. ``kernel_inception_distance`` averages it over
    subsets. Memory and time are O((n + m)^2) and O((n + m)^2 d).

    Args:
        x: samples of shape (n, ...), n >= 2; examples are flattened to d features.
        y: samples of shape (m, ...), m >= 2, with the same per-example shape.
        degree: polynomial degree, a positive integer.
        gamma: scale of the inner product, positive; default 1 / d.
        coef0: constant added to the scaled inner product.

    Returns:
        the estimate (a float that may be negative).

    Raises:
        ValueError: if a cloud has fewer than 2 examples, the per-example shapes differ, the
            degree is not a positive integer or gamma is not positive.
    """
    x_flat, y_flat = _flatten_pair(x, y)
    _check_sizes(x_flat, y_flat, 2, "polynomial_mmd2")
    gamma = _check_kernel(degree, gamma, x_flat.shape[1])
    return _polynomial_mmd2(x_flat, y_flat, int(degree), gamma, float(coef0))


def kernel_inception_distance(
    x: np.ndarray | torch.Tensor,
    y: np.ndarray | torch.Tensor,
    *,
    degree: int = 3,
    gamma: float | None = None,
    coef0: float = 1.0,
    n_subsets: int = 100,
    subset_size: int = 1000,
    seed: int = 0,
) -> tuple[float, float]:
    """Kernel distance of Binkowski et al. (2018, "Demystifying MMD GANs"), in any feature space.

    The unbiased squared MMD (``polynomial_mmd2``) with the polynomial kernel
    k(a, b) = (gamma a.b + coef0)^degree, by default the cubic kernel (a.b / d + 1)^3, averaged
    over ``n_subsets`` random subsets: each subset draws ``subset_size`` examples from x and as many
    from y, without replacement within the subset and independently across subsets. The name is
    historical (the paper used Inception features); the features here can be raw data or any
    embedding. Unlike the Frechet distance the estimate is unbiased: its expectation is exactly 0
    for two samples of one law, whatever the sample sizes.

    Args:
        x, y, degree, gamma, coef0: the samples and the kernel, as in ``polynomial_mmd2``.
        n_subsets: number of subsets averaged, at least 1.
        subset_size: examples per cloud and subset, at least 2; capped at min(n, m). With
            subset_size >= max(n, m) every subset holds all examples and the mean is the
            estimate on the full samples.
        seed: seed of the ``np.random.default_rng`` generator that draws the subsets.

    Returns:
        (mean, std): the mean of the subset estimates (the KID value; it may be negative) and
        their standard deviation (n - 1 denominator; nan for one subset). The std is the spread of
        one subset's estimate; subsets overlap, so std / sqrt(n_subsets) understates the standard
        error of the mean.

    Raises:
        ValueError: if a cloud has fewer than 2 examples, the per-example shapes differ,
            ``n_subsets < 1``, ``subset_size < 2``, the degree is not a positive integer or
            gamma is not positive.
    """
    x_flat, y_flat = _flatten_pair(x, y)
    _check_sizes(x_flat, y_flat, 2, "kernel_inception_distance")
    gamma = _check_kernel(degree, gamma, x_flat.shape[1])
    if n_subsets < 1 or subset_size < 2:
        raise ValueError(f"need n_subsets >= 1 and subset_size >= 2, got {n_subsets} and {subset_size}")
    size = min(subset_size, len(x_flat), len(y_flat))
    rng = np.random.default_rng(seed)
    estimates = np.empty(n_subsets)
    for s in range(n_subsets):
        x_subset = x_flat[rng.choice(len(x_flat), size, replace=False)]
        y_subset = y_flat[rng.choice(len(y_flat), size, replace=False)]
        estimates[s] = _polynomial_mmd2(x_subset, y_subset, int(degree), gamma, float(coef0))
    return float(estimates.mean()), _sample_std(estimates)


kid = kernel_inception_distance


# ---------------------------------------------------------------------------------------------
# Energy distance
# ---------------------------------------------------------------------------------------------
def _sum_of_distances(a: np.ndarray, b: np.ndarray | None) -> float:
    """Sum of Euclidean distances |a_i - b_j| over all pairs, or over i != j when b is None."""
    same = b is None
    other = a if b is None else b
    total = 0.0
    for start, stop, block in _squared_distance_blocks(a, other):
        if same:
            rows = np.arange(stop - start)
            block[rows, start + rows] = 0.0
        total += np.sqrt(block).sum()
    return total


def energy_distance(x: np.ndarray | torch.Tensor, y: np.ndarray | torch.Tensor) -> float:
    """Energy distance of Szekely and Rizzo (2004; 2013) with unbiased within-sample terms.

        E(X, Y) = 2 E|X - Y| - E|X - X'| - E|Y - Y'|

    with Euclidean norms and X' an independent copy of X. For laws with finite first moments it is
    non-negative and zero only for equal laws; it equals a weighted integral of
    |phi_X(t) - phi_Y(t)|^2 over frequencies t (characteristic functions phi) and is the
    square of a metric, so like the Frechet distance it is reported squared. For two point
    masses at a and b it is 2 |a - b|.

    The estimate uses the mean of |x_i - y_j| over all n m pairs and the U-statistics
    1/(n(n-1)) sum_{i != j} |x_i - x_j| (and likewise for y); it is then unbiased, so for two
    samples of one law its expectation is 0 and single values are often negative. Distances are
    computed in row blocks of at most about 4M entries (32 MiB; time O((n + m)^2 d)) after
    centring both clouds on their pooled mean.

    Args:
        x: samples of shape (n, ...), n >= 2; examples are flattened to d features.
        y: samples of shape (m, ...), m >= 2, with the same per-example shape.

    Returns:
        the estimate (a float that may be negative).

    Raises:
        ValueError: if a cloud has fewer than 2 examples or the per-example shapes differ.
    """
    x_flat, y_flat = _flatten_pair(x, y)
    _check_sizes(x_flat, y_flat, 2, "energy_distance")
    n, m = len(x_flat), len(y_flat)
    centre = (x_flat.sum(axis=0) + y_flat.sum(axis=0)) / (n + m)
    x_flat, y_flat = x_flat - centre, y_flat - centre
    between = _sum_of_distances(x_flat, y_flat) / (n * m)
    within_x = _sum_of_distances(x_flat, None) / (n * (n - 1))
    within_y = _sum_of_distances(y_flat, None) / (m * (m - 1))
    return float(2.0 * between - within_x - within_y)


# ---------------------------------------------------------------------------------------------
# Noise floor of any two-sample metric
# ---------------------------------------------------------------------------------------------
def two_sample_noise_floor(
    metric: Callable[[np.ndarray, np.ndarray], float],
    reference: np.ndarray | torch.Tensor,
    n: int,
    *,
    m: int | None = None,
    n_repeats: int = 5,
    seed: int = 0,
) -> tuple[float, float]:
    """What ``metric`` scores for two independent samples of one law, at given sample sizes.

    The generalisation of ``noise_floor`` to any metric: each repeat draws a random permutation of
    the reference sample (N points, seen as draws from the target law) and evaluates
    ``metric(reference[first n], reference[next m])``. The two parts are disjoint, so they are
    independent samples of the same law, of the sizes of the real comparison
    ``metric(n samples, m reference points)``; a sampler is only distinguishable from the target
    when its value is clearly above this floor (compare the mean and std returned here). Use it
    with sizes n and m equal to those of the real comparison; when the real comparison uses all N
    reference points, no disjoint split of that size exists, and the floor at a smaller m is
    somewhat higher than the true one for the biased metrics (Frechet, sliced Wasserstein),
    while the unbiased ones (KID, energy) have expectation 0 at any sizes.

    Args:
        metric: function of two arrays (n, ...) and (m, ...) returning a float, e.g.
            ``energy_distance`` or ``lambda a, b: kernel_inception_distance(a, b)[0]``. It
            receives float64 numpy arrays with the per-example shape of ``reference``.
        reference: reference points of shape (N, ...), N >= n + m.
        n: size of the first part (the sampler's sample size), at least 1.
        m: size of the second part (the reference size of the comparison); default n.
        n_repeats: number of independent random splits, at least 1.
        seed: seed of the ``np.random.default_rng`` generator that draws the splits.

    Returns:
        (mean, std) of the metric over the splits; std has the n - 1 denominator (nan for one
        repeat).

    Raises:
        ValueError: if ``n < 1``, ``m < 1``, ``n + m > N`` or ``n_repeats < 1``.
    """
    reference = to_numpy(reference)
    m = n if m is None else m
    if reference.ndim == 0 or n < 1 or m < 1 or n + m > len(reference):
        raise ValueError(
            f"need 1 <= n, 1 <= m and n + m <= len(reference) = {len(reference) if reference.ndim else 0}, got n = {n}, m = {m}"
        )
    if n_repeats < 1:
        raise ValueError(f"n_repeats must be >= 1, got {n_repeats}")
    rng = np.random.default_rng(seed)
    values = np.empty(n_repeats)
    for r in range(n_repeats):
        order = rng.permutation(len(reference))
        values[r] = float(metric(reference[order[:n]], reference[order[n : n + m]]))
    return float(values.mean()), _sample_std(values)


# ---------------------------------------------------------------------------------------------
# Improved precision and recall
# ---------------------------------------------------------------------------------------------
def _knn_squared_radii(points: np.ndarray, k: int) -> np.ndarray:
    """Squared distance from every point to its k-th nearest other point."""
    radii = np.empty(len(points))
    for start, stop, block in _squared_distance_blocks(points, points):
        rows = np.arange(stop - start)
        block[rows, start + rows] = np.inf
        radii[start:stop] = np.partition(block, k - 1, axis=1)[:, k - 1]
    return radii


def _fraction_covered(queries: np.ndarray, centres: np.ndarray, squared_radii: np.ndarray) -> float:
    """Fraction of queries inside at least one ball |q - c_j| <= r_j."""
    covered = 0
    for _, _, block in _squared_distance_blocks(queries, centres):
        covered += int(np.count_nonzero((block <= squared_radii[None, :]).any(axis=1)))
    return covered / len(queries)


def precision_recall(
    real_features: np.ndarray | torch.Tensor, fake_features: np.ndarray | torch.Tensor, *, k: int = 3
) -> tuple[float, float]:
    """Improved precision and recall of Kynkaanniemi et al. (2019).

    Each sample set spans a manifold estimate, the union of balls centred at its points with
    radius the distance to the point's k-th nearest neighbour within the set (itself excluded):

        manifold(Phi) = union_{phi in Phi} B(phi, |phi - NN_k(phi, Phi)|).

    Then precision = (1/|fake|) sum_{f in fake} 1[f in manifold(real)] (how many samples are
    realistic) and recall = (1/|real|) sum_{r in real} 1[r in manifold(fake)] (how much of the data
    the samples cover); a point on a ball's boundary may fall either way by round-off. The paper
    uses k = 3. Both values depend
    on the sample sizes, so compare them at equal sizes. Distances are computed in row blocks of at
    most about 4M entries (32 MiB), so a few thousand points in d ~ 1000 need little memory;
    time is O((n + m)^2 d).

    Args:
        real_features: samples of shape (n, ...), n > k; examples are flattened to d features.
        fake_features: samples of shape (m, ...), m > k, with the same per-example shape.
        k: neighbour rank of the radii, a positive integer.

    Returns:
        (precision, recall), each in [0, 1].

    Raises:
        ValueError: if a set has k or fewer examples, the per-example shapes differ or k < 1.
    """
    if int(k) != k or k < 1:
        raise ValueError(f"k must be a positive integer, got {k}")
    real, fake = _flatten_pair(real_features, fake_features)
    _check_sizes(real, fake, k + 1, f"precision_recall with k = {k}")
    centre = real.mean(axis=0)
    real, fake = real - centre, fake - centre
    precision = _fraction_covered(fake, real, _knn_squared_radii(real, int(k)))
    recall = _fraction_covered(real, fake, _knn_squared_radii(fake, int(k)))
    return precision, recall


# ---------------------------------------------------------------------------------------------
# Results over seeds
# ---------------------------------------------------------------------------------------------
def mean_confidence_interval(values: np.ndarray | torch.Tensor | list[float], level: float = 0.95) -> tuple[float, float]:
    """Mean and Student-t confidence half-width of independent repeated results (e.g. seeds).

    With n values of mean v and sample standard deviation s (n - 1 denominator), the interval
    v +- t_{(1 + level)/2, n-1} s / sqrt(n) covers the true mean with probability ``level`` when
    the values are independent and normally distributed (Student, 1908).

    Args:
        values: results of shape (n,) (any shape is flattened), n >= 1.
        level: confidence level, in (0, 1).

    Returns:
        (mean, half_width); half_width is nan for a single value.

    Raises:
        ValueError: if there are no values or the level is not in (0, 1).
    """
    values = to_numpy(values).reshape(-1)
    if len(values) == 0:
        raise ValueError("need at least one value")
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level}")
    n = len(values)
    mean = float(values.mean())
    if n == 1:
        return mean, float("nan")
    import scipy.stats  # here: importing it costs a second and a half, on every start of main.py

    quantile = scipy.stats.t.ppf((1.0 + level) / 2.0, df=n - 1)
    return mean, float(quantile * np.std(values, ddof=1) / np.sqrt(n))


# ---------------------------------------------------------------------------------------------
# Inception Score
# ---------------------------------------------------------------------------------------------
def inception_score(logits: np.ndarray | torch.Tensor, n_splits: int = 10) -> tuple[float, float]:
    """Inception Score of Salimans et al. (2016, "Improved techniques for training GANs").

    With class probabilities p(y|x) = softmax(logits(x)) and, within a split of the samples, their
    mean p(y) = (1/n) sum_x p(y|x),

        IS = exp( (1/n) sum_x KL(p(y|x) || p(y)) )
           = exp( (1/n) sum_x sum_y p(y|x) (log p(y|x) - log p(y)) ).

    It lies in [1, C] for C classes: 1 when every sample gets the same prediction, C when every
    prediction is one-hot and the classes are used equally often. As in the reference code
    (openai/improved-gan, ``inception_score/model.py``) the samples are cut into ``n_splits``
    contiguous splits, rows [s n / k, (s + 1) n / k) (integer division) for s = 0..k-1, without
    shuffling (shuffle first if the samples are ordered, e.g. by class), the score is computed on
    each, and the mean and the standard deviation (n denominator, ``np.std``) over the splits are
    returned. The estimate depends on the split size, so compare values at equal sizes; published
    values use 50,000 samples in 10 splits and the logits of the FID Inception network without
    the fc bias (``scoresde.eval.inception.inception_features``). Computed in float64 with a stable
    log-softmax; a logit of -inf means probability 0.

    Args:
        logits: array (n, C) of class logits, n >= 2 ``n_splits``; entries may be -inf, but not nan
            or +inf, and every row needs a finite entry.
        n_splits: number of splits k, a positive integer.

    Returns:
        (mean, std) of the per-split scores; std is 0 for one split.

    Raises:
        ValueError: if ``logits`` is not 2-D with at least one class, ``n_splits`` is not a
            positive integer, a split would hold fewer than 2 samples, or a row has nan, +inf or
            no finite entry.
    """
    logits = to_numpy(logits)
    if logits.ndim != 2 or logits.shape[1] < 1:
        raise ValueError(f"logits must have shape (n, C) with C >= 1, got {logits.shape}")
    if int(n_splits) != n_splits or n_splits < 1:
        raise ValueError(f"n_splits must be a positive integer, got {n_splits}")
    n, k = len(logits), int(n_splits)
    if n < 2 * k:
        raise ValueError(f"need at least 2 samples per split: n_splits = {k} needs n >= {2 * k}, got {n}")
    if np.isnan(logits).any() or np.isposinf(logits).any():
        raise ValueError("logits must not contain nan or +inf")
    row_max = logits.max(axis=1, keepdims=True)
    if not np.isfinite(row_max).all():
        raise ValueError("every row of logits needs at least one finite entry")
    shifted = logits - row_max
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    probs = np.exp(log_probs)
    scores = np.empty(k)
    for s in range(k):
        rows = slice(s * n // k, (s + 1) * n // k)
        part, log_part = probs[rows], log_probs[rows]
        with np.errstate(divide="ignore", invalid="ignore"):
            log_marginal = np.log(part.mean(axis=0))
            terms = np.where(part > 0.0, part * (log_part - log_marginal), 0.0)
        scores[s] = np.exp(terms.sum(axis=1).mean())
    return float(scores.mean()), float(scores.std())
