"""scoresde: score-based generative modeling through stochastic differential equations.

The numerics sit at the top and follow the dataflow of Song et al. (2021): `sde_lib` (forward
SDEs) -> `losses` (score matching) -> `models` (score networks) -> `score` (network output -> score
function) -> `samplers` (reverse-time SDE / ODE solvers) -> `likelihood`, `controllable`; `oracle`
is the exact reference. The infrastructure is grouped by job: `data` (datasets), `train/` (the loop,
its objectives, checkpoints, processes), `eval/` (metrics, Inception, plots, the sampler
benchmark), `config/` (defaults and checks) and `cli/` (one module per mode of the command line).
"""

import importlib as _importlib

from scoresde import _moved, losses, oracle, samplers, sde_lib
from scoresde.score import NetworkScore, get_score_fn
from scoresde.sde_lib import EDMSDE, SDE, VESDE, VPSDE, CosineVPSDE, get_sde, subVPSDE

__version__ = "0.1.0"

__all__ = [
    "SDE",
    "CosineVPSDE",
    "EDMSDE",
    "NetworkScore",
    "VESDE",
    "VPSDE",
    "get_score_fn",
    "get_sde",
    "losses",
    "oracle",
    "samplers",
    "sde_lib",
    "subVPSDE",
]

_moved.install()  # the old paths of moved modules (_moved.MOVED), for one release


def __getattr__(name: str):
    """A moved module as an attribute of the package under its old name, with the deprecation warning."""
    if f"scoresde.{name}" in _moved.MOVED:
        return _importlib.import_module(f"scoresde.{name}")
    raise AttributeError(f"module 'scoresde' has no attribute {name!r}")
