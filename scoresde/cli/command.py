"""The `scoresde` command itself: absl flags, the work-directory lock, one-line errors and exit codes.

Kept apart from the package's `__init__` so that importing the modes (`scoresde.cli.train`, ...)
defines no flags; the usage text is `scoresde.cli`'s docstring.
"""

import os
import re
import sys
import traceback

import torch
from absl import app, flags, logging
from ml_collections import config_flags

from scoresde.cli import MODES, workdir
from scoresde.cli import __doc__ as usage
from scoresde.train import loop

# Failures a user can cause and fix (bad values, files, disks, memory): one line, no traceback.
EXPECTED_ERRORS = (
    OSError,
    ValueError,
    FloatingPointError,
    MemoryError,
    getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError),
)

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "Experiment configuration file (configs/*.py).", lock_config=True)
flags.DEFINE_string("workdir", None, "Work directory for checkpoints, logs and samples.")
flags.DEFINE_enum("mode", "train", list(MODES), "What to run.")
flags.DEFINE_bool("verbose", False, "Print the traceback of an error, not only its one-line message.")
flags.mark_flags_as_required(["config", "workdir"])


def _override_problem(argv: list[str], err: Exception) -> str:
    """One line for a --config.<key> override that names no key of the config."""
    inner = err
    while isinstance(inner, Exception) and inner.args:  # ml_collections wraps a KeyError in an AttributeError
        inner = inner.args[0]
    text = str(inner)
    missing = re.search(r"'(\w+)'", text)
    hint = re.search(r'Did you mean "(\w+)"', text)
    for arg in argv:
        path = arg[len("--config.") :].split("=", 1)[0] if arg.startswith("--config.") else ""
        if path and missing and missing.group(1) in path.split("."):
            elsewhere = _paths_ending_in(missing.group(1))  # e.g. a sampler option, now in its sampler's section
            if hint:
                suggestion = f"; did you mean {hint.group(1)!r}?"
            elif elsewhere:
                suggestion = (
                    f"; did you mean {' or '.join(repr(p) for p in elsewhere[:3])}{' or ...' if len(elsewhere) > 3 else ''}?"
                )
            else:
                suggestion = ""
            return f"{arg}: the config has no key {missing.group(1)!r} (in {path!r}){suggestion}; see scoresde/config/defaults.py"
    return "a --config override names no key of the config: " + text.replace("\n", " ")


def _paths_ending_in(key: str) -> list[str]:
    """Dotted paths of the default config whose last part is `key`."""
    from scoresde.config import defaults

    def walk(node, prefix):
        for name, value in node.items():
            if hasattr(value, "items"):
                yield from walk(value, f"{prefix}{name}.")
            elif name == key:
                yield f"{prefix}{name}"

    return sorted(walk(defaults.get_config(), ""))


def parse_flags(argv: list[str]) -> list[str]:
    """absl's parser, with one-line errors for unknown config keys and config files that do not load."""
    try:
        rest = app.parse_flags_with_usage(argv)
        FLAGS.config.keys()  # a config file that failed to load raises on first use: here, where it belongs
        return rest
    except (AttributeError, KeyError) as err:
        problem = _override_problem(argv, err)
    except OSError as err:
        given = next(
            (
                a.split("=", 1)[1] if "=" in a else b
                for a, b in zip(argv, [*argv[1:], ""])
                if a in ("--config", "-config") or a.startswith(("--config=", "-config="))
            ),
            "of --config",
        )
        reason = re.findall(r"\[Errno \d+\] ([^\n]*)", str(err))
        problem = f"cannot load the config file {given}: {reason[-1] if reason else str(err).splitlines()[0]}"
    print(f"error: {problem}", file=sys.stderr)
    sys.exit(2)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    logging.set_verbosity(logging.INFO)
    try:
        with workdir.hold(FLAGS.workdir, FLAGS.mode, exclusive=int(os.environ.get("RANK", "0")) == 0):
            MODES[FLAGS.mode](FLAGS.config, FLAGS.workdir)
    except loop.TrainingInterrupted as stop:
        logging.warning("%s", stop)
        sys.exit(128 + stop.signum)
    except EXPECTED_ERRORS as err:
        if FLAGS.verbose:
            logging.error("%s", "".join(traceback.format_exception(err)))
        sys.exit(f"error: {err}" + ("" if FLAGS.verbose else "\n(run with --verbose for the traceback)"))
    except KeyboardInterrupt:
        sys.exit("interrupted (a second Ctrl-C): stopped without writing a checkpoint; the newest complete one is kept")
    print(f"done: {FLAGS.mode} results in {FLAGS.workdir}")


def run() -> None:
    """The console entry point (`scoresde`, `python -m scoresde`, `main.py`)."""
    main_module = sys.modules.get("__main__")
    if main_module is not None and not getattr(main_module, "__doc__", None):
        main_module.__doc__ = usage  # absl's --help prints the __main__ module's docstring
    app.run(main, flags_parser=parse_flags)
