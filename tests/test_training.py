"""Training that survives the real world: exact resume, signals, kills, non-finite guard, DDP, precision.

In-process tests drive `run_lib.train` on a tiny toy problem; the ones marked slow start main.py
(or torchrun) in subprocesses and interrupt them.
"""

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from scoresde import data, losses, run_lib
from scoresde.train import checkpoint, loop
from tests.helpers import (
    ROOT,
    assert_same_tensors,
    cli_overrides,
    final_tensors,
    logged_losses,
    main_command,
    run_ddp,
    subprocess_env,
    tiny_config,
)


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("straight")
    run_lib.train(tiny_config(), workdir)
    return workdir


# -- in-process ------------------------------------------------------------------------------
def test_grad_accumulation_gives_the_same_training(straight, tmp_path):
    """The batch split into 4 micro-batches: the same gradients to round-off, so the same run."""
    run_lib.train(tiny_config(**{"training.grad_accum": 4}), tmp_path)
    straight_losses, split_losses = logged_losses(straight), logged_losses(tmp_path)
    assert [s for s, _ in split_losses] == list(range(1, 13))
    for (_, a), (_, b) in zip(straight_losses, split_losses):
        assert a == pytest.approx(b, rel=1e-5)
    assert_same_tensors(final_tensors(straight)[1], final_tensors(tmp_path)[1], atol=1e-5)


def test_indivisible_batch_is_refused(tmp_path):
    with pytest.raises(ValueError, match="batch_size.*must be divisible by .*grad_accum.*3"):
        run_lib.train(tiny_config(**{"training.grad_accum": 3}), tmp_path)


def test_missing_resume_checkpoint_is_an_error_not_a_fresh_start(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist; refusing to start afresh"):
        run_lib.train(tiny_config(**{"training.resume_from": str(tmp_path / "nope")}), tmp_path)
    assert not (tmp_path / "metrics.jsonl").exists()


def test_resume_from_an_explicit_checkpoint(straight, tmp_path):
    chosen = straight / "checkpoints" / "step_00000006"
    run_lib.train(tiny_config(**{"training.resume_from": str(chosen)}), tmp_path)
    assert logged_losses(tmp_path) == logged_losses(straight)[6:]
    assert_same_tensors(final_tensors(straight)[1], final_tensors(tmp_path)[1])


def test_meta_checkpoint_is_written_between_snapshots_and_resumed_from(tmp_path):
    config = tiny_config(**{"training.n_steps": 9, "training.meta_checkpoint_freq": 2})
    run_lib.train(config, tmp_path)
    assert [p.name for p in checkpoint.list_complete(tmp_path / "checkpoints-meta")] == ["step_00000008"]
    assert checkpoint.newest(tmp_path / "checkpoints", tmp_path / "checkpoints-meta").name == "step_00000009"
    # A run preempted after step 8 resumes from the meta checkpoint, not from the step-6 snapshot.
    for name in ("step_00000009", "latest"):
        path = tmp_path / "checkpoints" / name
        path.unlink() if path.is_file() else __import__("shutil").rmtree(path)
    trainer_log = []
    original = loop.Trainer.resume

    def spy(self, resume_from=""):
        trainer_log.append(original(self, resume_from))
        return trainer_log[-1]

    loop.Trainer.resume = spy
    try:
        run_lib.train(config, tmp_path)
    finally:
        loop.Trainer.resume = original
    assert trainer_log == [8]


def nan_after(monkeypatch, calls):
    """Make the loss NaN from the `calls`-th call of dsm_loss on."""
    real, count = losses.dsm_loss, {"n": 0}

    def patched(*args, **kwargs):
        count["n"] += 1
        out = real(*args, **kwargs)
        return out * float("nan") if count["n"] >= calls else out

    monkeypatch.setattr(losses, "dsm_loss", patched)


def test_non_finite_loss_stops_and_names_the_last_good_checkpoint(tmp_path, monkeypatch):
    nan_after(monkeypatch, 9)
    with pytest.raises(loop.NonFiniteLossError, match=r"step 9; .*Last good checkpoint: .*step_00000006"):
        run_lib.train(tiny_config(), tmp_path)
    assert [p.name for p in checkpoint.list_complete(tmp_path / "checkpoints")] == ["step_00000006"]
    step, tensors = final_tensors(tmp_path)
    assert step == 6 and all(torch.isfinite(v).all() for v in tensors.values() if v.is_floating_point())


def test_non_finite_loss_can_skip_the_step(tmp_path, monkeypatch):
    real, count = losses.dsm_loss, {"n": 0}

    def one_bad_step(*args, **kwargs):
        count["n"] += 1
        out = real(*args, **kwargs)
        return out * float("nan") if count["n"] == 4 else out

    monkeypatch.setattr(losses, "dsm_loss", one_bad_step)
    run_lib.train(tiny_config(**{"training.nonfinite": "skip"}), tmp_path)
    records = loop.read_metrics(tmp_path / "metrics.jsonl")
    assert [r.get("skipped_steps", 0) for r in records] == [0, 0, 0, 1] + [0] * 8
    assert checkpoint.read_state(checkpoint.latest(tmp_path / "checkpoints"))["extra"]["skipped_steps"] == 1
    step, tensors = final_tensors(tmp_path)
    assert step == 12 and all(torch.isfinite(v).all() for v in tensors.values() if v.is_floating_point())


def test_bf16_autocast_trains_on_cpu(straight, tmp_path):
    run_lib.train(tiny_config(**{"training.precision": "bf16"}), tmp_path)
    bf16, fp32 = logged_losses(tmp_path), logged_losses(straight)
    assert len(bf16) == 12 and all(torch.isfinite(torch.tensor(loss)) for _, loss in bf16)
    # bf16 keeps ~3 significant digits: the first loss agrees to about 1 %, and it is not fp32.
    assert bf16[0][1] == pytest.approx(fp32[0][1], rel=0.03) and bf16[0][1] != fp32[0][1]


def test_compiled_network_trains_like_the_plain_one(straight, tmp_path, monkeypatch):
    """training.compile=True: the steps go through torch.compile's wrapper (here with its eager
    backend, which compiles nothing, so it is fast and exact); checkpoints keep the plain names."""
    compiled = []
    real_compile = torch.compile

    def eager_compile(module):
        compiled.append(module)
        return real_compile(module, backend="eager")

    monkeypatch.setattr(loop.torch, "compile", eager_compile)
    run_lib.train(tiny_config(**{"training.compile": True, "training.n_steps": 6}), tmp_path)
    assert len(compiled) == 1
    (steps, compiled_losses), (_, plain_losses) = zip(*logged_losses(tmp_path)), zip(*logged_losses(straight)[:6])
    assert steps == tuple(range(1, 7)) and compiled_losses == pytest.approx(plain_losses, rel=1e-6)
    assert not any("_orig_mod" in key for key in final_tensors(tmp_path)[1])


def test_fp16_without_cuda_is_refused(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(ValueError, match="fp16.*needs CUDA"):
        run_lib.train(tiny_config(**{"training.precision": "fp16"}), tmp_path)


def test_tensorboard_events_when_installed(tmp_path):
    pytest.importorskip("tensorboard")
    run_lib.train(tiny_config(**{"training.tensorboard": True, "training.n_steps": 3}), tmp_path)
    assert list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))


