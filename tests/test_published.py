"""Published model files in place of a checkpoint (`scoresde.cli.published`): sample and eval read a
score_sde_pytorch `.pth` (with its run's settings as JSON) directly."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from scoresde import run_lib, samplers
from scoresde.cli import published
from scoresde.cli.experiment import build_sde
from scoresde.models import load_edm_snapshot, load_score_sde_pytorch_checkpoint
from scoresde.models.score_sde_pytorch import score_fn_for
from scoresde.score import DenoiserScore
from scoresde.sde_lib import VPSDE
from tests.helpers import tiny_config

SHARED = Path(__file__).resolve().parents[2] / "shared" / "fixtures"
SCORE_SDE = SHARED / "score_sde_pytorch"
needs_fixtures = pytest.mark.skipif(not (SCORE_SDE / "fixtures_ddpm_discrete.json").exists(), reason="fixtures not present")


def _image_data(tmp_path: Path, shape=(3, 16, 16), n=24) -> Path:
    """A small npz image set of the published network's shape (only its shape and range are used by sample)."""
    path = tmp_path / "images.npz"
    images = np.random.default_rng(0).integers(0, 256, size=(n, shape[1], shape[2], shape[0]), dtype=np.uint8)
    np.savez(path, images=images, labels=np.arange(n) % 4)  # labels: eval's feature classifier needs them
    return path


def _ddpm_settings(tmp_path: Path) -> Path:
    spec = json.loads((SCORE_SDE / "fixtures_ddpm_discrete.json").read_text())["ddpm_vp"]
    settings = {"model": spec["model_config"], "data": spec["data"], "training": {"sde": "vpsde", "continuous": True}}
    path = tmp_path / "ddpm_vp_settings.json"
    path.write_text(json.dumps(settings))
    return path


def _config(tmp_path: Path, checkpoint: Path, settings: Path | None = None, **overrides):
    values = {
        "data.dataset": "npz",
        "data.path": str(_image_data(tmp_path)),
        "data.centered": True,
        "data.cache_dir": str(tmp_path / "cache"),
        "sde.name": "vpsde",
        "sampling.checkpoint": str(checkpoint),
        "sampling.checkpoint_settings": str(settings or ""),
        "sampling.sampler": "dpmpp_2m",
        "sampling.steps": 3,
        "sampling.n_samples": 5,
        "sampling.batch_size": 5,
        "eval.shard_size": 3,
        "eval.n_projections": 8,
    }
    return tiny_config(**{**values, **overrides})


@needs_fixtures
def test_sample_mode_draws_from_a_score_sde_pytorch_checkpoint(tmp_path):
    settings = _ddpm_settings(tmp_path)
    config = _config(tmp_path, SCORE_SDE / "ddpm_vp_checkpoint.pth", settings)
    run_lib.sample(config, tmp_path / "run")
    out = tmp_path / "run" / "sample" / "dpmpp_2m"
    stored = np.load(out / "samples.npz")
    quality = json.loads((out / "quality.json").read_text())
    assert stored["samples"].shape == (5, 3, 16, 16) and quality["checkpoint"].endswith("ddpm_vp_checkpoint.pth")
    assert int(stored["step"]) == 1234  # the step stored in the official checkpoint

    # the same samples from the library directly: the loaded network, score_sde's conventions, sample i of seed i
    spec = json.loads(settings.read_text())
    net = load_score_sde_pytorch_checkpoint(SCORE_SDE / "ddpm_vp_checkpoint.pth", spec["model"], spec["data"])
    sde = VPSDE(beta_min=0.1, beta_max=20.0)
    score_fn = score_fn_for(net, sde, "vpsde")
    first = []
    for seed in range(2):
        generator = torch.Generator().manual_seed(seed)
        x_T = sde.prior_sampling((1, 3, 16, 16), generator=generator)
        with torch.no_grad():
            x, _ = samplers.sample("dpmpp_2m", sde, score_fn, x_T=x_T, steps=3, eps=config.sampling.eps, generator=generator)
        first.append(x)
    expected = np.round((torch.cat(first).clamp(-1, 1).numpy() + 1) / 2 * 255) / 255
    np.testing.assert_allclose(stored["samples"][:2], expected, atol=1.5 / 255)


@needs_fixtures
@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"sde.name": "vesde"}, "--config.sde.name=vpsde"),
        ({"sde.beta_max": 10.0}, "--config.sde.beta_max=20.0"),
        ({"data.centered": False}, "--config.data.centered=True"),
        ({"model.num_classes": 3}, "--config.model.num_classes=0"),
        ({"sampling.checkpoint_settings": ""}, "--config.sampling.checkpoint_settings=FILE"),
    ],
)
def test_a_published_file_that_does_not_fit_the_run_is_refused_by_name(tmp_path, overrides, message):
    config = _config(tmp_path, SCORE_SDE / "ddpm_vp_checkpoint.pth", _ddpm_settings(tmp_path), **overrides)
    with pytest.raises(ValueError, match=message.replace(".", r"\.")):
        run_lib.sample(config, tmp_path / "run")


