"""Command-line entry point: train a score model or sample from one.

    python main.py --config configs/toy_vp.py --workdir runs/toy_vp --mode train
    python main.py --config configs/toy_vp.py --workdir runs/toy_vp --mode sample \
        --config.sampling.steps=500
    python main.py --config configs/benchmark/oracle_fast.py --workdir runs/bench --mode benchmark
    python main.py --config configs/digits_mlp_vp.py --workdir runs/demo --mode likelihood
    python main.py --config configs/digits_mlp_vp.py --workdir runs/demo --mode inpaint
    python main.py --config configs/digits_mlp_vp.py --workdir runs/demo --mode train_classifier
    python main.py --config configs/digits_mlp_vp.py --workdir runs/demo --mode conditional \
        --config.controllable.guidance=classifier
    python main.py --config configs/digits_mlp_cfg.py --workdir runs/cfg --mode conditional   # after training it
    python main.py --config configs/colored_digits_mlp.py --workdir runs/color --mode colorize  # after training it

Any config value can be overridden with --config.<group>.<key>=<value>. Training resumes from the
newest complete checkpoint in --workdir. Several processes (DistributedDataParallel):

    torchrun --standalone --nproc_per_node=2 main.py --config configs/toy_vp.py --workdir runs/ddp

Exit status: 0 done; 1 an error (the message names it); 128 + N after signal N (SIGTERM: 143,
SIGINT: 130) once training wrote a checkpoint at the current step.
"""

import sys

from absl import app, flags, logging
from ml_collections import config_flags

from scoresde import run_controllable, run_lib, training

MODES = {
    "train": run_lib.train,
    "sample": run_lib.sample,
    "benchmark": run_lib.benchmark,
    "likelihood": run_lib.likelihood,
    "train_classifier": run_controllable.train_classifier,
    "inpaint": run_controllable.inpaint,
    "colorize": run_controllable.colorize,
    "conditional": run_controllable.conditional,
}

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "Experiment configuration file (configs/*.py).", lock_config=True)
flags.DEFINE_string("workdir", None, "Work directory for checkpoints, logs and samples.")
flags.DEFINE_enum("mode", "train", list(MODES), "What to run.")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    logging.set_verbosity(logging.INFO)
    try:
        MODES[FLAGS.mode](FLAGS.config, FLAGS.workdir)
    except training.TrainingInterrupted as stop:
        logging.warning("%s", stop)
        sys.exit(128 + stop.signum)
    except (ValueError, FileNotFoundError, FloatingPointError) as err:
        logging.error("%s", err)
        sys.exit(f"error: {err}")
    print(f"done: {FLAGS.mode} results in {FLAGS.workdir}")


if __name__ == "__main__":
    app.run(main)