# -- DDP ---------------------------------------------------------------------------------------
def test_two_process_ddp_matches_one_process(straight, tmp_path):
    """2 gloo processes with the same global batch: the same parameters, to round-off; rank 0 alone writes."""
    # The adaptive ODE sampler takes its own number of steps on each rank: no collective may hang.
    overrides = {
        "training.checkpoint_freq": 12,
        "sampling.n_samples": 21,
        "sampling.sampler": "probability_flow",
        "sampling.probability_flow.rtol": 1e-3,
        "sampling.probability_flow.atol": 1e-3,
    }
    workdir = tmp_path / "ddp"
    run_ddp(overrides, workdir, tmp_path / "rendezvous")
    # The logged loss is the mean over both processes' halves of the batch = the single-process loss.
    for (s, a), (t, b) in zip(logged_losses(straight), logged_losses(workdir)):
        assert s == t and a == pytest.approx(b, rel=1e-5)
    assert len(logged_losses(workdir)) == 12  # one writer: no duplicated records
    step, ddp_tensors = final_tensors(workdir)
    assert step == 12
    assert_same_tensors(final_tensors(straight)[1], ddp_tensors, atol=1e-5)
    assert sorted(p.name for p in (workdir / "checkpoints").iterdir()) == ["latest", "step_00000012"]
    samples = __import__("numpy").load(workdir / "samples.npz")["samples"]
    assert samples.shape == (21, 2)  # 11 + 10 drawn on the two ranks, gathered on rank 0


# -- subprocesses: signals, kills, torchrun ---------------------------------------------------------
def run_main(workdir, *extra, timeout=300):
    cmd = main_command(workdir, *extra, mode="train")
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=subprocess_env(), timeout=timeout)


def start_main(workdir, *extra):
    cmd = main_command(workdir, *extra, mode="train")
    return subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=subprocess_env())


def wait_for_step(proc, workdir, step, deadline=120):
    end = time.time() + deadline
    while True:
        records = loop.read_metrics(Path(workdir) / "metrics.jsonl")
        if records and records[-1]["step"] >= step:
            return records[-1]["step"]
        assert proc.poll() is None and time.time() < end, "training ended or stalled"
        time.sleep(0.02)


LONG = {"training.n_steps": 400, "training.checkpoint_freq": 100, "training.meta_checkpoint_freq": 25}


