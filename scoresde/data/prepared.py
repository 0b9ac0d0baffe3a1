"""Prepared datasets: images decoded once into one memory-mappable uint8 file, read without loading.

A prepared dataset is a folder:

    images.u8      uint8 pixels, N x C x H x W, C-contiguous, no header (the manifest holds the shape)
    labels.i64     int64 class labels, N of them (only when the source has labels)
    manifest.json  written last: format and version, count, shape, grey levels, class names, the
                   source and the options it was prepared with, the files that could not be
                   decoded (skipped), and the SHA-256 of images.u8 and labels.i64
    progress.json  while preparing only: how far it got (removed when the manifest is written)

`prepare` streams: it decodes one source image at a time and appends it, so memory does not grow
with the source. It records its progress (after an fsync of the data it covers) every
`PROGRESS_EVERY` images; a preparation that is killed resumes from that record when run again
with the same source and options (rows beyond it are cut off), and a folder without a manifest is
never taken for a finished dataset. `open_prepared` refuses a folder that is unfinished, has no
manifest, or whose files do not match it (size, or with `verify` their SHA-256), naming which.

Sources (`SOURCE_KINDS`): an image folder (PNG / JPEG, labels from the top-level sub-folders, as
`load_image_folder`, decoded by the same hardened reader: a file is only decoded by the plugin of
its extension, and decompression bombs are refused from their header); an EDM-style zip of images
(read member by member, never extracted; labels from its `dataset.json`); CIFAR-10's python
batches (`cifar-10-batches-py`: the training set, read through an allow-list unpickler that
constructs numpy arrays and nothing else); and uint8 arrays in a
`.npy` file (memory-mapped) or a `.npz` file (the member streamed from the archive), laid out
N x H x W x C, N x C x H x W or N x H x W.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import math
import os
import pickle
import zipfile
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
from absl import logging

from scoresde import data, files

FORMAT, VERSION = "scoresde-prepared", 1
IMAGES_FILE, LABELS_FILE, MANIFEST_FILE, PROGRESS_FILE = "images.u8", "labels.i64", "manifest.json", "progress.json"
FILE_SOURCE_KINDS = ("zip", "npy", "npz")  # by extension
SOURCE_KINDS = ("folder", "cifar10", *FILE_SOURCE_KINDS)
# CIFAR-10's python batches (a folder holding them: cifar-10-batches-py): the training set.
CIFAR10_TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
CIFAR10_META = "batches.meta"
CIFAR10_BATCH_MAX_BYTES = 1 << 26
# What a CIFAR-10 batch pickle may construct (numpy arrays); anything else is refused by name.
PICKLE_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
}
ZIP_LABELS_FILE = "dataset.json"  # EDM's labels inside a zip: {"labels": [[file name, class], ...]} or {"labels": null}
ZIP_LABELS_MAX_BYTES = 1 << 28
ON_ERROR = ("skip", "fail")  # a source image that cannot be decoded: named in the manifest and left out, or the end
LABEL_MODES = ("auto", "none")
PROGRESS_EVERY = 256
_HASH_CHUNK = 1 << 24


class UnfinishedDatasetError(FileNotFoundError):
    """The folder holds a preparation that has not finished (or no prepared dataset at all)."""


# -- sources -------------------------------------------------------------------------------------
@dataclasses.dataclass
class _Source:
    """What preparation reads: `count` items of `shape` (C, H, W), `items(start)` yielding
    (index, name, CHW uint8 array or the ValueError that decoding raised, label or None)."""

    kind: str
    identity: dict
    count: int
    shape: tuple[int, int, int]
    class_names: list[str] | None
    items: Callable[[int], Iterator[tuple[int, str, np.ndarray | ValueError, int | None]]]


def _folder_source(root: str, resolution: int | None, grayscale: bool, labels: str) -> _Source:
    if resolution is None:
        raise ValueError("an image folder needs a resolution (the square size its images are resized and cropped to)")
    found = data._image_files(root)
    if not found:
        raise ValueError(f"no image files in {root!r} or its sub-folders (looked for {', '.join(data.IMAGE_EXTENSIONS)})")
    classes = data.folder_classes(found) if labels == "auto" else None
    mode = "L" if grayscale else "RGB"

    def items(start: int):
        for index in range(start, len(found)):
            name = "/".join(found[index])
            try:
                image: np.ndarray | ValueError = data._read_square_image(os.path.join(root, *found[index]), resolution, mode)
                image = np.ascontiguousarray(np.asarray(image).transpose(2, 0, 1))
            except ValueError as err:
                image = err
            yield index, name, image, (classes.index(found[index][0]) if classes else None)

    return _Source(
        "folder",
        {"kind": "folder", "path": os.path.abspath(root), "fingerprint": _folder_fingerprint(root, found)},
        len(found),
        (1 if grayscale else 3, resolution, resolution),
        classes,
        items,
    )


def _folder_fingerprint(root: str, found: list[tuple[str, ...]]) -> str:
    """SHA-256 of every image file's relative path, size and modification time: a folder whose files
    change gets another fingerprint (so a cache keyed by it is never stale)."""
    digest = hashlib.sha256()
    for parts in found:
        stat = os.stat(os.path.join(root, *parts))
        digest.update(f"{'/'.join(parts)}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def _file_identity(kind: str, path: str) -> dict:
    stat = os.stat(path)
    return {"kind": kind, "path": os.path.abspath(path), "bytes": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def _zip_source(path: str, resolution: int | None, grayscale: bool, labels: str) -> _Source:
    """An EDM-style zip of PNG / JPEG images (any folders inside), with its optional dataset.json labels."""
    if resolution is None:
        raise ValueError("a zip of images needs a resolution (the square size its images are resized and cropped to)")
    with zipfile.ZipFile(path) as archive:
        members = {info.filename: info for info in archive.infolist()}
        names = sorted(
            name
            for name, info in members.items()
            if not info.is_dir()
            and name.lower().endswith(data.IMAGE_EXTENSIONS)
            and not any(part.startswith(".") for part in name.split("/"))
        )
        label_of: dict[str, int] | None = None
        if labels == "auto" and ZIP_LABELS_FILE in members:
            if members[ZIP_LABELS_FILE].file_size > ZIP_LABELS_MAX_BYTES:
                raise ValueError(f"{path!r}: {ZIP_LABELS_FILE} declares {members[ZIP_LABELS_FILE].file_size} bytes; refused")
            try:
                listed = json.loads(archive.read(ZIP_LABELS_FILE)).get("labels")
                label_of = None if listed is None else {str(name): int(label) for name, label in listed}
            except (ValueError, TypeError, AttributeError) as err:
                raise ValueError(f"{path!r}: {ZIP_LABELS_FILE} is not {{'labels': [[file, class], ...]}}: {err}") from None
    if not names:
        raise ValueError(f"no image files in the zip {path!r} (looked for {', '.join(data.IMAGE_EXTENSIONS)})")
    if label_of is not None:
        missing = [name for name in names if name not in label_of]
        if missing:
            raise ValueError(f"{path!r}: {ZIP_LABELS_FILE} has no label for {len(missing)} images, e.g. {missing[0]!r}")
        if min(label_of[name] for name in names) < 0:
            raise ValueError(f"{path!r}: {ZIP_LABELS_FILE} has negative labels")
    mode = "L" if grayscale else "RGB"

    def items(start: int):
        with zipfile.ZipFile(path) as archive:
            for index in range(start, len(names)):
                name = names[index]
                try:
                    with archive.open(name) as member:
                        image: np.ndarray | ValueError = data._read_square_image(name, resolution, mode, file=member)
                    image = np.ascontiguousarray(np.asarray(image).transpose(2, 0, 1))
                except (ValueError, zipfile.BadZipFile, OSError) as err:
                    image = err if isinstance(err, ValueError) else ValueError(f"cannot read {name!r} from the zip: {err}")
                yield index, name, image, (label_of[name] if label_of is not None else None)

    return _Source("zip", _file_identity("zip", path), len(names), (1 if grayscale else 3, resolution, resolution), None, items)


class _AllowListUnpickler(pickle.Unpickler):
    """Unpickles plain data and numpy arrays only (`PICKLE_ALLOWED`): a pickle naming any other
    callable (os.system, builtins.eval, ...) is refused before anything runs."""

    def find_class(self, module, name):
        if (module, name) in PICKLE_ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refused: the file asks to run {module}.{name}, which is not on the allow-list")


def _read_cifar_batch(path: str) -> dict:
    """One CIFAR-10 python batch (a pickled dict), through the allow-list unpickler."""
    size = os.path.getsize(path)
    if size > CIFAR10_BATCH_MAX_BYTES:
        raise ValueError(f"{path!r}: {size} bytes, more than a CIFAR-10 batch ({CIFAR10_BATCH_MAX_BYTES}); refused")
    with open(path, "rb") as handle:
        try:
            loaded = _AllowListUnpickler(handle, encoding="bytes").load()
        except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError) as err:
            raise ValueError(f"{path!r} is not a CIFAR-10 batch: {err}") from None
    if not isinstance(loaded, dict):
        raise ValueError(f"{path!r} is not a CIFAR-10 batch (a pickled dict)")
    return {k.decode() if isinstance(k, bytes) else k: v for k, v in loaded.items()}


def _cifar10_source(root: str, resolution: int | None, labels: str) -> _Source:
    """CIFAR-10's five python training batches (10,000 rows of 3 x 32 x 32 uint8 each, CHW order)."""
    if resolution not in (None, 32):
        raise ValueError(f"CIFAR-10 images are 32x32; they are not resized (resolution={resolution})")
    meta = _read_cifar_batch(os.path.join(root, CIFAR10_META))
    names = [n.decode() if isinstance(n, bytes) else str(n) for n in meta.get("label_names", [])]
    counts = []
    for batch in CIFAR10_TRAIN_BATCHES:
        rows = _read_cifar_batch(os.path.join(root, batch))["data"]
        if not (isinstance(rows, np.ndarray) and rows.dtype == np.uint8 and rows.ndim == 2 and rows.shape[1] == 3 * 32 * 32):
            raise ValueError(f"{os.path.join(root, batch)!r}: 'data' is not uint8 rows of 3072 values")
        counts.append(len(rows))

    def items(start: int):
        offset = 0
        for batch, count in zip(CIFAR10_TRAIN_BATCHES, counts):
            if start < offset + count:
                loaded = _read_cifar_batch(os.path.join(root, batch))
                rows, classes = loaded["data"], loaded.get("labels")
                for index in range(max(start, offset), offset + count):
                    label = int(classes[index - offset]) if labels == "auto" and classes is not None else None
                    yield index, f"{batch}[{index - offset}]", rows[index - offset].reshape(3, 32, 32), label
            offset += count

    stats = [os.stat(os.path.join(root, b)) for b in CIFAR10_TRAIN_BATCHES]
    identity = {"kind": "cifar10", "path": os.path.abspath(root), "files": [[s.st_size, s.st_mtime_ns] for s in stats]}
    return _Source("cifar10", identity, sum(counts), (3, 32, 32), names if labels == "auto" else None, items)


