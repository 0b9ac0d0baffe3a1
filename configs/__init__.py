"""Experiment configurations: `base.py` holds every default, each other file overrides a few."""