@pytest.mark.slow
def test_resume_in_a_new_process_is_bit_identical(tmp_path):
    """N steps straight vs k steps, then a new process resuming for N - k: the same per-step losses
    and bit-identical model, EMA and optimizer tensors."""
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    assert run_main(straight, *cli_overrides()).returncode == 0
    first = run_main(resumed, *cli_overrides(**{"training.n_steps": 5}))
    assert first.returncode == 0, first.stderr[-2000:]
    second = run_main(resumed, *cli_overrides())
    assert second.returncode == 0, second.stderr[-2000:]
    assert "resumed from" in second.stderr
    assert logged_losses(resumed) == logged_losses(straight)
    assert_same_tensors(final_tensors(straight)[1], final_tensors(resumed)[1])


@pytest.mark.slow
def test_sigterm_writes_a_checkpoint_at_the_current_step(tmp_path):
    proc = start_main(tmp_path, *cli_overrides(**LONG))
    wait_for_step(proc, tmp_path, 37)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM, stderr[-2000:]
    assert "Traceback" not in stderr and "SIGTERM received" in stderr
    last_logged = loop.read_metrics(tmp_path / "metrics.jsonl")[-1]["step"]
    found = checkpoint.newest(tmp_path / "checkpoints", tmp_path / "checkpoints-meta")
    assert checkpoint.step_of(found) == last_logged > 37


@pytest.mark.slow
def test_sigkill_at_random_moments_loses_nothing_but_the_last_steps(tmp_path):
    """Killed twice at random moments, resumed each time: the finished run equals an uninterrupted one."""
    rng = random.Random(0)
    overrides = cli_overrides(
        **{**LONG, "training.n_steps": 150, "training.checkpoint_freq": 50, "training.meta_checkpoint_freq": 10}
    )
    for _ in range(2):
        proc = start_main(tmp_path, *overrides)
        wait_for_step(proc, tmp_path, rng.randint(5, 60) + (logged_losses(tmp_path) or [(0, 0)])[-1][0])
        time.sleep(rng.uniform(0, 0.3))
        proc.kill()
        proc.wait()
        found = checkpoint.newest(tmp_path / "checkpoints", tmp_path / "checkpoints-meta")
        killed_at = loop.read_metrics(tmp_path / "metrics.jsonl")[-1]["step"]
        assert found is not None and 0 <= killed_at - checkpoint.step_of(found) < 10 + 1
    assert run_main(tmp_path, *overrides).returncode == 0
    reference = tmp_path / "reference"
    assert run_main(reference, *overrides).returncode == 0
    assert logged_losses(tmp_path) == logged_losses(reference)
    assert_same_tensors(final_tensors(reference)[1], final_tensors(tmp_path)[1])


@pytest.mark.slow
def test_torchrun_runs_main_end_to_end(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        "main.py",
        "--config=configs/toy_vp.py",
        f"--workdir={tmp_path}",
        "--mode=train",
        *cli_overrides(),
    ]
    result = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert len(loop.read_metrics(tmp_path / "metrics.jsonl")) == 12
    assert json.loads((tmp_path / "quality.json").read_text())["step"] == 12
    assert checkpoint.step_of(checkpoint.latest(tmp_path / "checkpoints")) == 12


def test_the_loop_minimises_any_objective_it_is_given(tmp_path):
    """A least-squares objective through the Trainer reaches the closed-form solution (X^T X)^-1 X^T y,
    and its checkpoints resume: the loop knows nothing of scores."""
    from scoresde.models.ema import ExponentialMovingAverage
    from scoresde.train.distributed import Context

    generator = torch.Generator().manual_seed(0)
    x = torch.randn(256, 3, generator=generator)
    y = x @ torch.tensor([[1.5], [-2.0], [0.5]]) + 0.1 * torch.randn(256, 1, generator=generator)
    solution = torch.linalg.lstsq(torch.cat([x, torch.ones(256, 1)], 1), y).solution.squeeze(1)

    class LeastSquares:
        n_examples = len(x)

        def batch(self, step, size):
            idx = torch.as_tensor(data.batch_indices(len(x), size, step, 0))
            return x[idx], y[idx]

        def loss(self, module, part):
            inputs, targets = part
            return ((module(inputs) - targets) ** 2).mean()

    def trainer(n_steps):
        torch.manual_seed(0)
        model = torch.nn.Linear(3, 1)
        settings = loop.Settings(n_steps=n_steps, batch_size=64, lr=0.05, checkpoint_freq=100, progress=False)
        optimizer = torch.optim.Adam(model.parameters(), lr=settings.lr)
        return loop.Trainer(
            model, ExponentialMovingAverage(model, 0.0), optimizer, LeastSquares(), settings, tmp_path, Context(), device=x.device
        )

    first = trainer(300)
    first.run(first.resume())
    fitted = torch.cat([first.model.weight.detach().squeeze(0), first.model.bias.detach()])
    torch.testing.assert_close(fitted, solution, atol=0.02, rtol=0)
    second = trainer(400)  # resumes from step 300
    assert second.resume() == 300
    second.run(300)
    assert checkpoint.step_of(checkpoint.latest(tmp_path / loop.CHECKPOINTS)) == 400