def _layout(shape: tuple[int, ...], name: str) -> tuple[str, tuple[int, int, int]]:
    """("nhwc" | "nchw" | "nhw", (C, H, W)) of an image array's shape."""
    if len(shape) == 3:
        return "nhw", (1, shape[1], shape[2])
    if len(shape) == 4 and shape[3] in (1, 3):
        return "nhwc", (shape[3], shape[1], shape[2])
    if len(shape) == 4 and shape[1] in (1, 3):
        return "nchw", (shape[1], shape[2], shape[3])
    raise ValueError(f"{name}: images must be N x H x W x C, N x C x H x W (C = 1 or 3) or N x H x W, got shape {shape}")


def _to_chw(row: np.ndarray, layout: str) -> np.ndarray:
    if layout == "nhw":
        return row[None]
    return np.ascontiguousarray(row.transpose(2, 0, 1)) if layout == "nhwc" else row


def _array_source(path: str, kind: str, resolution: int | None, labels: str) -> _Source:
    """uint8 images from a .npy file (memory-mapped) or a .npz member (read from the archive row by row)."""
    label_array = None
    if kind == "npy":
        images = np.load(path, mmap_mode="r", allow_pickle=False)
        shape, dtype = images.shape, images.dtype
    else:
        with zipfile.ZipFile(path) as archive:
            members = [n[: -len(".npy")] for n in archive.namelist() if n.endswith(".npy")]
            key = data._image_key(members, None)
            with archive.open(f"{key}.npy") as handle:
                version = np.lib.format.read_magic(handle)
                read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
                shape, fortran, dtype = read_header(handle)
                offset = handle.tell()
            if fortran:
                raise ValueError(f"{path!r}: array {key!r} is stored in Fortran order; save it C-ordered")
            label_keys = [k for k in data.LABEL_KEYS if k in members and k != key]
        if labels == "auto" and label_keys:
            with np.load(path, allow_pickle=False) as arrays:  # N integers: small
                label_array = data._checked_labels(arrays[label_keys[0]], label_keys[0], shape[0])
    if dtype != np.uint8:
        raise ValueError(f"{path!r}: images must be uint8 (0..255), got {dtype}")
    layout, chw = _layout(tuple(shape), repr(path))
    if chw[1] != chw[2]:
        raise ValueError(f"{path!r}: images must be square, got {chw[1]}x{chw[2]}")
    if resolution is not None and resolution != chw[1]:
        raise ValueError(f"{path!r}: images are {chw[1]}x{chw[2]}; arrays are not resized (resolution={resolution})")
    if kind == "npy" and labels == "auto":
        side = Path(path).with_name(Path(path).stem + "_labels.npy")
        if side.exists():
            label_array = data._checked_labels(np.load(side, allow_pickle=False), side.name, shape[0])
    row_bytes = math.prod(shape[1:])

    def items(start: int):
        if kind == "npy":
            for index in range(start, shape[0]):
                yield index, str(index), _to_chw(np.asarray(images[index]), layout), _label(index)
            return
        with zipfile.ZipFile(path) as archive, archive.open(f"{key}.npy") as handle:
            handle.seek(offset + start * row_bytes)
            for index in range(start, shape[0]):
                raw = handle.read(row_bytes)
                if len(raw) < row_bytes:
                    raise ValueError(f"{path!r}: array {key!r} ends at image {index} of the {shape[0]} it declares: corrupt")
                yield index, str(index), _to_chw(np.frombuffer(raw, np.uint8).reshape(shape[1:]), layout), _label(index)

    def _label(index: int) -> int | None:
        return int(label_array[index]) if label_array is not None else None

    return _Source(kind, _file_identity(kind, path), int(shape[0]), chw, None, items)


