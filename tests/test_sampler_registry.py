"""The sampler registry: one declaration per sampler, every other fact derived from it.

A sampler registered at run time (one function, one `register` call) works in `samplers.sample`,
in `--mode sample` and in `--mode benchmark` without touching any other file; the README's table
and the config sections are the registry's.
"""

import json
import subprocess
import textwrap

import pytest
import torch

from scoresde import oracle, samplers
from scoresde.config import defaults
from scoresde.config import schema as config_schema
from scoresde.sde_lib import VPSDE
from tests.helpers import ROOT, main_command, tiny_config

# The user's sampler, as a user would write it: DDIM's samples scaled by an option of its own.
USER_SAMPLER = '''
from scoresde import samplers


def shrunk_ddim(sde, score_fn, x, time_grid, *, generator=None, callback=None, shrink: float = 1.0):
    """DDIM, then x * shrink (a stand-in for any new update rule)."""
    if not 0 < shrink <= 1:
        raise ValueError(f"shrink must lie in (0, 1], got {shrink}")
    return samplers.ddim(sde, score_fn, x, time_grid, generator=generator, callback=callback) * shrink


if "shrunk_ddim" not in samplers.REGISTRY:
    samplers.register("shrunk_ddim", shrunk_ddim, kind="ode", order=1, default_grid="log_snr", summary="DDIM, shrunk")
'''


@pytest.fixture
def user_sampler():
    namespace: dict = {}
    exec(compile(USER_SAMPLER, "user_sampler", "exec"), namespace)
    yield samplers.get("shrunk_ddim")
    samplers.unregister("shrunk_ddim")


def test_a_registered_sampler_samples_and_is_listed_everywhere(user_sampler):
    sde = VPSDE()
    score = oracle.ring(8, 1.0, 0.05).score_fn(sde)
    x_T = sde.prior_sampling((64, 2), generator=torch.Generator().manual_seed(0))
    reference, _ = samplers.sample("ddim", sde, score, x_T=x_T, steps=6, denoise=False, time_grid="log_snr")
    x, info = samplers.sample("shrunk_ddim", sde, score, x_T=x_T, steps=6, denoise=False, shrink=0.5)
    # its option reached its loop, and its own default grid was used (SDE_DEFAULT_GRIDS does not name it)
    torch.testing.assert_close(x, 0.5 * reference)
    assert info["nfe"] == 6
    assert "shrunk_ddim" in samplers.available() and "shrunk_ddim" in samplers.deterministic()
    assert samplers.SAMPLERS["shrunk_ddim"] is user_sampler.loop
    assert samplers.DEFAULT_TIME_GRIDS["shrunk_ddim"] == "log_snr"
    assert "| `shrunk_ddim` | ode | 1 | 1 / step | log_snr | `shrink=1.0` | DDIM, shrunk |" in samplers.markdown_table()
    assert defaults.get_config().sampling.shrunk_ddim.to_dict() == {"shrink": 1.0}
    with pytest.raises(ValueError, match=r"unknown options \['gamma'\] for sampler 'shrunk_ddim'; valid: \['shrink'\]"):
        samplers.sample("shrunk_ddim", sde, score, x_T=x_T, steps=6, gamma=1.0)


def test_a_registered_samplers_options_are_checked_by_the_sampler_itself(user_sampler):
    config = defaults.get_config()
    config.sampling.sampler = "shrunk_ddim"
    config_schema.check(config)
    config.sampling.shrunk_ddim.shrink = 2.0
    with pytest.raises(ValueError, match=r"config.sampling.shrunk_ddim: shrink must lie in \(0, 1\], got 2.0"):
        config_schema.check(config)


def test_registration_is_checked(user_sampler):
    with pytest.raises(ValueError, match="already registered"):
        samplers.register("shrunk_ddim", user_sampler.loop, kind="ode")
    with pytest.raises(ValueError, match="unknown kind 'odd'"):
        samplers.register("other", user_sampler.loop, kind="odd")
    with pytest.raises(ValueError, match="unknown default_grid 'karas'"):
        samplers.register("other", user_sampler.loop, kind="ode", default_grid="karas")
    with pytest.raises(ValueError, match="must take the keyword-only parameters"):
        samplers.register("other", lambda sde, score_fn, x, time_grid: x, kind="sde")
    assert "other" not in samplers.available()


def test_every_declaration_is_consistent():
    for name, info in samplers.REGISTRY.items():
        assert info.name == name
        assert (info.order is not None) == (info.kind == "ode"), name  # an order exactly for fixed-step solvers
        assert info.default_grid in samplers.TIME_GRIDS, name
        assert info.evaluations() >= (info.kind != "adaptive"), name
        samplers.check_options(name, info.option_defaults())  # its own defaults pass its own checks


def test_the_readme_table_is_the_registrys():
    assert samplers.markdown_table() in (ROOT / "README.md").read_text()
    assert samplers.markdown_table() in samplers.__doc__


@pytest.mark.slow
def test_a_sampler_registered_in_a_config_file_works_in_sample_and_benchmark_modes(tmp_path):
    """The config file registers the sampler (before it builds the defaults); nothing else changes."""
    from scoresde import run_lib

    workdir = tmp_path / "run"
    run_lib.train(tiny_config(), workdir)
    config_file = tmp_path / "my_config.py"
    config_file.write_text(
        USER_SAMPLER
        + textwrap.dedent(
            """
            from tests.helpers import tiny_config


            def get_config():
                config = tiny_config()
                config.sampling.sampler = "shrunk_ddim"
                config.sampling.shrunk_ddim.shrink = 0.5
                b = config.benchmark
                b.problems, b.sdes, b.samplers, b.budgets, b.seeds = ("ring",), ("vpsde",), ("shrunk_ddim", "ddim"), (5,), 1
                b.n_samples, b.progress = 64, False
                return config
            """
        )
    )

    def run(mode):
        result = subprocess.run(
            main_command(workdir, config=config_file, mode=mode), capture_output=True, text=True, cwd=ROOT, timeout=600
        )
        assert result.returncode == 0, result.stderr[-3000:]

    run("sample")
    samples = (workdir / "sample" / "shrunk_ddim" / "samples.npz").stat()
    assert samples.st_size > 0
    run("benchmark")
    records = json.loads((workdir / "benchmark" / "records.json").read_text())["records"]
    assert sorted(r["sampler"] for r in records) == ["ddim", "shrunk_ddim"]
    assert all(r["nfe"] == 5 for r in records)  # the declared evaluations per step set the budget
