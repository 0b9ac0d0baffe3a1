"""The README's examples run as written and do what they say."""

import re
from pathlib import Path

import torch

README = Path(__file__).resolve().parents[1] / "README.md"


def python_blocks():
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_library_example_runs(capsys):
    namespace: dict = {}
    exec(compile(python_blocks()[0], "README.md", "exec"), namespace)
    x, info = namespace["x"], namespace["info"]
    assert x.shape == (500, 2) and torch.isfinite(x).all()
    assert info["nfe"] == 501
    assert "501" in capsys.readouterr().out


def test_sampler_example_runs(capsys):
    namespace: dict = {}
    exec(compile(python_blocks()[1], "README.md", "exec"), namespace)
    assert namespace["info"]["nfe"] == 20
    assert namespace["x"].shape == (1000, 2)
    assert "dpmpp_3m" in capsys.readouterr().out


def test_user_defined_sde_example_runs(capsys):
    namespace: dict = {}
    exec(compile(python_blocks()[2], "README.md", "exec"), namespace)
    assert namespace["info"]["nfe"] == 20
    x = namespace["x"]
    assert x.shape == (1000, 2) and torch.isfinite(x).all()
    radius = x.norm(dim=1)
    assert abs(radius.mean().item() - 1.0) < 0.02  # on the ring of radius 1
    assert "3.46" in capsys.readouterr().out  # sqrt(12)


def test_benchmark_example_runs(capsys):
    namespace: dict = {}
    exec(compile(python_blocks()[3], "README.md", "exec"), namespace)
    rows = {(r["sampler"], r["nfe"]): r for r in namespace["benchmark"].summarize(namespace["records"], ["flow_rms"])}
    assert set(rows) == {("my_euler", 10), ("my_euler", 20), ("dpmpp_2m", 10), ("dpmpp_2m", 20)}
    assert rows["dpmpp_2m", 20]["flow_rms"] < rows["my_euler", 20]["flow_rms"]  # second order beats Euler
    assert rows["my_euler", 20]["flow_rms"] < rows["my_euler", 10]["flow_rms"]
    assert "my_euler" in capsys.readouterr().out


def test_likelihood_example_runs(capsys):
    namespace: dict = {}
    exec(compile(python_blocks()[4], "README.md", "exec"), namespace)
    logp, true = namespace["logp"], namespace["true"]
    assert (logp - true).abs().max() < 0.05  # the p_T-vs-prior mismatch; the solver's own error is far below
    assert namespace["z"].shape == (64, 2)
    assert "exact" in capsys.readouterr().out


def test_controllable_example_runs(capsys):
    namespace: dict = {}
    exec(compile(python_blocks()[5], "README.md", "exec"), namespace)
    assert float(namespace["in_class"].double().mean()) > 0.99
    replaced, particles = namespace["replaced"], namespace["particles"]
    assert float((particles[0, :, 1] > 0).double().mean()) > 0.97 > float((replaced[:, 1] > 0).double().mean())
    assert "SMC" in capsys.readouterr().out
