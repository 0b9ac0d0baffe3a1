"""Sample-quality metrics that need no network: sliced Wasserstein distance and its noise floor.

The sliced 2-Wasserstein distance (Rabin et al., 2011; Bonneel et al., 2015) between
distributions mu and nu on R^d is

    SW_2(mu, nu)^2 = E_{theta ~ U(S^{d-1})} [ W_2^2(theta#mu, theta#nu) ],

the 1-D Wasserstein distances between the projections onto random unit directions theta,
averaged over directions. In 1-D, W_2^2(p, q) = int_0^1 (F_p^{-1}(u) - F_q^{-1}(u))^2 du with
the quantile functions F^{-1}. Here the expectation is a Monte Carlo average over
``n_projections`` seeded directions and the 1-D distances are exact for the empirical
distributions of the two point clouds.

Inputs may be numpy arrays or torch tensors; everything is computed in float64 numpy.
"""

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


def _flatten_pair(x: np.ndarray | torch.Tensor,
                  y: np.ndarray | torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    x, y = to_numpy(x), to_numpy(y)
    if x.ndim == 0 or y.ndim == 0 or len(x) == 0 or len(y) == 0:
        raise ValueError(
            f"need two non-empty point clouds of shape (n, ...), got {x.shape} and {y.shape}"
        )
    if x.shape[1:] != y.shape[1:]:
        raise ValueError(
            f"per-example shapes differ: {x.shape[1:]} and {y.shape[1:]} (full shapes {x.shape}, "
            f"{y.shape})"
        )
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


def sliced_wasserstein(x: np.ndarray | torch.Tensor, y: np.ndarray | torch.Tensor, *,
                       n_projections: int = 256, seed: int = 0) -> float:
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


def noise_floor(data: np.ndarray | torch.Tensor, n: int, *, n_projections: int = 256,
                seed: int = 0) -> float:
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
    first, second = data[order[:n]], data[order[n:2 * n]]
    return sliced_wasserstein(first, second, n_projections=n_projections, seed=seed)
