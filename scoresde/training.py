"""The training loop: exact resume, preemption safety, DDP, mixed precision, a non-finite guard, logs.

Used by `run_lib.train` (`main.py --mode train`). What it guarantees:

* **Exact resume.** Step k of training is a pure function of (config.seed, k): the batch comes from
  `data.batch_indices` (an epoch-wise shuffled permutation, sharded over micro-batches like
  `DistributedSampler` with `set_epoch`), the flips from `data.flip_seed(seed, k)`, the diffusion
  times and noise from a generator seeded by (seed, k), and dropout from torch's global generator
  re-seeded by (seed, k, micro-batch) inside `torch.random.fork_rng`. A checkpoint therefore only
  needs the weights, the EMA, the optimizer (and gradient-scaler) state and the step (the global
  generators' states are stored and restored too, for code that draws from them); a run killed
  at any moment and resumed from step k logs the same per-step losses and ends with the same
  tensors as a run that was never interrupted.
* **Split-invariant batches.** The global batch of `batch_size` examples is cut into
  world_size x grad_accum equal micro-batches; t and the noise are drawn for the whole batch and
  sliced, so the gradient is the same (to round-off) however the batch is split: one process, K
  DDP processes, or gradient accumulation.
* **Preemption.** Snapshots every `checkpoint_freq` steps in `checkpoints/` (the newest
  `keep_checkpoints` kept), and a single "meta" checkpoint every `meta_checkpoint_freq` steps in
  `checkpoints-meta/`; resume takes the newest complete one of either. SIGTERM or SIGINT finishes
  the current step, writes a checkpoint at it and raises `TrainingInterrupted` (main.py exits with
  128 + the signal number); a second SIGINT interrupts at once.
* **Non-finite guard.** A NaN/inf loss or gradient norm either stops training
  (`NonFiniteLossError` names the step and the last good checkpoint; nothing is saved) or skips
  the step (`nonfinite="skip"`). Under fp16 the gradient scaler handles overflowing gradients
  itself (the step is skipped and the scale lowered), as `torch.amp.GradScaler` intends.
* **Distributed.** Under torchrun the network is wrapped in `DistributedDataParallel`; every
  process restores the same checkpoint, only rank 0 writes logs, pictures and checkpoints, and
  logged losses are averaged over the processes. Sampling is sharded over the processes, each
  running its own sampler on the unwrapped network (no collectives inside, so adaptive solvers may
  take different step counts on different ranks), and the samples are gathered.
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
import os
import signal
import threading
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from absl import logging
from torch import nn
from tqdm.auto import tqdm

from scoresde import checkpoint, data, distributed, files, losses
from scoresde.config import compare

PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
NONFINITE_POLICIES = ("stop", "skip")
CHECKPOINTS, META_CHECKPOINTS = "checkpoints", "checkpoints-meta"
METRICS_FILE = "metrics.jsonl"
DROPPED_METRICS_FILE = "metrics.dropped.jsonl"  # records of lost steps and unreadable lines, kept rather than deleted
TENSORBOARD_DIR = "tensorboard"
_DROPOUT_STREAM = 0x64726F70  # "drop": keeps dropout seeds apart from the other per-step streams


class TrainingInterrupted(Exception):
    """SIGTERM / SIGINT arrived; a checkpoint at `step` was written to `path`."""

    def __init__(self, step: int, path: Path | None, signum: int):
        self.step, self.path, self.signum = step, path, signum
        name = signal.Signals(signum).name
        super().__init__(
            f"{name} received: stopped after step {step}, checkpoint saved at {path}; run the same command to resume"
        )


class NonFiniteLossError(FloatingPointError):
    """The loss or the gradient went NaN / inf and config.training.nonfinite is "stop"."""


class _SamplingStopped(Exception):
    """A stop signal arrived while a periodic picture was being sampled."""


def micro_batch_slices(batch_size: int, world_size: int, grad_accum: int, rank: int) -> list[slice]:
    """This process's slices of the global batch: micro-batch m = rank * grad_accum + a.

    Raises:
        ValueError: batch_size is not divisible by world_size x grad_accum.
    """
    parts = world_size * grad_accum
    if batch_size % parts:
        raise ValueError(
            f"config.training.batch_size={batch_size} must be divisible by the number of micro-batches, "
            f"world size {world_size} x config.training.grad_accum {grad_accum} = {parts}"
        )
    size = batch_size // parts
    return [slice((rank * grad_accum + a) * size, (rank * grad_accum + a + 1) * size) for a in range(grad_accum)]


def dropout_seed(seed: int, step: int, micro_batch: int) -> int:
    """Seed of torch's global generator while micro-batch `micro_batch` of step `step` runs."""
    state = np.random.SeedSequence([seed, step, micro_batch, _DROPOUT_STREAM]).generate_state(1, np.uint64)
    return int(state[0] >> np.uint64(1))


