"""Gaussian statistics of features, accumulated in pieces, and the statistics files of other projects.

FID compares the Gaussians fitted to two feature clouds (`metrics.frechet_distance`). At paper
scale neither cloud is held whole: `RunningStatistics` adds features batch by batch (or merges the
statistics of shards) in float64,

    n = sum_b n_b,   s = sum_i x_i,   S = sum_i x_i x_i^T,
    mean = s / n,    cov = (S - n mean mean^T) / (n - 1)        (the unbiased covariance, as np.cov),

and keeps the first `keep` feature rows for the estimators that need the points themselves (KID,
precision / recall), so memory is O(d^2 + keep d) whatever n is. To keep the cancellation in
S - n mean mean^T harmless, every batch is shifted by the first batch's mean before it is added
(the statistics of x - c give the same covariance; the mean is shifted back).

Statistics files: `save` / `load` write and read this module's own `.npz` (mu, sigma, n, the kept
features and a description). `read_reference_file` also reads the files users already have:
EDM's and pytorch-fid's reference `.npz` (`mu`, `sigma`) and score_sde's `assets/stats/*_stats.npz`
(the Inception `pool_3` activations themselves, from which mu and sigma are computed and which also
serve as KID's reference points); always with `allow_pickle=False`, and with the keys, shapes and
values checked and named when wrong.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from pathlib import Path
from typing import Callable

import numpy as np
from absl import logging

from scoresde import files

STATS_FORMAT = "scoresde-feature-statistics"
STATS_MAX_BYTES = 1 << 31  # a statistics file: 2048^2 float64 plus the kept features


class RunningStatistics:
    """Mean and covariance of features added in batches (module docstring); `keep` first rows kept."""

    def __init__(self, dim: int | None = None, keep: int = 0):
        self.dim, self.keep, self.n = dim, int(keep), 0
        self._shift: np.ndarray | None = None
        self._sum: np.ndarray | None = None
        self._outer: np.ndarray | None = None
        self._kept: list[np.ndarray] = []
        self._kept_rows = 0

    def add(self, features: np.ndarray) -> None:
        """Add a batch of feature rows (n_b, d)."""
        x = np.asarray(features, dtype=np.float64)
        x = x.reshape(len(x), -1)
        if len(x) == 0:
            return
        if self.dim is None:
            self.dim = x.shape[1]
        if x.shape[1] != self.dim:
            raise ValueError(f"features of dimension {x.shape[1]} added to statistics of dimension {self.dim}")
        if not np.isfinite(x).all():
            raise ValueError("non-finite features: the samples or the feature network produced NaN / inf")
        if self._shift is None:
            self._shift = x.mean(axis=0)
            self._sum, self._outer = np.zeros(self.dim), np.zeros((self.dim, self.dim))
        assert self._sum is not None and self._outer is not None
        centred = x - self._shift
        self._sum += centred.sum(axis=0)
        self._outer += centred.T @ centred
        self.n += len(x)
        if self._kept_rows < self.keep:
            part = x[: self.keep - self._kept_rows].astype(np.float32)
            self._kept.append(part)
            self._kept_rows += len(part)

    @property
    def mean(self) -> np.ndarray:
        self._need(1)
        assert self._sum is not None and self._shift is not None
        return self._shift + self._sum / self.n

    @property
    def cov(self) -> np.ndarray:
        self._need(2)
        assert self._sum is not None and self._outer is not None
        centred_mean = self._sum / self.n
        cov = (self._outer - self.n * np.outer(centred_mean, centred_mean)) / (self.n - 1)
        return (cov + cov.T) / 2

    @property
    def kept(self) -> np.ndarray:
        """The first `keep` feature rows (float32)."""
        return np.concatenate(self._kept) if self._kept else np.zeros((0, self.dim or 0), np.float32)

    def _need(self, n: int) -> None:
        if self.n < n:
            raise ValueError(f"statistics of {self.n} feature rows: need at least {n}")


class Reference:
    """A reference distribution's statistics: mu (d,), sigma (d, d), the count, the points kept
    for KID / precision-recall (possibly none), and where they came from."""

    def __init__(self, mu: np.ndarray, sigma: np.ndarray, n: int, points: np.ndarray | None = None, about: dict | None = None):
        self.mu, self.sigma, self.n = np.asarray(mu, np.float64), np.asarray(sigma, np.float64), int(n)
        self.points = np.zeros((0, len(self.mu)), np.float32) if points is None else np.asarray(points, np.float32)
        self.about = dict(about or {})

    @classmethod
    def of(cls, stats: RunningStatistics, about: dict | None = None) -> "Reference":
        return cls(stats.mean, stats.cov, stats.n, stats.kept, about)

    @property
    def dim(self) -> int:
        return len(self.mu)


def save(path: str | os.PathLike, reference: Reference) -> None:
    """Write `reference` to `path` (.npz), atomically."""
    buffer = io.BytesIO()
    about = json.dumps({"format": STATS_FORMAT, **reference.about})
    np.savez(
        buffer, mu=reference.mu, sigma=reference.sigma, n=np.int64(reference.n), points=reference.points, about=np.array(about)
    )
    files.write_atomic(path, buffer.getvalue())


def load(path: str | os.PathLike) -> Reference:
    """A statistics file `save` wrote (raises ValueError naming the file when it is not one)."""
    arrays = _read_npz(path)
    if "about" not in arrays:
        raise ValueError(f"{path}: not a {STATS_FORMAT} file (no 'about' entry)")
    try:
        about = json.loads(str(arrays["about"]))
    except ValueError:
        raise ValueError(f"{path}: malformed 'about' entry") from None
    if not isinstance(about, dict) or about.pop("format", None) != STATS_FORMAT:
        raise ValueError(f"{path}: not a {STATS_FORMAT} file")
    reference = _checked(path, arrays.get("mu"), arrays.get("sigma"), arrays.get("n"))
    reference.points = _points(path, arrays.get("points"), reference.dim)
    reference.about = about
    return reference


def read_reference_file(path: str | os.PathLike, dim: int | None = None) -> Reference:
    """Reference statistics from a file users have: this module's own, EDM's / pytorch-fid's
    (`mu`, `sigma`) or score_sde's (`pool_3` activations, N x d). `dim`: the feature dimension
    the evaluation's network produces (2048 for Inception pool_3), checked when given.

    Raises:
        FileNotFoundError: no file at `path`.
        ValueError: not an .npz, no recognised keys (naming those found), wrong shapes or
            non-finite values, or a dimension other than `dim`.
    """
    arrays = _read_npz(path)
    if "about" in arrays:
        reference = load(path)
    elif "mu" in arrays and "sigma" in arrays:  # EDM, pytorch-fid
        reference = _checked(path, arrays["mu"], arrays["sigma"], None)
        reference.about = {"source": str(path), "kind": "mu/sigma"}
    elif "pool_3" in arrays:  # score_sde: the activations themselves
        pool = np.asarray(arrays["pool_3"])
        if pool.ndim != 2 or len(pool) < 2 or not np.issubdtype(pool.dtype, np.floating):
            raise ValueError(f"{path}: 'pool_3' must be float activations of shape (N >= 2, d), got {pool.dtype} {pool.shape}")
        stats = RunningStatistics(pool.shape[1])
        stats.add(pool)
        reference = Reference(stats.mean, stats.cov, len(pool), pool.astype(np.float32), {"source": str(path), "kind": "pool_3"})
    else:
        found = ", ".join(sorted(arrays)) or "none"
        raise ValueError(
            f"{path}: not a statistics file: expected 'mu' and 'sigma' (EDM, pytorch-fid) or 'pool_3' (score_sde); found {found}"
        )
    if dim is not None and reference.dim != dim:
        raise ValueError(f"{path}: statistics of {reference.dim}-dimensional features, but the feature network gives {dim}")
    return reference


def default_stats_dir() -> Path:
    """Where reference statistics are cached: $XDG_CACHE_HOME/scoresde/statistics (~/.cache/...)."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "scoresde" / "statistics"


