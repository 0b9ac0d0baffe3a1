"""EDM's network snapshots (`network-snapshot-<kimg>.pkl`, `edm-cifar10-32x32-uncond-vp.pkl`, ...), read safely.

An EDM snapshot is a pickle of {"ema": network, "loss_fn": ..., "augment_pipe": ..., "dataset_kwargs":
{...}}. Its objects are "persistent classes": each is pickled as a call of
`torch_utils.persistence._reconstruct_persistent_obj(meta)`, with `meta` holding the class name, the
Python source of the module that defined it (`module_src`), and the object's state (its
`_parameters`, `_buffers`, `_modules` and constructor arguments `_init_args` / `_init_kwargs`).
Unpickled with `pickle.load`, that source is executed: the file runs whatever code it carries.

`read_snapshot` never imports or executes anything from the file. Its unpickler resolves only the
globals in `ALLOWED_GLOBALS`, each to a function written here or to a torch/numpy constructor of
plain data: tensors are rebuilt from their storages (each storage is itself read with
`torch.load(weights_only=True)`), a persistent object becomes a `PersistentObject` record (class
name, state, constructor arguments; `module_src` is read as a string and dropped), a torch
`ModuleDict` becomes a `ModuleState` record. Any other global (os.system, builtins.eval, a class of
the file's own) is refused by name (`UnsafeSnapshotError`) before anything is called.

`load_edm_snapshot` then builds the network from the record alone: our class of the same name in
`scoresde.models.edm` (the preconditioning, whose constructor arguments name the backbone and its
settings), every stored record checked to be the layer our network has at that place, and the
weights loaded strictly.
"""

from __future__ import annotations

import collections
import inspect
import io
import pickle
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from scoresde.models.edm import PRECONDITIONINGS, Precond


class SnapshotError(ValueError):
    """A file that is not a readable EDM snapshot (truncated, tampered with, or of another kind)."""


class UnsafeSnapshotError(SnapshotError):
    """A snapshot that asks for a global outside `ALLOWED_GLOBALS` (something that could run code)."""


@dataclass
class PersistentObject:
    """One persistent object of a snapshot, as data: EDM's class name, its state and constructor arguments."""

    class_name: str
    state: dict
    version: Any = None

    @property
    def init_args(self) -> tuple:
        return tuple(self.state.get("_init_args", ()))

    @property
    def init_kwargs(self) -> dict:
        return dict(self.state.get("_init_kwargs", {}))


class ModuleState:
    """A torch.nn.ModuleDict of a snapshot, as data: its pickled `__dict__` (pickle's NEWOBJ makes the
    instance without calling __init__, and BUILD hands it the state)."""

    class_name = "ModuleDict"

    def __init__(self, state: dict | None = None):
        self.state = state or {}

    def __setstate__(self, state: dict) -> None:  # pickle's BUILD
        if not isinstance(state, dict):
            raise SnapshotError(f"the state of a {self.class_name} is a {type(state).__name__}, not a dict")
        self.state = state


class _EasyDict(dict):
    """Stand-in for EDM's dnnlib.util.EasyDict (a dict with attribute access; only its items are kept)."""

    def __setstate__(self, state: Any) -> None:
        pass


def _persistent_object(meta: Any) -> PersistentObject:
    """torch_utils.persistence._reconstruct_persistent_obj, as data: `module_src` is never executed."""
    if not isinstance(meta, dict) or meta.get("type") != "class":
        kind = meta.get("type") if isinstance(meta, dict) else type(meta).__name__
        raise SnapshotError(f"a persistent object of kind {kind!r}; EDM snapshots hold persistent classes only")
    if not isinstance(meta.get("class_name"), str) or not isinstance(meta.get("state"), dict):
        raise SnapshotError("a persistent object without a class name or state")
    return PersistentObject(meta["class_name"], meta["state"], meta.get("version"))


def _storage_from_bytes(data: Any) -> Any:
    """torch.storage._load_from_bytes, with weights_only=True (a storage is plain numbers)."""
    if not isinstance(data, bytes):
        raise SnapshotError(f"a tensor storage given as {type(data).__name__}, not bytes")
    try:
        storage = torch.load(io.BytesIO(data), weights_only=True, map_location="cpu")
    except Exception as err:  # a corrupt or hostile inner file: name it, never run it
        raise SnapshotError(f"a tensor storage could not be read with weights_only=True ({err})") from None
    if not isinstance(storage, (torch.TypedStorage, torch.UntypedStorage)):
        raise SnapshotError(f"a tensor storage decoded to a {type(storage).__name__}")
    return storage