def _open_source(source: str | os.PathLike, resolution: int | None, grayscale: bool, labels: str) -> _Source:
    path = os.fspath(source)
    if os.path.isdir(path) and all(os.path.isfile(os.path.join(path, b)) for b in CIFAR10_TRAIN_BATCHES):
        if grayscale:
            raise ValueError("grayscale only applies to an image folder; CIFAR-10 keeps its colours")
        return _cifar10_source(path, resolution, labels)
    if os.path.isdir(path):
        return _folder_source(path, resolution, grayscale, labels)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no such source: {path!r} (an image folder, a .zip of images, a .npy or a .npz file)")
    kind = os.path.splitext(path)[1].lower().lstrip(".")
    if kind not in FILE_SOURCE_KINDS:
        raise ValueError(f"unknown source {path!r}: use an image folder, a .zip of images, a .npy or a .npz file")
    if kind == "zip":
        try:
            return _zip_source(path, resolution, grayscale, labels)
        except zipfile.BadZipFile as err:
            raise ValueError(f"{path!r} is not a readable zip file: {err}") from None
    if grayscale:
        raise ValueError("grayscale only applies to an image folder; arrays keep their channels")
    try:
        return _array_source(path, kind, resolution, labels)
    except (zipfile.BadZipFile, EOFError, OSError) as err:
        raise ValueError(f"{path!r} is not a readable .{kind} file (truncated or corrupt?): {err}") from None


