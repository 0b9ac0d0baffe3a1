"""The README's library example runs as written and does what it says."""

import re
from pathlib import Path

import torch

README = Path(__file__).resolve().parents[1] / "README.md"


def test_library_example_runs(capsys):
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert blocks, "the README has no python example"
    namespace: dict = {}
    exec(compile(blocks[0], "README.md", "exec"), namespace)
    x, info = namespace["x"], namespace["info"]
    assert x.shape == (500, 2) and torch.isfinite(x).all()
    assert info["nfe"] == 501
    assert "501" in capsys.readouterr().out
