"""Deprecated location of the controllable-generation modes: they are `scoresde.cli.train_classifier`,
`cli.inpaint`, `cli.colorize` and `cli.conditional`, and all of them are in `scoresde.run_lib`.

Kept for one release; importing it warns.
"""

import warnings

from scoresde.run_lib import colorize, conditional, inpaint, parse_scales, train_classifier

warnings.warn("scoresde.run_controllable is deprecated: its modes are in scoresde.run_lib", DeprecationWarning, stacklevel=2)

__all__ = ["colorize", "conditional", "inpaint", "parse_scales", "train_classifier"]
