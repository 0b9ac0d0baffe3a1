"""Configuration owned by the package: every default (`defaults.get_config`) and its validation (`schema`).

Experiment files (the checkout's `configs/*.py`, or your own anywhere) start from
`scoresde.config.defaults.get_config()` and change what differs; `scoresde.config.schema.check`
validates a config before any work starts. Library modules never import this package: only the
command layer (`scoresde.run_lib`, `scoresde.train.loop`, `scoresde.cli`) reads configs.
"""
