"""Checkpoints: atomic writes, rotation, strict and safe loading, clear errors."""

import pytest
import torch

from scoresde import checkpoint
from scoresde.models import ExponentialMovingAverage, ScoreMLP


def make_state(seed=0):
    torch.manual_seed(seed)
    model = ScoreMLP((2,), width=8, depth=1, embed_dim=8)
    ema = ExponentialMovingAverage(model, decay=0.9)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    model(torch.randn(4, 2), torch.rand(4)).pow(2).sum().backward()
    optimizer.step()
    ema.update(model)
    return model, ema, optimizer


def test_round_trip_restores_model_ema_and_optimizer(tmp_path):
    model, ema, optimizer = make_state(0)
    path = checkpoint.save(tmp_path, 7, model, ema, optimizer, {"a": 1})
    other, other_ema, other_opt = make_state(1)
    assert checkpoint.restore(path, other, other_ema, other_opt) == 7
    for (n, p), q in zip(model.state_dict().items(), other.state_dict().values()):
        assert torch.equal(p, q), n
    for n in ema.shadow:
        assert torch.equal(ema.shadow[n], other_ema.shadow[n])
    assert other_ema.num_updates == ema.num_updates
    s, o = optimizer.state_dict()["state"], other_opt.state_dict()["state"]
    assert all(torch.equal(s[k]["exp_avg"], o[k]["exp_avg"]) for k in s)
    assert checkpoint.read_config(path) == {"a": 1}


def test_ema_weights_load_into_the_model(tmp_path):
    model, ema, optimizer = make_state(0)
    path = checkpoint.save(tmp_path, 1, model, ema, optimizer, {})
    fresh, _, _ = make_state(1)
    checkpoint.load_weights(path, fresh, ema=True)
    for name, value in ema.shadow.items():
        assert torch.equal(dict(fresh.named_parameters())[name], value)


def test_rotation_keeps_newest_and_latest_ignores_partial(tmp_path):
    model, ema, optimizer = make_state()
    for step in (1, 2, 3, 4):
        checkpoint.save(tmp_path, step, model, ema, optimizer, {}, keep=2)
    assert [p.name for p in checkpoint.list_complete(tmp_path)] == ["step_00000003", "step_00000004"]
    (tmp_path / "step_00000009").mkdir()  # an interrupted write that lost its marker
    (tmp_path / ".tmp-step_00000010-123").mkdir()
    assert checkpoint.latest(tmp_path).name == "step_00000004"
    removed = {p.name for p in checkpoint.clean_partial(tmp_path)}
    assert removed == {"step_00000009", ".tmp-step_00000010-123"}


def test_corrupt_weights_give_a_clear_error(tmp_path):
    model, ema, optimizer = make_state()
    path = checkpoint.save(tmp_path, 1, model, ema, optimizer, {})
    (path / "model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(ValueError, match="corrupt checkpoint file"):
        checkpoint.load_weights(path, model)


def test_mismatched_model_names_the_keys(tmp_path):
    model, ema, optimizer = make_state()
    path = checkpoint.save(tmp_path, 1, model, ema, optimizer, {})
    bigger = ScoreMLP((2,), width=8, depth=2, embed_dim=8)
    with pytest.raises(ValueError, match="blocks.1"):
        checkpoint.load_weights(path, bigger)


def test_pickled_code_in_state_is_refused(tmp_path):
    model, ema, optimizer = make_state()
    path = checkpoint.save(tmp_path, 1, model, ema, optimizer, {})

    class Payload:
        def __reduce__(self):
            return (print, ("pwned",))

    torch.save({"step": 1, "optimizer": Payload()}, path / "state.pt")
    with pytest.raises(ValueError, match="cannot read training state"):
        checkpoint.restore(path, model, ema, optimizer)
