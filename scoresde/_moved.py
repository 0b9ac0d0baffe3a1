"""Old import paths of the modules that moved when the infrastructure was grouped by job
(`eval/`, `train/`, `cli/`): `import scoresde.metrics`, `from scoresde import training` and
`from scoresde.checkpoint import latest` keep working for one release, with a DeprecationWarning
that names the new path. The table below is the one list of what moved.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
import types
import warnings

MOVED = {
    "scoresde.metrics": "scoresde.eval.metrics",
    "scoresde.inception": "scoresde.eval.inception",
    "scoresde.features": "scoresde.eval.features",
    "scoresde.plotting": "scoresde.eval.plotting",
    "scoresde.benchmark": "scoresde.eval.benchmark",
    "scoresde.training": "scoresde.train.loop",
    "scoresde.checkpoint": "scoresde.train.checkpoint",
    "scoresde.distributed": "scoresde.train.distributed",
    "scoresde.workdir": "scoresde.cli.workdir",
}


def warn(old: str, stacklevel: int = 3) -> None:
    warnings.warn(f"{old} has moved to {MOVED[old]}; the old path works until the next release", DeprecationWarning, stacklevel)


class MovedModules(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds an old path (consulted after the normal finders, which no longer find it) and hands
    out the module at its new path: the same module object, so monkeypatching either path patches both."""

    def find_spec(self, fullname, path=None, target=None):
        return importlib.util.spec_from_loader(fullname, self) if fullname in MOVED else None

    def create_module(self, spec):
        return None  # a placeholder; exec_module puts the real module in its place

    def exec_module(self, module: types.ModuleType) -> None:
        warn(module.__name__, stacklevel=4)
        sys.modules[module.__name__] = importlib.import_module(MOVED[module.__name__])  # importlib returns this one


def install() -> None:
    if not any(isinstance(finder, MovedModules) for finder in sys.meta_path):
        sys.meta_path.append(MovedModules())
