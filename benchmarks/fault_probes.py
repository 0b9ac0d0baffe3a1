"""Replay the faults of the hardening review many times and count the runs that lost anything.

    python benchmarks/fault_probes.py                      # 20 runs of each scenario
    python benchmarks/fault_probes.py --runs 50 --scenarios startup two_trainers --seed 3

Scenarios (each run in a fresh copy of a work directory that already holds a trained toy run):

startup       SIGKILL at a random moment of a trainer's start-up (imports, data, resume, the log's
              rewrite). The log holds records past its newest checkpoint, so every start rewrites
              it. Lost: any (step, loss) record of the original log missing from metrics.jsonl and
              metrics.dropped.jsonl together, or no loadable checkpoint left.
two_trainers  a second trainer started at a random moment on the work directory of a running one.
              Lost: the second is not refused (exit 1 naming the holder), or the first does not
              stop cleanly on SIGTERM (exit 143) with a loadable checkpoint at its last step and
              a log without gaps.
mid_save      SIGKILL at a random moment of a run that writes a checkpoint after every step, so
              most kills land inside a save. Lost: the newest loadable checkpoint goes back in
              steps, a checkpoint cannot be restored, or the resumed run's per-step losses and
              final tensors differ from an uninterrupted run's.

sigterm_picture
              SIGTERM while a periodic sample picture is drawn (a slow one: 20,000 Euler-Maruyama
              steps). Lost: the run does not exit with 143 and a checkpoint within the 30 s grace
              period Slurm and Kubernetes give before SIGKILL. The seconds from the signal to the
              exit are printed.

A trainer stopped by SIGTERM before its training loop installed the signal handlers (during
imports or data loading) ends with the default action; that counts as nothing lost when the log
and the checkpoints are intact, since there was nothing new to save.

Prints one line per run and a summary: runs per scenario and how many lost anything (goal: 0).
"""

from __future__ import annotations

import argparse
import random
import shutil
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
sys.path.insert(0, str(ROOT / "benchmarks"))
from kill_resume_soak import command, environment, final_state, logged_losses  # noqa: E402

from configs.toy_vp import get_config  # noqa: E402
from scoresde import run_lib  # noqa: E402
from scoresde.models import ExponentialMovingAverage  # noqa: E402
from scoresde.train import checkpoint, loop  # noqa: E402

SCENARIOS = ("startup", "two_trainers", "mid_save", "sigterm_picture")
GRACE_SECONDS = 30.0


def settings(steps: int, checkpoint_freq: int, meta_freq: int = 0):
    return argparse.Namespace(steps=steps, checkpoint_freq=checkpoint_freq, meta_freq=meta_freq)


def start(workdir: Path, run_settings, **extra) -> subprocess.Popen:
    """The trainer in the background, its log in a file next to the work directory (a pipe nobody
    reads would fill up and block it)."""
    log = open(workdir.with_name(workdir.name + ".log"), "w")
    return subprocess.Popen(
        command(workdir, run_settings, **extra), cwd=ROOT, env=environment(), stdout=subprocess.DEVNULL, stderr=log
    )


def log_tail(workdir: Path) -> str:
    return workdir.with_name(workdir.name + ".log").read_text()[-300:].strip()


def restorable(path: Path | None) -> bool:
    """Whether a checkpoint restores into a fresh network of the probes' config."""
    if path is None:
        return False
    config = get_config()
    config.model.width, config.model.depth = 32, 1  # as kill_resume_soak.command
    model = run_lib.build_model(config, (2,))
    try:
        checkpoint.restore(path, model, ExponentialMovingAverage(model), torch.optim.Adam(model.parameters()))
    except (OSError, ValueError):
        return False
    return True


def newest(workdir: Path) -> Path | None:
    return checkpoint.newest(workdir / loop.CHECKPOINTS, workdir / loop.META_CHECKPOINTS)


