"""The controllable-generation modes end to end on tiny digits models (scoresde.cli: train_classifier,
conditional, inpaint, colorize),
class-conditional training with label dropout, and their errors."""

from __future__ import annotations

import json
import os
import signal

import numpy as np
import pytest
import torch

from scoresde import data, run_lib
from scoresde.models.mlp import ScoreMLP
from scoresde.train import loop
from scoresde.train.distributed import Context
from tests.helpers import tiny_config

DIGITS = {
    "data.dataset": "digits",
    "training.n_steps": 3,
    "classifier.n_steps": 4,
    "classifier.batch_size": 32,
    "classifier.width": 16,
    "classifier.depth": 1,
    "classifier.embed_dim": 16,
    "classifier.checkpoint_freq": 2,
    "controllable.n_images": 5,
    "controllable.n_per_class": 2,
    "controllable.scales": "0,2",
}


def test_class_conditional_mlp_label_changes_only_its_own_example():
    net = ScoreMLP((4,), width=16, depth=1, embed_dim=8, num_classes=3)
    x, t = torch.randn(4, 4), torch.rand(4)
    base = net(x, t, torch.tensor([0, 1, 2, 3]))
    changed = net(x, t, torch.tensor([0, 2, 2, 3]))
    assert torch.equal(base[[0, 2, 3]], changed[[0, 2, 3]]) and not torch.allclose(base[1], changed[1])
    assert torch.equal(net(x, t), net(x, t, torch.full((4,), 3)))  # no labels = the "no class" index
    with pytest.raises(ValueError, match="class labels must lie"):
        net(x, t, torch.tensor([0, 1, 2, 4]))
    with pytest.raises(ValueError, match="unconditional network"):
        ScoreMLP((4,), width=8, depth=1, embed_dim=8)(x, t, torch.zeros(4, dtype=torch.long))


@pytest.mark.parametrize("dropout", [0.0, 0.3, 0.9])
def test_label_dropout_replaces_that_fraction_of_labels_by_no_class(dropout, tmp_path):
    config = tiny_config(**{**DIGITS, "model.num_classes": 10, "training.label_dropout": dropout, "training.batch_size": 512})
    exp = run_lib.Experiment(config)
    trainer = exp.trainer(tmp_path, Context())
    x0, _, _, labels = trainer.objective.batch(0, config.training.batch_size)
    dropped = labels == 10
    assert abs(float(dropped.float().mean()) - dropout) < 0.07
    idx = torch.as_tensor(data.batch_indices(len(exp.x_train), 512, 0, config.seed))
    assert torch.equal(labels[~dropped], exp.y_train[idx][~dropped])  # kept labels are the examples' own
    assert torch.equal(trainer.objective.batch(0, config.training.batch_size)[3], labels)  # a pure function of (seed, step)


def test_classifier_free_guidance_mode_end_to_end(tmp_path):
    config = tiny_config(**{**DIGITS, "model.num_classes": 10, "sampling.sampler": "ddim", "sampling.steps": 3})
    run_lib.train(config, tmp_path)
    summary = run_lib.conditional(config, tmp_path)
    assert [r["scale"] for r in summary["results"]] == [0.0, 2.0]
    assert [r["network_evaluations_per_score"] for r in summary["results"]] == [1, 2]
    assert all(0 <= r["recognised"] <= 1 and r["nfe"] == 4 for r in summary["results"])
    assert (tmp_path / "conditional" / "free_scale2.png").exists()
    assert json.loads((tmp_path / "conditional" / "free.json").read_text()) == summary


def test_classifier_guidance_and_inpainting_modes_end_to_end(tmp_path):
    config = tiny_config(**{**DIGITS, "sampling.sampler": "ddim", "sampling.steps": 3})
    run_lib.train(config, tmp_path)
    with pytest.raises(FileNotFoundError, match="train_classifier"):
        run_lib.conditional(tiny_config(**{**DIGITS, "controllable.guidance": "classifier"}), tmp_path)
    with pytest.raises(ValueError, match="num_classes"):
        run_lib.conditional(config, tmp_path)  # classifier-free guidance of an unconditional model
    accuracy = run_lib.train_classifier(config, tmp_path)
    assert accuracy["step"] == 4 and set(accuracy["test_accuracy_at_t"]) >= {"0.01T", "1T"}
    again = run_lib.train_classifier(config, tmp_path)  # resumes at the end: no more steps
    assert again["step"] == 4
    guided = tiny_config(**{**DIGITS, "controllable.guidance": "classifier", "sampling.sampler": "ddim", "sampling.steps": 3})
    summary = run_lib.conditional(guided, tmp_path)
    assert len(summary["results"]) == 2 and (tmp_path / "conditional" / "classifier_scale0.png").exists()

    for method in ("replacement", "smc"):
        cfg = tiny_config(
            **{
                **DIGITS,
                "controllable.method": method,
                "controllable.particles": 3,
                "sampling.sampler": "ddim",
                "sampling.steps": 3,
                "controllable.mask": "top_half",
            }
        )
        summary = run_lib.inpaint(cfg, tmp_path)
        out = tmp_path / "inpaint" / ("smc_3" if method == "smc" else "ddim")
        results = np.load(out / "results.npz")
        known = results["mask"].astype(bool)
        assert results["inpainted"].shape == (5, 1, 8, 8)
        np.testing.assert_allclose(results["inpainted"][:, known], results["original"][:, known], atol=1e-6)
        assert summary["n_images"] == 5 and 0 <= summary["label_agreement"]["inpainted"] <= 1
        assert (out / "grid.png").exists()


