"""Sharded, resumable sampling: sample i from its own seed, written shard by shard, split over processes.

An evaluation draws `num_samples` samples; sample i (0-based, within seed range r) is drawn from
the per-sample generator seeded by `first_seed + i` (`samplers.noise.per_sample_generators`, as
EDM's generate.py seeds each image), so its whole trajectory, prior draw and every step's noise,
is the same in any batch and in any process. The samples are cut into shards of `shard_size`;
process `rank` of `world` draws the shards k with k % world == rank, with no collective anywhere,
so torchrun splits the work and a single process can finish what several started.

A folder of shards:

    plan.json               what the shards are draws of (`Plan`, with the sampler spec, its time
                            grid, the checkpoint and the model): a folder is never shared by two
                            different evaluations
    shard_000000.npz        `samples` (images as uint8 N x C x H x W, quantised like a PNG:
                            round(255 x) of data in [0, 1]; other data float32), their `seeds`,
                            the score evaluations each took (`nfe`), the sampler's `time_grid`
                            and the `seconds` the shard took to draw
    shard_000000.feat.npz   the features of those samples under one feature network (its digest
                            in the file), so a resumed evaluation recomputes nothing

Every file is written to a temporary name and renamed into place, so a killed or preempted run
leaves whole shards only; run again, it draws the missing ones (a shard that cannot be read or
whose seeds disagree with the plan is drawn again, with a warning).
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import time
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
from absl import logging

from scoresde import files

PLAN_FILE = "plan.json"
SHARD_NAME, FEATURES_NAME = "shard_{:06d}.npz", "shard_{:06d}.feat.npz"
SHARD_MAX_BYTES = 1 << 34


@dataclasses.dataclass(frozen=True)
class Plan:
    """Which samples a folder holds: `num_samples` of seeds first_seed, first_seed + 1, ..., in
    shards of `shard_size`; `about` says what they are draws of (sampler, grid, checkpoint, ...)."""

    num_samples: int
    shard_size: int
    first_seed: int = 0
    about: dict = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        if self.num_samples < 1 or self.shard_size < 1 or self.first_seed < 0:
            raise ValueError(
                f"need num_samples >= 1, shard_size >= 1 and first_seed >= 0; got {self.num_samples}, "
                f"{self.shard_size}, {self.first_seed}"
            )

    @property
    def n_shards(self) -> int:
        return -(-self.num_samples // self.shard_size)

    def seeds(self, shard: int) -> np.ndarray:
        """The seeds of shard `shard`'s samples, in order."""
        start = shard * self.shard_size
        return np.arange(
            self.first_seed + start, self.first_seed + min(start + self.shard_size, self.num_samples), dtype=np.int64
        )

    def shards_of(self, rank: int, world: int) -> list[int]:
        """The shards process `rank` of `world` draws."""
        return list(range(rank, self.n_shards, world))

    def to_json(self) -> dict:
        return {
            "num_samples": self.num_samples,
            "shard_size": self.shard_size,
            "first_seed": self.first_seed,
            "about": self.about,
        }


def quantize(samples: np.ndarray, is_image: bool) -> np.ndarray:
    """What a shard stores: images in [0, 1] as uint8 round(255 x) (clipped), other data float32
    (float64 kept: per-example figures such as log-likelihoods)."""
    samples = np.asarray(samples)
    if not is_image:
        return samples if samples.dtype == np.float64 else samples.astype(np.float32)
    return np.clip(np.floor(samples.astype(np.float64) * 255.0 + 0.5), 0, 255).astype(np.uint8)


