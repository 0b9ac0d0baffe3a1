"""The command line: `scoresde` (installed), `python -m scoresde`, or `python main.py` in a checkout.

    scoresde --config configs/toy_vp.py --workdir runs/toy_vp --mode train
    scoresde --config configs/toy_vp.py --workdir runs/toy_vp --mode sample --config.sampling.steps=500
    scoresde --config configs/benchmark/oracle_fast.py --workdir runs/bench --mode benchmark
    scoresde --config configs/digits_mlp_vp.py --workdir runs/demo --mode likelihood
    scoresde --config configs/digits_mlp_vp.py --workdir runs/demo --mode inpaint
    scoresde --config configs/digits_mlp_vp.py --workdir runs/demo --mode train_classifier
    scoresde --config configs/digits_mlp_vp.py --workdir runs/demo --mode conditional \
        --config.controllable.guidance=classifier
    scoresde --config configs/digits_mlp_cfg.py --workdir runs/cfg --mode conditional   # after training it
    scoresde --config configs/colored_digits_mlp.py --workdir runs/color --mode colorize  # after training it

A config file is Python with a `get_config()` that starts from `scoresde.config.defaults.get_config()`
(the checkout's `configs/` holds the experiments; a file of your own can live anywhere).
Any config value can be overridden with --config.<group>.<key>=<value>. Training resumes from the
newest complete checkpoint in --workdir. Several processes (DistributedDataParallel):

    torchrun --standalone --nproc_per_node=2 -m scoresde --config configs/toy_vp.py --workdir runs/ddp

Exit status: 0 done; 1 an error (one line naming the file, key or value; --verbose adds the
traceback); 2 a command line that cannot be parsed (an unknown --config key, a config file that
does not load); 128 + N after signal N (SIGTERM: 143, SIGINT: 130) once training wrote a
checkpoint at the current step. A second run on a work directory in use is refused (exit 1).
"""

import importlib
from typing import Callable

# The modes of --mode: mode <name> is the function <name>(config, workdir) -> dict of its figures,
# in its own module scoresde.cli.<name> (so `scoresde.cli.train` stays the module, not the function).
MODE_NAMES = ("train", "sample", "eval", "benchmark", "likelihood", "train_classifier", "inpaint", "colorize", "conditional")
MODES: dict[str, Callable] = {name: getattr(importlib.import_module(f"scoresde.cli.{name}"), name) for name in MODE_NAMES}


def run() -> None:
    """The console entry point (`scoresde`, `python -m scoresde`, `main.py`)."""
    from scoresde.cli import command

    command.run()
