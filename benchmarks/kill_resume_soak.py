"""Kill training with SIGKILL at random moments, resume, repeat; then check that nothing was lost.

    python benchmarks/kill_resume_soak.py                    # 20 kills of a toy run, meta checkpoint every 10 steps
    python benchmarks/kill_resume_soak.py --kills 50 --steps 2000 --meta-freq 25 --seed 1

Each round starts `main.py --mode train` on configs/toy_vp.py (a small MLP) in one work directory,
waits a random time, SIGKILLs it (no chance to save anything), and looks at what survived: the
newest complete checkpoint (snapshot or meta) against the last step the run had logged (steps
lost = logged - saved, the work that must be redone). After the kills, the run is resumed to the
end, and an uninterrupted run with the same config is made for comparison: the per-step losses and
the final model, EMA and optimizer tensors must be identical, which is the proof that no kill
corrupted or lost any state beyond the steps after the last checkpoint.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from safetensors.torch import load_file  # noqa: E402

from scoresde.train import checkpoint, loop  # noqa: E402


def command(workdir: Path, args, **extra) -> list[str]:
    """main.py --mode train on the soak's toy config; `extra` overrides config keys ({"training.sample_freq": 50})."""
    overrides = {
        "training.n_steps": args.steps,
        "training.batch_size": 64,
        "training.log_freq": 1,
        "training.checkpoint_freq": args.checkpoint_freq,
        "training.meta_checkpoint_freq": args.meta_freq,
        "training.sample_freq": 0,
        "training.progress": False,
        "training.tensorboard": False,
        "model.width": 32,
        "model.depth": 1,
        "data.n_examples": 2000,
        "sampling.steps": 10,
        "sampling.n_samples": 100,
        "sampling.batch_size": 100,
        "eval.n_projections": 16,
        "device": "cpu",
        **extra,
    }
    return [
        sys.executable,
        "main.py",
        "--config=configs/toy_vp.py",
        f"--workdir={workdir}",
        "--mode=train",
        *(f"--config.{k}={v}" for k, v in overrides.items()),
    ]


def environment() -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def last_logged(workdir: Path) -> int:
    records = loop.read_metrics(workdir / "metrics.jsonl")
    return records[-1]["step"] if records else 0


def logged_losses(workdir: Path) -> list[tuple[int, float]]:
    return [(r["step"], r["loss"]) for r in loop.read_metrics(workdir / "metrics.jsonl")]


def saved_step(workdir: Path) -> int:
    found = checkpoint.newest(workdir / loop.CHECKPOINTS, workdir / loop.META_CHECKPOINTS)
    return checkpoint.step_of(found) if found is not None else 0


def final_state(workdir: Path) -> dict[str, torch.Tensor]:
    path = checkpoint.latest(workdir / loop.CHECKPOINTS)
    tensors = {f"model.{k}": v for k, v in load_file(str(path / "model.safetensors")).items()}
    tensors.update({f"ema.{k}": v for k, v in load_file(str(path / "ema.safetensors")).items()})
    for index, state in checkpoint.read_state(path)["optimizer"]["state"].items():
        tensors.update({f"optim.{index}.{k}": v for k, v in state.items() if torch.is_tensor(v)})
    return tensors


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--checkpoint-freq", type=int, default=200)
    parser.add_argument("--meta-freq", type=int, default=10)
    parser.add_argument("--max-wait", type=float, default=3.0, help="seconds after start-up before the kill, at most")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        workdir, reference = Path(tmp) / "killed", Path(tmp) / "reference"
        lost, kills, started = [], 0, time.perf_counter()
        while kills < args.kills:
            before = last_logged(workdir)
            if before >= args.steps:
                print(f"the run finished after {kills} kills; use more --steps for more kills")
                break
            proc = subprocess.Popen(
                command(workdir, args), cwd=ROOT, env=environment(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
            while last_logged(workdir) <= before and proc.poll() is None:  # start-up: imports, data, resume
                time.sleep(0.01)
            time.sleep(rng.uniform(0, args.max_wait))
            if proc.poll() is not None:
                continue
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            kills += 1
            logged, saved = last_logged(workdir), saved_step(workdir)
            lost.append(logged - saved)
            print(
                f"kill {kills:3d}: logged step {logged:5d}, newest complete checkpoint {saved:5d}, lost {logged - saved:3d} steps"
            )
        finish = subprocess.run(command(workdir, args), cwd=ROOT, env=environment(), capture_output=True, text=True)
        if finish.returncode:
            sys.exit(f"resuming after the kills failed:\n{finish.stderr[-3000:]}")
        soak_seconds = time.perf_counter() - started
        subprocess.run(command(reference, args), cwd=ROOT, env=environment(), capture_output=True, check=True)
        same_losses = logged_losses(workdir) == logged_losses(reference)
        a, b = final_state(workdir), final_state(reference)
        same_tensors = a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
        print(
            f"\n{kills} SIGKILLs over {soak_seconds:.0f} s, meta checkpoint every {args.meta_freq} steps: steps lost per kill "
            f"median {statistics.median(lost) if lost else 0}, max {max(lost, default=0)}, total {sum(lost)}"
        )
        print(
            f"after resuming to step {args.steps}: per-step losses identical to an uninterrupted run: {same_losses}; "
            f"model, EMA and optimizer tensors identical: {same_tensors}"
        )
        if not (same_losses and same_tensors):
            sys.exit(1)


if __name__ == "__main__":
    main()