def data_identity(x, n: int) -> dict:
    """What a split's first `n` examples are, for cache keys: a prepared set's view by its
    manifest's SHA-256 and the view's row numbers; an in-memory array by the SHA-256 of its bytes."""
    from scoresde.data import prepared

    if isinstance(x, prepared.ImageRows) and isinstance(x.images, np.memmap) and x.images.filename:
        manifest = files.read_json(Path(x.images.filename).parent / prepared.MANIFEST_FILE)
        rows = np.arange(n) if x.indices is None else np.asarray(x.indices[:n], np.int64)
        return {"prepared_sha256": manifest["sha256"][prepared.IMAGES_FILE], "rows_sha256": _sha256(rows)}
    array = np.ascontiguousarray(np.asarray(x[:n]))
    return {"shape": list(array.shape), "dtype": str(array.dtype), "sha256": _sha256(array)}


def _sha256(array: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()


def cached_reference(cache_dir: str | os.PathLike, identity: dict, compute: Callable[[], Reference]) -> Reference:
    """The statistics `compute()` gives, cached in `cache_dir` under the SHA-256 of `identity`
    (the data's and the feature network's digests, the split, ...): a change of either gives a new
    file, never stale figures. An unreadable cached file is recomputed (with a warning)."""
    key = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()
    path = Path(cache_dir) / f"{key}.npz"
    if path.exists():
        try:
            found = load(path)
            if found.about.get("identity") == json.loads(json.dumps(identity)):
                logging.info("reference statistics from the cache: %s", path)
                return found
        except (ValueError, OSError) as err:
            logging.warning("cached statistics %s are unreadable (%s): computing them again", path, err)
    reference = compute()
    reference.about = {**reference.about, "identity": identity}
    path.parent.mkdir(parents=True, exist_ok=True)
    save(path, reference)
    return reference


def _read_npz(path: str | os.PathLike) -> dict[str, np.ndarray]:
    path = Path(path)
    content = files.read_bytes(path, STATS_MAX_BYTES)
    try:
        with np.load(io.BytesIO(content), allow_pickle=False) as archive:
            return {name: archive[name] for name in archive.files}
    except (ValueError, OSError, EOFError) as err:
        raise ValueError(f"{path}: not a readable .npz without pickles ({err})") from None


def _checked(path, mu, sigma, n) -> Reference:
    if mu is None or sigma is None:
        raise ValueError(f"{path}: missing 'mu' or 'sigma'")
    mu, sigma = np.asarray(mu), np.asarray(sigma)
    if mu.ndim != 1 or sigma.shape != (len(mu), len(mu)):
        raise ValueError(f"{path}: 'mu' must have shape (d,) and 'sigma' (d, d); got {mu.shape} and {sigma.shape}")
    if not (np.issubdtype(mu.dtype, np.floating) and np.issubdtype(sigma.dtype, np.floating)):
        raise ValueError(f"{path}: 'mu' and 'sigma' must be floating point, got {mu.dtype} and {sigma.dtype}")
    if not (np.isfinite(mu).all() and np.isfinite(sigma).all()):
        raise ValueError(f"{path}: 'mu' or 'sigma' holds NaN / inf")
    if not np.allclose(sigma, sigma.T, rtol=1e-5, atol=1e-8 * max(1.0, float(np.abs(sigma).max()))):
        raise ValueError(f"{path}: 'sigma' is not symmetric, so it is not a covariance")
    count = int(n) if n is not None and np.ndim(n) == 0 else 0
    return Reference(mu, sigma, count)


def _points(path, points, dim: int) -> np.ndarray:
    if points is None:
        return np.zeros((0, dim), np.float32)
    points = np.asarray(points)
    if points.ndim != 2 or points.shape[1] != dim:
        raise ValueError(f"{path}: 'points' must have shape (k, {dim}), got {points.shape}")
    return points.astype(np.float32)
