"""Training checkpoints that survive interruption and load without executing code.

Layout of one checkpoint, a directory `<root>/step_<00000100>/`:

    model.safetensors   the network's state_dict (parameters and buffers)
    ema.safetensors     the EMA shadow parameters
    state.pt            step, optimizer state, EMA counters and the caller's `extra` training state
                        (gradient-scaler state, data order, ...): plain tensors, numbers and strings
                        only, read back with torch.load(weights_only=True)
    config.json         the resolved run configuration
    COMPLETE            written last: a directory without it is an interrupted write

and `<root>/latest`, a text file naming the newest complete checkpoint, replaced atomically only
after a checkpoint is complete.

A checkpoint is written into a hidden temporary directory (each file flushed to disk with fsync)
and renamed into place only once complete, so a crash mid-write never leaves a half checkpoint
under a real name; `latest` picks the newest directory that has the marker, and `clean_partial`
removes stale temporaries. `save` refuses weights that are not finite, so a diverged run never
replaces a good checkpoint with NaNs. Rotation keeps the newest `keep` complete checkpoints and
never deletes the one just written.

Training uses two roots (see scoresde.training): `checkpoints/` for the kept snapshots and
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
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from scoresde.models.ema import ExponentialMovingAverage

MARKER = "COMPLETE"
LATEST = "latest"
_NAME = re.compile(r"^step_(\d+)$")
_TMP_PREFIX = ".tmp-"


def _contiguous(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().contiguous().cpu() for k, v in state.items()}


class NonFiniteWeightsError(ValueError):
    """The weights to be saved contain NaN or infinity; nothing was written."""


def _check_finite(step: int, **states: dict[str, torch.Tensor]) -> None:
    for kind, state in states.items():
        for name, value in state.items():
            if value.is_floating_point() and not torch.isfinite(value).all():
                raise NonFiniteWeightsError(
                    f"refusing to save a checkpoint at step {step}: {kind} tensor {name!r} is not finite"
                )


def _fsync(path: Path) -> None:
    """Flush a file (or a directory's entries) to disk, so a power loss cannot reorder the writes."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError:  # some file systems do not support fsync on directories
        pass
    finally:
        os.close(fd)


def _write_latest(root: Path, name: str) -> None:
    tmp = root / f"{_TMP_PREFIX}{LATEST}-{os.getpid()}"
    tmp.write_text(name + "\n")
    _fsync(tmp)
    os.replace(tmp, root / LATEST)


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
    """
    root = Path(root)
    model_state, ema_state = _contiguous(model.state_dict()), _contiguous(ema.shadow)
    _check_finite(step, model=model_state, ema=ema_state)
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step_{step:08d}"
    tmp = root / f"{_TMP_PREFIX}{final.name}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    save_file(model_state, str(tmp / "model.safetensors"))
    save_file(ema_state, str(tmp / "ema.safetensors"))
    state = {"step": step, "optimizer": optimizer.state_dict(), "ema_decay": ema.decay,
             "ema_num_updates": ema.num_updates, "extra": extra or {}}
    torch.save(state, tmp / "state.pt")
    (tmp / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True))
    for name in ("model.safetensors", "ema.safetensors", "state.pt", "config.json"):
        _fsync(tmp / name)
    (tmp / MARKER).write_text(str(step))
    _fsync(tmp / MARKER)
    _fsync(tmp)
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    _fsync(root)
    _write_latest(root, final.name)
    _rotate(root, keep)
    return final


def list_complete(root: str | Path) -> list[Path]:
    """Complete checkpoint directories under `root`, oldest first."""
    root = Path(root)
    if not root.is_dir():
        return []
    found = []
    for d in root.iterdir():
        match = _NAME.match(d.name)
        if match and d.is_dir() and (d / MARKER).exists():
            found.append((int(match.group(1)), d))
    return [d for _, d in sorted(found)]


def latest(root: str | Path) -> Path | None:
    """The newest complete checkpoint under `root`, or None.

    The `latest` pointer is followed when it names a complete checkpoint and none newer exists (a
    newer one means the pointer's update was interrupted; a complete directory is always safe).
    """
    root = Path(root)
    complete = list_complete(root)
    pointer = root / LATEST
    if pointer.exists():
        named = root / pointer.read_text().strip()
        if named in complete and named == complete[-1]:
            return named
    return complete[-1] if complete else None


def newest(*roots: str | Path) -> Path | None:
    """The complete checkpoint with the highest step across several roots (ties: the first root)."""
    found = [(step_of(d), -i, d) for i, root in enumerate(roots) if (d := latest(root)) is not None]
    return max(found)[2] if found else None


def clean_partial(root: str | Path) -> list[Path]:
    """Remove temporaries and marker-less step directories left by interrupted writes."""
    root = Path(root)
    removed = []
    if root.is_dir():
        for d in root.iterdir():
            if d.is_dir() and (d.name.startswith(_TMP_PREFIX) or (_NAME.match(d.name) and not (d / MARKER).exists())):
                shutil.rmtree(d, ignore_errors=True)
                removed.append(d)
    return removed


def _rotate(root: Path, keep: int) -> None:
    complete = list_complete(root)
    for d in complete[: max(len(complete) - max(keep, 1), 0)]:
        shutil.rmtree(d, ignore_errors=True)


def _load_tensors(path: Path) -> dict[str, torch.Tensor]:
    if not path.exists():
        raise FileNotFoundError(f"checkpoint file missing: {path}")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError) as err:
        raise ValueError(f"corrupt checkpoint file {path}: {err}") from None


def load_weights(directory: str | Path, model: nn.Module, *, ema: bool = False) -> None:
    """Load the model weights (or the EMA weights into the model) strictly.

    Raises:
        FileNotFoundError: missing directory or file.
        ValueError: corrupt file, or keys/shapes that do not match the model (named).
    """
    directory = Path(directory)
    if not (directory / MARKER).exists():
        raise FileNotFoundError(f"no complete checkpoint at {directory}")
    state = _load_tensors(directory / "model.safetensors")
    if ema:
        state.update(_load_tensors(directory / "ema.safetensors"))
    missing, unexpected = set(model.state_dict()) - set(state), set(state) - set(model.state_dict())
    if missing or unexpected:
        raise ValueError(f"checkpoint {directory} does not fit the model: missing {sorted(missing)}, unexpected {sorted(unexpected)}")
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

    Returns:
        (step, extra): the step it was written at and the `extra` state passed to `save`.
    """
    directory = Path(directory)
    state = read_state(directory)  # first: a corrupt or unsafe file fails before anything changes
    load_weights(directory, model)
    ema.load_state_dict({"shadow": _load_tensors(directory / "ema.safetensors"), "decay": 0.0, "num_updates": 0})
    optimizer.load_state_dict(state["optimizer"])
    ema.decay, ema.num_updates = float(state["ema_decay"]), int(state["ema_num_updates"])
    return int(state["step"]), state.get("extra", {})


def step_of(directory: str | Path) -> int:
    """The training step a complete checkpoint was written at (kept in its marker)."""
    marker = Path(directory) / MARKER
    if not marker.exists():
        raise FileNotFoundError(f"no complete checkpoint at {directory}")
    return int(marker.read_text())


def read_config(directory: str | Path) -> dict:
    """The configuration saved with a checkpoint."""
    return json.loads((Path(directory) / "config.json").read_text())
