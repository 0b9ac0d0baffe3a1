"""The findings of the hostile-input and fault review, one section each: every one of them failed on
the code before the fixes (stale results reused, disguised files decoded, a second trainer let in,
history truncated, NaN weights and drifted configs loaded, tracebacks, unbounded reads and waits,
checkpoint identities trusted, misused library calls accepted).

In-process and fast: toy configs and a few training steps. The subprocess probes (kills at start-up,
two trainers, kills mid-save, replayed many times) are in benchmarks/fault_probes.py.
"""

import json
import os
import signal
import struct
import subprocess
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from scoresde import data, files, likelihood, oracle, run_lib, samplers
from scoresde.cli import workdir as workdir_lib
from scoresde.config import schema as config_schema
from scoresde.eval import benchmark as bench
from scoresde.eval import features
from scoresde.sde_lib import VPSDE
from scoresde.train import checkpoint, loop
from tests.helpers import ROOT, cli_overrides, main_command, subprocess_env, tiny_config


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny toy run: checkpoints at steps 6 and 12 and a 12-line metrics.jsonl."""
    path = tmp_path_factory.mktemp("trained")
    run_lib.train(tiny_config(), path)
    return path


def copy_run(source: Path, dest: Path) -> Path:
    import shutil

    shutil.copytree(source, dest, dirs_exist_ok=True, symlinks=True)
    return dest


# -- 1. benchmark records are keyed by everything that determines them -------------------------------
def _ring(n_samples=200, beta_max=20.0, eps=1e-4):
    return bench.OracleTarget("ring_vp", oracle.ring(8, 1.0, 0.05), VPSDE(beta_max=beta_max), eps, n_samples)


@pytest.mark.parametrize("change", ["n_samples", "sde_parameter", "eps"])
def test_benchmark_recomputes_records_made_under_other_settings(tmp_path, change):
    path = tmp_path / "records.jsonl"
    first = bench.run(_ring(), [bench.Sampler("ddim")], [6], seeds=[0], records_path=path)
    assert bench.run(_ring(), [bench.Sampler("ddim")], [6], seeds=[0], records_path=path) == first  # same: reused
    other = {"n_samples": _ring(n_samples=240), "sde_parameter": _ring(beta_max=15.0), "eps": _ring(eps=1e-3)}[change]
    (again,) = bench.run(other, [bench.Sampler("ddim")], [6], seeds=[0], records_path=path)
    assert again["digest"] != first[0]["digest"] and again["target_digest"] != first[0]["target_digest"]
    assert again["sw"] != first[0]["sw"]
    assert len(bench.read_records(path)) == 2  # the stale record is kept in the file, not reused


def test_benchmarking_a_checkpoint_again_after_more_training_recomputes(tmp_path, monkeypatch):
    """The finding itself: benchmark after 20 steps, train on, benchmark again in the same work dir.
    Before, records.jsonl was byte-identical (the step-20 metrics reused) while the report said step 40."""
    import functools
    import importlib

    monkeypatch.setattr(features, "train_classifier", functools.partial(features.train_classifier, epochs=1))  # speed

    config = importlib.import_module("configs.digits_mlp_vp").get_config()
    config.device = "cpu"
    config.training.n_steps, config.training.checkpoint_freq, config.training.sample_freq = 20, 20, 0
    config.training.progress, config.training.tensorboard = False, False
    config.model.width, config.model.depth = 64, 1
    config.sampling.n_samples = config.sampling.batch_size = 8
    config.sampling.steps = 4
    b = config.benchmark
    b.target, b.samplers, b.budgets, b.seeds, b.n_samples, b.plot_budget = "checkpoint", ("ddim",), (6,), 1, 32, 6
    b.reference_rtol, b.progress = 1e-3, False
    run_lib.train(config, tmp_path)
    run_lib.benchmark(config, tmp_path)
    records_file = tmp_path / "benchmark" / bench.RECORDS_FILE
    (first,) = bench.read_records(records_file)
    config.training.n_steps = 40
    run_lib.train(config, tmp_path)
    run_lib.benchmark(config, tmp_path)
    stored = bench.read_records(records_file)
    reported = json.loads((tmp_path / "benchmark" / "records.json").read_text())["records"]
    assert len(stored) == 2 and len(reported) == 1 and reported[0]["digest"] != first["digest"]
    assert reported[0]["fd"] != first["fd"] and "checkpoint step 40" in (tmp_path / "benchmark" / "report.md").read_text()


def test_records_of_another_sampler_option_are_not_reused(tmp_path):
    path = tmp_path / "records.jsonl"
    (a,) = bench.run(_ring(), [bench.parse_sampler_spec("unipc")], [6], seeds=[0], records_path=path)
    (b,) = bench.run(_ring(), [bench.Sampler("unipc", "unipc", {"predictor_order": 1})], [6], seeds=[0], records_path=path)
    assert a["digest"] != b["digest"] and a["flow_rms"] != b["flow_rms"]


# -- 2. image folders decode only what their extension names, within limits ---------------------------
def _png_header_only(path: Path, width: int, height: int) -> None:
    """A PNG whose header declares width x height (no pixel data: Pillow reads the header lazily)."""

    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0")) + chunk(b"IEND", b""))


def test_a_disguised_eps_file_never_reaches_ghostscript(tmp_path, monkeypatch):
    """An EPS file named cat.png: before, Pillow sniffed it and ran `gs` on it (a fake gs logged the call)."""
    calls = tmp_path / "gs-was-called"
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "gs").write_text(f"#!/bin/sh\ntouch {calls}\nexit 1\n")
    (bin_dir / "gs").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    images = tmp_path / "images"
    images.mkdir()
    (images / "cat.png").write_bytes(
        b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 8 8\nnewpath 0 0 moveto 8 8 lineto stroke\nshowpage\n%%EOF\n"
    )
    with pytest.raises(ValueError, match=r"cannot read image file .*cat\.png"):
        data.load_image_folder(images, 8)
    assert not calls.exists()


@pytest.mark.parametrize("width, height, reason", [(2_000_000, 1, "aspect ratio"), (9000, 9000, "more than the")])
def test_huge_or_degenerate_images_are_refused_from_their_header(tmp_path, width, height, reason):
    """A 2,000,000 x 1 PNG was resized before cropping (a ~24 GB allocation); now the header decides."""
    _png_header_only(tmp_path / "x.png", width, height)
    with pytest.raises(ValueError, match=rf"x\.png.*{reason}"):
        data.load_image_folder(tmp_path, 8)


def test_a_wide_image_is_cropped_before_it_is_resized(tmp_path, monkeypatch):
    from PIL import Image

    Image.fromarray(np.zeros((40, 600, 3), np.uint8)).save(tmp_path / "wide.png")
    sizes = []
    real = Image.Image.resize
    monkeypatch.setattr(Image.Image, "resize", lambda self, size, *a, **k: sizes.append(self.size) or real(self, size, *a, **k))
    assert data.load_image_folder(tmp_path, 8)[0].shape == (1, 3, 8, 8)
    assert sizes == [(40, 40)]  # the 40 x 40 centre, not a 120 x 8 resize of the whole strip


# -- 3. one run per work directory -------------------------------------------------------------------
def test_a_held_work_directory_refuses_a_second_run_by_name(tmp_path):
    with workdir_lib.hold(tmp_path, "train"):
        with pytest.raises(workdir_lib.WorkdirInUseError, match=rf"in use by --mode train \(PID {os.getpid()} on host"):
            with workdir_lib.hold(tmp_path, "sample"):
                pass
    with workdir_lib.hold(tmp_path, "sample"):  # released when the holder's block ends
        pass


@pytest.mark.slow
def test_a_second_trainer_is_refused_while_the_first_runs_on(tmp_path):
    """Before, the second trainer deleted the first one's temporaries and one of them crashed."""
    args = main_command(tmp_path, *cli_overrides(**{"training.n_steps": 100000, "training.checkpoint_freq": 50}))
    env = subprocess_env()
    first = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    try:
        for _ in range(1200):
            if (tmp_path / "checkpoints" / "step_00000050" / checkpoint.MARKER).exists():
                break
            assert first.poll() is None
            __import__("time").sleep(0.05)
        second = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, env=env, timeout=120)
        assert second.returncode == 1 and "Traceback" not in second.stderr
        assert f"is in use by --mode train (PID {first.pid}" in second.stderr
        assert first.poll() is None  # the first run goes on
    finally:
        first.send_signal(signal.SIGTERM)
        assert first.wait(timeout=120) == 128 + signal.SIGTERM


