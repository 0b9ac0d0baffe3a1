"""`python -m scoresde ...`: the command line (see scoresde.cli)."""

from scoresde.cli import __doc__, run  # noqa: F401  (absl prints __main__'s docstring for --help)

run()