# -- preparation ---------------------------------------------------------------------------------
def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _sync(handle) -> None:
    handle.flush()
    os.fsync(handle.fileno())


def prepare(
    source: str | os.PathLike,
    dest: str | os.PathLike,
    *,
    resolution: int | None = None,
    grayscale: bool = False,
    labels: str = "auto",
    on_error: str = "skip",
    pad_to: int | None = None,
    callback: Callable[[int, int], None] | None = None,
) -> dict:
    """Prepare `source` into the folder `dest` (module docstring); resumes an interrupted run.

    Args:
        source: an image folder, a zip of images, a .npy or a .npz file of uint8 images.
        dest: the destination folder (created).
        resolution: an image folder's or zip's square size (required for them); arrays keep theirs (it must match).
        grayscale: an image folder's images as one grey channel.
        labels: "auto" (sub-folders; a zip's dataset.json; an .npz's `labels` / `y`; a `<name>_labels.npy`
            beside a .npy) or "none".
        on_error: "skip" a source image that cannot be decoded (named in the manifest) or "fail".
        pad_to: zero-pad each image symmetrically to pad_to x pad_to (as `data.pad_images`).
        callback: called with (source images done, source images in all) as preparation advances.

    Returns:
        The manifest.

    Raises:
        ValueError: bad options, an unreadable source, a file that cannot be decoded with
            on_error="fail", no image left, or a destination that holds another prepared dataset.
    """
    if labels not in LABEL_MODES:
        raise ValueError(f"unknown labels mode {labels!r}; valid: {', '.join(LABEL_MODES)}")
    if on_error not in ON_ERROR:
        raise ValueError(f"unknown on_error {on_error!r}; valid: {', '.join(ON_ERROR)}")
    if resolution is not None and not (isinstance(resolution, int) and resolution >= 1):
        raise ValueError(f"resolution must be an integer >= 1, got {resolution!r}")
    src = _open_source(source, resolution, grayscale, labels)
    shape = src.shape
    if pad_to is not None:
        data.pad_images(np.zeros((1, *shape), np.uint8), pad_to)  # its own checks, before any work
        shape = (shape[0], pad_to, pad_to)
    options = {"resolution": src.shape[1], "grayscale": grayscale, "labels": labels, "on_error": on_error, "pad_to": pad_to}
    dest = Path(dest)
    if (dest / MANIFEST_FILE).exists():
        manifest = files.read_json(dest / MANIFEST_FILE)
        if manifest.get("source") == src.identity and manifest.get("options") == options:
            return manifest  # already prepared from the same source with the same options
        raise ValueError(
            f"{dest} already holds a prepared dataset of another source or other options; choose another destination"
        )
    dest.mkdir(parents=True, exist_ok=True)
    state: dict[str, Any] = {"source": src.identity, "options": options, "next": 0, "rows": 0, "skipped": [], "labelled": 0}
    if (dest / PROGRESS_FILE).exists():
        previous = files.read_json(dest / PROGRESS_FILE)
        if previous.get("source") == src.identity and previous.get("options") == options:
            state = previous  # resume: the rows it covers were synced before it was written
    row_bytes = math.prod(shape)
    with open(dest / IMAGES_FILE, "a+b") as images, open(dest / LABELS_FILE, "a+b") as label_file:
        images.truncate(state["rows"] * row_bytes)  # rows after the progress record are not trusted
        label_file.truncate(state["labelled"] * 8)
        images.seek(0, os.SEEK_END)
        label_file.seek(0, os.SEEK_END)

        def record(next_index: int) -> None:
            _sync(images)
            _sync(label_file)
            state["next"] = next_index
            files.write_atomic(dest / PROGRESS_FILE, json.dumps(state))

        record(state["next"])  # from now on the folder reads as an unfinished preparation, never as a dataset
        for done, (index, name, image, label) in enumerate(src.items(state["next"]), start=state["next"] + 1):
            if isinstance(image, ValueError):
                if on_error == "fail":
                    raise ValueError(f"{image} (preparation stopped; on_error='skip' leaves such files out)")
                state["skipped"].append({"name": name, "error": str(image)})
            else:
                if pad_to is not None:
                    image = data.pad_images(image[None], pad_to)[0]
                images.write(image.tobytes())
                state["rows"] += 1
                if label is not None:
                    label_file.write(np.int64(label).tobytes())
                    state["labelled"] += 1
            if done % PROGRESS_EVERY == 0:
                record(done)
            if callback is not None:
                callback(done, src.count)
        record(src.count)
    if state["rows"] == 0:
        raise ValueError(f"no image of {os.fspath(source)!r} could be decoded ({len(state['skipped'])} skipped)")
    has_labels = state["labelled"] > 0
    if has_labels and state["labelled"] != state["rows"]:
        raise ValueError(f"{os.fspath(source)!r}: {state['labelled']} labels for {state['rows']} images")
    if not has_labels:
        (dest / LABELS_FILE).unlink()
    manifest = {
        "format": FORMAT,
        "version": VERSION,
        "count": state["rows"],
        "shape": list(shape),
        "dtype": "uint8",
        "levels": 256,
        "labels": has_labels,
        "class_names": src.class_names,
        "source": src.identity,
        "options": options,
        "skipped": state["skipped"],
        "sha256": {
            IMAGES_FILE: _sha256(dest / IMAGES_FILE),
            **({LABELS_FILE: _sha256(dest / LABELS_FILE)} if has_labels else {}),
        },
    }
    files.write_atomic(dest / MANIFEST_FILE, json.dumps(manifest, indent=1))
    (dest / PROGRESS_FILE).unlink()
    return manifest


