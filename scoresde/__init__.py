"""scoresde: score-based generative modeling through stochastic differential equations.

The modules follow the dataflow of Song et al. (2021): `sde_lib` (forward SDEs) -> `losses`
(score matching) -> `models` (score networks) -> `score` (network output -> score function) ->
`samplers` (reverse-time SDE / ODE solvers).
"""

from scoresde import losses, metrics, oracle, samplers, sde_lib
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
    "metrics",
    "oracle",
    "samplers",
    "sde_lib",
    "subVPSDE",
]