def _numeric_dtype(name: Any, align: Any = False, copy: Any = False) -> np.dtype:
    """numpy.dtype for the plain numeric types numpy scalars are pickled with."""
    dtype = np.dtype(name) if isinstance(name, str) else None
    if dtype is None or dtype.kind not in "biufc":
        raise UnsafeSnapshotError(f"the snapshot asks for numpy.dtype({name!r}); only numeric dtypes are read")
    return dtype


def _numpy_scalar(dtype: Any, data: Any) -> Any:
    """numpy.core.multiarray.scalar for numeric dtypes: the value in `data`'s bytes."""
    if not isinstance(dtype, np.dtype) or dtype.kind not in "biufc" or not isinstance(data, bytes):
        raise UnsafeSnapshotError("the snapshot asks for a numpy scalar that is not a plain number")
    if len(data) != dtype.itemsize:
        raise SnapshotError(f"a numpy {dtype} scalar of {len(data)} bytes")
    return np.frombuffer(data, dtype=dtype)[0]


def _rebuild_tensor(storage: Any, *args: Any) -> torch.Tensor:
    if not isinstance(storage, (torch.TypedStorage, torch.UntypedStorage)):
        raise SnapshotError(f"a tensor rebuilt from a {type(storage).__name__}, not a storage")
    return torch._utils._rebuild_tensor_v2(storage, *args)


def _rebuild_parameter(data: Any, requires_grad: Any, backward_hooks: Any) -> nn.Parameter:
    if not isinstance(data, torch.Tensor):
        raise SnapshotError(f"a parameter rebuilt from a {type(data).__name__}, not a tensor")
    return nn.Parameter(data, requires_grad=bool(requires_grad))


# module.name -> what that global means here; everything else is refused by name.
ALLOWED_GLOBALS: dict[str, Callable] = {
    "torch_utils.persistence._reconstruct_persistent_obj": _persistent_object,
    "torch.nn.modules.container.ModuleDict": ModuleState,
    "torch._utils._rebuild_tensor_v2": _rebuild_tensor,
    "torch._utils._rebuild_parameter": _rebuild_parameter,
    "torch.storage._load_from_bytes": _storage_from_bytes,
    "collections.OrderedDict": collections.OrderedDict,
    "numpy.dtype": _numeric_dtype,
    "numpy.core.multiarray.scalar": _numpy_scalar,
    "numpy._core.multiarray.scalar": _numpy_scalar,
    "dnnlib.util.EasyDict": _EasyDict,
}


class _SnapshotUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        found = ALLOWED_GLOBALS.get(f"{module}.{name}")
        if found is None:
            raise UnsafeSnapshotError(
                f"the snapshot asks for the global {module}.{name}, which is not among the data types an EDM snapshot "
                "is made of; it is refused (loading it could run code)"
            )
        return found

    def persistent_load(self, pid: Any) -> Any:
        raise SnapshotError("the file uses pickle persistent ids (a torch.save file?), which EDM snapshots never do")


def read_snapshot(path: str | Path) -> dict:
    """The top-level dict of an EDM snapshot, its objects as `PersistentObject` / `ModuleState` records.

    Raises:
        UnsafeSnapshotError: a global outside `ALLOWED_GLOBALS`, named.
        SnapshotError: an unreadable, truncated or tampered file.
    """
    path = Path(path)
    try:
        with path.open("rb") as f:
            data = _SnapshotUnpickler(f).load()
    except SnapshotError as err:
        raise type(err)(f"{path}: {err}") from None
    except OSError as err:
        raise SnapshotError(f"{path} cannot be read ({err})") from None
    except Exception as err:  # pickle's own errors on truncated or malformed data, and any stand-in's
        raise SnapshotError(f"{path} is not a readable EDM snapshot ({type(err).__name__}: {err})") from None
    if not isinstance(data, dict):
        raise SnapshotError(f"{path} holds a {type(data).__name__}, not EDM's snapshot dict")
    return data


