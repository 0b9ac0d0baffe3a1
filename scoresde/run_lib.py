"""Every mode of the command line as a Python function, under score_sde's name: `run_lib.train(config, workdir)`,
`run_lib.evaluate(config, workdir)` (--mode eval).

A facade, no logic: each mode lives in its own module of `scoresde.cli` (`cli/train.py`,
`cli/sample.py`, ...) and the pieces every mode builds from a config in `scoresde.cli.experiment`.
"""

from scoresde.cli import MODES  # noqa: F401
from scoresde.cli.benchmark import benchmark
from scoresde.cli.colorize import colorize
from scoresde.cli.conditional import conditional, parse_scales
from scoresde.cli.eval import eval as evaluate  # score_sde's name for --mode eval
from scoresde.cli.experiment import (
    Experiment,
    build_model,
    build_score_fn,
    build_sde,
    load_checkpoint,
    load_data,
    named_time_grid,
    resolve_device,
    sampler_arguments,
    validate,
)
from scoresde.cli.inpaint import inpaint
from scoresde.cli.likelihood import likelihood
from scoresde.cli.sample import sample
from scoresde.cli.train import train
from scoresde.cli.train_classifier import train_classifier

__all__ = [
    "Experiment",
    "benchmark",
    "build_model",
    "build_score_fn",
    "build_sde",
    "colorize",
    "conditional",
    "evaluate",
    "inpaint",
    "likelihood",
    "load_checkpoint",
    "load_data",
    "named_time_grid",
    "parse_scales",
    "resolve_device",
    "sample",
    "sampler_arguments",
    "train",
    "train_classifier",
    "validate",
]
