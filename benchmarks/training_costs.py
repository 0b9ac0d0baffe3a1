"""What training costs: steps/s per precision, and seconds per checkpoint save and restore.

    python benchmarks/training_costs.py                                   # CIFAR-10 NCSN++, CPU, batch 8
    python benchmarks/training_costs.py --device cuda --batch 128 --precisions fp32 bf16 fp16
    python benchmarks/training_costs.py --config configs/digits_unet_vp.py --batch 64

Training steps go through the real path (`scoresde.train.loop.Trainer.train_step`: batch, autocast,
gradient scaler, clipping, EMA) on random uint8 images of the config's shape written to a temporary
.npz file, so any config can be timed without its dataset. Figures are medians over --repeats
timed steps after --warmup steps (CUDA synchronised around each). Checkpoints are written with
`scoresde.train.checkpoint.save` (model + EMA as safetensors, Adam state, fsync, atomic rename) into
--dir (default: a temporary directory; point it at the file system you train on), median of
--saves; restore reads them back into the model, EMA and optimizer.
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root, for `configs`
from scoresde import run_lib
from scoresde.train import checkpoint, distributed, loop


def load_config(path: str, overrides: dict):
    spec = importlib.util.spec_from_file_location("experiment_config", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    config = module.get_config()
    for key, value in overrides.items():
        *groups, name = key.split(".")
        node = config
        for part in groups:
            node = node[part]
        node[name] = value
    return config


def synthetic_npz(folder: Path, shape: tuple[int, ...], n: int) -> Path:
    """Random images (N, H, W, C) uint8 of a config's data shape."""
    channels, height, width = shape
    images = np.random.default_rng(0).integers(0, 256, (n, height, width, channels), dtype=np.uint8)
    path = folder / "images.npz"
    np.savez(path, images=images)
    return path


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_steps(config, workdir: Path, warmup: int, repeats: int) -> tuple[float, float, int]:
    exp = run_lib.Experiment(config)
    trainer = exp.trainer(workdir, distributed.Context())
    for step in range(warmup):
        trainer.train_step(step)
    times = []
    for step in range(warmup, warmup + repeats):
        sync(exp.device)
        start = time.perf_counter()
        trainer.train_step(step)
        sync(exp.device)
        times.append(time.perf_counter() - start)
    params = sum(p.numel() for p in exp.model.parameters())
    return statistics.median(times), min(times), params


def profile_steps(config, workdir: Path) -> None:
    exp = run_lib.Experiment(config)
    trainer = exp.trainer(workdir, distributed.Context())
    for step in range(2):
        trainer.train_step(step)
    activities = [torch.profiler.ProfilerActivity.CPU]
    if exp.device.type == "cuda":
        activities.append(torch.profiler.ProfilerActivity.CUDA)
    with torch.profiler.profile(activities=activities) as prof:
        for step in range(2, 5):
            trainer.train_step(step)
        sync(exp.device)
    key = "self_cuda_time_total" if exp.device.type == "cuda" else "self_cpu_time_total"
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=20))
    if exp.device.type == "cuda":
        print(prof.key_averages().table(sort_by=key, row_limit=12))


def time_checkpoints(config, folder: Path, saves: int) -> dict:
    exp = run_lib.Experiment(config)
    trainer = exp.trainer(folder, distributed.Context())
    trainer.train_step(0)  # Adam's moment buffers exist from the first step on
    save_times, restore_times = [], []
    for k in range(saves):
        sync(exp.device)
        start = time.perf_counter()
        path = checkpoint.save(folder / "checkpoints", k + 1, exp.model, exp.ema, exp.optimizer, config.to_dict(), keep=2)
        save_times.append(time.perf_counter() - start)
        start = time.perf_counter()
        checkpoint.restore(path, exp.model, exp.ema, exp.optimizer)
        sync(exp.device)
        restore_times.append(time.perf_counter() - start)
    size = sum(f.stat().st_size for f in path.iterdir())
    return {"save": statistics.median(save_times), "restore": statistics.median(restore_times), "megabytes": size / 2**20}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="configs/cifar10/ncsnpp_ve.py")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--precisions", nargs="+", default=["fp32", "bf16"], choices=list(loop.PRECISIONS))
    parser.add_argument("--compile", action="store_true", help="also time torch.compile'd training")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--saves", type=int, default=3)
    parser.add_argument("--dir", default="", help="where checkpoints are written (default: a temporary directory)")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--profile", action="store_true", help="print the operators that take the time in 3 fp32 steps")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(dir=args.dir or None) as tmp:
        tmp = Path(tmp)
        probe = load_config(args.config, {})
        size = probe.data.pad_to or probe.data.image_size or 32
        channels = 1 if probe.data.dataset in ("digits", "mnist5k") or probe.data.grayscale else 3
        npz = synthetic_npz(tmp, (channels, size, size), max(4 * args.batch, 64))
        base = {
            "data.dataset": "npz",
            "data.path": str(npz),
            "data.pad_to": 0,
            "data.image_size": 0,
            "data.grayscale": False,
            "data.random_flip": probe.data.random_flip,
            "device": args.device,
            "training.batch_size": args.batch,
            "training.tensorboard": False,
            "training.progress": False,
        }
        print(
            f"{args.config}: data {channels}x{size}x{size}, batch {args.batch}, device {args.device}, torch {torch.__version__}, "
            f"{torch.get_num_threads()} CPU threads; median of {args.repeats} steps after {args.warmup}"
        )
        print(f"{'precision':<10}{'compile':>8}{'s/step':>10}{'min':>10}{'images/s':>10}{'params':>12}")
        for compiled in [False, True] if args.compile else [False]:
            for precision in args.precisions:
                config = load_config(args.config, {**base, "training.precision": precision, "training.compile": compiled})
                median, best, params = time_steps(config, tmp / f"run-{precision}-{compiled}", args.warmup, args.repeats)
                print(
                    f"{precision:<10}{str(compiled):>8}{median:>10.4f}{best:>10.4f}"
                    f"{args.batch / median:>10.1f}{params / 1e6:>11.1f}M"
                )
        if args.profile:
            profile_steps(load_config(args.config, base), tmp / "profile")
        costs = time_checkpoints(load_config(args.config, base), tmp / "ckpt", args.saves)
        print(
            f"checkpoint: {costs['megabytes']:.0f} MB (model + EMA + Adam state); save {costs['save']:.2f} s, "
            f"restore {costs['restore']:.2f} s (median of {args.saves})"
        )


if __name__ == "__main__":
    main()