def check_settings(c, device_type: str, world_size: int = 1) -> None:
    """Raise the ValueError the Trainer raises for the settings `c` (config.training) on a device of
    `device_type` ("cpu", "cuda") with `world_size` processes; the config check calls it too."""
    if c.precision not in PRECISIONS:
        raise ValueError(f"config.training.precision: unknown {c.precision!r}; valid: {', '.join(PRECISIONS)}")
    if c.precision == "fp16" and device_type != "cuda":
        raise ValueError("config.training.precision='fp16' needs CUDA (its gradient scaler is CUDA-only); use 'bf16' on CPU")
    if c.nonfinite not in NONFINITE_POLICIES:
        raise ValueError(f"config.training.nonfinite: unknown {c.nonfinite!r}; valid: {', '.join(NONFINITE_POLICIES)}")
    micro_batch_slices(c.batch_size, world_size, c.grad_accum, 0)


class _StopSignals:
    """Turns the first SIGTERM / SIGINT into a flag the loop checks after each step (main thread only)."""

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self):
        self.signum = 0
        self._previous = {}

    def _handle(self, signum, frame):
        if self.signum and signum == signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl-C: stop now
        self.signum = signum
        logging.warning("%s received: finishing the current step and writing a checkpoint", signal.Signals(signum).name)

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self._previous = {s: signal.signal(s, self._handle) for s in self.SIGNALS}
        return self

    def __exit__(self, *exc):
        for s, handler in self._previous.items():
            signal.signal(s, handler)


