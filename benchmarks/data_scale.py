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

It also trains a small U-Net (nf 16, two levels) for --train-steps steps on each set through the
real path (`run_lib.Experiment`, the Trainer, `data.dataset = "prepared"`), reporting steps/s (after
two warm-up steps) and the peak RssAnon above the process's start: the goal is that it does not
grow with the number of images. With --compare-in-memory the same images are also trained on from
an .npz loaded whole (today's path for user arrays), for the before/after. Each size and path runs
in a fresh process, so the figures do not mix.
"""

from __future__ import annotations

import argparse
import contextlib
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from scoresde import data
from scoresde.data import prepared


def _anon_kb(pid: str, field: str) -> int:
    status = "smaps_rollup" if field == "Pss_Anon:" else "status"
    try:
        for line in Path(f"/proc/{pid}/{status}").read_text().splitlines():
            if line.startswith(field):
                return int(line.split()[1])
    except OSError:  # the process ended meanwhile
        pass
    return 0


def _descendants(pid: str) -> list[str]:
    try:
        children = [c for task in Path(f"/proc/{pid}/task").iterdir() for c in (task / "children").read_text().split()]
    except OSError:
        return []
    return [d for c in children for d in (c, *_descendants(c))]


def rss_anon_mb() -> float:
    """The anonymous resident memory (MB) of this process and its children (the loader's worker
    processes), from /proc (Linux), not the page cache the memory map fills: this process's
    RssAnon plus each child's proportional share (Pss_Anon), so the pages a forked worker still
    shares with its parent are not counted twice."""
    pid = Path("/proc/self").resolve().name
    return (_anon_kb(pid, "RssAnon:") + sum(_anon_kb(c, "Pss_Anon:") for c in _descendants(pid))) / 1024


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
    """Images/s of `steps` batches through the training path (`prepared.StreamedExamples`): rows by
    the training loop's indices, read in file order, to float32 in [-1, 1]."""
    examples = prepared.StreamedExamples(prepared.ImageRows(dataset.images), torch.device("cpu"), centered=True)
    start = time.perf_counter()
    for step in range(steps):
        x = examples[torch.as_tensor(data.batch_indices(len(examples), batch, step, seed))]
        assert x.shape[0] == batch
    return batch * steps / (time.perf_counter() - start)


def gather_ahead(dataset: prepared.PreparedDataset, batch: int, steps: int, workers: int, seed: int = 0) -> float:
    """`gather`'s images/s with `workers` loader processes reading the batches ahead
    (`StreamedExamples.reading`, as the Trainer does with config.data.num_workers)."""
    from scoresde.data import loader

    examples = prepared.StreamedExamples(prepared.ImageRows(dataset.images), torch.device("cpu"), centered=True)
    reads = loader.StepReads(len(examples), batch, seed)
    with examples.reading(reads, range(steps), workers):
        examples[reads(0)[0]]  # the workers started and the first batch read: then time the stream
        start = time.perf_counter()
        for step in range(1, steps):
            x = examples[reads(step)[0]]
            assert x.shape[0] == batch
        return batch * (steps - 1) / (time.perf_counter() - start)


def train(folder: Path, steps: int, batch: int, dataset: str = "prepared", workers: int = 0) -> tuple[float, float, float]:
    """(steps/s, ms per step spent reading or waiting for batches, peak RssAnon MB above the start
    with the worker processes) of `steps` training steps of a small U-Net on the prepared set (or,
    dataset "npz", the same images loaded in memory), through the real path (Experiment, Trainer)
    with `workers` loader processes."""
    import json

    from scoresde import run_lib
    from scoresde.config import defaults
    from scoresde.train import distributed

    config = defaults.get_config()
    config.device = "cpu"
    path = folder / ("prepared" if dataset == "prepared" else "source.npz")
    config.data.dataset, config.data.path, config.data.random_flip = dataset, str(path), True
    config.data.num_workers = workers
    config.model.name, config.model.nf, config.model.ch_mult = "unet", 16, (1, 2)
    config.model.num_res_blocks, config.model.attn_resolutions = 1, ()
    t = config.training
    t.n_steps, t.batch_size, t.log_freq, t.checkpoint_freq, t.meta_checkpoint_freq = steps, batch, steps, 10**9, 0
    t.progress, t.tensorboard, t.sample_freq = False, False, 0
    base, peak = rss_anon_mb(), [0.0]
    exp = run_lib.Experiment(config)
    shutil.rmtree(folder / "run", ignore_errors=True)
    trainer = exp.trainer(folder / "run", distributed.Context())

    def watch(done: int) -> None:
        peak[0] = max(peak[0], rss_anon_mb() - base)
        if done == 2:
            watch.start = time.perf_counter()  # type: ignore[attr-defined]

    trainer.run(0, on_step=watch)
    rate = (steps - 2) / (time.perf_counter() - watch.start)  # type: ignore[attr-defined]
    data_ms = json.loads((folder / "run" / "metrics.jsonl").read_text().splitlines()[-1])["data_ms_per_step"]
    return rate, data_ms, peak[0]


@contextlib.contextmanager
def size_folder(n: int, args, name: str):
    """A folder holding source.npy, n synthetic images, removed afterwards (with the temporary root)."""
    root = Path(args.dir or tempfile.mkdtemp(prefix="scoresde_data_scale_"))
    folder = root / name
    try:
        folder.mkdir(parents=True, exist_ok=True)
        write_source(folder / "source.npy", n, args.resolution)
        yield folder
    finally:
        shutil.rmtree(folder if args.dir else root, ignore_errors=True)


def in_memory(n: int, args) -> None:
    """Today's in-memory path on the same images (an .npz loaded whole): steps/s and peak RssAnon."""
    with size_folder(n, args, f"n{n}_npz") as folder:
        np.savez(folder / "source.npz", images=np.load(folder / "source.npy", mmap_mode="r"))
        (folder / "source.npy").unlink()
        try:
            steps_per_s, data_ms, peak = train(folder, args.train_steps, args.train_batch, dataset="npz")
            print(f"{n:>9}   in memory (npz): {steps_per_s:.2f} train step/s, {data_ms:.1f} data ms/step, RssAnon +{peak:.1f} MB")
        except MemoryError as err:
            print(f"{n:>9}   in memory (npz): refused: {err}", flush=True)


def one_size(n: int, args) -> None:
    with size_folder(n, args, f"n{n}") as folder:
        base = rss_anon_mb()
        start = time.perf_counter()
        prepared.prepare(folder / "source.npy", folder / "prepared")
        prepare_rate = n / (time.perf_counter() - start)
        after_prepare = rss_anon_mb() - base
        (folder / "source.npy").unlink()
        dataset = prepared.open_prepared(folder / "prepared", verify=False)
        gather(dataset, args.batch, min(args.steps, 20))  # warm-up: the file into the page cache
        rates = [gather(dataset, args.batch, args.steps) for _ in range(args.repeats)]
        ahead = [gather_ahead(dataset, args.batch, args.steps, args.loader_workers) for _ in range(args.repeats)]
        size_gb = (folder / "prepared" / prepared.IMAGES_FILE).stat().st_size / 1e9
        print(
            f"{n:>9} {size_gb:>6.2f} {prepare_rate:>14.0f} {after_prepare:>16.1f} {statistics.median(rates):>13.0f} "
            f"{statistics.median(ahead):>16.0f}",
            flush=True,
        )
        for workers in args.workers if args.train_steps else ():
            steps_per_s, data_ms, peak = train(folder, args.train_steps, args.train_batch, workers=workers)
            print(
                f"{n:>9}   train, {workers} workers: {steps_per_s:.2f} step/s, {data_ms:.1f} data ms/step, RssAnon +{peak:.1f} MB"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", nargs="+", type=int, default=[10_000, 100_000])
    parser.add_argument("--resolution", type=int, default=32)
    parser.add_argument("--batch", type=int, default=128, help="batch of the gathering")
    parser.add_argument("--steps", type=int, default=200, help="batches per gathering run")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--train-steps", type=int, default=30, help="training steps of a small U-Net (0: none)")
    parser.add_argument("--train-batch", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--workers", nargs="+", type=int, default=[0, 2], help="config.data.num_workers of the training runs")
    parser.add_argument("--loader-workers", type=int, default=2, help="worker processes of the read-ahead gathering")
    parser.add_argument("--dir", default=None, help="where the synthetic sets are written (default: a temporary folder)")
    parser.add_argument("--compare-in-memory", action="store_true", help="also train from the same images held in memory")
    parser.add_argument("--one", type=int, default=None, help=argparse.SUPPRESS)  # one size, in this process
    parser.add_argument("--one-in-memory", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.one is not None:
        one_size(args.one, args)
        return
    if args.one_in_memory is not None:
        in_memory(args.one_in_memory, args)
        return
    shape = f"{args.resolution}x{args.resolution}x3"
    print(f"{platform.machine()}, {args.threads} threads, torch {torch.__version__}, {shape}; each size in a fresh process")
    print(
        f"{'images':>9} {'GB':>6} {'prepare img/s':>14} {'prep RssAnon+MB':>16} {'gather img/s':>13} "
        f"{f'{args.loader_workers} workers img/s':>16}"
    )
    for n in args.sizes:
        subprocess.run([sys.executable, __file__, "--one", str(n), *_forward(args)], check=True)
        if args.compare_in_memory:
            subprocess.run([sys.executable, __file__, "--one-in-memory", str(n), *_forward(args)], check=True)


def _forward(args) -> list[str]:
    out = ["--resolution", str(args.resolution), "--batch", str(args.batch), "--steps", str(args.steps)]
    out += ["--repeats", str(args.repeats), "--train-steps", str(args.train_steps), "--train-batch", str(args.train_batch)]
    out += ["--threads", str(args.threads), "--loader-workers", str(args.loader_workers), "--workers"]
    out += [str(w) for w in args.workers] + (["--dir", args.dir] if args.dir else [])
    return out


if __name__ == "__main__":
    main()
