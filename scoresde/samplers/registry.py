"""The one declaration of each sampler, from which every other fact about it is derived.

A `SamplerInfo` says what a sampler is: its loop function, its kind, its convergence order, how
many score evaluations a step costs, and the time grid it uses by default; its options and their
defaults are the keyword-only parameters of the loop (the signature is the schema). The table of
`scoresde.samplers`, the config sections `config.sampling.<name>`, the list of deterministic
solvers, the benchmark's budget arithmetic and the tests' parametrisations are all read from here,
so adding a sampler is one function and one `register` call:

    def my_sampler(sde, score_fn, x, time_grid, *, generator=None, callback=None, gamma=0.5):
        for i in range(len(time_grid) - 1):
            ...
            report_step(callback, i, len(time_grid) - 1, float(time_grid[i]), x, None)  # calls callback if given
        return x

    samplers.register("my_sampler", my_sampler, kind="sde")

It then works in `samplers.sample`, in `--mode sample` (`--config.sampling.sampler=my_sampler
--config.sampling.my_sampler.gamma=0.3`, when the config file registers it before building the
defaults) and in `--mode benchmark`.

The loop contract: `loop(sde, score_fn, x, time_grid, *, generator, callback, **options) -> x`,
integrating from `time_grid[0]` down to `time_grid[-1]`; after step i it calls
`callback(StepInfo)`, a dict with `i`, `n` (steps), `t` (the step's start time t_i), `x` (the state
after the step) and `denoised` (the data prediction D(x_i, t_i) the step evaluated, or None;
UniPC evaluates it on its predictor's state, before the corrector moves x_i).
Fixed-step ODE solvers (kind "ode") must report `denoised`: `denoise="extrapolate"` uses the last two.
"""

from __future__ import annotations

import dataclasses
import difflib
import inspect
from typing import Any, Callable, Mapping, TypedDict

import torch

KINDS = ("sde", "ode", "adaptive")
LOOP_PARAMETERS = ("generator", "callback")  # keyword-only parameters every loop takes; not options


class StepInfo(TypedDict):
    """What a sampler loop tells its callback after step i of n (see the module docstring)."""

    i: int
    n: int
    t: float
    x: torch.Tensor
    denoised: torch.Tensor | None


def report_step(callback, i: int, n: int, t: float, x: torch.Tensor, denoised: torch.Tensor | None) -> None:
    """Tell a loop's callback about step i of n (a `StepInfo`), when there is one."""
    if callback is not None:
        callback(StepInfo(i=i, n=n, t=t, x=x, denoised=denoised))


@dataclasses.dataclass(frozen=True)
class SamplerInfo:
    """A sampler's declaration.

    Attributes:
        name: the name `sample` takes.
        loop: the loop function (module docstring).
        kind: "sde" (stochastic), "ode" (a fixed-step solver of the probability-flow ODE) or
            "adaptive" (chooses its own steps; the grid's end points only).
        order: the global convergence order of an "ode" solver (error ~ step^order on smooth
            problems; tests fit it), None otherwise.
        evaluations_per_step: score evaluations per step: a number, or a function of the
            sampler's options (their defaults filled in) for samplers whose cost depends on them;
            0 for "adaptive" samplers.
        default_grid: the time grid used when the caller names none (`TIME_GRIDS`), unless
            `time_grids.SDE_DEFAULT_GRIDS` names another for the SDE (`default_time_grid`).
        summary: one line for tables.
        extra_evaluations: evaluations a run spends besides those per step (Restart's restart
            interval): a number or a function of the options, like `evaluations_per_step`.
    """

    name: str
    loop: Callable
    kind: str
    order: int | None = None
    evaluations_per_step: int | Callable[[Mapping[str, Any]], int] = 1
    default_grid: str = "uniform"
    summary: str = ""
    extra_evaluations: int | Callable[[Mapping[str, Any]], int] = 0

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"sampler {self.name!r}: unknown kind {self.kind!r}; valid: {', '.join(KINDS)}")
        if self.kind == "adaptive" and self.evaluations_per_step != 0:
            raise ValueError(f"sampler {self.name!r}: an adaptive sampler declares evaluations_per_step=0")
        missing = [p for p in LOOP_PARAMETERS if p not in self.option_defaults(all_parameters=True)]
        if missing:
            raise ValueError(f"sampler {self.name!r}: its loop must take the keyword-only parameters {missing}")

    def option_defaults(self, all_parameters: bool = False) -> dict[str, Any]:
        """The loop's keyword-only options with their defaults (without generator and callback)."""
        parameters = inspect.signature(self.loop).parameters.values()
        found = {p.name: p.default for p in parameters if p.kind == p.KEYWORD_ONLY}
        return found if all_parameters else {k: v for k, v in found.items() if k not in LOOP_PARAMETERS}

    @property
    def options(self) -> tuple[str, ...]:
        return tuple(self.option_defaults())

    @property
    def deterministic(self) -> bool:
        """A fixed-step ODE solver: the same x_T gives the same samples, the grid's times are its evaluations."""
        return self.kind == "ode"

    def evaluations(self, options: Mapping[str, Any] | None = None) -> int:
        """Score evaluations per step with these options (defaults for the ones not given)."""
        return self._count(self.evaluations_per_step, options)

    def fixed_evaluations(self, options: Mapping[str, Any] | None = None) -> int:
        """Score evaluations a run spends besides its steps' (`extra_evaluations`; no final denoising)."""
        return self._count(self.extra_evaluations, options)

    def _count(self, declared, options: Mapping[str, Any] | None) -> int:
        if callable(declared):
            return int(declared({**self.option_defaults(), **(options or {})}))
        return int(declared)


def closest(word: str, names) -> str:
    """' (did you mean ...?)' for a misspelt name, else ''."""
    close = difflib.get_close_matches(word, list(names), n=1, cutoff=0.7)
    return f" (did you mean {close[0]!r}?)" if close else ""
