"""Training checkpoints that survive interruption and load without executing code.

Layout of one checkpoint, a directory `<root>/step_<00000100>/`:

    model.safetensors   the network's state_dict (parameters and buffers)
    ema.safetensors     the EMA shadow parameters
    state.pt            step, optimizer state, EMA counters and the caller's `extra` training state
                        (gradient-scaler state, data order, ...): plain tensors, numbers and strings
                        only, read back with torch.load(weights_only=True)
    config.json         the resolved run configuration
    COMPLETE            written last, holding the step: a directory without it is an interrupted write

and `<root>/latest`, a text file naming the newest complete checkpoint, replaced atomically only
after a checkpoint is complete.

A checkpoint is written into a hidden temporary directory (each file flushed to disk with fsync)
and renamed into place only once complete, so a crash mid-write never leaves a half checkpoint
under a real name; `latest` picks the newest directory that has the marker, and `clean_partial`
removes stale temporaries (and moves a complete one whose final rename was interrupted into
place). `save` refuses weights that are not finite, so a diverged run never replaces a good
checkpoint with NaNs, and loading refuses them too, so a checkpoint damaged after the fact is never
sampled from or trained on. A write that fails (full disk, read-only directory) raises
`CheckpointWriteError` naming the directory and leaves the earlier checkpoints as they were.
Rotation keeps the newest `keep` complete checkpoints and never deletes the one just written.

A checkpoint's identity is checked wherever it is read: a `step_<k>` entry must be a real
directory (a symbolic link of that name is ignored, so rotation can never delete real checkpoints
in its favour), its marker must hold the step of its name, and its `state.pt` the same step; an
entry that disagrees is reported as damaged and never used. Pointer and marker files are read as
small regular files only (`scoresde.files`): a `latest` that is a FIFO, a directory or a link to
`/dev/zero` is ignored with a warning, not read forever.

Training uses two roots (see scoresde.train.loop): `checkpoints/` for the kept snapshots and
`checkpoints-meta/` for a single preemption checkpoint written more often (as score_sde does);
`newest` picks the newest complete checkpoint across both.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import torch
from absl import logging
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from scoresde import files
from scoresde.models.ema import ExponentialMovingAverage

MARKER = "COMPLETE"
LATEST = "latest"
_NAME = re.compile(r"^step_(\d+)$")
_TMP_PREFIX = ".tmp-"
_TMP_CHECKPOINT = re.compile(r"^\.tmp-(step_(\d+))-\d+$")


class NonFiniteWeightsError(ValueError):
    """Weights holding NaN or infinity: refused when saving (nothing is written) and when loading."""


class DamagedCheckpointError(ValueError):
    """A checkpoint whose name, marker and stored step disagree, or whose marker cannot be read."""


class CheckpointWriteError(OSError):
    """Writing a checkpoint failed (full disk, read-only directory, ...); earlier ones are intact."""


def _contiguous(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().contiguous().cpu() for k, v in state.items()}


def _non_finite(state: dict) -> str | None:
    """The name of the first floating-point tensor of `state` holding NaN or infinity, else None."""
    for name, value in state.items():
        if torch.is_tensor(value) and value.is_floating_point() and not torch.isfinite(value).all():
            return str(name)
    return None


def _check_finite(step: int, **states: dict[str, torch.Tensor]) -> None:
    for kind, state in states.items():
        name = _non_finite(state)
        if name is not None:
            raise NonFiniteWeightsError(f"refusing to save a checkpoint at step {step}: {kind} tensor {name!r} is not finite")


def _write_latest(root: Path, name: str) -> None:
    pointer = root / LATEST
    if pointer.is_dir() and not pointer.is_symlink():
        shutil.rmtree(pointer)  # `latest` is ours and a file; a directory there would block every update
    files.write_atomic(pointer, name + "\n")


def save(
    root: str | Path,
    step: int,
    model: nn.Module,
    ema: ExponentialMovingAverage,
    optimizer: torch.optim.Optimizer,
    config: dict,
    *,
    keep: int = 3,
    extra: dict | None = None,
) -> Path:
    """Write a complete checkpoint for `step` atomically and keep only the newest `keep`.

    Args:
        root: the directory holding the step_<k> checkpoints.
        step: the number of optimizer steps done.
        model, ema, optimizer: the training state.
        config: the resolved configuration (JSON-serialisable).
        keep: how many complete checkpoints to keep (at least the one just written).
        extra: more training state to store in state.pt: tensors, numbers, strings, and lists /
            dicts of those (anything torch.load(weights_only=True) reads back).

    Returns:
        The checkpoint directory.

    Raises:
        NonFiniteWeightsError: a model or EMA weight is NaN or infinite (nothing is written).
        CheckpointWriteError: the write failed (the message names the directory and the reason;
            the partial write is removed, earlier checkpoints are untouched).
    """
    root = Path(root)
    model_state, ema_state = _contiguous(model.state_dict()), _contiguous(ema.shadow)
    _check_finite(step, model=model_state, ema=ema_state)
    final = root / f"step_{step:08d}"
    tmp = root / f"{_TMP_PREFIX}{final.name}-{os.getpid()}"
    state = {
        "step": step,
        "optimizer": optimizer.state_dict(),
        "ema_decay": ema.decay,
        "ema_num_updates": ema.num_updates,
        "extra": extra or {},
    }
    try:
        root.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        save_file(model_state, str(tmp / "model.safetensors"))
        save_file(ema_state, str(tmp / "ema.safetensors"))
        with open(tmp / "state.pt", "wb") as handle:  # a file object: a full disk raises OSError, not a RuntimeError
            torch.save(state, handle)
        (tmp / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True))
        for name in ("model.safetensors", "ema.safetensors", "state.pt", "config.json"):
            files.fsync(tmp / name)
        (tmp / MARKER).write_text(str(step))
        files.fsync(tmp / MARKER)
        files.fsync(tmp)
        _replace_directory(tmp, final)
        files.fsync(root)
        _write_latest(root, final.name)
    except (OSError, SafetensorError) as err:
        shutil.rmtree(tmp, ignore_errors=True)
        number, reason = getattr(err, "errno", None), getattr(err, "strerror", None) or str(err)
        rust_io = re.search(r"I/O error: (.*) \(os error (\d+)\)", str(err))  # safetensors' wording of an OSError
        if rust_io:
            reason, number = rust_io.group(1), int(rust_io.group(2))
        raise files.os_error(
            CheckpointWriteError,
            number,
            f"cannot write the checkpoint of step {step} into {root}: {reason}; the earlier checkpoints are untouched",
        ) from None
    _rotate(root, keep)
    return final


def _replace_directory(tmp: Path, final: Path) -> None:
    """Move the complete `tmp` to `final`. An existing `final` (the same step written again) is
    moved aside first and deleted after, so a crash in between still leaves the complete `tmp`,
    which `clean_partial` moves into place."""
    if final.is_symlink() or final.is_file():
        final.unlink()
    elif final.exists():
        aside = final.with_name(f"{_TMP_PREFIX}replaced-{final.name}-{os.getpid()}")
        os.replace(final, aside)
        os.replace(tmp, final)
        shutil.rmtree(aside, ignore_errors=True)
        return
    os.replace(tmp, final)


# -- identity ------------------------------------------------------------------------------------
def _marker_step(directory: Path) -> int:
    """The step written in a checkpoint's marker.

    Raises:
        FileNotFoundError: no marker.
        DamagedCheckpointError: the marker is not a small regular file holding a non-negative integer.
    """
    marker = directory / MARKER
    try:
        text = files.read_text(marker).strip()
    except files.UnreadableFileError as err:
        raise DamagedCheckpointError(f"damaged checkpoint {directory}: {err}") from None
    if not text.isdigit():
        raise DamagedCheckpointError(
            f"damaged checkpoint {directory}: its marker {marker} should hold the step number, holds {text[:40]!r}"
        )
    return int(text)


def check_identity(directory: str | Path) -> int:
    """The step of a complete checkpoint directory, after checking that it is one.

    Raises:
        FileNotFoundError: no such directory, or no marker in it.
        DamagedCheckpointError: a marker that cannot be read, or that disagrees with a `step_<k>` name.
    """
    directory = Path(directory)
    if not (directory / MARKER).exists():
        raise FileNotFoundError(f"no complete checkpoint at {directory}")
    step = _marker_step(directory)
    match = _NAME.match(directory.name)
    if match and int(match.group(1)) != step:
        raise DamagedCheckpointError(
            f"damaged checkpoint {directory}: its marker says step {step}, its name step {int(match.group(1))}"
        )
    return step


def _identity_problem(directory: Path) -> str | None:
    """Why a `step_<k>` entry is not a usable complete checkpoint (None: it is one)."""
    if directory.is_symlink():
        return "is a symbolic link (checkpoints are real directories; it is never used nor rotated)"
    if not directory.is_dir():
        return "is not a directory"
    try:
        check_identity(directory)
    except FileNotFoundError:
        return "has no marker (an interrupted write)"
    except (DamagedCheckpointError, OSError) as err:
        return str(err).replace(f"damaged checkpoint {directory}: ", "")
    return None


def list_complete(root: str | Path) -> list[Path]:
    """Complete checkpoint directories under `root`, oldest first.

    Left out: entries without a marker (interrupted writes), and with a warning, symbolic links
    and directories whose marker disagrees with their name or cannot be read (nothing is deleted).
    """
    root = Path(root)
    if not root.is_dir():
        return []
    found = []
    for d in root.iterdir():
        match = _NAME.match(d.name)
        if not match:
            continue
        problem = _identity_problem(d)
        if problem is None:
            found.append((int(match.group(1)), d))
        elif "interrupted write" not in problem:
            logging.warning("ignoring checkpoint %s: it %s", d, problem)
    return [d for _, d in sorted(found)]


def latest(root: str | Path) -> Path | None:
    """The newest complete checkpoint under `root`, or None.

    The `latest` pointer is followed when it names a complete checkpoint and none newer exists (a
    newer one means the pointer's update was interrupted; a complete directory is always safe). A
    pointer that is not a small regular file is ignored with a warning.
    """
    root = Path(root)
    complete = list_complete(root)
    pointer = root / LATEST
    if pointer.exists() or pointer.is_symlink():
        try:
            named = root / files.read_text(pointer).strip()
        except (files.UnreadableFileError, OSError) as err:
            logging.warning("ignoring the checkpoint pointer %s (%s); using the newest complete checkpoint", pointer, err)
        else:
            if named in complete and named == complete[-1]:
                return named
    return complete[-1] if complete else None


def newest(*roots: str | Path) -> Path | None:
    """The complete checkpoint with the highest step across several roots (ties: the first root)."""
    found = [(step_of(d), -i, d) for i, root in enumerate(roots) if (d := latest(root)) is not None]
    return max(found)[2] if found else None


def clean_partial(root: str | Path) -> list[Path]:
    """Remove what interrupted writes left behind: temporary files and directories, and `step_<k>`
    directories without a marker. A temporary checkpoint that is complete (marker written, only
    the final rename missing) is moved into place instead, when its name is free.

    Call it only while holding the work directory (`scoresde.cli.workdir.hold`): a live writer's
    temporaries look the same as a dead one's.

    Returns:
        The paths removed.
    """
    root = Path(root)
    removed: list[Path] = []
    if not root.is_dir():
        return removed
    for d in sorted(root.iterdir()):
        if d.is_symlink():
            continue
        pending = _TMP_CHECKPOINT.match(d.name)
        if pending and d.is_dir() and not (root / pending.group(1)).exists() and (d / MARKER).exists():
            try:
                if _marker_step(d) == int(pending.group(2)):
                    os.replace(d, root / pending.group(1))
                    logging.info("recovered the complete checkpoint %s (its final rename had been interrupted)", d)
                    continue
            except (DamagedCheckpointError, OSError):
                pass
        if d.name.startswith(_TMP_PREFIX) or (_NAME.match(d.name) and d.is_dir() and not (d / MARKER).exists()):
            if d.is_dir():
                shutil.rmtree(d, ignore_errors=True)
            else:
                d.unlink(missing_ok=True)
            removed.append(d)
    return removed


def _rotate(root: Path, keep: int) -> None:
    complete = list_complete(root)
    for d in complete[: max(len(complete) - max(keep, 1), 0)]:
        shutil.rmtree(d, ignore_errors=True)


# -- loading -------------------------------------------------------------------------------------
def _load_tensors(path: Path) -> dict[str, torch.Tensor]:
    """A safetensors file whose floating-point tensors are all finite.

    Raises:
        FileNotFoundError: no such file.
        ValueError: a corrupt file; `NonFiniteWeightsError`: a tensor holding NaN or infinity (named).
    """
    if not path.exists():
        raise FileNotFoundError(f"checkpoint file missing: {path}")
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError) as err:
        raise ValueError(f"corrupt checkpoint file {path}: {err}") from None
    name = _non_finite(state)
    if name is not None:
        raise NonFiniteWeightsError(
            f"refusing to load {path}: tensor {name!r} holds NaN or infinity "
            "(the weights were damaged after they were saved; use an earlier checkpoint)"
        )
    return state


def load_weights(directory: str | Path, model: nn.Module, *, ema: bool = False) -> None:
    """Load the model weights (or the EMA weights into the model) strictly.

    Raises:
        FileNotFoundError: missing directory or file.
        ValueError: corrupt file, keys/shapes that do not match the model (named), a damaged
            checkpoint (`DamagedCheckpointError`), weights that are not finite (`NonFiniteWeightsError`).
    """
    directory = Path(directory)
    check_identity(directory)
    state = _load_tensors(directory / "model.safetensors")
    if ema:
        state.update(_load_tensors(directory / "ema.safetensors"))
    missing, unexpected = set(model.state_dict()) - set(state), set(state) - set(model.state_dict())
    if missing or unexpected:
        raise ValueError(
            f"checkpoint {directory} does not fit the model: missing {sorted(missing)}, unexpected {sorted(unexpected)}"
        )
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise ValueError(f"checkpoint {directory} does not fit the model: {err}") from None


def read_state(directory: str | Path) -> dict:
    """state.pt of a checkpoint, read with weights_only=True (no code runs).

    Raises:
        FileNotFoundError: no such file.
        ValueError: a truncated or corrupt file, or one holding pickled objects other than
            tensors and plain containers (named in the message).
    """
    path = Path(directory) / "state.pt"
    if not path.exists():
        raise FileNotFoundError(f"checkpoint file missing: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises several types for corrupt or unsafe files
        raise ValueError(f"cannot read training state {path}: {err}") from None
    missing = {"step", "optimizer", "ema_decay", "ema_num_updates"} - set(state) if isinstance(state, dict) else {"all keys"}
    if missing:
        raise ValueError(f"training state {path} lacks {sorted(missing)}: not a checkpoint of this toolkit")
    return state


def restore(
    directory: str | Path, model: nn.Module, ema: ExponentialMovingAverage, optimizer: torch.optim.Optimizer
) -> tuple[int, dict]:
    """Restore model, EMA and optimizer from a checkpoint directory.

    Everything is checked before anything changes: the identity (name, marker and stored step
    agree), the state file's safety, the finiteness of weights, EMA and optimizer moments.

    Returns:
        (step, extra): the step it was written at and the `extra` state passed to `save`.

    Raises:
        FileNotFoundError, ValueError: see `load_weights` and `read_state`.
    """
    directory = Path(directory)
    step = check_identity(directory)
    state = read_state(directory)
    stored = state["step"]
    if not isinstance(stored, int) or isinstance(stored, bool) or stored != step:
        raise DamagedCheckpointError(
            f"damaged checkpoint {directory}: state.pt holds step {stored!r} but the "
            f"checkpoint is of step {step}; refusing to resume from it"
        )
    for index, per_param in state["optimizer"].get("state", {}).items():
        name = _non_finite(per_param)
        if name is not None:
            raise NonFiniteWeightsError(
                f"refusing to resume from {directory}: the optimizer's {name!r} of parameter {index} holds NaN or infinity"
            )
    shadow = _load_tensors(directory / "ema.safetensors")
    load_weights(directory, model)
    ema.load_state_dict({"shadow": shadow, "decay": 0.0, "num_updates": 0})
    optimizer.load_state_dict(state["optimizer"])
    ema.decay, ema.num_updates = float(state["ema_decay"]), int(state["ema_num_updates"])
    return step, state.get("extra", {})


def step_of(directory: str | Path) -> int:
    """The training step a complete checkpoint was written at (kept in its marker; see `check_identity`)."""
    return check_identity(directory)


def read_config(directory: str | Path) -> dict | None:
    """The configuration saved with a checkpoint (None for a checkpoint written without one).

    Raises:
        ValueError: a config.json that is not a small file holding a JSON object (named).
    """
    path = Path(directory) / "config.json"
    if not path.exists():
        return None
    config = files.read_json(path)
    if not isinstance(config, dict):
        raise files.UnreadableFileError(f"{path} should hold a JSON object, holds a {type(config).__name__}")
    return config