class Trainer:
    """Runs the optimisation of an `Experiment` (see run_lib) in a work directory.

    Args:
        exp: the experiment: config, model (unwrapped), EMA, optimizer, SDE, training data on its device.
        workdir: where checkpoints, metrics.jsonl and TensorBoard events go.
        ctx: this process's place in the distributed group.
        score_fn_for: builds a score function around a module (the DDP / compiled wrapper here).
    """

    def __init__(self, exp, workdir: Path, ctx: distributed.Context, score_fn_for: Callable[[nn.Module], Callable]):
        self.exp, self.workdir, self.ctx = exp, Path(workdir), ctx
        c = exp.config.training
        self.device = exp.device
        check_settings(c, self.device.type, ctx.world_size)
        self.autocast_dtype = PRECISIONS[c.precision]
        self.scaler = torch.amp.GradScaler("cuda") if c.precision == "fp16" else None
        self.slices = micro_batch_slices(c.batch_size, ctx.world_size, c.grad_accum, ctx.rank)
        module = exp.model
        if c.compile:
            module = torch.compile(module)
        if ctx.enabled:
            device_ids = [self.device.index] if self.device.type == "cuda" else None
            module = nn.parallel.DistributedDataParallel(module, device_ids=device_ids)
        self.module = module
        self.train_score_fn = score_fn_for(module)
        self.checkpoint_roots = (self.workdir / CHECKPOINTS, self.workdir / META_CHECKPOINTS)
        self.last_checkpoint: Path | None = None
        self.skipped_steps = 0
        self._signals: _StopSignals | None = None  # set while `run` runs

    @property
    def stop_requested(self) -> bool:
        """Whether a SIGTERM / SIGINT arrived during `run` (checked inside periodic sampling too)."""
        return bool(self._signals is not None and self._signals.signum)

    # -- resume ---------------------------------------------------------------------------------
    def resume(self, resume_from: str = "") -> int:
        """Restore the newest complete checkpoint (or `resume_from`, which must exist); returns the step."""
        if self.ctx.is_main:
            for root in self.checkpoint_roots:
                for path in checkpoint.clean_partial(root):
                    logging.info("removed the partial checkpoint %s", path)
        distributed.barrier(self.ctx)
        found: Path | None
        if resume_from:
            found = Path(resume_from)
            if not (found / checkpoint.MARKER).exists():
                what = "is not a complete checkpoint" if found.exists() else "does not exist"
                raise FileNotFoundError(f"config.training.resume_from={resume_from!r} {what}; refusing to start afresh")
        else:
            found = checkpoint.newest(*self.checkpoint_roots)
        if found is None:
            return 0
        compare.check_checkpoint_config(self.exp.config, found)
        step, extra = checkpoint.restore(found, self.exp.model, self.exp.ema, self.exp.optimizer)
        if self.scaler is not None and extra.get("scaler"):
            self.scaler.load_state_dict(extra["scaler"])
        self.skipped_steps = int(extra.get("skipped_steps", 0))
        if extra.get("rng"):
            _set_global_rng_state(extra["rng"])
        order = extra.get("data_order", {})
        if order and order != self._data_order():
            logging.warning(
                "resuming with another batch split or seed (%s, was %s): the run continues but is not "
                "bit-identical to an uninterrupted one",
                self._data_order(),
                order,
            )
        self.last_checkpoint = found
        logging.info("resumed from %s (step %d)", found, step)
        return step

    def _data_order(self) -> dict:
        c = self.exp.config
        return {
            "scheme": "batch_indices",
            "seed": c.seed,
            "batch_size": c.training.batch_size,
            "micro_batches": self.ctx.world_size * c.training.grad_accum,
            "n_train": len(self.exp.x_train),
        }

    # -- one step -------------------------------------------------------------------------------
    def _batch(self, step: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """The global batch of step `step`: clean examples, diffusion times, noise and class labels
        (None for an unconditional model; dropped to "no class" with probability label_dropout)."""
        c, exp = self.exp.config, self.exp
        idx = data.batch_indices(len(exp.x_train), c.training.batch_size, step, c.seed)
        x0 = exp.x_train[torch.as_tensor(idx, device=self.device)]
        labels = None
        if exp.y_train is not None:  # its own generator: the draws below are the same either way
            labels = exp.y_train[torch.as_tensor(idx, device=self.device)]
            drop = torch.Generator(self.device).manual_seed(data.flip_seed(c.seed, step) + 1)
            dropped = torch.rand(labels.shape, generator=drop, device=self.device) < c.training.label_dropout
            labels = labels.masked_fill(dropped, c.model.num_classes)
        if c.data.random_flip:  # its own generator: the draws below are the same either way
            x0 = data.random_flip(x0, torch.Generator(self.device).manual_seed(data.flip_seed(c.seed, step)))
        generator = torch.Generator(self.device).manual_seed(c.seed * 1_000_003 + step)
        t = losses.sample_time(
            x0.shape[0],
            exp.sde,
            c.training.eps,
            generator=generator,
            device=self.device,
            dtype=x0.dtype,
            distribution=c.training.time_distribution,
            p_mean=c.training.p_mean,
            p_std=c.training.p_std,
        )
        noise = torch.randn(x0.shape, generator=generator, device=self.device, dtype=x0.dtype)
        return x0, t, noise, labels

    @contextlib.contextmanager
    def _micro_batch_context(self, step: int, a: int):
        """Dropout seeded by (seed, step, micro-batch); DDP's all-reduce only after the last one; autocast."""
        c = self.exp.config
        last = a == len(self.slices) - 1
        no_sync = self.module.no_sync() if (self.ctx.enabled and not last) else contextlib.nullcontext()
        devices = [self.device] if self.device.type == "cuda" else []
        with (
            torch.random.fork_rng(devices=devices),
            no_sync,
            torch.autocast(self.device.type, dtype=self.autocast_dtype or torch.float32, enabled=self.autocast_dtype is not None),
        ):
            torch.manual_seed(dropout_seed(c.seed, step, self.ctx.rank * c.training.grad_accum + a))
            yield

    def learning_rate(self, step: int) -> float:
        return self.exp.learning_rate(step)

    def train_step(self, step: int, stop_requested: bool = False) -> tuple[float, bool, bool]:
        """One optimizer step over this process's micro-batches.

        Returns:
            (loss, stepped, stop): this process's mean loss, whether the parameters were updated,
            and whether any process asked to stop (a signal).

        Raises:
            NonFiniteLossError: non-finite loss or gradient with config.training.nonfinite="stop".
        """
        c, exp = self.exp.config, self.exp
        x0, t, noise, labels = self._batch(step)
        for group in exp.optimizer.param_groups:
            group["lr"] = self.learning_rate(step)
        exp.optimizer.zero_grad(set_to_none=True)
        self.module.train()
        total = torch.zeros((), device=self.device)
        for a, part in enumerate(self.slices):
            score_fn = self.train_score_fn
            if labels is not None:
                score_fn = functools.partial(self.train_score_fn, class_labels=labels[part])
            with self._micro_batch_context(step, a):
                loss = losses.dsm_loss(
                    score_fn,
                    exp.sde,
                    x0[part],
                    t=t[part],
                    noise=noise[part],
                    eps=c.training.eps,
                    weighting=c.training.weighting,
                    reduce=c.training.reduce,
                    sigma_data=c.model.sigma_data,
                ).float().mean() / len(self.slices)
            (self.scaler.scale(loss) if self.scaler is not None else loss).backward()
            total += loss.detach()
        if self.scaler is not None:
            self.scaler.unscale_(exp.optimizer)
        max_norm = c.optim.grad_clip if c.optim.grad_clip > 0 else math.inf
        grad_norm = nn.utils.clip_grad_norm_(exp.model.parameters(), max_norm)
        flags = torch.stack(
            [~torch.isfinite(total), ~torch.isfinite(grad_norm), torch.tensor(stop_requested, device=self.device)]
        ).float()
        loss_bad, grad_bad, stop = (bool(v) for v in distributed.all_reduce(flags, "max").tolist())
        if grad_bad and self.scaler is not None and not loss_bad:
            self.scaler.step(exp.optimizer)  # sees the inf gradients and skips; update() lowers the scale
            self.scaler.update()
            return total.item(), False, stop
        if loss_bad or grad_bad:
            what = "loss" if loss_bad else "gradient norm"
            if c.training.nonfinite == "stop":
                raise NonFiniteLossError(
                    f"non-finite {what} at step {step + 1}; training stopped without saving. Last good checkpoint: "
                    f"{self.last_checkpoint or 'none'}. Lower config.optim.lr, keep config.optim.grad_clip > 0, use "
                    "precision='fp32', or set config.training.nonfinite='skip'"
                )
            exp.optimizer.zero_grad(set_to_none=True)
            if self.scaler is not None:
                self.scaler.update(self.scaler.get_scale() / 2)
            self.skipped_steps += 1
            logging.warning("non-finite %s at step %d: step skipped (%d so far)", what, step + 1, self.skipped_steps)
            return total.item(), False, stop
        if self.scaler is not None:
            self.scaler.step(exp.optimizer)
            self.scaler.update()
        else:
            exp.optimizer.step()
        exp.ema.update(exp.model)
        return total.item(), True, stop

    # -- checkpoints ----------------------------------------------------------------------------
    def save(self, step: int, *, meta: bool = False) -> Path | None:
        """Rank 0 writes a checkpoint (a regular snapshot, or the single meta one); all wait for it."""
        path = None
        if self.ctx.is_main:
            c = self.exp.config.training
            extra = {
                "scaler": self.scaler.state_dict() if self.scaler is not None else {},
                "data_order": self._data_order(),
                "skipped_steps": self.skipped_steps,
                "rng": _global_rng_state(),
            }
            root, keep = (self.checkpoint_roots[1], 1) if meta else (self.checkpoint_roots[0], c.keep_checkpoints)
            path = checkpoint.save(
                root, step, self.exp.model, self.exp.ema, self.exp.optimizer, self.exp.config.to_dict(), keep=keep, extra=extra
            )
            self.last_checkpoint = path
        distributed.barrier(self.ctx)
        return path

    # -- the loop -------------------------------------------------------------------------------
    def _tensorboard(self, start: int):
        if not (self.ctx.is_main and self.exp.config.training.tensorboard):
            return None
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            logging.info("TensorBoard logging off: the tensorboard package is not installed (pip install tensorboard)")
            return None
        return SummaryWriter(str(self.workdir / TENSORBOARD_DIR), purge_step=start + 1)

    def run(self, start: int, on_step: Callable[[int], None] | None = None) -> None:
        """Train from step `start` to config.training.n_steps.

        Args:
            on_step: called with the number of steps done after each step (pictures, tests).

        Raises:
            TrainingInterrupted: after a SIGTERM / SIGINT, once the checkpoint is written.
            NonFiniteLossError: see `train_step`.
        """
        c = self.exp.config.training
        is_main = self.ctx.is_main
        if is_main:
            self.workdir.mkdir(parents=True, exist_ok=True)
            _truncate_metrics(self.workdir, start)
        writer = self._tensorboard(start)
        bar = tqdm(total=c.n_steps, initial=start, desc="training", disable=None if (c.progress and is_main) else True)
        window, skipped, tick = [], 0, time.perf_counter()
        log = open(self.workdir / METRICS_FILE, "a") if is_main else None
        try:
            with _StopSignals() as signals:
                self._signals = signals
                for step in range(start, c.n_steps):
                    loss, stepped, stop = self.train_step(step, stop_requested=bool(signals.signum))
                    window.append(loss)
                    skipped += not stepped
                    done = step + 1
                    bar.update(1)
                    if done % c.log_freq == 0 or done == c.n_steps or stop:
                        record = self._log_record(done, window, skipped, time.perf_counter() - tick)
                        if log is not None:
                            log.write(json.dumps(record) + "\n")
                            log.flush()
                            if writer is not None:
                                for key in ("loss", "lr", "steps_per_sec"):
                                    writer.add_scalar(f"train/{key}", record[key], done)
                            bar.set_postfix(loss=f"{record['loss']:.4f}", steps_per_s=f"{record['steps_per_sec']:.1f}")
                            logging.info("step %d  loss %.5f  %.1f steps/s", done, record["loss"], record["steps_per_sec"])
                        window, skipped, tick = [], 0, time.perf_counter()
                    if stop:
                        path = self.save(done)
                        raise TrainingInterrupted(done, path, signals.signum or signal.SIGTERM)
                    if done % c.checkpoint_freq == 0 or done == c.n_steps:
                        self.save(done)
                    elif c.meta_checkpoint_freq and done % c.meta_checkpoint_freq == 0:
                        self.save(done, meta=True)
                    if on_step is not None:
                        on_step(done)
        finally:
            self._signals = None
            bar.close()
            if log is not None:
                log.close()
            if writer is not None:
                writer.close()

    def _log_record(self, done: int, window: list[float], skipped: int, seconds: float) -> dict:
        """Loss averaged over the window's steps and over the processes."""
        totals = distributed.all_reduce(
            torch.tensor([sum(window), len(window), skipped], dtype=torch.float64, device=self.device)
        )
        loss_sum, count, skipped_all = totals.tolist()
        record = {
            "step": done,
            "loss": loss_sum / count,
            "lr": self.learning_rate(done - 1),
            "steps_per_sec": len(window) / max(seconds, 1e-9),
        }
        if skipped_all:
            record["skipped_steps"] = int(skipped_all / self.ctx.world_size)
        return record

    # -- sampling under DDP ---------------------------------------------------------------------
    def sample(self, n: int, *, seed: int, progress: bool = False, interruptible: bool = False) -> tuple[np.ndarray, dict]:
        """n samples with the EMA weights, sharded over the processes and gathered (in model space).

        Each process draws its share with its own seed (seed, rank) on the unwrapped network, so
        the samples of a K-process run differ from a single-process run's (both are exact draws).

        With `interruptible`, a stop signal arriving while sampling abandons this process's share
        (checked at every score evaluation) so that the checkpoint is written within a training
        step, not after the whole draw; the gathered result then has fewer than n samples and
        info["interrupted"] is True. The gather still runs on every process, so DDP never hangs.
        """
        ctx = self.ctx
        share = [n // ctx.world_size + (r < n % ctx.world_size) for r in range(ctx.world_size)]
        rank_seed = seed if not ctx.enabled else int(np.random.SeedSequence([seed, ctx.rank]).generate_state(1)[0])

        def stop_if_requested() -> None:
            if self.stop_requested:
                raise _SamplingStopped

        try:
            with self.exp.ema.average_parameters(self.exp.model):
                x, info = self.exp.sample(
                    share[ctx.rank],
                    seed=rank_seed,
                    progress=progress and ctx.is_main,
                    before_evaluation=stop_if_requested if interruptible else None,
                )
            x = x.detach().cpu().numpy()
        except _SamplingStopped:
            x, info = np.zeros((0, *self.exp.train_data.shape), np.float32), {"nfe": 0, "interrupted": True}
            logging.warning("stop requested: the samples of this picture were abandoned")
        gathered = distributed.gather_arrays(x, ctx)
        info["interrupted"] = info.get("interrupted", False) or len(gathered) < n
        return gathered, info


def _global_rng_state() -> dict:
    """torch's global generators (CPU and every CUDA device). The steps never draw from them (their
    draws are seeded by (seed, step)), but code a user adds might; restoring them keeps it exact."""
    state: dict[str, torch.Tensor | list[torch.Tensor]] = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_global_rng_state(state: dict) -> None:
    torch.set_rng_state(state["cpu"])
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


def read_metrics(path: Path) -> list[dict]:
    """The records of a metrics.jsonl file; lines that are not records (a line torn by a kill
    mid-write) are skipped."""
    return files.read_jsonl(path, required=("step", "loss"))[0]


def _truncate_metrics(workdir: Path, step: int) -> None:
    """Keep the log's records up to `step`; move the others to metrics.dropped.jsonl, with a warning.

    Records after `step` belong to steps lost to an interruption (they will be logged again), and
    lines that are not records with an integer step cannot be placed; neither is deleted. The
    dropped lines are appended (and flushed) before the log is replaced atomically, so a kill at
    any moment loses nothing.
    """
    path = workdir / METRICS_FILE
    records, unreadable = files.read_jsonl(path)
    kept = [r for r in records if isinstance(r.get("step"), int) and 0 <= r["step"] <= step]
    dropped = [json.dumps(r) for r in records if not (isinstance(r.get("step"), int) and 0 <= r["step"] <= step)]
    if not dropped and not unreadable:
        return
    with open(workdir / DROPPED_METRICS_FILE, "a") as handle:
        handle.writelines(line + "\n" for line in [*dropped, *unreadable])
        handle.flush()
        os.fsync(handle.fileno())
    files.write_jsonl(path, kept)
    logging.warning(
        "%s: kept %d records up to step %d; moved %d records of later (lost) steps and %d unreadable lines to %s",
        path,
        len(kept),
        step,
        len(dropped),
        len(unreadable),
        workdir / DROPPED_METRICS_FILE,
    )
