"""--mode eval at paper scale: per-seed shards (the same samples in any batch and any number of
processes), resume that redraws only what is missing, streamed Gaussian statistics against closed
forms, reference statistics cached and invalidated, other projects' statistics files read and
malformed ones refused by name."""

from __future__ import annotations

import json

import numpy as np
import pytest
import scipy.linalg

from scoresde.eval import metrics, shards, statistics
from tests.helpers import run_ddp, tiny_config


# -- statistics -----------------------------------------------------------------------------------
def test_running_statistics_equal_numpy_s_mean_and_covariance_whatever_the_batches():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(503, 7)) @ rng.normal(size=(7, 7)) + 1e3  # a large offset: cancellation would show
    stats = statistics.RunningStatistics(keep=40)
    for part in np.array_split(x, [1, 50, 51, 300]):
        stats.add(part)
    np.testing.assert_allclose(stats.mean, x.mean(0), rtol=1e-12)
    np.testing.assert_allclose(stats.cov, np.cov(x, rowvar=False), rtol=1e-9, atol=1e-9)
    np.testing.assert_array_equal(stats.kept, x[:40].astype(np.float32))
    with pytest.raises(ValueError, match="dimension 3 added to statistics of dimension 7"):
        stats.add(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="non-finite features"):
        stats.add(np.full((2, 7), np.nan))


def test_fid_against_its_own_statistics_is_zero_and_matches_scipy_sqrtm():
    rng = np.random.default_rng(1)
    a = rng.normal(size=(400, 16)) @ rng.normal(size=(16, 16))
    b = rng.normal(size=(300, 16)) * 1.3 + 0.2
    own = statistics.RunningStatistics()
    own.add(a)
    assert metrics.frechet_distance(own.mean, own.cov, *metrics.gaussian_statistics(a)) == pytest.approx(0, abs=1e-8)
    (mu1, s1), (mu2, s2) = metrics.gaussian_statistics(a), metrics.gaussian_statistics(b)
    direct = float(np.sum((mu1 - mu2) ** 2) + np.trace(s1 + s2 - 2 * np.real(scipy.linalg.sqrtm(s1 @ s2))))
    other = statistics.RunningStatistics()
    for part in np.array_split(b, 7):
        other.add(part)
    assert metrics.frechet_distance(own.mean, own.cov, other.mean, other.cov) == pytest.approx(direct, rel=1e-6)


def test_kid_is_unbiased_for_one_law_and_positive_for_two():
    rng = np.random.default_rng(2)
    same = [
        metrics.kernel_inception_distance(rng.normal(size=(60, 4)), rng.normal(size=(60, 4)), n_subsets=1)[0] for _ in range(300)
    ]
    spread = np.std(same) / np.sqrt(len(same))
    assert abs(np.mean(same)) < 4 * spread  # expectation exactly 0 (a biased estimator would sit above it)
    shifted = metrics.kernel_inception_distance(rng.normal(size=(200, 4)), rng.normal(size=(200, 4)) + 0.5, n_subsets=5)[0]
    assert shifted > 20 * spread