def all_records(workdir: Path) -> set[tuple[int, float]]:
    found = set()
    for name in (loop.METRICS_FILE, loop.DROPPED_METRICS_FILE):
        found |= {(r["step"], r["loss"]) for r in loop.read_metrics(workdir / name)}
    return found


def probe_startup(base: Path, tmp: Path, rng: random.Random, startup_seconds: float) -> str | None:
    workdir = tmp / "startup"
    shutil.copytree(base, workdir)
    original = all_records(workdir)
    proc = start(workdir, settings(steps=400, checkpoint_freq=200))
    time.sleep(rng.uniform(0, startup_seconds))
    proc.kill()
    proc.wait()
    missing = original - all_records(workdir)
    if missing:
        return f"{len(missing)} of {len(original)} log records gone"
    if not restorable(newest(workdir)):
        return "no restorable checkpoint"
    return None


def probe_two_trainers(base: Path, tmp: Path, rng: random.Random, startup_seconds: float) -> str | None:
    workdir = tmp / "two"
    shutil.copytree(base, workdir)
    long_run = settings(steps=100_000, checkpoint_freq=50)
    first = start(workdir, long_run)
    time.sleep(rng.uniform(0.5, 2 * startup_seconds))
    try:
        second = subprocess.run(
            command(workdir, long_run), cwd=ROOT, env=environment(), capture_output=True, text=True, timeout=60
        )
        refused = second.returncode == 1 and "is in use by --mode train" in second.stderr
    except subprocess.TimeoutExpired as running:  # it trains beside the first one
        second = subprocess.CompletedProcess(running.cmd, "still running after 60 s", "", str(running.stderr or "")[-200:])
        refused = False
    first.send_signal(signal.SIGTERM)
    code = first.wait()
    if not refused:
        return f"the second trainer was not refused (exit {second.returncode}: {second.stderr.strip()[-200:]})"
    steps = [s for s, _ in logged_losses(workdir)]
    saved = newest(workdir)
    if code == -signal.SIGTERM:  # stopped before training began (no handler yet): nothing to save
        intact = all_records(workdir) >= all_records(base) and restorable(saved)
        return None if intact else "killed during start-up, and the log or the checkpoint was damaged"
    if code != 128 + signal.SIGTERM:
        return f"the first trainer ended with exit {code}: {log_tail(workdir)}"
    if steps != list(range(1, steps[-1] + 1)):
        return "the log has gaps or repeats"
    if not restorable(saved) or checkpoint.step_of(saved) != steps[-1]:
        return f"no restorable checkpoint at the last logged step {steps[-1]}"
    return None


def probe_sigterm_picture(base: Path, tmp: Path, rng: random.Random, startup_seconds: float) -> str | None:
    workdir = tmp / "picture"
    shutil.copytree(base, workdir)
    picture_step = 250  # the base run resumes at 100; its stale log ends at 200
    proc = start(
        workdir,
        settings(steps=400, checkpoint_freq=200),
        **{"training.sample_freq": picture_step, "sampling.steps": 20_000, "sampling.sampler": "euler_maruyama"},
    )
    while not [s for s, _ in logged_losses(workdir) if s >= picture_step] and proc.poll() is None:
        time.sleep(0.01)
    time.sleep(rng.uniform(0.2, 2.0))  # inside the picture
    sent = time.perf_counter()
    proc.send_signal(signal.SIGTERM)
    try:
        code = proc.wait(timeout=120)
    except subprocess.TimeoutExpired:
        proc.kill()
        code = proc.wait()
    seconds = time.perf_counter() - sent
    saved = newest(workdir)
    if code != 128 + signal.SIGTERM or seconds > GRACE_SECONDS or not restorable(saved):
        return f"exit {code} {seconds:.1f} s after SIGTERM, newest checkpoint {saved}"
    LATENCIES.append(seconds)
    return None


LATENCIES: list[float] = []