def default_cache_dir() -> Path:
    """Where `cached` keeps prepared copies: $XDG_CACHE_HOME/scoresde/prepared (~/.cache/... by default)."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "scoresde" / "prepared"


def cached(source: str | os.PathLike, cache_dir: str | os.PathLike | None = None, **options) -> Path:
    """The prepared copy of `source` under `cache_dir` (`default_cache_dir()` when None), prepared
    on first use (or resumed, after an interruption) and reused while the source and the options
    are the same: the folder is named by a SHA-256 of the source's identity (path, size,
    modification time; every file's, for a folder) and the options, so a changed source gets a new
    copy, never a stale one. Concurrent callers (the processes of a DDP run) wait on a lock while
    one prepares. `options` are `prepare`'s."""
    import fcntl

    src = _open_source(source, options.get("resolution"), options.get("grayscale", False), options.get("labels", "auto"))
    key = hashlib.sha256(json.dumps({"source": src.identity, "options": options}, sort_keys=True).encode()).hexdigest()[:24]
    dest = Path(cache_dir or default_cache_dir()) / f"{src.kind}-{key}"
    dest.mkdir(parents=True, exist_ok=True)
    with open(dest / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes, however the holder ends
        prepare(source, dest, **options)
    return dest


def stale_copies(cache_dir: str | os.PathLike | None = None) -> list[Path]:
    """The finished copies under `cache_dir` (`default_cache_dir()` when None) whose source is gone
    or has changed since it was prepared (its identity is no longer the one in the manifest): what
    an edited source leaves behind. Unfinished copies are left out (one may be in preparation)."""
    stale = []
    root = Path(cache_dir or default_cache_dir())
    for copy in sorted(root.iterdir()) if root.is_dir() else []:
        if not (copy / MANIFEST_FILE).is_file():
            continue
        try:
            manifest = files.read_json(copy / MANIFEST_FILE)
            source, options = manifest["source"], manifest["options"]
            grayscale, labels = options.get("grayscale", False), options.get("labels", "auto")
            current = _open_source(source["path"], options.get("resolution"), grayscale, labels)
            if current.identity != source:
                stale.append(copy)
        except (OSError, ValueError, KeyError, TypeError):
            stale.append(copy)  # the source is gone or unreadable, or the manifest is
    return stale


# -- reading -------------------------------------------------------------------------------------
@dataclasses.dataclass
class PreparedDataset:
    """A prepared dataset opened for reading: `images` a read-only memory map (N, C, H, W) uint8,
    `labels` int64 (N,) or None; nothing is read until rows are indexed."""

    path: Path
    manifest: dict
    images: np.ndarray
    labels: np.ndarray | None

    def __len__(self) -> int:
        return len(self.images)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.images.shape[1:])