def load_edm_snapshot(path: str | Path, key: str = "ema") -> Precond:
    """EDM's denoiser `net(x, sigma, class_labels=None) -> D(x; sigma)` from a snapshot, in eval mode on the CPU.

    The network is our class of EDM's name (`scoresde.models.edm.PRECONDITIONINGS`) built with the
    stored constructor arguments; it carries what a caller needs: `img_resolution`, `img_channels`,
    `label_dim` (0: unconditional; else one-hot labels), `sigma_min`, `sigma_max`, `sigma_data`
    (EDMPrecond), VP's `beta_d`, `beta_min`, `M`, `epsilon_t`, and `type(net).__name__`.

    Args:
        path: the .pkl file.
        key: the snapshot entry holding the network ("ema", the only network EDM stores).

    Raises:
        UnsafeSnapshotError: the file asks for a global outside the allow-list (named).
        SnapshotError: unreadable, truncated or tampered files; unknown classes or arguments;
            weights that do not fit the network their arguments describe.
    """
    snapshot = read_snapshot(path)
    record = snapshot.get(key)
    if not isinstance(record, PersistentObject):
        found = ", ".join(sorted(map(str, snapshot))) or "nothing"
        raise SnapshotError(f"{path} has no network under {key!r} (it holds: {found})")
    if record.class_name not in PRECONDITIONINGS:
        raise SnapshotError(f"{path}: the network is a {record.class_name}; readable: {', '.join(PRECONDITIONINGS)}")
    net = _construct(path, record)
    _check_layers(path, record, net)
    weights = _tensors(record)
    try:
        net.load_state_dict(weights, strict=True)
    except RuntimeError as err:
        raise SnapshotError(f"{path}: the weights do not fit the network its arguments describe ({err})") from None
    return net.eval()


def _construct(path: str | Path, record: PersistentObject) -> Precond:
    cls = PRECONDITIONINGS[record.class_name]
    parameters = list(inspect.signature(cls).parameters)
    kwargs = record.init_kwargs
    kwargs.update(zip(parameters, record.init_args))
    kwargs = {k: (v.item() if isinstance(v, np.generic) else v) for k, v in kwargs.items()}
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as err:
        raise SnapshotError(f"{path}: {record.class_name}({_describe(kwargs)}) cannot be built: {err}") from None


def _describe(kwargs: dict) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in kwargs.items())


def _check_layers(path: str | Path, record: PersistentObject | ModuleState, module: nn.Module, where: str = "") -> None:
    """Every stored object is the layer of the same class at the same place in our network."""
    ours = type(module).__name__
    if record.class_name != ours:
        raise SnapshotError(f"{path}: {where or 'the network'} is a {record.class_name} in the file, a {ours} here")
    children = record.state.get("_modules", {})
    if not isinstance(children, dict) or set(children) != set(dict(module.named_children())):
        theirs = sorted(children) if isinstance(children, dict) else children
        mine = sorted(dict(module.named_children()))
        raise SnapshotError(f"{path}: the layers of {where or 'the network'} are {theirs} in the file, {mine} here")
    for name, child in children.items():
        place = f"{where}.{name}" if where else name
        if not isinstance(child, (PersistentObject, ModuleState)):
            raise SnapshotError(f"{path}: the layer {place} is stored as a {type(child).__name__}")
        _check_layers(path, child, getattr(module, name), place)


def _tensors(record: PersistentObject | ModuleState, prefix: str = "") -> dict[str, torch.Tensor]:
    """The state_dict a record describes: its persistent parameters and buffers, then its children's."""
    state = record.state
    skipped = set(state.get("_non_persistent_buffers_set") or ())
    out = {}
    for group in ("_parameters", "_buffers"):
        for name, tensor in (state.get(group) or {}).items():
            if tensor is None or name in skipped:
                continue
            if not isinstance(tensor, torch.Tensor):
                raise SnapshotError(f"{prefix}{name} is stored as a {type(tensor).__name__}, not a tensor")
            out[prefix + name] = tensor.detach()
    for name, child in (state.get("_modules") or {}).items():
        out.update(_tensors(child, f"{prefix}{name}."))
    return out


def snapshot_kimg(path: str | Path) -> int:
    """The training progress in thousands of images that EDM writes into a snapshot's name (0 if none)."""
    found = re.search(r"network-snapshot-(\d+)\.pkl$", Path(path).name)
    return int(found.group(1)) if found else 0