def test_colorize_mode_end_to_end(tmp_path):
    config = tiny_config(**{**DIGITS, "data.dataset": "colored_digits", "sampling.sampler": "ddim", "sampling.steps": 3})
    run_lib.train(config, tmp_path)
    summary = run_lib.colorize(config, tmp_path)
    out = tmp_path / "colorize" / "ddim"
    results = np.load(out / "results.npz")
    assert results["colorized"].shape == (5, 3, 8, 8) and (out / "grid.png").exists()
    assert summary["max_gray_error"] < 1e-4 and summary["nfe"] == 4  # float32 round-off of the colour rotation
    assert summary["hue_agreement"]["originals"] == 1.0 and 0 <= summary["hue_agreement"]["colorized"] <= 1
    assert json.loads((out / "summary.json").read_text()) == summary
    smc = run_lib.colorize(
        tiny_config(
            **{
                **DIGITS,
                "data.dataset": "colored_digits",
                "controllable.method": "smc",
                "controllable.particles": 3,
                "sampling.steps": 3,
            }
        ),
        tmp_path,
    )
    assert np.load(tmp_path / "colorize" / "smc_3" / "results.npz")["colorized"].shape == (5, 3, 8, 8)
    assert smc["sampler"] == "smc_ancestral" and smc["max_gray_error"] < 1e-4  # the gray image is kept
    with pytest.raises(ValueError, match="RGB images"):
        run_lib.colorize(tiny_config(**DIGITS), tmp_path)


def test_configuration_errors_are_named(tmp_path):
    with pytest.raises(ValueError, match="needs labelled data"):
        run_lib.Experiment(tiny_config(**{"model.num_classes": 3}))  # the toy data have no labels
    with pytest.raises(ValueError, match="must exceed the largest label"):
        run_lib.Experiment(tiny_config(**{**DIGITS, "model.num_classes": 5}))
    with pytest.raises(ValueError, match="comma-separated"):
        run_lib.validate(tiny_config(**{**DIGITS, "controllable.scales": "1,two"}))
    with pytest.raises(ValueError, match="unknown mask"):
        run_lib.validate(tiny_config(**{**DIGITS, "controllable.mask": "triangle"}))


# -- the classifier trains through the training loop: resume, signals, non-finite guard -----------
CLASSIFIER = {**DIGITS, "classifier.n_steps": 8, "classifier.checkpoint_freq": 2}


def _classifier_weights(config, workdir):
    from scoresde.cli.train_classifier import CLASSIFIER_DIR, build_classifier
    from scoresde.train import checkpoint

    model = build_classifier(config, run_lib.Experiment(config))
    checkpoint.load_weights(checkpoint.latest(workdir / CLASSIFIER_DIR), model, ema=True)
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_an_interrupted_classifier_run_resumes_to_the_same_weights(tmp_path, monkeypatch):
    from scoresde.train import objectives

    straight = tmp_path / "straight"
    run_lib.train_classifier(tiny_config(**CLASSIFIER), straight)
    assert not (straight / loop.METRICS_FILE).exists()  # the score network's log is not the classifier's
    assert [r["step"] for r in loop.read_metrics(straight / "classifier" / loop.METRICS_FILE)] == list(range(1, 9))

    real_loss, calls = objectives.NoisyClassification.loss, []

    def loss_then_sigterm(self, module, part):
        calls.append(1)
        if len(calls) == 3:
            os.kill(os.getpid(), signal.SIGTERM)
        return real_loss(self, module, part)

    monkeypatch.setattr(objectives.NoisyClassification, "loss", loss_then_sigterm)
    resumed = tmp_path / "resumed"
    with pytest.raises(loop.TrainingInterrupted) as stop:
        run_lib.train_classifier(tiny_config(**CLASSIFIER), resumed)
    assert (
        stop.value.step == 4 and stop.value.path == resumed / "classifier" / "step_00000004"
    )  # the signal is seen at the next step
    monkeypatch.setattr(objectives.NoisyClassification, "loss", real_loss)
    assert run_lib.train_classifier(tiny_config(**CLASSIFIER), resumed)["step"] == 8
    a, b = _classifier_weights(tiny_config(**CLASSIFIER), straight), _classifier_weights(tiny_config(**CLASSIFIER), resumed)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_non_finite_classifier_loss_stops_or_is_skipped(tmp_path, monkeypatch):
    from scoresde.train import objectives

    real_loss, calls = objectives.NoisyClassification.loss, []

    def nan_at_step_two(self, module, part):
        calls.append(1)
        return real_loss(self, module, part) * (float("nan") if len(calls) == 2 else 1.0)

    monkeypatch.setattr(objectives.NoisyClassification, "loss", nan_at_step_two)
    with pytest.raises(loop.NonFiniteLossError, match="step 2"):
        run_lib.train_classifier(tiny_config(**CLASSIFIER), tmp_path / "stop")
    calls.clear()
    assert run_lib.train_classifier(tiny_config(**{**CLASSIFIER, "training.nonfinite": "skip"}), tmp_path / "skip")["step"] == 8
    records = loop.read_metrics(tmp_path / "skip" / "classifier" / loop.METRICS_FILE)
    assert [r["step"] for r in records if r.get("skipped_steps")] == [2]
