"""Training checkpoints that survive interruption and load without executing code.

Layout of one checkpoint, a directory `<root>/step_<00000100>/`:

    model.safetensors   the network's state_dict (parameters and buffers)
    ema.safetensors     the EMA shadow parameters
    state.pt            step, optimizer state, EMA counters (plain tensors and numbers only;
                        read back with torch.load(weights_only=True))
    config.json         the resolved run configuration
    COMPLETE            written last: a directory without it is an interrupted write

A checkpoint is written into a hidden temporary directory and renamed into place only once
complete, so a crash mid-write never leaves a half checkpoint under a real name; `latest` picks the
newest directory that has the marker, and stale temporaries are removed by `clean_partial`.
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
_NAME = re.compile(r"^step_(\d+)$")
_TMP_PREFIX = ".tmp-"


def _contiguous(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().contiguous().cpu() for k, v in state.items()}


def save(
    root: str | Path,
    step: int,
    model: nn.Module,
    ema: ExponentialMovingAverage,
    optimizer: torch.optim.Optimizer,
    config: dict,
    *,
    keep: int = 3,
) -> Path:
    """Write a complete checkpoint for `step` atomically and keep only the newest `keep`.

    Returns:
        The checkpoint directory.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step_{step:08d}"
    tmp = root / f"{_TMP_PREFIX}{final.name}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    save_file(_contiguous(model.state_dict()), str(tmp / "model.safetensors"))
    save_file(_contiguous(ema.shadow), str(tmp / "ema.safetensors"))
    state = {"step": step, "optimizer": optimizer.state_dict(), "ema_decay": ema.decay, "ema_num_updates": ema.num_updates}
    torch.save(state, tmp / "state.pt")
    (tmp / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True))
    (tmp / MARKER).write_text(str(step))
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
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
    """The newest complete checkpoint under `root`, or None."""
    complete = list_complete(root)
    return complete[-1] if complete else None


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


def restore(
    directory: str | Path, model: nn.Module, ema: ExponentialMovingAverage, optimizer: torch.optim.Optimizer
) -> int:
    """Restore model, EMA and optimizer from a checkpoint directory; returns its step."""
    directory = Path(directory)
    load_weights(directory, model)
    ema.load_state_dict({"shadow": _load_tensors(directory / "ema.safetensors"), "decay": 0.0, "num_updates": 0})
    try:
        state = torch.load(directory / "state.pt", map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises several types for corrupt or unsafe files
        raise ValueError(f"cannot read training state {directory / 'state.pt'}: {err}") from None
    optimizer.load_state_dict(state["optimizer"])
    ema.decay, ema.num_updates = float(state["ema_decay"]), int(state["ema_num_updates"])
    return int(state["step"])


def step_of(directory: str | Path) -> int:
    """The training step a complete checkpoint was written at (kept in its marker)."""
    marker = Path(directory) / MARKER
    if not marker.exists():
        raise FileNotFoundError(f"no complete checkpoint at {directory}")
    return int(marker.read_text())


def read_config(directory: str | Path) -> dict:
    """The configuration saved with a checkpoint."""
    return json.loads((Path(directory) / "config.json").read_text())