def open_folder(folder: str | os.PathLike, plan: Plan, *, replace: bool = False) -> Path:
    """Create `folder` for `plan`, or check that it holds shards of the same plan.

    Raises:
        ValueError: the folder holds shards of another plan (naming what differs), unless
            `replace`: then its shards are removed (with a warning) and the folder is `plan`'s.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    wanted = plan.to_json()
    path = folder / PLAN_FILE
    if path.exists():
        found = files.read_json(path)
        if found != json.loads(json.dumps(wanted)) and _shards_agree_with_added_keys(folder, found, wanted):
            logging.info("%s: its plan gains %s, which its shards agree with", folder, ", ".join(_differences(found, wanted)))
            files.write_atomic(path, json.dumps(wanted, indent=1))
            found = json.loads(json.dumps(wanted))
        if found != json.loads(json.dumps(wanted)) and replace:
            logging.warning(
                "%s held samples of another plan (%s differ): drawing afresh", folder, ", ".join(_differences(found, wanted))
            )
            for old in folder.glob("shard_*.npz"):
                old.unlink()
            files.write_atomic(path, json.dumps(wanted, indent=1))
        elif found != json.loads(json.dumps(wanted)):
            raise ValueError(
                f"{folder} holds samples of another evaluation ({', '.join(_differences(found, wanted)) or 'plan'} "
                "differ); use another folder or remove it"
            )
    else:
        files.write_atomic(path, json.dumps(wanted, indent=1))
    return folder


# Facts of `Plan.about` that were added after plans were first written, with the array of each
# shard that records the same fact: a plan without the key is upgraded in place when every shard
# it holds agrees (its draws are what the new plan describes), and refused or redrawn otherwise.
RECORDED_IN_SHARDS = {"grid_times": "time_grid"}


def _shards_agree_with_added_keys(folder: Path, found, wanted: dict) -> bool:
    """Whether `found` differs from `wanted` only by `RECORDED_IN_SHARDS` keys it lacks, and the
    shards in `folder` agree with `wanted`'s values of them."""
    about = found.get("about") if isinstance(found, dict) else None
    added = [k for k in RECORDED_IN_SHARDS if k in wanted["about"] and isinstance(about, dict) and k not in about]
    if not added or _differences(found, wanted) != sorted(f"about.{k}" for k in added):
        return False
    for shard in sorted(folder.glob("shard_*.npz")):
        if shard.name.endswith(".feat.npz"):
            continue
        try:
            with np.load(io.BytesIO(files.read_bytes(shard, SHARD_MAX_BYTES)), allow_pickle=False) as archive:
                stored = {k: np.asarray(archive[RECORDED_IN_SHARDS[k]], dtype=np.float64) for k in added}
        except KeyError:
            return False  # a shard that does not record the fact: nothing to vouch for it
        except (ValueError, OSError, EOFError):
            continue  # unreadable: read_shard draws it again
        for k in added:
            value = np.asarray(wanted["about"][k], dtype=np.float64)
            if stored[k].shape != value.shape or not np.allclose(stored[k], value, rtol=0, atol=1e-12):
                return False
    return True


def _differences(found, wanted: dict, prefix: str = "") -> list[str]:
    """The keys (dotted) whose values differ between two plans' JSON."""
    if not isinstance(found, dict):
        return [prefix.rstrip(".") or "plan"]
    out = []
    for key in sorted(set(found) | set(wanted)):
        a, b = found.get(key), json.loads(json.dumps(wanted.get(key)))
        if isinstance(a, dict) and isinstance(b, dict):
            out += _differences(a, b, f"{prefix}{key}.")
        elif a != b:
            out.append(prefix + key)
    return out


def _write_npz(path: Path, **arrays) -> None:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    files.write_atomic(path, buffer.getvalue())


def read_shard(folder: Path, plan: Plan, shard: int, key: str = "samples") -> np.ndarray | None:
    """Shard `shard`'s samples (or its array `key`: "nfe", "time_grid"), or None when it is
    missing, unreadable or of other seeds."""
    path = folder / SHARD_NAME.format(shard)
    if not path.exists():
        return None
    try:
        with np.load(io.BytesIO(files.read_bytes(path, SHARD_MAX_BYTES)), allow_pickle=False) as archive:
            samples, seeds, wanted = archive["samples"], archive["seeds"], archive[key]
    except (ValueError, OSError, KeyError, EOFError) as err:
        logging.warning("%s is unreadable (%s): drawing it again", path, err)
        return None
    if not np.array_equal(seeds, plan.seeds(shard)) or len(samples) != len(seeds):
        logging.warning("%s holds other seeds than the plan's: drawing it again", path)
        return None
    return wanted


