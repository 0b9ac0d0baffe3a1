"""Small files read without trusting them and written without ever leaving half a file behind.

Every file the toolkit reads back from a work directory (checkpoint pointers and markers, saved
configs, JSON-lines logs) may have been damaged by a crash, a full disk, a clumsy user or a hostile
one. The readers here therefore

* open only regular files (a FIFO would block forever, a symbolic link to ``/dev/zero`` would be
  read without end): the file is opened without blocking and checked with ``fstat`` on the open
  descriptor, so there is no window between the check and the read;
* read at most a stated number of bytes and refuse a longer file by name;
* turn every failure into a ``ValueError`` or ``OSError`` whose message names the file.

Writers go through a temporary file in the same directory, flushed with ``fsync`` and moved into
place with ``os.replace``, so a reader sees the old content or the new one, never a truncated mix.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Iterable

POINTER_MAX_BYTES = 4096  # `latest`, `COMPLETE`: a name or a number
JSON_MAX_BYTES = 16 * 2**20  # config.json, summaries


class UnreadableFileError(ValueError):
    """A file that is not a regular file, is larger than its kind allows, or is not valid text/JSON."""


def os_error(kind: type[OSError], errno: int | None, message: str) -> OSError:
    """An OSError (subclass `kind`) whose text is `message` alone (no "[Errno n]" prefix), with `errno` set."""
    error = kind(message)
    error.errno = errno
    return error


def fsync(path: str | os.PathLike) -> None:
    """Flush a file (or a directory's entries) to disk, so a power loss cannot reorder the writes."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError:  # some file systems do not support fsync on directories
        pass
    finally:
        os.close(fd)


def read_bytes(path: str | os.PathLike, max_bytes: int) -> bytes:
    """The content of a regular file of at most `max_bytes` bytes.

    Raises:
        FileNotFoundError: no such file.
        UnreadableFileError: not a regular file (a directory, FIFO, device, socket), or too large.
    """
    path = Path(path)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except IsADirectoryError:
        raise UnreadableFileError(f"{path} is a directory, not a file") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise UnreadableFileError(f"{path} is not a regular file (a FIFO, device or socket); refusing to read it")
        if info.st_size > max_bytes:
            raise UnreadableFileError(f"{path} has {info.st_size} bytes, more than the {max_bytes} a file of its kind may have")
        with os.fdopen(fd, "rb", closefd=False) as handle:
            content = handle.read(max_bytes + 1)
    finally:
        os.close(fd)
    if len(content) > max_bytes:  # it grew while being read
        raise UnreadableFileError(f"{path} is larger than the {max_bytes} bytes a file of its kind may have")
    return content


def read_text(path: str | os.PathLike, max_bytes: int = POINTER_MAX_BYTES) -> str:
    """`read_bytes` decoded as UTF-8 (a file that is not UTF-8 is an `UnreadableFileError`)."""
    try:
        return read_bytes(path, max_bytes).decode("utf-8")
    except UnicodeDecodeError:
        raise UnreadableFileError(f"{path} is not UTF-8 text") from None


def read_json(path: str | os.PathLike, max_bytes: int = JSON_MAX_BYTES):
    """A JSON file of at most `max_bytes` bytes (invalid JSON is an `UnreadableFileError`)."""
    try:
        return json.loads(read_text(path, max_bytes))
    except json.JSONDecodeError as err:
        raise UnreadableFileError(f"{path} is not valid JSON: {err}") from None


def write_atomic(path: str | os.PathLike, content: str | bytes) -> None:
    """Replace `path` by `content` atomically: temporary file, fsync, os.replace, fsync of the directory.

    A crash at any moment leaves either the old file or the new one. The temporary file (named
    ``.tmp-<name>-<pid>`` next to the target) is removed when the write fails.
    """
    path = Path(path)
    tmp = path.with_name(f".tmp-{path.name}-{os.getpid()}")
    data = content.encode("utf-8") if isinstance(content, str) else content
    try:
        with open(tmp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync(path.parent)


# -- JSON lines -------------------------------------------------------------------------------------
def read_jsonl(path: str | os.PathLike, required: Iterable[str] = ()) -> tuple[list[dict], list[str]]:
    """The records of a JSON-lines file, and the lines that are not records.

    A record is a JSON object holding every key of `required`. Other lines (a line torn by a kill
    mid-write, text a user pasted, a bare number) are returned as the second list, so the caller
    decides whether to warn, keep or drop them; they never make the whole file unreadable. The file
    is read line by line (a long log is never held twice in memory).

    Raises:
        UnreadableFileError: the path is not a regular file.
    """
    path = Path(path)
    if not path.exists():
        return [], []
    if not path.is_file():
        raise UnreadableFileError(f"{path} is not a regular file; refusing to read it")
    required = tuple(required)
    records, bad = [], []
    with open(path, "rb") as handle:
        for raw in handle:
            line = raw.decode("utf-8", errors="replace").rstrip("\n")
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                record = None
            if isinstance(record, dict) and all(key in record for key in required):
                records.append(record)
            else:
                bad.append(line)
    return records, bad


def append_jsonl(path: str | os.PathLike, record: dict) -> None:
    """Append one record as a line; a line torn by an earlier interruption is ended first."""
    path = Path(path)
    with open(path, "ab+") as handle:
        handle.seek(0, os.SEEK_END)
        if handle.tell():
            handle.seek(-1, os.SEEK_END)
            if handle.read(1) != b"\n":
                handle.write(b"\n")
        handle.write((json.dumps(record) + "\n").encode("utf-8"))
        handle.flush()


def write_jsonl(path: str | os.PathLike, records: Iterable[dict], raw_lines: Iterable[str] = ()) -> None:
    """Replace a JSON-lines file atomically by `records` (then `raw_lines` verbatim)."""
    lines = [json.dumps(r) for r in records] + list(raw_lines)
    write_atomic(path, "".join(line + "\n" for line in lines))