# -- statistics files -----------------------------------------------------------------------------
def test_edm_and_score_sde_statistics_files_are_read_and_malformed_ones_refused_by_name(tmp_path):
    rng = np.random.default_rng(3)
    pool = rng.normal(size=(50, 6)).astype(np.float32)
    np.savez(tmp_path / "cifar10_stats.npz", pool_3=pool)  # score_sde: the activations themselves
    score_sde = statistics.read_reference_file(tmp_path / "cifar10_stats.npz", dim=6)
    np.testing.assert_allclose(score_sde.mu, pool.astype(np.float64).mean(0), rtol=1e-6)
    np.testing.assert_allclose(score_sde.sigma, np.cov(pool.astype(np.float64), rowvar=False), rtol=1e-6, atol=1e-9)
    assert score_sde.n == 50 and score_sde.points.shape == (50, 6)
    np.savez(tmp_path / "edm.npz", mu=score_sde.mu, sigma=score_sde.sigma)  # EDM / pytorch-fid
    edm = statistics.read_reference_file(tmp_path / "edm.npz")
    np.testing.assert_array_equal(edm.sigma, score_sde.sigma) and len(edm.points) == 0
    ours = tmp_path / "ours.npz"
    statistics.save(ours, score_sde)
    again = statistics.read_reference_file(ours)
    np.testing.assert_array_equal(again.points, score_sde.points)

    def refused(match, **arrays):
        path = tmp_path / "bad.npz"
        np.savez(path, **arrays)
        with pytest.raises(ValueError, match=match):
            statistics.read_reference_file(path, dim=6)

    refused("expected 'mu' and 'sigma'.*found features, labels", features=pool, labels=np.arange(3))
    refused(r"'sigma' \(d, d\)", mu=np.zeros(6), sigma=np.zeros((6, 5)))
    refused("not symmetric", mu=np.zeros(6), sigma=np.triu(np.ones((6, 6))))
    refused("NaN", mu=np.full(6, np.nan), sigma=np.eye(6))
    refused("4-dimensional features, but the feature network gives 6", mu=np.zeros(4), sigma=np.eye(4))
    refused("'pool_3' must be float activations", pool_3=np.zeros(6))
    np.save(tmp_path / "objects.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    np.savez(tmp_path / "pickled.npz", mu=np.array([{"a": 1}], dtype=object), sigma=np.eye(1))
    with pytest.raises(ValueError, match="pickled.npz: not a readable .npz without pickles"):
        statistics.read_reference_file(tmp_path / "pickled.npz")
    (tmp_path / "text.npz").write_text("not a zip")
    with pytest.raises(ValueError, match="text.npz: not a readable .npz"):
        statistics.read_reference_file(tmp_path / "text.npz")


def test_cached_reference_statistics_are_reused_and_recomputed_when_data_or_network_change(tmp_path):
    calls = []

    def compute(x):
        def run():
            calls.append(1)
            stats = statistics.RunningStatistics(keep=5)
            stats.add(x)
            return statistics.Reference.of(stats)

        return run

    x = np.random.default_rng(4).normal(size=(20, 3))
    identity = {"data": statistics.data_identity(x, 20), "features": {"sha256": "a" * 64}}
    first = statistics.cached_reference(tmp_path, identity, compute(x))
    again = statistics.cached_reference(tmp_path, identity, compute(x))
    assert len(calls) == 1 and np.array_equal(first.sigma, again.sigma) and len(again.points) == 5
    changed = x.copy()
    changed[0, 0] += 1e-9
    statistics.cached_reference(tmp_path, {**identity, "data": statistics.data_identity(changed, 20)}, compute(changed))
    statistics.cached_reference(tmp_path, {**identity, "features": {"sha256": "b" * 64}}, compute(x))
    assert len(calls) == 3
    for path in tmp_path.glob("*.npz"):  # a damaged cache entry is recomputed, not trusted
        path.write_bytes(b"junk")
    statistics.cached_reference(tmp_path, identity, compute(x))
    assert len(calls) == 4


# -- shards ---------------------------------------------------------------------------------------
def _oracle_draw(calls=None, fail_after=None):
    """seeds -> Euler-Maruyama samples of the exact score of a ring of Gaussians, by per-sample
    generators; `calls` records each batch, and the call after `fail_after` batches is killed."""
    from scoresde import oracle, samplers
    from scoresde.samplers.noise import per_sample_generators
    from scoresde.sde_lib import VPSDE

    sde, mixture = VPSDE(), oracle.ring()

    def draw(seeds):  # -> (samples, info)
        if calls is not None:
            calls.append(len(seeds))
            if fail_after is not None and len(calls) > fail_after:
                raise KeyboardInterrupt  # killed mid-way
        generators = per_sample_generators(seeds.tolist())
        x, info = samplers.sample("euler_maruyama", sde, mixture.score_fn(sde), (len(seeds), 2), steps=8, generator=generators)
        return x.numpy(), info

    return draw


def test_per_seed_shards_are_the_same_samples_whatever_the_batch_size_and_the_process_split(tmp_path):
    draw = _oracle_draw()
    plan = shards.Plan(num_samples=23, shard_size=5, first_seed=100, about={"sampler": "euler_maruyama"})
    shards.draw(tmp_path / "one", plan, draw, is_image=False, batch_size=23)
    for rank in (1, 0):  # two "processes", each its own shards, in any order
        drawn = shards.draw(tmp_path / "two", plan, draw, is_image=False, batch_size=3, rank=rank, world=2)
        assert drawn == plan.shards_of(rank, 2)
    one, two = (np.concatenate(list(shards.samples(tmp_path / f, plan))) for f in ("one", "two"))
    assert one.shape == (23, 2)
    np.testing.assert_array_equal(one, two)  # bit-identical
    with pytest.raises(ValueError, match="holds samples of another evaluation .*about.sampler"):
        shards.draw(tmp_path / "one", shards.Plan(23, 5, 100, {"sampler": "ode"}), draw, is_image=False, batch_size=4)


def test_a_killed_draw_resumes_with_the_missing_shards_only(tmp_path):
    calls: list[int] = []
    draw = _oracle_draw(calls, fail_after=3)
    plan = shards.Plan(num_samples=20, shard_size=4)
    with pytest.raises(KeyboardInterrupt):
        shards.draw(tmp_path, plan, draw, is_image=False, batch_size=4)
    assert shards.missing(tmp_path, plan) == [3, 4] and not list(tmp_path.glob(".*"))  # whole shards, no debris
    (tmp_path / shards.SHARD_NAME.format(1)).write_bytes(b"truncated")  # a damaged shard is drawn again
    resumed: list[int] = []
    again = _oracle_draw(resumed)
    assert shards.draw(tmp_path, plan, again, is_image=False, batch_size=4) == [1, 3, 4] and len(resumed) == 3
    whole = tmp_path / "whole"
    fresh = _oracle_draw()
    shards.draw(whole, plan, fresh, is_image=False, batch_size=4)
    resumed_samples, whole_samples = (np.concatenate(list(shards.samples(f, plan))) for f in (tmp_path, whole))
    np.testing.assert_array_equal(resumed_samples, whole_samples)


def test_a_plan_gaining_a_fact_its_shards_record_is_upgraded_only_when_they_agree(tmp_path):
    """Plans written before `about` recorded the grid's times: kept (and upgraded) when every shard
    was drawn on the grid the new plan names, refused (or redrawn with replace) when one was not."""

    def on(grid):
        return lambda seeds: (np.zeros((len(seeds), 2)), {"nfe": 3, "time_grid": grid})

    grid, other = [1.0, 0.5, 0.1], [1.0, 0.4, 0.1]
    old = shards.Plan(4, 2, about={"sampler": "ddim"})
    new = shards.Plan(4, 2, about={"sampler": "ddim", "grid_times": grid})
    shards.draw(tmp_path / "a", old, on(grid), is_image=False, batch_size=2)
    assert shards.draw(tmp_path / "a", new, on(grid), is_image=False, batch_size=2) == []
    assert json.loads((tmp_path / "a" / shards.PLAN_FILE).read_text())["about"]["grid_times"] == grid
    shards.draw(tmp_path / "b", old, on(other), is_image=False, batch_size=2)
    with pytest.raises(ValueError, match=r"about\.grid_times differ"):
        shards.draw(tmp_path / "b", new, on(grid), is_image=False, batch_size=2)
    assert shards.draw(tmp_path / "b", new, on(grid), is_image=False, batch_size=2, replace=True) == [0, 1]
    # a plan that differs in anything else is not upgraded, whatever its shards say
    shards.draw(tmp_path / "c", old, on(grid), is_image=False, batch_size=2)
    renamed = shards.Plan(4, 2, about={"sampler": "unipc", "grid_times": grid})
    with pytest.raises(ValueError, match="about.sampler"):
        shards.draw(tmp_path / "c", renamed, on(grid), is_image=False, batch_size=2)


def test_images_are_stored_as_uint8_like_a_png():
    x = np.array([0.0, 0.5 / 255, 0.51 / 255, 1.0, 1.2, -0.1])
    np.testing.assert_array_equal(shards.quantize(x, True), [0, 1, 1, 255, 255, 0])


# -- the mode -------------------------------------------------------------------------------------
def _trained(tmp_path):
    from scoresde import run_lib

    config = tiny_config(**{"training.n_steps": 12, "training.checkpoint_freq": 6})
    run_lib.train(config, tmp_path / "run")
    return config


EVAL = {"eval.num_samples": 24, "eval.shard_size": 8, "eval.kernel_examples": 100, "sampling.batch_size": 7}


def test_eval_mode_scores_every_checkpoint_and_resumes_to_the_same_figures(tmp_path):
    from scoresde import cli

    _trained(tmp_path)
    overrides = {**EVAL, "eval.checkpoints": "all", "eval.runs": 2, "eval.stats_dir": str(tmp_path / "stats")}
    overrides["eval.samplers"] = ("euler_maruyama", "probability_flow@log_snr")
    cli.MODES["eval"](tiny_config(**overrides), tmp_path / "run")
    out = tmp_path / "run" / "eval"
    summary = json.loads((out / "summary.json").read_text())
    assert [(r["step"], r["sampler"]) for r in summary] == [
        (6, "euler_maruyama"),
        (6, "probability_flow@log_snr"),
        (12, "euler_maruyama"),
        (12, "probability_flow@log_snr"),
    ]
    record = summary[-1]
    assert record["seed_ranges"] == [[0, 23], [24, 47]] and record["num_samples"] == 24 and record["time_grid"] == "log_snr"
    assert set(record["aggregate"]) == {"fd", "kd", "precision", "recall"} and record["features"]["name"] == "coordinates"
    assert record["aggregate"]["fd"]["best"] == min(r["fd"] for r in record["runs"])
    assert (out / "summary.md").read_text().count("\n") == 6 and (out / "metrics.png").stat().st_size > 0
    assert len(list((tmp_path / "stats").glob("*.npz"))) == 1
    # a killed evaluation: some shards (and their features) gone; run again, the same figures
    for path in list((out / "step_12" / "euler_maruyama" / "run_1").glob("shard_00000[12]*")):
        path.unlink()
    (out / "summary.json").unlink()
    cli.MODES["eval"](tiny_config(**overrides), tmp_path / "run")
    resumed = json.loads((out / "summary.json").read_text())
    timeless = [{**r, "metric_seconds": 0, "sample_seconds": 0} for r in resumed]
    assert timeless == [{**r, "metric_seconds": 0, "sample_seconds": 0} for r in summary]


def test_two_gloo_processes_draw_the_samples_one_process_draws(tmp_path):
    """Each shard's batches are the same whatever the process count, so 2 processes draw exactly
    one process's samples and figures. (Across batch sizes a network's samples agree to round-off
    only, as BLAS kernels depend on the batch's shape; with an exact score they are bit-identical:
    test_per_seed_shards_are_the_same_samples_whatever_the_batch_size_and_the_process_split.)"""
    from scoresde import cli

    _trained(tmp_path)
    overrides = {**EVAL, "eval.stats_dir": str(tmp_path / "stats")}
    cli.MODES["eval"](tiny_config(**overrides), tmp_path / "run")
    two = tmp_path / "run" / "eval"
    two.rename(tmp_path / "one")
    run_ddp(overrides, tmp_path / "run", tmp_path / "rendezvous", mode="eval")
    plan_dir = "step_12/euler_maruyama/run_0"
    plan = shards.Plan(**json.loads((tmp_path / "one" / plan_dir / "plan.json").read_text()))
    a = np.concatenate(list(shards.samples(tmp_path / "one" / plan_dir, plan)))
    b = np.concatenate(list(shards.samples(two / plan_dir, plan)))
    np.testing.assert_array_equal(a, b)
    assert len(list((two / plan_dir).glob("*.feat.npz"))) == plan.n_shards  # featurised by both ranks
    first, second = (json.loads((d / "summary.json").read_text())[0] for d in (tmp_path / "one", two))
    assert first["aggregate"] == second["aggregate"] and first["nfe"] == second["nfe"]


# -- bits per dimension, sharded -----------------------------------------------------------------
def test_likelihood_shards_with_their_first_index_give_the_unsharded_values():
    """Dequantization noise is seeded by the example's place in the whole set, so two halves
    evaluated apart (each with first_index) equal the whole set evaluated at once."""
    import torch

    from scoresde import likelihood, oracle
    from scoresde.sde_lib import VPSDE

    sde, mixture = VPSDE(), oracle.gaussian(torch.zeros(4), 0.5)
    levels = 8
    x = torch.randint(0, levels, (12, 4), generator=torch.Generator().manual_seed(5)).float() / (levels - 1)
    options = {"levels": levels, "n_dequantize": 2, "batch_size": 3, "rtol": 1e-6, "atol": 1e-6}
    whole = likelihood.evaluate_dataset(sde, mixture.score_fn(sde), x, **options)
    halves = [likelihood.evaluate_dataset(sde, mixture.score_fn(sde), x[i : i + 6], first_index=i, **options) for i in (0, 6)]
    for key in ("logp", "bpd", "bpd_iw"):
        np.testing.assert_array_equal(np.concatenate([h[key] for h in halves]), whole[key])
    shifted = likelihood.evaluate_dataset(sde, mixture.score_fn(sde), x[6:], **options)  # without it: other noise
    assert not np.array_equal(shifted["bpd"], whole["bpd"][6:])


def test_eval_mode_s_sharded_likelihood_equals_the_likelihood_mode(tmp_path):
    from scoresde import cli

    _trained(tmp_path)
    common = {"likelihood.n_examples": 20, "likelihood.batch_size": 5, "likelihood.split": "test"}
    common |= {"likelihood.rtol": 1e-3, "likelihood.atol": 1e-3}
    unsharded = cli.MODES["likelihood"](tiny_config(**common), tmp_path / "run")
    overrides = {**EVAL, **common, "eval.bpd": True, "eval.bpd_shard": 10, "eval.stats_dir": str(tmp_path / "stats")}
    cli.MODES["eval"](tiny_config(**overrides), tmp_path / "run")
    record = json.loads((tmp_path / "run" / "eval" / "summary.json").read_text())[0]
    sharded = record["likelihood"]
    assert sharded["shards"] == 2 and sharded["n_examples"] == unsharded["n_examples"] == 20
    assert sharded["logp_nats"] == unsharded["logp_nats"] and sharded["nfe_per_example"] == unsharded["nfe_per_example"]
    assert (tmp_path / "run" / "eval" / "step_12" / "likelihood_test.json").exists()


def test_following_a_training_evaluates_each_checkpoint_until_the_last_step_or_a_quiet_spell(tmp_path):
    from scoresde import cli

    _trained(tmp_path)
    overrides = {**EVAL, "eval.checkpoints": "follow", "eval.stats_dir": str(tmp_path / "stats")}
    cli.MODES["eval"](tiny_config(**overrides), tmp_path / "run")  # training.n_steps = 12: done after step 12
    assert [r["step"] for r in json.loads((tmp_path / "run" / "eval" / "summary.json").read_text())] == [6, 12]
    unfinished = {**overrides, "training.n_steps": 30, "eval.poll_seconds": 0.05, "eval.follow_timeout": 0.2}
    cli.MODES["eval"](tiny_config(**unfinished), tmp_path / "run")  # waits for step 18, gives up after 0.2 s
    assert [r["step"] for r in json.loads((tmp_path / "run" / "eval" / "summary.json").read_text())] == [6, 12]


def test_eval_with_the_inception_network_reports_fid_kid_and_the_inception_score(tmp_path):
    """With config.benchmark.inception_weights the features are Inception's pool_3 (2048-D, from a
    SHA-256-checked file; random weights here) and the logits give the Inception Score."""
    import torch

    from scoresde import cli, run_lib
    from scoresde.eval import inception
    from tests.helpers import TINY

    path = tmp_path / "weights.pth"
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        torch.save(inception.FIDInceptionV3().state_dict(), path)
    import importlib

    config = importlib.import_module("configs.digits_mlp_vp").get_config()
    for key, value in {**TINY, "training.n_steps": 2, "training.checkpoint_freq": 2, "sampling.steps": 2}.items():
        group, name = key.rsplit(".", 1) if "." in key else ("", key)
        (config[group] if group else config)[name] = value
    run_lib.train(config, tmp_path / "run")
    config.benchmark.inception_weights, config.benchmark.inception_sha256 = str(path), inception.sha256_of_file(path)
    config.eval.num_samples, config.eval.shard_size, config.eval.reference_examples = 6, 3, 8
    config.eval.kernel_examples, config.eval.feature_batch, config.eval.stats_dir = 6, 8, str(tmp_path / "stats")
    cli.MODES["eval"](config, tmp_path / "run")
    record = json.loads((tmp_path / "run" / "eval" / "summary.json").read_text())[0]
    assert record["features"] == {"name": "inception-v3 pool_3", "sha256": inception.sha256_of_file(path)}
    assert {"fid", "kid", "precision", "recall", "inception_score"} <= set(record["aggregate"])
    assert record["aggregate"]["fid"]["mean"] > 0 and record["reference"]["n"] == 8
    assert record["reference"]["identity"]["features"]["sha256"] == inception.sha256_of_file(path)


def test_sample_mode_draws_per_seed_shards_resumes_them_and_redraws_for_another_sampler(tmp_path, monkeypatch):
    from scoresde import cli
    from scoresde.cli import sample as sample_mode

    _trained(tmp_path)
    overrides = {"sampling.n_samples": 20, "sampling.batch_size": 4, "eval.shard_size": 8}
    config = tiny_config(**overrides)
    cli.MODES["sample"](config, tmp_path / "run")
    out = tmp_path / "run" / "sample" / "euler_maruyama"
    first = np.load(out / "samples.npz")["samples"]
    assert first.shape == (20, 2) and json.loads((out / "quality.json").read_text())["seeds"] == [0, 19]
    (out / "shards" / shards.SHARD_NAME.format(2)).unlink()  # as if killed before the last shard
    drawn = []
    real_draw = shards.draw
    monkeypatch.setattr(sample_mode.shards, "draw", lambda *a, **k: drawn.append(real_draw(*a, **k)))
    cli.MODES["sample"](config, tmp_path / "run")
    assert drawn == [[2]]
    np.testing.assert_array_equal(np.load(out / "samples.npz")["samples"], first)
    cli.MODES["sample"](tiny_config(**{**overrides, "sampling.steps": 6}), tmp_path / "run")
    assert drawn[-1] == [0, 1, 2]  # another step count: drawn afresh, not refused


def test_draws_made_under_another_default_grid_are_drawn_afresh(tmp_path, monkeypatch):
    """A sharded draw records the times of its grid, not only the grid's name (None for the
    default): when the defaults change (samplers.SDE_DEFAULT_GRIDS), old shards are not reused."""
    from scoresde import cli
    from scoresde.cli import sample as sample_mode
    from scoresde.samplers import time_grids
    from scoresde.sde_lib import SDE

    _trained(tmp_path)
    config = tiny_config(**{"sampling.n_samples": 8, "eval.shard_size": 8, "sampling.sampler": "ddim", "sampling.steps": 6})
    cli.MODES["sample"](config, tmp_path / "run")
    out = tmp_path / "run" / "sample" / "ddim"
    about = json.loads((out / "shards" / shards.PLAN_FILE).read_text())["about"]
    assert about["time_grid"] is None
    assert about["grid_times"] == pytest.approx(json.loads((out / "quality.json").read_text())["time_grid"], abs=1e-6)
    drawn = []
    real_draw = shards.draw
    monkeypatch.setattr(sample_mode.shards, "draw", lambda *a, **k: drawn.append(real_draw(*a, **k)))
    cli.MODES["sample"](config, tmp_path / "run")
    assert drawn == [[]]  # the same defaults: everything reused
    # a plan written before plans recorded grid_times: upgraded in place, as its shards agree with it
    plan_path = out / "shards" / shards.PLAN_FILE
    old = json.loads(plan_path.read_text())
    del old["about"]["grid_times"]
    plan_path.write_text(json.dumps(old))
    cli.MODES["sample"](config, tmp_path / "run")
    assert drawn[-1] == [] and json.loads(plan_path.read_text())["about"]["grid_times"] == about["grid_times"]
    monkeypatch.setattr(time_grids, "SDE_DEFAULT_GRIDS", {SDE: ({"ddim": "uniform"}, {"ddim": "uniform"})})
    cli.MODES["sample"](config, tmp_path / "run")
    assert drawn[-1] == [0]  # another default grid: drawn afresh
    assert json.loads((out / "shards" / shards.PLAN_FILE).read_text())["about"]["grid_times"] != about["grid_times"]


def test_a_class_conditional_network_is_sampled_with_balanced_classes_from_the_seeds():
    import importlib

    from scoresde import run_lib
    from scoresde.cli.experiment import sampler_from_spec, seed_draw

    config = importlib.import_module("configs.digits_mlp_cfg").get_config()
    config.device, config.model.width, config.model.depth, config.sampling.steps = "cpu", 16, 1, 2
    exp = run_lib.Experiment(config)
    seen = []
    real_score = exp.score_fn

    def score(x, t, class_labels=None):
        seen.append(None if class_labels is None else class_labels.tolist())
        return real_score(x, t, class_labels=class_labels)

    exp.score_fn = score
    sampler = sampler_from_spec(config, "euler_maruyama", "eval")
    seed_draw(exp, sampler, None, balanced_classes=True)(np.arange(7, 19))
    assert config.model.num_classes == 10 and seen[0] == [s % 10 for s in range(7, 19)]
    seed_draw(exp, sampler, None)(np.arange(3))
    assert seen[-1] is None  # "none": the network's no-class label