def test_model_files_are_told_by_suffix_and_bad_settings_are_named(tmp_path):
    (tmp_path / "weights.bin").write_bytes(b"0")
    with pytest.raises(ValueError, match="neither a score_sde_pytorch checkpoint"):
        published.is_published(tmp_path / "weights.bin")
    assert not published.is_published(tmp_path) and not published.is_published("")
    (tmp_path / "network-snapshot-000100.pkl").write_bytes(b"not a pickle")
    assert published.is_published(tmp_path / "network-snapshot-000100.pkl")
    assert published.step_of(tmp_path / "network-snapshot-000100.pkl") == 100
    (tmp_path / "bad.json").write_text('{"model": {}, "data": {}}')
    with pytest.raises(ValueError, match="the settings lack training"):
        published.read_settings(tmp_path / "x.pth", str(tmp_path / "bad.json"))
    (tmp_path / "sde.json").write_text('{"model": {}, "data": {}, "training": {"sde": "edm", "continuous": true}}')
    with pytest.raises(ValueError, match="training.sde='edm'"):
        published.read_settings(tmp_path / "x.pth", str(tmp_path / "sde.json"))
    (tmp_path / "broken.json").write_text("{")
    with pytest.raises(ValueError, match="not a readable JSON file"):
        published.read_settings(tmp_path / "x.pth", str(tmp_path / "broken.json"))


@needs_fixtures
def test_eval_mode_scores_a_score_sde_pytorch_checkpoint(tmp_path):
    config = _config(tmp_path, SCORE_SDE / "ddpm_vp_checkpoint.pth", _ddpm_settings(tmp_path))
    config.eval.num_samples, config.eval.runs, config.eval.kernel_examples = 6, 1, 6
    config.eval.stats_dir = str(tmp_path / "stats")
    result = run_lib.evaluate(config, tmp_path / "run")
    rows = json.loads(Path(result["summary"]).read_text())
    rows = rows["records"] if isinstance(rows, dict) else rows
    assert [(row["step"], row["sampler"]) for row in rows] == [(1234, "dpmpp_2m")]  # the file's step
    assert (tmp_path / "run" / "eval" / "step_1234").is_dir()


def test_the_readme_settings_example_builds_the_ddpm_cifar10_network():
    import re

    from scoresde.models import from_score_sde_pytorch_config

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    (block,) = [b for b in re.findall(r"```json\n(.*?)```", readme, flags=re.S) if '"checkpoint_settings"' in b or '"ddpm"' in b]
    settings = json.loads(block)
    net = from_score_sde_pytorch_config(settings["model"], settings["data"])
    assert net.data_shape == (3, 32, 32) and settings["training"] == {"sde": "vpsde", "continuous": True}


EDM = SHARED / "edm"
needs_edm = pytest.mark.skipif(not (EDM / "edm_ddpmpp_uncond.pkl").exists(), reason="EDM fixtures not present")


@needs_edm
@pytest.mark.parametrize("sde_name", ["edmsde", "vpsde"])
def test_sample_mode_draws_from_an_edm_snapshot_under_any_sde(tmp_path, sde_name):
    snapshot = tmp_path / "network-snapshot-000250.pkl"
    snapshot.write_bytes((EDM / "edm_ddpmpp_uncond.pkl").read_bytes())
    config = _config(tmp_path, snapshot, **{"sde.name": sde_name, "sampling.sampler": "heun"})
    run_lib.sample(config, tmp_path / "run")
    stored = np.load(tmp_path / "run" / "sample" / "heun" / "samples.npz")
    assert stored["samples"].shape == (5, 3, 16, 16) and int(stored["step"]) == 250

    sde = build_sde(config)
    score_fn = DenoiserScore(load_edm_snapshot(snapshot), sde)
    generator = torch.Generator().manual_seed(1)
    x_T = sde.prior_sampling((1, 3, 16, 16), generator=generator)
    with torch.no_grad():
        x, _ = samplers.sample("heun", sde, score_fn, x_T=x_T, steps=3, eps=config.sampling.eps, generator=generator)
    expected = np.round((x.clamp(-1, 1).numpy() + 1) / 2 * 255) / 255
    np.testing.assert_allclose(stored["samples"][1:2], expected, atol=1.5 / 255)


@needs_edm
def test_an_edm_snapshot_that_does_not_fit_the_run_is_refused(tmp_path):
    config = _config(tmp_path, EDM / "vp_ddpmpp_cond.pkl", **{"sde.name": "edmsde"})
    with pytest.raises(ValueError, match="--config.model.num_classes=10"):
        run_lib.sample(config, tmp_path / "run")
    config = _config(tmp_path, EDM / "edm_adm_cond.pkl", **{"sde.name": "edmsde", "sampling.use_ema": False})
    with pytest.raises(ValueError, match="keeps only the EMA weights"):
        run_lib.sample(config, tmp_path / "run")


@needs_edm
def test_eval_mode_scores_an_edm_snapshot(tmp_path):
    snapshot = tmp_path / "network-snapshot-000500.pkl"
    snapshot.write_bytes((EDM / "edm_ncsnpp_uncond.pkl").read_bytes())
    config = _config(tmp_path, snapshot, **{"sde.name": "edmsde"})
    config.eval.num_samples, config.eval.runs, config.eval.kernel_examples = 6, 1, 6
    config.eval.stats_dir = str(tmp_path / "stats")
    result = run_lib.evaluate(config, tmp_path / "run")
    rows = json.loads(Path(result["summary"]).read_text())
    rows = rows["records"] if isinstance(rows, dict) else rows
    assert [(row["step"], row["sampler"]) for row in rows] == [(500, "dpmpp_2m")]  # the kimg in the name
