"""Every config in configs/ loads, validates and builds its SDE, data and model."""

import importlib
from pathlib import Path

import pytest
import torch

from scoresde import run_lib

CONFIGS = sorted(p.stem for p in (Path(__file__).resolve().parents[1] / "configs").glob("*.py") if p.stem != "__init__")


def test_there_are_configs_for_each_sde():
    names = {importlib.import_module(f"configs.{name}").get_config().sde.name for name in CONFIGS}
    assert {"vpsde", "subvpsde", "vesde", "cosinevpsde", "edmsde"} <= names


@pytest.mark.parametrize("name", CONFIGS)
def test_config_builds_an_experiment(name):
    config = importlib.import_module(f"configs.{name}").get_config()
    config.device = "cpu"
    exp = run_lib.Experiment(config)
    x = exp.x_train[:4]
    t = torch.full((4,), 0.5 * exp.sde.T)
    with torch.no_grad():
        assert exp.score_fn(x, t).shape == x.shape
    assert exp.learning_rate(0) <= config.optim.lr


def test_unavailable_cuda_is_a_clear_error():
    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    with pytest.raises(ValueError, match="CUDA is not available"):
        run_lib.resolve_device("cuda")
