"""Throughput of `--mode eval`: samples/s and seconds per 1,000 samples including the metrics.

    python benchmarks/eval_throughput.py                                   # the digits U-Net on this CPU
    python benchmarks/eval_throughput.py --config configs/cifar10/ncsnpp_ve.py --device cuda \\
        --samplers dpmpp_2m --steps 10 35 --num-samples 2000 --batch 500  # a GPU

A network of the config is trained for one step (throughput does not depend on how well it is
trained) into a temporary work directory; then, for each sampler and step count, `--mode eval`
draws --num-samples samples (sharded, as at paper scale) and scores them against the training
split's reference statistics (computed once, cached, and not counted). Reported per row: the NFE
per sample, the sampling rate, the metric pass (features of every shard, FD / KD / precision-recall
against the reference), seconds per 1,000 samples with the metrics, and the extrapolation to
50,000 samples. Machine, threads and torch version are printed first; each row is one run
(sampling dominates and is steady, so one run is representative; use --repeats for a median).
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def load_config(path: str):
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_config", path)
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(module)
    return module.get_config()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="configs/digits_unet_vp.py")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--samplers", nargs="+", default=["euler_maruyama", "dpmpp_2m"])
    parser.add_argument("--steps", nargs="+", type=int, default=[10, 35])
    parser.add_argument("--num-samples", type=int, default=500)
    parser.add_argument("--shard", type=int, default=250)
    parser.add_argument("--batch", type=int, default=250)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from scoresde import run_lib

    root = Path(tempfile.mkdtemp(prefix="scoresde_eval_throughput_"))
    try:
        config = load_config(str(Path(__file__).resolve().parents[1] / args.config))
        config.device = args.device
        t = config.training
        t.n_steps, t.checkpoint_freq, t.sample_freq, t.progress, t.tensorboard = 1, 1, 0, False, False
        config.sampling.n_samples = 16
        run_lib.train(config, root / "run")
        e = config.eval
        e.shard_size, e.stats_dir = args.shard, str(root / "stats")
        config.sampling.batch_size = args.batch
        config.eval.samplers, config.sampling.steps, config.eval.num_samples = (args.samplers[0],), 1, 2
        run_lib.evaluate(config, root / "run")  # warm-up: the feature network and the reference statistics, cached
        e.num_samples = args.num_samples
        print(
            f"{platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}, {args.device}, "
            f"{args.config}, {args.num_samples} samples per row"
        )
        header = f"{'sampler':>16} {'steps':>5} {'NFE':>6} {'samples/s':>10} {'metrics s':>10}"
        print(f"{header} {'s / 1k with metrics':>20} {'50k: h':>7}")
        for name in args.samplers:
            for steps in args.steps:
                sample_s, metric_s = [], []
                for repeat in range(args.repeats):
                    config.eval.samplers, config.sampling.steps = (name,), steps
                    shutil.rmtree(root / "run" / "eval", ignore_errors=True)
                    run_lib.evaluate(config, root / "run")
                    record = json.loads((root / "run" / "eval" / "summary.json").read_text())[0]
                    sample_s.append(record["sample_seconds"])
                    metric_s.append(record["metric_seconds"])
                sampling, metric = statistics.median(sample_s), statistics.median(metric_s)
                per_1k = 1000 * (sampling + metric) / args.num_samples
                print(
                    f"{name:>16} {steps:>5} {record['nfe']:>6.0f} {args.num_samples / sampling:>10.1f} {metric:>10.2f} "
                    f"{per_1k:>20.1f} {50 * per_1k / 3600:>7.2f}",
                    flush=True,
                )
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
