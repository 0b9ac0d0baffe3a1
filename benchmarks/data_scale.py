"""Prepared data at scale: preparation speed, the memory it takes, and how fast batches come out.

    python benchmarks/data_scale.py                          # 10k and 100k images of 32x32x3
    python benchmarks/data_scale.py --sizes 10000 100000 1000000 --resolution 32 --dir /big/disk

For each size, a synthetic uint8 source (`.npy`, written in chunks: never whole in memory) is
prepared into a prepared dataset (`scoresde.data.prepared`), then batches are gathered from the
memory map by the training loop's own indices (`data.batch_indices(n, batch, step, seed)`, an
epoch-wise shuffle), converted to float32 in the model's range [-1, 1]. Reported: preparation
images/s; the peak anonymous memory (RssAnon: not the page cache) of this process after
preparation and after the gathering, above what it held before the size started; and the
gathering's images/s (median of --repeats runs of --steps batches, after a warm-up: the file is then
in the page cache, as it is for a set that fits the machine's memory). Machine, threads and torch
version are printed first.

Not yet measured here: steps/s of training on prepared data (the training loop reads prepared data
in a later change; see the issue's note).
"""

from __future__ import annotations

import argparse
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from scoresde import data
from scoresde.data import prepared


def rss_anon_mb() -> float:
    """This process's anonymous resident memory (MB), from /proc (Linux)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("RssAnon:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def write_source(path: Path, n: int, resolution: int, chunk: int = 8192) -> None:
    """n random uint8 images N x H x W x 3 into a .npy file, chunk by chunk."""
    array = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=(n, resolution, resolution, 3))
    rng = np.random.default_rng(0)
    for start in range(0, n, chunk):
        stop = min(n, start + chunk)
        array[start:stop] = rng.integers(0, 256, (stop - start, resolution, resolution, 3), dtype=np.uint8)
    array.flush()
    del array


def gather(dataset: prepared.PreparedDataset, batch: int, steps: int, seed: int = 0) -> float:
    """Images/s of `steps` batches: rows by the training loop's indices, to float32 in [-1, 1]."""
    start = time.perf_counter()
    for step in range(steps):
        idx = data.batch_indices(len(dataset), batch, step, seed)
        order = np.argsort(idx)  # read the memory map in file order, then put the rows back
        rows = np.empty((batch, *dataset.shape), np.uint8)
        rows[order] = dataset.images[idx[order]]
        x = torch.from_numpy(rows).float().div_(127.5).sub_(1.0)
        assert x.shape[0] == batch
    return batch * steps / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", nargs="+", type=int, default=[10_000, 100_000])
    parser.add_argument("--resolution", type=int, default=32)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--dir", default=None, help="where the synthetic sets are written (default: a temporary folder)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    shape = f"{args.resolution}x{args.resolution}x3"
    print(f"{platform.machine()}, {args.threads} threads, torch {torch.__version__}, {shape}, batch {args.batch}")
    print(f"{'images':>9} {'prepare img/s':>14} {'GB':>6} {'RssAnon +MB prep':>17} {'+MB gather':>11} {'gather img/s':>13}")
    root = Path(args.dir or tempfile.mkdtemp(prefix="scoresde_data_scale_"))
    try:
        for n in args.sizes:
            folder = root / f"n{n}"
            folder.mkdir(parents=True, exist_ok=True)
            write_source(folder / "source.npy", n, args.resolution)
            base = rss_anon_mb()
            start = time.perf_counter()
            prepared.prepare(folder / "source.npy", folder / "prepared")
            prepare_rate = n / (time.perf_counter() - start)
            after_prepare = rss_anon_mb() - base
            dataset = prepared.open_prepared(folder / "prepared", verify=False)
            gather(dataset, args.batch, min(args.steps, 20))  # warm-up
            rates = [gather(dataset, args.batch, args.steps) for _ in range(args.repeats)]
            after_gather = rss_anon_mb() - base
            size_gb = (folder / "prepared" / prepared.IMAGES_FILE).stat().st_size / 1e9
            print(
                f"{n:>9} {prepare_rate:>14.0f} {size_gb:>6.2f} {after_prepare:>17.1f} {after_gather:>11.1f} "
                f"{statistics.median(rates):>13.0f}"
            )
            del dataset
            shutil.rmtree(folder)
    finally:
        if args.dir is None:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