# -- 4. the loss history is never truncated in place, nor dropped without a word -----------------------
def test_resume_moves_lost_and_unreadable_log_lines_aside(tmp_path):
    log = tmp_path / loop.METRICS_FILE
    lines = [json.dumps({"step": s, "loss": 1.0 / s}) for s in (10, 20, 30, 40, 50)] + ["[1, 2]", '{"step": 6']
    log.write_text("\n".join(lines))  # a JSON list a user pasted, and a line torn by a kill
    loop._truncate_metrics(tmp_path, 30)
    assert [r["step"] for r in loop.read_metrics(log)] == [10, 20, 30]
    dropped = (tmp_path / loop.DROPPED_METRICS_FILE).read_text().splitlines()
    assert dropped == lines[3:]


def test_the_log_is_replaced_atomically(tmp_path, monkeypatch):
    """A kill while the log is rewritten leaves the whole old log (before: truncate, then write)."""
    log = tmp_path / loop.METRICS_FILE
    log.write_text("".join(json.dumps({"step": s, "loss": 0.5}) + "\n" for s in (1, 2, 3)))
    before = log.read_bytes()

    def killed(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(files.os, "replace", killed)
    with pytest.raises(KeyboardInterrupt):
        loop._truncate_metrics(tmp_path, 1)
    assert log.read_bytes() == before and not list(tmp_path.glob(".tmp-*"))


def test_a_fresh_start_keeps_the_old_log(trained, tmp_path):
    run = copy_run(trained, tmp_path / "run")
    old = loop.read_metrics(run / loop.METRICS_FILE)
    import shutil

    shutil.rmtree(run / "checkpoints")
    run_lib.train(tiny_config(**{"training.n_steps": 3}), run)
    kept = [json.loads(line) for line in (run / loop.DROPPED_METRICS_FILE).read_text().splitlines()]
    assert kept == old and [r["step"] for r in loop.read_metrics(run / loop.METRICS_FILE)] == [1, 2, 3]


def test_a_checkpoint_with_an_impossible_step_fails_before_the_log_is_touched(trained, tmp_path):
    run = copy_run(trained, tmp_path / "run")
    state_path = run / "checkpoints" / "step_00000012" / "state.pt"
    state = torch.load(state_path, weights_only=True)
    state["step"] = -100
    torch.save(state, state_path)
    before = (run / loop.METRICS_FILE).read_bytes()
    with pytest.raises(checkpoint.DamagedCheckpointError, match="state.pt holds step -100 but the checkpoint is of step 12"):
        run_lib.train(tiny_config(**{"training.n_steps": 20}), run)
    assert (run / loop.METRICS_FILE).read_bytes() == before


# -- 5. weights that are not finite are refused when loaded --------------------------------------------
def _poison(directory: Path, filename: str = "model.safetensors") -> None:
    tensors = load_file(str(directory / filename))
    name = sorted(tensors)[0]
    tensors[name] = tensors[name].clone().reshape(-1).index_fill_(0, torch.tensor([0]), float("nan")).reshape(tensors[name].shape)
    save_file(tensors, str(directory / filename))


@pytest.mark.parametrize("filename", ["model.safetensors", "ema.safetensors"])
def test_nan_weights_are_neither_sampled_from_nor_resumed(trained, tmp_path, filename):
    run = copy_run(trained, tmp_path / "run")
    _poison(run / "checkpoints" / "step_00000012", filename)
    with pytest.raises(checkpoint.NonFiniteWeightsError, match=rf"refusing to load .*step_00000012.*{filename}"):
        run_lib.sample(tiny_config(), run)
    with pytest.raises(checkpoint.NonFiniteWeightsError):
        run_lib.train(tiny_config(**{"training.n_steps": 20}), run)
    assert not (run / "sample" / "euler_maruyama" / "quality.json").exists()


# -- 6. a checkpoint trained under another model-defining config is refused -----------------------------
@pytest.mark.parametrize(
    "override, key",
    [
        ({"sde.name": "vesde"}, "config.sde.name"),
        ({"model.parameterization": "score"}, "config.model.parameterization"),
        ({"model.time_label": "sigma"}, "config.model.time_label"),
        ({"sde.beta_max": 10.0}, "config.sde.beta_max"),
    ],
)
def test_config_drift_is_refused_with_every_difference_named(trained, override, key):
    with pytest.raises(ValueError, match=rf"another model-defining config:\n{key}: .* in the checkpoint, .* in this run"):
        run_lib.sample(tiny_config(**override), trained)


def test_config_drift_on_resume_is_refused_and_can_be_overridden(trained, tmp_path):
    run = copy_run(trained, tmp_path / "run")
    with pytest.raises(ValueError, match="config.model.parameterization: 'eps' in the checkpoint, 'x0' in this run"):
        run_lib.train(tiny_config(**{"model.parameterization": "x0", "training.n_steps": 14}), run)
    run_lib.train(tiny_config(**{"model.parameterization": "x0", "training.n_steps": 14, "allow_config_mismatch": True}), run)
    assert checkpoint.step_of(checkpoint.latest(run / "checkpoints")) == 14


def test_settings_that_do_not_define_the_model_may_change(trained, tmp_path):
    """Sampler, sample count, dropout, EMA decay and training knobs are the user's to change."""
    figures = run_lib.sample(
        tiny_config(**{"sampling.sampler": "ddim", "model.ema_decay": 0.5, "model.dropout": 0.1, "training.batch_size": 64}),
        copy_run(trained, tmp_path / "run"),
    )
    assert figures["nfe"] == 5


# -- 7. one line for every expected failure -------------------------------------------------------------
def test_a_full_disk_while_checkpointing_is_one_line_naming_the_place(tmp_path):
    """RLIMIT_FSIZE makes every write past 4 KB fail with EFBIG, as a full disk fails with ENOSPC
    (before: torch's `RuntimeError: ... unexpected pos` with a traceback)."""

    def limit():
        import resource

        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))

    overrides = {"training.n_steps": 4, "training.checkpoint_freq": 2, "model.width": 64}  # a checkpoint > 4096 bytes
    args = main_command(tmp_path, *cli_overrides(**overrides))
    result = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=120, preexec_fn=limit, env=subprocess_env())
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert f"error: cannot write the checkpoint of step 2 into {tmp_path / 'checkpoints'}: File too large" in result.stderr
    assert not [p for p in (tmp_path / "checkpoints").iterdir() if p.name.startswith(".tmp")]


