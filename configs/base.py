"""Deprecated location of the defaults: they live in `scoresde.config.defaults` (installed with the package).

Kept for one release so that experiment files written against `configs.base` keep working.
"""

import warnings

from scoresde.config.defaults import get_config

warnings.warn("configs.base is deprecated: import get_config from scoresde.config.defaults", DeprecationWarning, stacklevel=2)

__all__ = ["get_config"]
