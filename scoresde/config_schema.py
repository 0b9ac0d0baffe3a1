"""Deprecated location of the config validation: it lives in `scoresde.config.schema`.

Kept for one release; importing it warns.
"""

import warnings

from scoresde.config.compare import check_checkpoint_config, model_defining_values  # noqa: F401
from scoresde.config.schema import *  # noqa: F403
from scoresde.config.schema import check  # noqa: F401

warnings.warn("scoresde.config_schema is deprecated: use scoresde.config.schema", DeprecationWarning, stacklevel=2)
