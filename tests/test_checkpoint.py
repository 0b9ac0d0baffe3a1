"""Checkpoints: atomic writes, rotation, strict and safe loading, clear errors."""

import pytest
import torch

from scoresde.models import ExponentialMovingAverage, ScoreMLP
from scoresde.train import checkpoint


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
    extra = {"scaler": {"scale": 1024.0, "growth_tracker": 3}, "data_order": {"scheme": "batch_indices", "seed": 4}}
    path = checkpoint.save(tmp_path, 7, model, ema, optimizer, {"a": 1}, extra=extra)
    other, other_ema, other_opt = make_state(1)
    assert checkpoint.restore(path, other, other_ema, other_opt) == (7, extra)
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


def test_pickle_payload_is_not_executed(tmp_path):
    """A state.pt whose unpickling would run a command is refused before anything runs."""
    model, ema, optimizer = make_state()
    path = checkpoint.save(tmp_path / "ckpt", 1, model, ema, optimizer, {})
    witness = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (exec, (f"open({str(witness)!r}, 'w').write('ran')",))

    torch.save({"step": 1, "optimizer": Payload(), "ema_decay": 0.9, "ema_num_updates": 1}, path / "state.pt")
    before = {n: p.clone() for n, p in model.state_dict().items()}
    with pytest.raises(ValueError, match="cannot read training state"):
        checkpoint.restore(path, model, ema, optimizer)
    assert not witness.exists()
    assert all(torch.equal(before[n], p) for n, p in model.state_dict().items())  # nothing was half-restored


def test_truncated_files_give_clear_errors(tmp_path):
    model, ema, optimizer = make_state()
    path = checkpoint.save(tmp_path, 1, model, ema, optimizer, {})
    state = (path / "state.pt").read_bytes()
    (path / "state.pt").write_bytes(state[: len(state) // 2])
    with pytest.raises(ValueError, match="cannot read training state"):
        checkpoint.restore(path, model, ema, optimizer)
    path = checkpoint.save(tmp_path, 2, model, ema, optimizer, {})
    weights = (path / "ema.safetensors").read_bytes()
    (path / "ema.safetensors").write_bytes(weights[:-50])
    with pytest.raises(ValueError, match="corrupt checkpoint file .*ema.safetensors"):
        checkpoint.load_weights(path, model, ema=True)
    (path / "state.pt").unlink()
    with pytest.raises(FileNotFoundError, match="state.pt"):
        checkpoint.restore(path, model, ema, optimizer)


def test_crash_while_writing_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    """A kill between two files of a checkpoint leaves the previous one selected and loadable."""
    model, ema, optimizer = make_state()
    good = checkpoint.save(tmp_path, 10, model, ema, optimizer, {})
    real_save = checkpoint.torch.save

    def killed(*args, **kwargs):
        raise KeyboardInterrupt  # after both safetensors files, before state.pt: nothing gets to clean up

    monkeypatch.setattr(checkpoint.torch, "save", killed)
    with pytest.raises(KeyboardInterrupt):
        checkpoint.save(tmp_path, 20, model, ema, optimizer, {})
    monkeypatch.setattr(checkpoint.torch, "save", real_save)
    assert checkpoint.latest(tmp_path) == good
    assert (tmp_path / "latest").read_text().strip() == good.name
    partial = [p for p in tmp_path.iterdir() if "00000020" in p.name]
    assert partial and not any((p / checkpoint.MARKER).exists() for p in partial)
    other, other_ema, other_opt = make_state(1)
    assert checkpoint.restore(checkpoint.latest(tmp_path), other, other_ema, other_opt)[0] == 10
    assert {p.name for p in checkpoint.clean_partial(tmp_path)} == {p.name for p in partial}


def test_a_failed_write_names_the_directory_and_cleans_up(tmp_path, monkeypatch):
    """An OS error while writing (a full disk) is one CheckpointWriteError naming the place; no partial stays."""
    model, ema, optimizer = make_state()
    good = checkpoint.save(tmp_path, 10, model, ema, optimizer, {})

    def full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(checkpoint.torch, "save", full)
    with pytest.raises(checkpoint.CheckpointWriteError, match=f"step 20 into {tmp_path}: No space left on device"):
        checkpoint.save(tmp_path, 20, model, ema, optimizer, {})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["latest", good.name]


def test_latest_pointer_follows_complete_checkpoints(tmp_path):
    model, ema, optimizer = make_state()
    checkpoint.save(tmp_path, 5, model, ema, optimizer, {})
    assert (tmp_path / "latest").read_text().strip() == "step_00000005"
    (tmp_path / "latest").write_text("step_00000001\n")  # stale: the pointer's update was interrupted
    assert checkpoint.latest(tmp_path).name == "step_00000005"
    (tmp_path / "latest").write_text("garbage\n")
    assert checkpoint.latest(tmp_path).name == "step_00000005"


def test_newest_across_snapshots_and_meta(tmp_path):
    model, ema, optimizer = make_state()
    checkpoint.save(tmp_path / "snapshots", 100, model, ema, optimizer, {})
    for step in (120, 140):
        checkpoint.save(tmp_path / "meta", step, model, ema, optimizer, {}, keep=1)
    assert [p.name for p in checkpoint.list_complete(tmp_path / "meta")] == ["step_00000140"]
    assert checkpoint.newest(tmp_path / "snapshots", tmp_path / "meta").name == "step_00000140"
    checkpoint.save(tmp_path / "snapshots", 200, model, ema, optimizer, {})
    assert checkpoint.newest(tmp_path / "snapshots", tmp_path / "meta") == tmp_path / "snapshots" / "step_00000200"
    assert checkpoint.newest(tmp_path / "none") is None


def test_non_finite_weights_are_never_saved(tmp_path):
    model, ema, optimizer = make_state()
    good = checkpoint.save(tmp_path, 1, model, ema, optimizer, {})
    with torch.no_grad():
        next(model.parameters())[0] = float("nan")
    with pytest.raises(checkpoint.NonFiniteWeightsError, match="step 2: model tensor .* is not finite"):
        checkpoint.save(tmp_path, 2, model, ema, optimizer, {})
    assert checkpoint.list_complete(tmp_path) == [good] and checkpoint.latest(tmp_path) == good


def test_rotation_never_deletes_the_newest(tmp_path):
    model, ema, optimizer = make_state()
    for step in (1, 2, 3):
        checkpoint.save(tmp_path, step, model, ema, optimizer, {}, keep=0)
    assert [p.name for p in checkpoint.list_complete(tmp_path)] == ["step_00000003"]