def open_prepared(path: str | os.PathLike, *, verify: bool = True) -> PreparedDataset:
    """Open the prepared dataset in `path`, its files checked against the manifest (sizes always,
    their SHA-256 with `verify`).

    Raises:
        UnfinishedDatasetError: no manifest (an unfinished preparation, or no prepared dataset).
        ValueError: a manifest of another format or version, or files that do not match it
            (truncated, extended or changed after preparation): the message names the file.
    """
    path = Path(path)
    if not (path / MANIFEST_FILE).is_file():
        if (path / PROGRESS_FILE).exists():
            raise UnfinishedDatasetError(
                f"{path} is an unfinished preparation (no {MANIFEST_FILE}); run the preparation again to resume it"
            )
        raise UnfinishedDatasetError(
            f"{path} is not a prepared dataset (no {MANIFEST_FILE}); prepare it with python -m scoresde.data.prepare"
        )
    manifest = files.read_json(path / MANIFEST_FILE)
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT or manifest.get("version") != VERSION:
        raise ValueError(f"{path / MANIFEST_FILE}: not a {FORMAT} manifest of version {VERSION}")
    try:
        count, shape, has_labels = int(manifest["count"]), tuple(int(v) for v in manifest["shape"]), bool(manifest["labels"])
        digests = dict(manifest["sha256"])
    except (KeyError, TypeError, ValueError) as err:
        raise ValueError(f"{path / MANIFEST_FILE}: malformed manifest ({err})") from None
    expected = {IMAGES_FILE: count * math.prod(shape), **({LABELS_FILE: count * 8} if has_labels else {})}
    for name, size in expected.items():
        actual = (path / name).stat().st_size if (path / name).is_file() else None
        if actual != size:
            raise ValueError(
                f"{path / name}: {'missing' if actual is None else f'{actual} bytes'} where the manifest says "
                f"{size}: the prepared dataset was truncated or changed; prepare it again"
            )
        if verify and _sha256(path / name) != digests.get(name):
            raise ValueError(f"{path / name} does not match its SHA-256 in the manifest: the data changed after preparation")
    images = np.memmap(path / IMAGES_FILE, dtype=np.uint8, mode="r", shape=(count, *shape))
    labels = np.memmap(path / LABELS_FILE, dtype=np.int64, mode="r", shape=(count,)) if has_labels else None
    return PreparedDataset(path, manifest, images, labels)