def draw(
    folder: str | os.PathLike,
    plan: Plan,
    sample_seeds: Callable[[np.ndarray], tuple[np.ndarray, dict]],
    *,
    is_image: bool,
    batch_size: int,
    rank: int = 0,
    world: int = 1,
    progress: Callable[[int], None] | None = None,
    replace: bool = False,
) -> list[int]:
    """Draw this process's missing shards of `plan` into `folder`; returns the shards it drew.

    Args:
        sample_seeds: seeds (n,) -> (the n samples in data space (images in [0, 1]), sample j from
            seed seeds[j] alone; {"nfe": score evaluations, "time_grid": the times}).
        batch_size: samples per call of `sample_seeds`.
        progress: called with the number of samples of each shard when it is written.
        replace: a folder holding another plan's shards is emptied (`open_folder`), not refused.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    folder = open_folder(folder, plan, replace=replace)
    drawn = []
    for shard in plan.shards_of(rank, world):
        if read_shard(folder, plan, shard) is not None:
            continue
        seeds = plan.seeds(shard)
        parts, nfe, grid = [], [], np.zeros(0)
        start = time.perf_counter()
        for i in range(0, len(seeds), batch_size):
            x, info = sample_seeds(seeds[i : i + batch_size])
            parts.append(quantize(x, is_image))
            nfe += [int(info.get("nfe", 0))] * len(x)
            grid = np.asarray(info.get("time_grid", grid), dtype=np.float64)
        arrays = {
            "samples": np.concatenate(parts),
            "seeds": seeds,
            "nfe": np.array(nfe, np.int64),
            "time_grid": grid,
            "seconds": np.float64(time.perf_counter() - start),
        }
        _write_npz(folder / SHARD_NAME.format(shard), **arrays)
        drawn.append(shard)
        if progress is not None:
            progress(len(seeds))
    return drawn


def missing(folder: str | os.PathLike, plan: Plan) -> list[int]:
    """The shards of `plan` not (validly) in `folder`."""
    return [k for k in range(plan.n_shards) if read_shard(Path(folder), plan, k) is None]


def samples(folder: str | os.PathLike, plan: Plan) -> Iterator[np.ndarray]:
    """Every shard's samples, in order (one shard in memory at a time).

    Raises:
        FileNotFoundError: a shard is missing (naming it).
    """
    for shard in range(plan.n_shards):
        x = read_shard(Path(folder), plan, shard)
        if x is None:
            raise FileNotFoundError(f"{Path(folder) / SHARD_NAME.format(shard)} is missing: draw the shards first")
        yield x


def sampling_info(folder: str | os.PathLike, plan: Plan) -> dict:
    """The mean score evaluations per sample over all shards, the time grid of the first, and
    `seconds`: the time spent drawing them all, summed over the shards (whichever process and run
    drew each; NaN when a shard predates the record of its time)."""
    nfe, seconds = [], 0.0
    for shard in range(plan.n_shards):
        part = read_shard(Path(folder), plan, shard, "nfe")
        if part is None:
            raise FileNotFoundError(f"{Path(folder) / SHARD_NAME.format(shard)} is missing: draw the shards first")
        nfe.append(part)
        seconds += _shard_seconds(Path(folder) / SHARD_NAME.format(shard))
    grid = read_shard(Path(folder), plan, 0, "time_grid")
    return {
        "nfe": float(np.concatenate(nfe).mean()),
        "time_grid": [round(float(t), 6) for t in np.asarray(grid)],
        "seconds": seconds,
    }


def _shard_seconds(path: Path) -> float:
    with np.load(io.BytesIO(files.read_bytes(path, SHARD_MAX_BYTES)), allow_pickle=False) as archive:
        return float(archive["seconds"]) if "seconds" in archive.files else float("nan")


def features(
    folder: str | os.PathLike,
    plan: Plan,
    feature_fn: Callable[[np.ndarray], dict[str, np.ndarray]],
    digest: str,
    only: list[int] | None = None,
) -> Iterator[dict[str, np.ndarray]]:
    """Every shard's features under the network of `digest` (`feature_fn(samples) -> {name:
    (n, d) array}`), computed once per shard and stored beside it; in shard order. `only`: just
    those shards (a process's own, `Plan.shards_of`, so the feature pass is split too)."""
    folder = Path(folder)
    for shard in range(plan.n_shards) if only is None else only:
        x = read_shard(folder, plan, shard)
        if x is None:
            raise FileNotFoundError(f"{folder / SHARD_NAME.format(shard)} is missing: draw the shards first")
        path = folder / FEATURES_NAME.format(shard)
        stored = _read_features(path, digest, len(x))
        if stored is None:
            stored = {name: np.asarray(v, np.float32) for name, v in feature_fn(x).items()}
            _write_npz(path, digest=np.array(digest), **stored)
        yield stored


def _read_features(path: Path, digest: str, n: int) -> dict[str, np.ndarray] | None:
    if not path.exists():
        return None
    try:
        with np.load(io.BytesIO(files.read_bytes(path, SHARD_MAX_BYTES)), allow_pickle=False) as archive:
            if str(archive["digest"]) != digest:
                return None
            stored = {name: archive[name] for name in archive.files if name != "digest"}
    except (ValueError, OSError, KeyError, EOFError):
        return None
    return stored if all(len(v) == n for v in stored.values()) else None
