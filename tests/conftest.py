"""Shared fixtures: the SDEs, data shapes, dtypes and explicitly seeded generators.

Randomness always comes from a `torch.Generator` passed by hand; module construction (which draws
from torch's global generator) happens inside `torch.random.fork_rng`, so no test changes global
state for the next one.
"""

import contextlib
import os

import pytest
import torch

from tests.problems import DEFAULT_SDES, SDE_CASES


@pytest.fixture(params=sorted(SDE_CASES))
def sde(request):
    """Every SDE case: the defaults of Song et al., cosine VP, EDM, and some with other parameters."""
    return SDE_CASES[request.param]()


@pytest.fixture(params=DEFAULT_SDES)
def default_sde(request):
    """VPSDE(), subVPSDE() and VESDE() with Song et al.'s default parameters."""
    return SDE_CASES[request.param]()


@pytest.fixture(params=[(2,), (3, 4, 4)], ids=["points", "images"])
def data_shape(request):
    """Per-example shapes: a 2-D point and a small 3x4x4 image."""
    return request.param


@pytest.fixture(params=[torch.float32, torch.float64], ids=["float32", "float64"])
def dtype(request):
    return request.param


@pytest.fixture
def make_generator():
    """make_generator(seed) -> a fresh CPU torch.Generator seeded with `seed`."""

    def make(seed: int = 0) -> torch.Generator:
        return torch.Generator().manual_seed(seed)

    return make


@pytest.fixture
def seeded():
    """seeded(seed) is a context in which torch's global generator is seeded and later restored.

    For code that draws from the global generator (nn.Module initialisation).
    """

    @contextlib.contextmanager
    def context(seed: int = 0):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            yield

    return context


@pytest.fixture
def single_thread():
    """Run a test with one intra-op thread, restoring the previous count afterwards.

    The tests use small tensors, for which a second OpenMP thread only adds a barrier per operation;
    on a machine busy with other work each such barrier can cost milliseconds, which turns the
    step-by-step simulations (thousands of small operations) from a second into a minute.
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


@pytest.fixture(autouse=True, scope="session")
def _private_prepared_cache(tmp_path_factory):
    """Prepared copies of test data (config.data.cache) go to a folder of this run, never ~/.cache;
    subprocesses inherit it through the environment."""
    previous = os.environ.get("XDG_CACHE_HOME")
    os.environ["XDG_CACHE_HOME"] = str(tmp_path_factory.mktemp("xdg_cache"))
    yield
    if previous is None:
        os.environ.pop("XDG_CACHE_HOME", None)
    else:
        os.environ["XDG_CACHE_HOME"] = previous