def manifest_shape(path: str | os.PathLike | None) -> tuple[int, ...] | None:
    """The example shape a prepared dataset's manifest declares (None when it cannot be read: the
    real open then names the problem)."""
    if path is None:
        return None
    try:
        shape = files.read_json(Path(path) / MANIFEST_FILE)["shape"]
        return tuple(int(v) for v in shape)
    except (OSError, ValueError, KeyError, TypeError):
        return None


class ImageRows:
    """The images of a prepared dataset as a lazy, read-only float32 array in [0, 1] of shape
    (N, C, H, W), for `data.Dataset.x`.

    Indexing with a slice or an index array gives another `ImageRows` (nothing is read: a
    train/test split or a random subset is a set of row numbers, never a copy); an integer index,
    `np.asarray(rows)` or `read()` decodes (uint8 / 255, in float32: the same values as the
    in-memory loaders). `read_uint8(positions)` reads rows in file order and returns them in the
    order asked.
    """

    dtype = np.dtype(np.float32)
    ndim = 4

    def __init__(self, images: np.ndarray, indices: np.ndarray | None = None):
        self.images, self.indices = images, indices

    def __len__(self) -> int:
        return len(self.images) if self.indices is None else len(self.indices)

    def __reduce__(self):
        """Pickled by the memory map's file name (worker processes reopen it; nothing is copied)."""
        images = self.images
        if isinstance(images, np.memmap) and images.filename is not None:
            return _reopen_rows, (images.filename, images.shape, int(images.offset), self.indices)
        return ImageRows, (np.asarray(images), self.indices)

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self), *self.images.shape[1:])

    def __getitem__(self, key):
        if isinstance(key, (int, np.integer)):
            return self.read_uint8(np.array([key]))[0].astype(np.float32) / np.float32(255.0)
        picked = np.arange(len(self))[key]
        return ImageRows(self.images, picked if self.indices is None else self.indices[picked])

    def read_uint8(self, positions: np.ndarray | None = None) -> np.ndarray:
        """Rows `positions` of this view (all when None) as uint8, read from the file in its order."""
        rows = np.arange(len(self)) if positions is None else np.asarray(positions, dtype=np.int64)
        file_rows = rows if self.indices is None else self.indices[rows]
        order = np.argsort(file_rows, kind="stable")
        out = np.empty((len(file_rows), *self.images.shape[1:]), np.uint8)
        out[order] = self.images[file_rows[order]]
        return out

    def read(self) -> np.ndarray:
        """All rows of this view, decoded to float32 in [0, 1] (size it first: this is the one copy)."""
        out = self.read_uint8().astype(np.float32)
        out /= 255.0
        return out

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        out = self.read()
        return out if dtype is None else out.astype(dtype)


