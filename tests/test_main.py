"""End to end: main.py in subprocesses — train, kill, resume, determinism, sample, bad input."""

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from tests.helpers import ROOT, main_command, subprocess_env

pytestmark = pytest.mark.slow

FAST = [
    "--config.training.n_steps=120",
    "--config.training.batch_size=64",
    "--config.training.log_freq=10",
    "--config.training.checkpoint_freq=20",
    "--config.training.sample_freq=0",
    "--config.training.progress=False",
    "--config.model.width=32",
    "--config.model.depth=1",
    "--config.data.n_examples=1000",
    "--config.sampling.steps=20",
    "--config.sampling.n_samples=200",
    "--config.sampling.batch_size=200",
    "--config.eval.n_projections=32",
    "--config.device=cpu",
]


def main_cmd(workdir, *extra, config="configs/toy_vp.py", mode="train"):
    return main_command(workdir, *FAST, *extra, config=config, mode=mode)


def run_main(workdir, *extra, **kwargs):
    return subprocess.run(
        main_cmd(workdir, *extra, **kwargs), cwd=ROOT, capture_output=True, text=True, env=subprocess_env(), timeout=300
    )


def losses(workdir):
    records = [json.loads(line) for line in (Path(workdir) / "metrics.jsonl").read_text().splitlines()]
    return [r["step"] for r in records], [r["loss"] for r in records]


@pytest.fixture(scope="module")
def straight_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("straight")
    result = run_main(workdir)
    assert result.returncode == 0, result.stderr[-3000:]
    return workdir


def test_train_writes_every_output(straight_run):
    for name in ["samples.png", "samples.npz", "loss.png", "quality.json", "metrics.jsonl"]:
        assert (straight_run / name).exists(), name
    figures = json.loads((straight_run / "quality.json").read_text())
    assert figures["step"] == 120 and figures["nfe"] == 21  # 20 steps + the denoising step
    assert np.isfinite(figures["sliced_wasserstein_to_test"])
    steps, _ = losses(straight_run)
    assert steps == list(range(10, 121, 10))
    kept = sorted(p.name for p in (straight_run / "checkpoints").iterdir())
    assert kept == ["latest", "step_00000080", "step_00000100", "step_00000120"]  # keep_checkpoints = 3
    assert (straight_run / "checkpoints" / "latest").read_text().strip() == "step_00000120"


def test_killed_run_resumes_to_the_same_step_and_losses(straight_run, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(main_cmd(tmp_path), cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    deadline = time.time() + 120
    while not (tmp_path / "checkpoints" / "step_00000040" / "COMPLETE").exists():
        assert proc.poll() is None and time.time() < deadline, "training ended or stalled before its 2nd checkpoint"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (tmp_path / "quality.json").exists(), "the run finished before it was killed"
    result = run_main(tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "resumed from" in result.stderr
    assert (tmp_path / "checkpoints" / "step_00000120" / "COMPLETE").exists()
    # Same seed, same per-step randomness: the interrupted run logs exactly the straight run's losses.
    assert losses(tmp_path) == losses(straight_run)


def test_another_seed_gives_other_losses(straight_run, tmp_path):
    result = run_main(tmp_path, "--config.seed=7", "--config.training.n_steps=10")
    assert result.returncode == 0, result.stderr[-3000:]
    assert losses(tmp_path)[1][0] != losses(straight_run)[1][0]


def test_sample_mode_writes_samples(straight_run):
    result = run_main(straight_run, "--config.sampling.n_samples=50", "--config.sampling.use_ema=False", mode="sample")
    assert result.returncode == 0, result.stderr[-3000:]
    out = straight_run / "sample" / "euler_maruyama"
    samples = np.load(out / "samples.npz")["samples"]
    assert samples.shape == (50, 2) and np.isfinite(samples).all()
    assert (out / "samples.png").exists()


@pytest.mark.parametrize(
    "override, message",
    [
        ("--config.data.dataset=mnist_typo", "unknown dataset"),
        ("--config.sde.name=cosine_typo", "unknown SDE"),
        ("--config.sde.beta_max=0.01", "beta_max must be > beta_min"),
        ("--config.training.batch_size=0", "batch_size must be >= 1"),
        ("--config.sampling.sampler=nope", "unknown sampler"),
    ],
)
def test_bad_config_exits_with_a_clear_message(tmp_path, override, message):
    result = run_main(tmp_path, override)
    assert result.returncode != 0
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_sample_without_checkpoint_is_an_error(tmp_path):
    result = run_main(tmp_path, mode="sample")
    assert result.returncode != 0 and "no complete checkpoint" in result.stderr
    assert "Traceback" not in result.stderr


def test_unknown_config_key_is_rejected(tmp_path):
    result = run_main(tmp_path, "--config.training.n_stepz=3")
    assert result.returncode != 0 and "n_stepz" in result.stderr