def test_a_corrupt_cached_feature_classifier_is_retrained(tmp_path):
    x, labels = data.load_digits()
    x, labels = torch.as_tensor(x[:120]), torch.as_tensor(labels[:120])
    _, info = features.load_or_train(tmp_path, x, labels, x, labels)
    (tmp_path / "classifier.safetensors").write_bytes(b"\0garbage")
    again, info_again = features.load_or_train(tmp_path, x, labels, x, labels)
    assert info_again["weights_sha256"] == info["weights_sha256"]  # retrained deterministically
    (tmp_path / "classifier.json").write_text("{not json")
    assert features.load_or_train(tmp_path, x, labels, x, labels)[1]["weights_sha256"] == info["weights_sha256"]


@pytest.mark.parametrize("content", ["empty", "truncated", "zip_without_npy"])
def test_an_unreadable_npz_is_named(tmp_path, content):
    path = tmp_path / "data.npz"
    np.savez(path, images=np.zeros((10, 4, 4, 1), np.uint8))
    whole = path.read_bytes()
    if content == "empty":
        path.write_bytes(b"")
    elif content == "truncated":
        path.write_bytes(whole[: len(whole) // 2])
    else:
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("images.npy", b"not an array")
    with pytest.raises(ValueError, match=rf"'{path}'"):
        data.load_npz(path)


def test_latest_as_a_directory_or_empty_marker_leave_the_other_checkpoints_usable(trained, tmp_path):
    run = copy_run(trained, tmp_path / "run")
    root = run / "checkpoints"
    (root / "latest").unlink()
    (root / "latest").mkdir()
    assert checkpoint.latest(root).name == "step_00000012"
    (root / "step_00000012" / checkpoint.MARKER).write_text("")  # an empty marker: step 12 is damaged
    assert checkpoint.latest(root).name == "step_00000006"
    with pytest.raises(checkpoint.DamagedCheckpointError, match=r"step_00000012: its marker .*COMPLETE should hold the step"):
        checkpoint.step_of(root / "step_00000012")
    run_lib.train(tiny_config(**{"training.n_steps": 8}), run)  # resumes from step 6; the pointer is a file again
    assert (root / "latest").read_text().strip() == "step_00000008"


def test_a_malformed_log_line_does_not_block_resume(trained, tmp_path):
    run = copy_run(trained, tmp_path / "run")
    with open(run / loop.METRICS_FILE, "a") as log:
        log.write('"a string"\n{"loss": 1}\n')
    run_lib.train(tiny_config(**{"training.n_steps": 13}), run)
    assert loop.read_metrics(run / loop.METRICS_FILE)[-1]["step"] == 13


def test_sample_mode_fails_before_sampling_when_it_cannot_write(trained, tmp_path, monkeypatch):
    run = copy_run(trained, tmp_path / "run")
    (run / "sample").write_text("a file where the output directory goes")
    monkeypatch.setattr(run_lib.Experiment, "sample", lambda *a, **k: pytest.fail("sampled before checking the output"))
    with pytest.raises(NotADirectoryError):
        run_lib.sample(tiny_config(), run)


@pytest.mark.slow
@pytest.mark.parametrize(
    "args, message, code",
    [
        (
            ["--config.training.batch_sise=64"],
            "--config.training.batch_sise=64: the config has no key 'batch_sise' "
            "(in 'training.batch_sise'); did you mean 'batch_size'?",
            2,
        ),
        (
            ["--config.sampling.snr=0.2"],  # a sampler option, now in the section of each sampler that takes it
            "--config.sampling.snr=0.2: the config has no key 'snr' (in 'sampling.snr'); "
            "did you mean 'sampling.annealed_langevin.snr' or 'sampling.predictor_corrector.snr'?",
            2,
        ),
        (["--workdir="], "error: --workdir is empty", 1),
    ],
)
def test_command_line_errors_are_one_line(tmp_path, args, message, code):
    """Unknown override keys (before: a 40-line ml_collections traceback), an empty work directory
    (before: 5,000 steps trained into the current directory), one that cannot be created."""
    result = subprocess.run(
        main_command(tmp_path, *args),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        env=subprocess_env(PYTHONPATH=str(ROOT)),
    )
    assert result.returncode == code and message in result.stderr and "Traceback" not in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) in ([], [".lock"])  # nothing trained into the current directory


# -- 8. an empty work directory is refused -----------------------------------------------------------
@pytest.mark.parametrize("path", ["", "  ", None])
def test_an_empty_workdir_is_refused(path):
    with pytest.raises(ValueError, match="--workdir is empty"):
        workdir_lib.check(path)


def test_a_workdir_that_is_a_file_or_cannot_be_made_is_refused(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(NotADirectoryError, match="is a file"):
        workdir_lib.check(tmp_path / "file")
    with pytest.raises(OSError, match=rf"^work directory {tmp_path / 'file' / 'run'} is not writable: Not a directory"):
        workdir_lib.check(tmp_path / "file" / "run")


# -- 9. bounded: signals during pictures, tolerances, times, pointer files, declared sizes ------------------
def test_sigterm_during_a_periodic_picture_stops_within_a_step(tmp_path, monkeypatch):
    """The picture's sampler is abandoned at the next score evaluation (before: the whole picture,
    17.6 s measured, ran first), one more step is taken and its checkpoint written."""
    evaluations = []
    real_sample = samplers.sample

    def sample_and_signal(name, sde, score_fn, *args, **kwargs):
        def score(x, t):
            evaluations.append(1)
            if len(evaluations) == 3:
                os.kill(os.getpid(), signal.SIGTERM)
            return score_fn(x, t)

        return real_sample(name, sde, score, *args, **kwargs)

    monkeypatch.setattr(samplers, "sample", sample_and_signal)
    config = tiny_config(**{"training.sample_freq": 4, "sampling.steps": 500})
    with pytest.raises(loop.TrainingInterrupted) as stop:
        run_lib.train(config, tmp_path)
    assert stop.value.step == 5 and stop.value.signum == signal.SIGTERM
    assert len(evaluations) == 3  # not 501
    assert checkpoint.step_of(checkpoint.latest(tmp_path / "checkpoints")) == 5
    assert not (tmp_path / "samples" / "step_00000004.png").exists()


def test_tolerances_below_the_dtype_resolution_are_refused_at_once():
    sde, mixture = VPSDE(), oracle.ring(8, 1.0, 0.05)
    x = torch.zeros(4, 2)
    with pytest.raises(ValueError, match="rtol=1e-12 is below what float32 can resolve"):
        samplers.sample("probability_flow", sde, mixture.score_fn(sde), x_T=x, rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match="rtol=1e-12 is below what float32 can resolve"):
        likelihood.log_likelihood(sde, mixture.score_fn(sde), x, rtol=1e-12, atol=1e-12)
    likelihood.log_likelihood(sde, mixture.score_fn(sde), x.double(), rtol=1e-12, atol=1e-12, method="rk4", steps=2)


@pytest.mark.parametrize(
    "override, message",
    [
        ({"sampling.probability_flow.rtol": 1e-12}, "config.sampling.probability_flow: rtol=1e-12 is below what float32"),
        ({"likelihood.rtol": 1e-12}, "config.likelihood: rtol=1e-12 is below what float32 can resolve: use rtol >= 1.2e-09"),
        ({"sampling.eps": 2.0}, "config.sampling.eps must be < T = 1, the end time of SDE 'vpsde', got 2.0"),
        ({"training.eps": 1.0}, "config.training.eps must be < T = 1"),
        ({"sde.name": "edmsde", "sde.sigma_max": 80.0, "sampling.eps": 100.0}, "config.sampling.eps must be < T = 80"),
        ({"sampling.steps": 10**9}, "config.sampling.steps must lie in [1, 1000000]"),
    ],
)
def test_what_is_knowable_before_work_starts_is_validated(override, message):
    with pytest.raises(ValueError) as error:
        config_schema.check(tiny_config(**override))
    assert message in str(error.value)


def test_times_are_checked_against_each_sdes_own_end_time():
    config_schema.check(tiny_config(**{"sde.name": "edmsde", "sde.sigma_max": 80.0, "sampling.eps": 2.0}))  # T = 80


@pytest.mark.parametrize("kind", ["dev_zero", "fifo", "huge"])
def test_pointer_files_are_read_bounded(trained, tmp_path, kind):
    """`latest` as a link to /dev/zero was read without end; as a FIFO it blocked for ever."""
    run = copy_run(trained, tmp_path / "run")
    pointer = run / "checkpoints" / "latest"
    pointer.unlink()
    if kind == "dev_zero":
        pointer.symlink_to("/dev/zero")
    elif kind == "fifo":
        os.mkfifo(pointer)
    else:
        pointer.write_text("step_00000012" + " " * 10**6)
    assert checkpoint.latest(run / "checkpoints").name == "step_00000012"
    with pytest.raises(files.UnreadableFileError, match="latest"):
        files.read_text(pointer)


def test_an_npz_that_declares_more_than_memory_is_refused_before_decompressing(tmp_path, monkeypatch):
    path = tmp_path / "big.npz"
    np.savez_compressed(path, images=np.zeros((4096, 64, 64, 1), np.uint8))  # 16 MiB of zeros in a 20 KB file
    monkeypatch.setattr(data, "available_memory_bytes", lambda: 64 * 2**20)
    decompressed = []
    real = np.lib.npyio.NpzFile.__getitem__
    monkeypatch.setattr(np.lib.npyio.NpzFile, "__getitem__", lambda self, key: decompressed.append(key) or real(self, key))
    with pytest.raises(MemoryError, match=r"'images' of shape \(4096, 64, 64, 1\) needs 0.2 GiB .* than the 0.1 GiB available"):
        data.load_npz(path)
    assert decompressed == []


def test_an_npz_member_shorter_than_its_header_declares_is_corrupt(tmp_path):
    path = tmp_path / "lying.npz"
    with zipfile.ZipFile(path, "w") as archive:
        with archive.open("images.npy", "w") as handle:
            np.lib.format.write_array_header_1_0(handle, {"descr": "|u1", "fortran_order": False, "shape": (2**20, 64, 64, 3)})
            handle.write(bytes(1000))
    with pytest.raises(ValueError, match=r"declares shape \(1048576, 64, 64, 3\).*holds only 1000 bytes"):
        data.load_npz(path)


# -- 10. checkpoint identity is cross-checked ------------------------------------------------------------
def test_a_symlinked_step_directory_is_ignored_and_never_causes_rotation(trained, tmp_path):
    run = copy_run(trained, tmp_path / "run")
    root = run / "checkpoints"
    foreign = copy_run(root / "step_00000012", tmp_path / "foreign")
    (root / "step_99999999").symlink_to(foreign, target_is_directory=True)
    assert checkpoint.latest(root).name == "step_00000012"
    run_lib.train(tiny_config(**{"training.n_steps": 13, "training.keep_checkpoints": 2}), run)
    assert [p.name for p in checkpoint.list_complete(root)] == ["step_00000012", "step_00000013"]
    assert (foreign / checkpoint.MARKER).exists()


def test_a_marker_that_disagrees_with_its_name_is_damaged(trained, tmp_path):
    run = copy_run(trained, tmp_path / "run")
    (run / "checkpoints" / "step_00000012" / checkpoint.MARKER).write_text("6")
    with pytest.raises(checkpoint.DamagedCheckpointError, match="its marker says step 6, its name step 12"):
        checkpoint.load_weights(run / "checkpoints" / "step_00000012", run_lib.Experiment(tiny_config()).model)
    assert checkpoint.latest(run / "checkpoints").name == "step_00000006"


def test_temporary_pointer_files_are_cleaned_and_complete_temporaries_recovered(trained, tmp_path):
    run = copy_run(trained, tmp_path / "run")
    root = run / "checkpoints"
    (root / ".tmp-latest-4242").write_text("step_00000012\n")
    (root / "step_00000012").rename(root / ".tmp-step_00000012-4242")  # killed between the two renames of a rewrite
    removed = checkpoint.clean_partial(root)
    assert [p.name for p in removed] == [".tmp-latest-4242"]
    assert checkpoint.latest(root).name == "step_00000012"


# -- 11. library misuse is caught at the sampler's entry -------------------------------------------------
SDE = VPSDE()


def test_a_score_of_the_wrong_shape_is_refused():
    with pytest.raises(ValueError, match=r"score_fn returned shape \(1, 2\) for x of shape \(8, 2\)"):
        samplers.sample("ddim", SDE, lambda x, t: x.mean(0, keepdim=True), (8, 2), steps=4)


def test_a_nan_score_is_named_at_the_first_evaluation():
    with pytest.raises(FloatingPointError, match="NaN or infinity at its first evaluation"):
        samplers.sample("euler_maruyama", SDE, lambda x, t: torch.full_like(x, float("nan")), (8, 2), steps=4)


@pytest.mark.parametrize("name", ["ddim", "ancestral", "probability_flow"])
def test_a_score_that_turns_nan_later_is_not_returned_as_samples(name):
    def score(x, t):
        return torch.where(t[:, None] < 0.5, torch.full_like(x, float("inf")), -x)

    with pytest.raises(FloatingPointError, match="(samples are NaN or infinite|NaN or infinity there)"):
        samplers.sample(name, SDE, score, (8, 2), steps=10, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("name", ["ddim", "heun", "euler_maruyama"])
def test_a_generator_list_of_another_length_is_refused(name):
    generators = [torch.Generator().manual_seed(k) for k in range(3)]
    with pytest.raises(ValueError, match="got 3 generators for a batch of 8 samples"):
        samplers.sample(name, SDE, lambda x, t: -x, x_T=torch.zeros(8, 2), steps=4, generator=generators)


def test_an_absurd_step_count_is_refused_before_allocating():
    with pytest.raises(ValueError, match="steps=1000000000 exceeds the limit of 1,000,000"):
        samplers.sample("ddim", SDE, lambda x, t: -x, (2, 2), steps=10**9)
