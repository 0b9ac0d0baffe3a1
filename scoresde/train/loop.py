"""The training loop: exact resume, preemption safety, DDP, mixed precision, a non-finite guard, logs.

`Trainer(model, ema, optimizer, objective, settings, workdir, ctx)` optimises any objective
(`scoresde.train.objectives`: the score network's denoising score matching, the noise-conditional
classifier's cross-entropy) under typed `Settings` built at the edge (`--mode train` and
`--mode train_classifier` build them from the config). What it guarantees:

* **Exact resume.** Step k of training is a pure function of (seed, k): the objective draws the
  batch from (seed, k) (`data.batch_indices`, an epoch-wise shuffled permutation, sharded over
  micro-batches like `DistributedSampler` with `set_epoch`; flips, times and noise from generators
  seeded by (seed, k)), and dropout comes from torch's global generator re-seeded by
  (seed, k, micro-batch) inside `torch.random.fork_rng`. A checkpoint therefore only
  needs the weights, the EMA, the optimizer (and gradient-scaler) state and the step (the global
  generators' states are stored and restored too, for code that draws from them); a run killed
  at any moment and resumed from step k logs the same per-step losses and ends with the same
  tensors as a run that was never interrupted.
* **Split-invariant batches.** The global batch of `batch_size` examples is cut into
  world_size x grad_accum equal micro-batches; the objective draws t and the noise for the whole
  batch and the loop slices them, so the gradient is the same (to round-off) however the batch is split: one process, K
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
* **Reading ahead.** Because the batches are known in advance, streamed data can be read before
  it is needed: by a thread one step ahead (`prefetch`) and / or by `num_workers` worker
  processes several steps ahead (`Objective.reading`, `scoresde.data.loader`); neither changes a
  value. metrics.jsonl records, per log window, the loss, the learning rate, steps/s and
  `data_ms_per_step` (rank 0's wall time spent reading or waiting for batches: the loader's stalls).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import json
import math
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from absl import logging
from torch import nn
from tqdm.auto import tqdm

from scoresde import files
from scoresde.train import checkpoint, distributed
from scoresde.train.objectives import Objective

PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
NONFINITE_POLICIES = ("stop", "skip")
CHECKPOINTS, META_CHECKPOINTS = "checkpoints", "checkpoints-meta"  # the score network's, in its work directory
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


@dataclasses.dataclass(frozen=True)
class Settings:
    """How the loop runs: the steps, the batch and its split, the optimizer's schedule, precision,
    checkpoints and logs. Built at the edge (`--mode train` from config.training and config.optim);
    the folders are relative to the Trainer's work directory ("" for the work directory itself,
    `meta_checkpoints` "" for none)."""

    n_steps: int
    batch_size: int
    lr: float
    seed: int = 0
    warmup: int = 0  # linear learning-rate warm-up steps
    grad_accum: int = 1
    grad_clip: float = 0.0  # maximum gradient norm; 0: no clipping
    precision: str = "fp32"
    nonfinite: str = "stop"
    compile: bool = False
    log_freq: int = 100
    checkpoint_freq: int = 1000
    keep_checkpoints: int = 3
    meta_checkpoint_freq: int = 0
    progress: bool = True
    tensorboard: bool = False
    prefetch: bool = False  # read the next step's batch in a background thread while this one computes
    num_workers: int = 0  # worker processes reading the coming steps' streamed rows ahead (Objective.reading)
    checkpoints: str = CHECKPOINTS
    meta_checkpoints: str = META_CHECKPOINTS
    name: str = "training"  # the progress bar's label

    def learning_rate(self, step: int) -> float:
        """Linear warm-up to `lr` over `warmup` steps, then constant."""
        return self.lr * min(1.0, (step + 1) / self.warmup) if self.warmup else self.lr


def check_settings(c, device_type: str, world_size: int = 1) -> None:
    """Raise the ValueError the Trainer raises for the settings `c` (`Settings`, or config.training)
    on a device of `device_type` ("cpu", "cuda") with `world_size` processes; the config check calls it too."""
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
    """Optimises `objective` over `model` in a work directory (module docstring).

    Args:
        model: the network (unwrapped), on `device`; wrapped here for DDP / torch.compile.
        ema: its exponential moving average; updated after every step that changed the weights.
        optimizer: over model's parameters; its learning rate is set every step (`Settings.learning_rate`).
        objective: the batches and the loss (`scoresde.train.objectives`).
        settings: how the loop runs (`Settings`).
        workdir: where checkpoints, metrics.jsonl and TensorBoard events go.
        ctx: this process's place in the distributed group.
        device: the device the model and the objective's data are on.
        run_config: saved as config.json with every checkpoint (the run's provenance).
        check_checkpoint: called with a checkpoint before resuming from it; raises to refuse it
            (the score network's: `config.compare.check_checkpoint_config`).
    """

    def __init__(
        self,
        model: nn.Module,
        ema,
        optimizer: torch.optim.Optimizer,
        objective: Objective,
        settings: Settings,
        workdir: Path,
        ctx: distributed.Context,
        *,
        device: torch.device,
        run_config: dict | None = None,
        check_checkpoint: Callable[[Path], None] | None = None,
    ):
        self.model, self.ema, self.optimizer, self.objective = model, ema, optimizer, objective
        self.settings, self.workdir, self.ctx, self.device = settings, Path(workdir), ctx, device
        self.run_config, self.check_checkpoint = run_config or {}, check_checkpoint
        c = settings
        check_settings(c, self.device.type, ctx.world_size)
        self.autocast_dtype = PRECISIONS[c.precision]
        self.scaler = torch.amp.GradScaler("cuda") if c.precision == "fp16" else None
        self.slices = micro_batch_slices(c.batch_size, ctx.world_size, c.grad_accum, ctx.rank)
        module: Any = model  # the network, compiled and / or wrapped for DDP
        if c.compile:
            module = torch.compile(module)
        if ctx.enabled:
            device_ids = [self.device.index] if self.device.type == "cuda" else None
            module = nn.parallel.DistributedDataParallel(module, device_ids=device_ids)
        self.module = module
        # the regular checkpoints' folder, then the meta checkpoints' (none when the settings name none)
        folders = [c.checkpoints, c.meta_checkpoints] if c.meta_checkpoints else [c.checkpoints]
        self.checkpoint_roots = tuple(self.workdir / folder for folder in folders)
        self.last_checkpoint: Path | None = None
        self._reader: concurrent.futures.ThreadPoolExecutor | None = None  # settings.prefetch's thread
        self._ahead: tuple[int, concurrent.futures.Future] | None = None
        self.skipped_steps = 0
        self._data_seconds = 0.0  # this log window's time spent reading or waiting for batches
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
        if self.check_checkpoint is not None:
            self.check_checkpoint(found)
        step, extra = checkpoint.restore(found, self.model, self.ema, self.optimizer)
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
        c = self.settings
        return {
            "scheme": "batch_indices",
            "seed": c.seed,
            "batch_size": c.batch_size,
            "micro_batches": self.ctx.world_size * c.grad_accum,
            "n_train": self.objective.n_examples,
        }

    # -- one step -------------------------------------------------------------------------------
    @contextlib.contextmanager
    def _micro_batch_context(self, step: int, a: int):
        """Dropout seeded by (seed, step, micro-batch); DDP's all-reduce only after the last one; autocast."""
        c = self.settings
        last = a == len(self.slices) - 1
        no_sync = self.module.no_sync() if (self.ctx.enabled and not last) else contextlib.nullcontext()
        devices = [self.device] if self.device.type == "cuda" else []
        with (
            torch.random.fork_rng(devices=devices),
            no_sync,
            torch.autocast(self.device.type, dtype=self.autocast_dtype or torch.float32, enabled=self.autocast_dtype is not None),
        ):
            torch.manual_seed(dropout_seed(c.seed, step, self.ctx.rank * c.grad_accum + a))
            yield

    def learning_rate(self, step: int) -> float:
        return self.settings.learning_rate(step)

    def _read_micro_batches(self, step: int) -> list[tuple]:
        """This process's micro-batches of step `step`: the objective's batch, sliced (a streamed
        batch reads its rows here)."""
        batch = self.objective.batch(step, self.settings.batch_size)
        return [tuple(None if v is None else v[part] for v in batch) for part in self.slices]

    def _micro_batches(self, step: int) -> list[tuple]:
        """Step `step`'s micro-batches, read ahead by a background thread while the previous step
        computed when settings.prefetch (the batch is a pure function of (seed, step), so reading
        it early changes nothing); then step + 1's reading starts."""
        tick = time.perf_counter()
        ahead, self._ahead = self._ahead, None
        parts = ahead[1].result() if ahead is not None and ahead[0] == step else self._read_micro_batches(step)
        self._data_seconds += time.perf_counter() - tick
        if self.settings.prefetch and step + 1 < self.settings.n_steps:
            if self._reader is None:
                self._reader = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="scoresde-prefetch")
            self._ahead = (step + 1, self._reader.submit(self._read_micro_batches, step + 1))
        return parts

    def train_step(self, step: int, stop_requested: bool = False) -> tuple[float, bool, bool]:
        """One optimizer step over this process's micro-batches.

        Returns:
            (loss, stepped, stop): this process's mean loss, whether the parameters were updated,
            and whether any process asked to stop (a signal).

        Raises:
            NonFiniteLossError: non-finite loss or gradient with config.training.nonfinite="stop".
        """
        c, optimizer = self.settings, self.optimizer
        micro_batches = self._micro_batches(step)
        for group in optimizer.param_groups:
            group["lr"] = self.learning_rate(step)
        optimizer.zero_grad(set_to_none=True)
        self.module.train()
        total = torch.zeros((), device=self.device)
        for a, micro_batch in enumerate(micro_batches):
            with self._micro_batch_context(step, a):
                loss = self.objective.loss(self.module, micro_batch).float().mean() / len(self.slices)
            (self.scaler.scale(loss) if self.scaler is not None else loss).backward()
            total += loss.detach()
        if self.scaler is not None:
            self.scaler.unscale_(optimizer)
        max_norm = c.grad_clip if c.grad_clip > 0 else math.inf
        grad_norm = nn.utils.clip_grad_norm_(self.model.parameters(), max_norm)
        flags = torch.stack(
            [~torch.isfinite(total), ~torch.isfinite(grad_norm), torch.tensor(stop_requested, device=self.device)]
        ).float()
        loss_bad, grad_bad, stop = (bool(v) for v in distributed.all_reduce(flags, "max").tolist())
        if grad_bad and self.scaler is not None and not loss_bad:
            self.scaler.step(optimizer)  # sees the inf gradients and skips; update() lowers the scale
            self.scaler.update()
            return total.item(), False, stop
        if loss_bad or grad_bad:
            what = "loss" if loss_bad else "gradient norm"
            if c.nonfinite == "stop":
                raise NonFiniteLossError(
                    f"non-finite {what} at step {step + 1}; training stopped without saving. Last good checkpoint: "
                    f"{self.last_checkpoint or 'none'}. Lower config.optim.lr, keep config.optim.grad_clip > 0, use "
                    "precision='fp32', or set config.training.nonfinite='skip'"
                )
            optimizer.zero_grad(set_to_none=True)
            if self.scaler is not None:
                self.scaler.update(self.scaler.get_scale() / 2)
            self.skipped_steps += 1
            logging.warning("non-finite %s at step %d: step skipped (%d so far)", what, step + 1, self.skipped_steps)
            return total.item(), False, stop
        if self.scaler is not None:
            self.scaler.step(optimizer)
            self.scaler.update()
        else:
            optimizer.step()
        self.ema.update(self.model)
        return total.item(), True, stop

    # -- checkpoints ----------------------------------------------------------------------------
    def save(self, step: int, *, meta: bool = False) -> Path | None:
        """Rank 0 writes a checkpoint (a regular snapshot, or the single meta one); all wait for it."""
        path = None
        if self.ctx.is_main:
            c = self.settings
            extra = {
                "scaler": self.scaler.state_dict() if self.scaler is not None else {},
                "data_order": self._data_order(),
                "skipped_steps": self.skipped_steps,
                "rng": _global_rng_state(),
            }
            root, keep = (self.checkpoint_roots[1], 1) if meta else (self.checkpoint_roots[0], c.keep_checkpoints)
            path = checkpoint.save(root, step, self.model, self.ema, self.optimizer, self.run_config, keep=keep, extra=extra)
            self.last_checkpoint = path
        distributed.barrier(self.ctx)
        return path

    # -- the loop -------------------------------------------------------------------------------
    def _tensorboard(self, start: int):
        if not (self.ctx.is_main and self.settings.tensorboard):
            return None
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            logging.info("TensorBoard logging off: the tensorboard package is not installed (pip install tensorboard)")
            return None
        return SummaryWriter(str(self.workdir / TENSORBOARD_DIR), purge_step=start + 1)

    def run(self, start: int, on_step: Callable[[int], None] | None = None) -> None:
        """Train from step `start` to settings.n_steps.

        Args:
            on_step: called with the number of steps done after each step (pictures, tests).

        Raises:
            TrainingInterrupted: after a SIGTERM / SIGINT, once the checkpoint is written.
            NonFiniteLossError: see `train_step`.
        """
        c = self.settings
        is_main = self.ctx.is_main
        if is_main:
            self.workdir.mkdir(parents=True, exist_ok=True)
            _truncate_metrics(self.workdir, start)
        writer = self._tensorboard(start)
        bar = tqdm(total=c.n_steps, initial=start, desc=c.name, disable=None if (c.progress and is_main) else True)
        window, skipped, tick = [], 0, time.perf_counter()
        self._data_seconds = 0.0
        log = open(self.workdir / METRICS_FILE, "a") if is_main else None
        reading: Any = contextlib.nullcontext()
        if c.num_workers and hasattr(self.objective, "reading"):  # the objective's optional read-ahead
            reading = self.objective.reading(range(start, c.n_steps), c.batch_size, self.slices, c.num_workers)
        try:
            with _StopSignals() as signals, reading:
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
                        self._data_seconds = 0.0
                    if stop:
                        path = self.save(done)
                        raise TrainingInterrupted(done, path, signals.signum or signal.SIGTERM)
                    if done % c.checkpoint_freq == 0 or done == c.n_steps:
                        self.save(done)
                    elif c.meta_checkpoint_freq and c.meta_checkpoints and done % c.meta_checkpoint_freq == 0:
                        self.save(done, meta=True)
                    if on_step is not None:
                        on_step(done)
        finally:
            self._signals = None
            self._ahead = None
            if self._reader is not None:
                self._reader.shutdown(wait=True)
                self._reader = None
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
            "data_ms_per_step": 1000 * self._data_seconds / max(len(window), 1),
        }
        if skipped_all:
            record["skipped_steps"] = int(skipped_all / self.ctx.world_size)
        return record

    # -- sampling under DDP ---------------------------------------------------------------------
    def sample(
        self, draw: Callable, n: int, *, seed: int, progress: bool = False, interruptible: bool = False
    ) -> tuple[np.ndarray, dict]:
        """n samples with the EMA weights, sharded over the processes and gathered (in model space).

        `draw(n, seed=, progress=, before_evaluation=)` returns (samples, info) with the current
        weights of the unwrapped network (`Experiment.sample`), and `draw(0, seed=)` an empty batch
        of the right shape. Each process draws its share with its own seed (seed, rank), so the
        samples of a K-process run differ from a single-process run's (both are exact draws).

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
            with self.ema.average_parameters(self.model):
                x, info = draw(
                    share[ctx.rank],
                    seed=rank_seed,
                    progress=progress and ctx.is_main,
                    before_evaluation=stop_if_requested if interruptible else None,
                )
            x = x.detach().cpu().numpy()
        except _SamplingStopped:
            x, info = draw(0, seed=rank_seed)[0].cpu().numpy(), {"nfe": 0, "interrupted": True}
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
