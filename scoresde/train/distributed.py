"""Multi-process training on PyTorch's own engine: process groups from `torchrun`, and collectives.

Launch (one machine, K processes; each process gets RANK, LOCAL_RANK, WORLD_SIZE and the
rendezvous address from torchrun):

    torchrun --standalone --nproc_per_node=K main.py --config ... --workdir ... --mode train

Several machines (the same command on each, with its own --node_rank, and a work directory on a
file system all of them share):

    torchrun --nnodes=M --nproc_per_node=K --node_rank=i \\
        --rdzv_backend=c10d --rdzv_endpoint=HOST:PORT main.py ...

`init` joins the group torchrun describes (or adopts one the caller already initialised, as the
tests do with a file-based rendezvous), with NCCL on CUDA and gloo on CPU unless told otherwise.
Without torchrun (WORLD_SIZE unset or 1) nothing is initialised and every helper here is a no-op,
so single-process code needs no special case.
"""

from __future__ import annotations

import dataclasses
import datetime
import os

import numpy as np
import torch
import torch.distributed as dist

BACKENDS = ("auto", "nccl", "gloo")


@dataclasses.dataclass(frozen=True)
class Context:
    """Where this process sits in the group: `rank` of `world_size`, `local_rank` on its machine."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        """Rank 0: the one process that writes logs, pictures and checkpoints."""
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "")
    try:
        return int(value) if value else default
    except ValueError:
        raise ValueError(f"environment variable {name}={value!r} is not an integer") from None


def init(backend: str = "auto", *, device_type: str = "cpu", timeout_minutes: float = 30) -> Context:
    """Join (or adopt) the process group and return this process's place in it.

    Args:
        backend: "auto" (NCCL when `device_type` is "cuda", else gloo), "nccl" or "gloo".
        device_type: the device the training runs on.
        timeout_minutes: how long collectives wait for the other processes.

    Raises:
        ValueError: unknown backend, NCCL without CUDA, or malformed torchrun variables.
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown distributed backend {backend!r}; valid: {', '.join(BACKENDS)}")
    if dist.is_available() and dist.is_initialized():
        return Context(dist.get_rank(), dist.get_world_size(), _env_int("LOCAL_RANK", dist.get_rank()))
    world_size = _env_int("WORLD_SIZE", 1)
    if world_size <= 1:
        return Context()
    if backend == "auto":
        backend = "nccl" if device_type == "cuda" else "gloo"
    if backend == "nccl" and device_type != "cuda":
        raise ValueError("the NCCL backend needs CUDA devices; use distributed.backend='gloo' on CPU")
    local_rank = _env_int("LOCAL_RANK", 0)
    if device_type == "cuda":
        torch.cuda.set_device(local_rank)
    dist.init_process_group(backend, timeout=datetime.timedelta(minutes=timeout_minutes))
    return Context(dist.get_rank(), dist.get_world_size(), local_rank)


def device_for(ctx: Context, device: torch.device) -> torch.device:
    """CUDA processes each take the GPU of their local rank; CPU stays CPU."""
    if device.type == "cuda" and ctx.enabled:
        return torch.device("cuda", ctx.local_rank)
    return device


def all_reduce(values: torch.Tensor, op: str = "sum") -> torch.Tensor:
    """Sum or max of a small tensor over all processes (itself when not distributed)."""
    if not dist.is_initialized():
        return values
    out = values.clone()
    dist.all_reduce(out, op=dist.ReduceOp.SUM if op == "sum" else dist.ReduceOp.MAX)
    return out


def gather_arrays(array: np.ndarray, ctx: Context) -> np.ndarray:
    """Concatenate every process's array along the first axis, in rank order (on every process)."""
    if not ctx.enabled:
        return array
    parts: list = [None] * ctx.world_size
    dist.all_gather_object(parts, array)
    return np.concatenate(parts)


def barrier(ctx: Context) -> None:
    if ctx.enabled:
        dist.barrier()


def shutdown() -> None:
    """Leave the process group if this module (or a caller) created one."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
