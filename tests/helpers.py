"""Helpers shared by test modules: a tiny training config and the command line that runs it.

Test modules import these from here, never from one another.
"""

import os
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file

from configs.toy_vp import get_config
from scoresde.train import checkpoint, loop

ROOT = Path(__file__).resolve().parents[1]

# A toy run that trains in well under a second: 12 steps of a 16-wide MLP, checkpoints at 6 and 12.
TINY = {
    "training.n_steps": 12,
    "training.batch_size": 32,
    "training.log_freq": 1,
    "training.checkpoint_freq": 6,
    "training.meta_checkpoint_freq": 0,
    "training.sample_freq": 0,
    "training.progress": False,
    "training.tensorboard": False,
    "model.width": 16,
    "model.depth": 1,
    "model.embed_dim": 16,
    "data.n_examples": 400,
    "sampling.steps": 4,
    "sampling.n_samples": 20,
    "sampling.batch_size": 20,
    "eval.n_projections": 8,
    "device": "cpu",
    "optim.warmup": 2,
}


def tiny_config(**overrides):
    """configs/toy_vp.py with TINY and `overrides` ({"group.key": value}) applied."""
    config = get_config()
    for key, value in {**TINY, **overrides}.items():
        group, name = key.rsplit(".", 1) if "." in key else ("", key)
        target = config
        for part in filter(None, group.split(".")):
            target = target[part]
        target[name] = value
    return config


def main_command(workdir, *args, config="configs/toy_vp.py", mode: str | None = None) -> list[str]:
    """main.py's command line on `config` (relative to the checkout, or absolute) and `workdir`,
    then `mode` and `args`; absolute paths, so it runs from any directory."""
    command = [sys.executable, str(ROOT / "main.py"), f"--config={ROOT / config}", f"--workdir={workdir}"]
    return command + ([f"--mode={mode}"] if mode else []) + list(args)


def subprocess_env(**extra) -> dict[str, str]:
    """The environment of a main.py subprocess: one thread per process (two share 2 cores), output unbuffered."""
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1", **extra}


def cli_overrides(**overrides):
    """TINY and `overrides` as main.py's --config.<key>=<value> arguments."""
    return [f"--config.{k}={v}" for k, v in {**TINY, **overrides}.items()]


def logged_losses(workdir):
    return [(r["step"], r["loss"]) for r in loop.read_metrics(Path(workdir) / "metrics.jsonl")]


def final_tensors(workdir):
    path = checkpoint.latest(Path(workdir) / "checkpoints")
    state = checkpoint.read_state(path)
    tensors = {f"model.{k}": v for k, v in load_file(str(path / "model.safetensors")).items()}
    tensors.update({f"ema.{k}": v for k, v in load_file(str(path / "ema.safetensors")).items()})
    for index, per_param in state["optimizer"]["state"].items():
        tensors.update({f"optim.{index}.{k}": v for k, v in per_param.items() if torch.is_tensor(v)})
    return checkpoint.step_of(path), tensors


def assert_same_tensors(a, b, atol=0.0):
    assert a.keys() == b.keys()
    for key in a:
        if atol:
            torch.testing.assert_close(a[key], b[key], atol=atol, rtol=0, msg=key)
        else:
            assert torch.equal(a[key], b[key]), key


def ddp_train_worker(rank, world_size, init_file, workdir, overrides, failures, mode="train"):
    """One gloo process of a DDP run of --mode `mode` on tiny_config(**overrides) (a spawn target)."""
    import torch

    from scoresde import cli

    try:
        torch.distributed.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size)
        torch.set_num_threads(1)
        cli.MODES[mode](tiny_config(**overrides), workdir)
        torch.distributed.destroy_process_group()
    except BaseException as err:  # report to the parent instead of hanging it
        failures.put(f"rank {rank}: {type(err).__name__}: {err}")
        raise


def run_ddp(overrides, workdir, rendezvous, world_size=2, timeout=240, mode="train"):
    """Run --mode `mode` (training by default) on tiny_config(**overrides) in `world_size` spawned
    gloo processes; fail with the first process's error (never hang)."""
    import torch.multiprocessing as mp

    ctx = mp.get_context("spawn")
    failures = ctx.Queue()
    procs = [
        ctx.Process(target=ddp_train_worker, args=(r, world_size, rendezvous, workdir, overrides, failures, mode))
        for r in range(world_size)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=timeout)
    assert failures.empty(), failures.get()
    assert all(p.exitcode == 0 for p in procs), [p.exitcode for p in procs]
