"""The README's examples run as written and do what they say."""

import re

import torch

from tests.helpers import ROOT

README = ROOT / "README.md"


def python_blocks():
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def block_with(marker: str) -> str:
    """The one README python block that contains `marker` (robust to blocks added elsewhere)."""
    found = [b for b in python_blocks() if marker in b]
    assert len(found) == 1, f"{len(found)} README python blocks contain {marker!r}"
    return found[0]


def test_library_example_runs(capsys):
    namespace: dict = {}
    exec(compile(block_with("make_toy"), "README.md", "exec"), namespace)
    x, info = namespace["x"], namespace["info"]
    assert x.shape == (500, 2) and torch.isfinite(x).all()
    assert info["nfe"] == 501
    assert "501" in capsys.readouterr().out


def test_sampler_example_runs(capsys):
    namespace: dict = {}
    exec(compile(block_with('samplers.sample("dpmpp_3m"'), "README.md", "exec"), namespace)
    assert namespace["info"]["nfe"] == 20
    assert namespace["x"].shape == (1000, 2)
    assert "dpmpp_3m" in capsys.readouterr().out


def test_user_defined_sde_example_runs(capsys):
    namespace: dict = {}
    exec(compile(block_with("from scoresde.sde_lib import SDE"), "README.md", "exec"), namespace)
    assert namespace["info"]["nfe"] == 20
    x = namespace["x"]
    assert x.shape == (1000, 2) and torch.isfinite(x).all()
    radius = x.norm(dim=1)
    assert abs(radius.mean().item() - 1.0) < 0.02  # on the ring of radius 1
    assert "3.46" in capsys.readouterr().out  # sqrt(12)


def test_benchmark_example_runs(capsys):
    namespace: dict = {}
    exec(compile(block_with("from scoresde.eval import benchmark"), "README.md", "exec"), namespace)
    rows = {(r["sampler"], r["nfe"]): r for r in namespace["benchmark"].summarize(namespace["records"], ["flow_rms"])}
    assert set(rows) == {("my_euler", 10), ("my_euler", 20), ("dpmpp_2m", 10), ("dpmpp_2m", 20)}
    assert rows["dpmpp_2m", 20]["flow_rms"] < rows["my_euler", 20]["flow_rms"]  # second order beats Euler
    assert rows["my_euler", 20]["flow_rms"] < rows["my_euler", 10]["flow_rms"]
    assert "my_euler" in capsys.readouterr().out


def test_likelihood_example_runs(capsys):
    namespace: dict = {}
    exec(compile(block_with("from scoresde import likelihood"), "README.md", "exec"), namespace)
    logp, true = namespace["logp"], namespace["true"]
    assert (logp - true).abs().max() < 0.05  # the p_T-vs-prior mismatch; the solver's own error is far below
    assert namespace["z"].shape == (64, 2)
    assert "exact" in capsys.readouterr().out


def test_controllable_example_runs(capsys):
    namespace: dict = {}
    exec(compile(block_with("from scoresde import controllable, samplers"), "README.md", "exec"), namespace)
    assert float(namespace["in_class"].double().mean()) > 0.99
    replaced, particles = namespace["replaced"], namespace["particles"]
    assert float((particles[0, :, 1] > 0).double().mean()) > 0.97 > float((replaced[:, 1] > 0).double().mean())
    assert "SMC" in capsys.readouterr().out


def test_tuned_grid_example_runs(capsys):
    namespace: dict = {}
    exec(compile(block_with("tune_time_grid"), "README.md", "exec"), namespace)
    rms, run, x_T, grid = namespace["rms"], namespace["run"], namespace["x_T"], namespace["grid"]
    sde, samplers = namespace["sde"], namespace["samplers"]
    assert rms(run(x_T, grid)) < 0.7 * rms(run(x_T, samplers.get_time_grid("log_snr", sde, 9, 1e-5)))  # on held-out noise
    assert "tuned on other noise" in capsys.readouterr().out


def test_own_sampler_example_runs():
    namespace: dict = {}
    exec(compile(block_with('samplers.register("shrunk_ddim"'), "README.md", "exec"), namespace)
    assert namespace["x"].shape == (100, 2) and namespace["info"]["nfe"] == 11
    assert "shrunk_ddim" not in namespace["samplers"].available()  # the example unregisters it


def test_grid_search_example_runs(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(block_with("samplers.search_time_grid("), "README.md", "exec"), namespace)
    result = namespace["result"]
    assert result.candidates[result.winner]["holdout"] <= result.candidates[result.best_handcrafted]["holdout"]
    assert namespace["grid9"].shape == (10,) and namespace["info"]["nfe"] == 5
    assert torch.equal(namespace["grid"], result.grid)
    assert "(chosen)" in capsys.readouterr().out