def probe_mid_save(tmp: Path, rng: random.Random, kills: int, startup_seconds: float) -> list[str | None]:
    """`kills` SIGKILLs of one run saving every step, then its resumed end against an uninterrupted run."""
    workdir, reference = tmp / "mid_save", tmp / "mid_save_reference"
    every_step = settings(steps=60 + 8 * kills, checkpoint_freq=1)
    outcomes, previous = [], 0
    for _ in range(kills):
        proc = start(workdir, every_step)
        time.sleep(startup_seconds + rng.uniform(0, 1.0))
        proc.kill()
        proc.wait()
        path = newest(workdir)
        step = checkpoint.step_of(path) if path is not None else 0
        if step < previous:
            outcomes.append(f"the newest checkpoint went back from step {previous} to {step}")
        elif path is not None and not restorable(path):
            outcomes.append(f"checkpoint {path.name} does not restore")
        else:
            outcomes.append(None)
        previous = max(previous, step)
    finish = subprocess.run(command(workdir, every_step), cwd=ROOT, env=environment(), capture_output=True, text=True)
    subprocess.run(command(reference, every_step), cwd=ROOT, env=environment(), capture_output=True, check=True)
    a, b = final_state(workdir), final_state(reference)
    if (
        finish.returncode
        or logged_losses(workdir) != logged_losses(reference)
        or a.keys() != b.keys()
        or not all(torch.equal(a[k], b[k]) for k in a)
    ):
        outcomes[-1] = "the resumed run differs from an uninterrupted one"
    return outcomes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=20, help="runs (kills) per scenario")
    parser.add_argument("--scenarios", nargs="+", choices=SCENARIOS, default=list(SCENARIOS))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    results: dict[str, list[str | None]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        base = tmp / "base"  # a finished run whose log runs 100 steps past its newest checkpoint
        started = time.perf_counter()
        subprocess.run(
            command(base, settings(steps=200, checkpoint_freq=50)), cwd=ROOT, env=environment(), capture_output=True, check=True
        )
        startup_seconds = time.perf_counter() - started  # an upper bound of start-up: the whole short run
        for path in checkpoint.list_complete(base / loop.CHECKPOINTS)[1:]:  # keep only the oldest
            shutil.rmtree(path)
        shutil.rmtree(base / loop.META_CHECKPOINTS, ignore_errors=True)
        print(
            f"base run: {len(loop.read_metrics(base / loop.METRICS_FILE))} log records, newest checkpoint "
            f"step {checkpoint.step_of(newest(base))}; start-up window {startup_seconds:.1f} s"
        )
        for scenario in args.scenarios:
            if scenario == "mid_save":
                results[scenario] = probe_mid_save(tmp, rng, args.runs, min(startup_seconds, 4.0))
            else:
                probe, folder = {
                    "startup": (probe_startup, "startup"),
                    "two_trainers": (probe_two_trainers, "two"),
                    "sigterm_picture": (probe_sigterm_picture, "picture"),
                }[scenario]
                results[scenario] = []
                for _ in range(args.runs):
                    results[scenario].append(probe(base, tmp, rng, startup_seconds))
                    shutil.rmtree(tmp / folder, ignore_errors=True)
            for k, outcome in enumerate(results[scenario]):
                print(f"{scenario:12s} run {k + 1:3d}: {outcome or 'nothing lost'}")
    print()
    for scenario, outcomes in results.items():
        print(f"{scenario:12s} {len(outcomes):3d} runs, {sum(o is not None for o in outcomes):3d} lost anything")
    if LATENCIES:
        print(
            f"SIGTERM during a picture -> exit: median {statistics.median(LATENCIES):.2f} s, max {max(LATENCIES):.2f} s "
            f"(grace period {GRACE_SECONDS:.0f} s)"
        )
    if any(o is not None for outcomes in results.values() for o in outcomes):
        sys.exit(1)


if __name__ == "__main__":
    main()
