"""score_sde-style entry point of a checkout: `python main.py --config ... --workdir ... --mode ...`.

The same command as the installed `scoresde` and `python -m scoresde`; see scoresde/cli.
"""

from scoresde.cli import __doc__, run  # noqa: F401  (absl prints __main__'s docstring for --help)

if __name__ == "__main__":
    run()
