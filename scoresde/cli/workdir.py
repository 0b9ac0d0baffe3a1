"""The work directory of a run: checked before any work starts, held by one run at a time.

`hold(workdir, mode)` is entered by the command line around every mode:

* the path must be non-empty (``--workdir=`` would otherwise train into the current directory),
  must be or become a directory, and must be writable: a probe file is written, flushed and
  removed, so a read-only or full work directory fails at once, not after hours of training or
  sampling;
* an exclusive lock (``flock`` on ``<workdir>/.lock``) is taken for the whole run. A second run on
  the same work directory, in this process or any other on a host sharing the file system, gets
  `WorkdirInUseError` naming the holder's mode, PID, host and start time, instead of deleting the
  first run's temporary files, rewriting its log and crashing it. The operating system releases
  the lock when the holder exits, however it exits (SIGKILL included), so a lock is never stale.

Under torchrun only global rank 0 takes the lock (the other ranks are part of the same run).
"""

from __future__ import annotations

import contextlib
import datetime
import errno
import json
import os
import socket
from pathlib import Path
from typing import Iterator

from absl import logging

from scoresde import files

try:
    import fcntl
except ImportError:  # Windows: no flock; runs proceed unlocked (with a warning)
    fcntl = None  # type: ignore[assignment]

LOCK_FILE = ".lock"


class WorkdirInUseError(OSError):
    """Another run holds the work directory."""


def check(workdir: str | os.PathLike | None) -> Path:
    """The work directory as a Path, created and checked writable.

    Raises:
        ValueError: an empty path.
        OSError: the path is a file, or cannot be created or written (the message names it).
    """
    if workdir is None or not str(workdir).strip():
        raise ValueError("--workdir is empty: name a directory for the run's checkpoints, logs and samples")
    path = Path(workdir)
    if path.exists() and not path.is_dir():
        raise NotADirectoryError(f"work directory {path} is a file, not a directory")
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".write-test-{os.getpid()}"
        with open(probe, "wb") as handle:
            handle.write(b"scoresde write test\n")
            handle.flush()
            os.fsync(handle.fileno())
        probe.unlink()
    except OSError as err:
        raise files.os_error(type(err), err.errno, f"work directory {path} is not writable: {err.strerror or err}") from None
    return path


def holder(workdir: str | os.PathLike) -> str:
    """Who holds (or last held) the work directory, as written in its lock file."""
    try:
        info = json.loads(files.read_text(Path(workdir) / LOCK_FILE))
        return f"--mode {info['mode']} (PID {info['pid']} on host {info['host']}, since {info['since']})"
    except (OSError, ValueError, KeyError, TypeError):
        return "another run (its lock file names no holder)"


@contextlib.contextmanager
def hold(workdir: str | os.PathLike | None, mode: str, *, exclusive: bool = True) -> Iterator[Path]:
    """Check the work directory (`check`) and hold its lock until the block exits.

    Args:
        workdir: the run's directory.
        mode: the mode of this run, written into the lock file for the error of a second run.
        exclusive: take the lock (False: only check, for ranks other than 0 under torchrun).

    Raises:
        WorkdirInUseError: another run holds it.
        ValueError, OSError: see `check`.
    """
    path = check(workdir)
    if not exclusive:
        yield path
        return
    if fcntl is None:
        logging.warning("no file locks on this platform: nothing stops a second run on %s", path)
        yield path
        return
    handle = open(path / LOCK_FILE, "a+")
    try:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise files.os_error(
                WorkdirInUseError,
                errno.EBUSY,
                f"work directory {path} is in use by {holder(path)}; wait for that run to end, stop it, "
                "or use another --workdir (to sample from a running training, give "
                "--config.sampling.checkpoint a checkpoint of it and another --workdir)",
            ) from None
        since = datetime.datetime.now().isoformat(timespec="seconds")
        handle.seek(0)
        handle.truncate()
        handle.write(json.dumps({"mode": mode, "pid": os.getpid(), "host": socket.gethostname(), "since": since}) + "\n")
        handle.flush()
        yield path
    finally:
        handle.close()  # releases the lock