def _reopen_rows(filename: str, shape: tuple[int, ...], offset: int, indices: np.ndarray | None) -> ImageRows:
    return ImageRows(np.memmap(filename, dtype=np.uint8, mode="r", shape=shape, offset=offset), indices)


class StreamedExamples:
    """The examples of an `ImageRows` on a device, in the model's range, gathered per batch:
    `examples[idx]` (a tensor or array of row numbers, or a slice) reads those rows from the memory
    map, moves them as uint8 (a quarter of float32's traffic) and converts them on the device with
    the in-memory path's arithmetic (float32 / 255, then 2x - 1 when centred), so the values are
    bit-identical to it. Nothing is held but the memory map.

    Within `reading(...)`, worker processes read the scheduled rows ahead (`data.loader.ReadAhead`)
    and `examples[idx]` takes them from its queue (the same bytes, so the same values)."""

    def __init__(self, rows: ImageRows, device, centered: bool):
        self.rows, self.device, self.centered = rows, device, centered
        self.read_ahead: Any = None  # a data.loader.ReadAhead while `reading` runs

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def shape(self) -> tuple[int, ...]:
        return self.rows.shape

    @contextlib.contextmanager
    def reading(self, reads, steps: range, num_workers: int, prefetch: int | None = None):
        """Read the rows `reads(step)` of each of `steps` ahead in `num_workers` worker processes
        (into pinned memory for a CUDA device) while the block runs; yields the `ReadAhead`."""
        import torch

        from scoresde.data import loader

        pin = torch.device(self.device).type == "cuda"
        options = {} if prefetch is None else {"prefetch": prefetch}
        with loader.ReadAhead(self.rows, reads, steps, num_workers, pin_memory=pin, **options) as ahead:
            self.read_ahead = ahead
            try:
                yield ahead
            finally:
                self.read_ahead = None
                logging.info(
                    "read ahead by %d workers: %d reads served, %d read directly, %.2f s waited",
                    num_workers,
                    ahead.served,
                    ahead.missed,
                    ahead.wait_seconds,
                )

    def __getitem__(self, key):
        import torch

        if isinstance(key, slice):
            positions = np.arange(len(self))[key]
        else:
            positions = (key.detach().cpu().numpy() if isinstance(key, torch.Tensor) else np.asarray(key)).reshape(-1)
        rows = self.read_ahead.take(positions) if self.read_ahead is not None else None
        if rows is None:
            rows = torch.from_numpy(self.rows.read_uint8(positions))
        x = rows.to(self.device, non_blocking=rows.is_pinned()).float() / 255.0
        return data.to_model_range(x, self.centered)
