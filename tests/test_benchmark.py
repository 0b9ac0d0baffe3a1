"""Tests of the sampler benchmark: budgets, exact metrics, resume, custom samplers, and main.py."""

import json
import re
import subprocess

import pytest
import torch

from scoresde import oracle
from scoresde.eval import benchmark as bench
from scoresde.sde_lib import VPSDE
from tests.helpers import ROOT, main_command


@pytest.fixture(scope="module")
def ring_vp():
    return bench.OracleTarget("ring_vp", oracle.ring(8, 1.0, 0.05), VPSDE(), 1e-4, n_samples=1000)


@pytest.mark.parametrize(
    "name, budget",
    [("ddim", 10), ("heun", 10), ("heun", 11), ("dpmpp_3m", 6), ("euler_maruyama", 20), ("predictor_corrector", 21)],
)
def test_budgets_are_met_exactly_or_from_below(ring_vp, name, budget):
    sampler = bench.Sampler(name)
    per_step, constant = bench.evaluations_per_step(sampler, ring_vp)
    steps = bench.steps_for_budget(per_step, constant, budget)
    (record,) = bench.run(ring_vp, [sampler], [budget], seeds=[0])
    assert record["steps"] == steps and record["nfe"] <= budget
    assert record["nfe"] > budget - per_step  # the largest step count that fits
    if per_step == 1:
        assert record["nfe"] == budget


def test_exact_flow_scores_zero_and_a_biased_sampler_does_not(ring_vp):
    """A "sampler" returning the exact flow has flow_rms 0 and an NLL gap and SW at the noise level;
    one that shrinks samples towards the origin by 25% is clearly worse on every metric."""

    def exact(sde, score_fn, *, x_T, steps, eps, generator, shrink=1.0):
        reference = ring_vp.mixture.solve_flow(x_T.double(), sde)
        return (shrink * reference).float(), {"nfe": steps + 1}

    grid = [bench.Sampler("exact", exact), bench.Sampler("shrunk", exact, {"shrink": 0.75})]
    records = bench.run(ring_vp, grid, [10], seeds=[0, 1])
    rows = {r["sampler"]: r for r in bench.summarize(records, bench.OracleTarget.metric_names)}
    assert rows["exact"]["flow_rms"] < 1e-6
    assert abs(rows["exact"]["nll_gap"]) < 0.3 and rows["exact"]["sw"] < 3 * rows["exact"]["sw_floor"]
    assert rows["shrunk"]["flow_rms"] > 0.05 and rows["shrunk"]["nll_gap"] > 1.0
    assert rows["shrunk"]["sw"] > 2 * rows["exact"]["sw_floor"] and rows["shrunk"]["sw"] > rows["exact"]["sw"] + 0.05


def test_resume_skips_finished_cells(ring_vp, tmp_path):
    calls = []

    def counted(sde, score_fn, *, x_T, steps, eps, generator):
        if x_T.shape[0] > 1:  # not the one-example dry run that counts evaluations per step
            calls.append(steps)
        from scoresde import samplers

        return samplers.sample("ddim", sde, score_fn, x_T=x_T, steps=steps, eps=eps)

    grid = [bench.Sampler("mine", counted), bench.Sampler("dpmpp_2m")]
    path = tmp_path / bench.RECORDS_FILE

    class Interrupted(Exception):
        pass

    def stop_after_three(record, seen=[]):
        seen.append(record)
        if len(seen) == 3:
            raise Interrupted

    with pytest.raises(Interrupted):
        bench.run(ring_vp, grid, [6, 10], seeds=[0, 1], records_path=path, callback=stop_after_three)
    assert len(bench.read_records(path)) == 3 and len(calls) == 3
    with open(path, "a") as f:
        f.write('{"target": "ring_vp", "sampler_k')  # a line torn by a kill
    calls.clear()
    records = bench.run(ring_vp, grid, [6, 10], seeds=[0, 1], records_path=path)
    assert len(records) == 8 and len(calls) == 1  # "mine" had 3 of its 4 runs done
    again = bench.run(ring_vp, grid, [6, 10], seeds=[0, 1], records_path=path)
    assert len(calls) == 1 and again == records


def test_a_bare_spec_is_rerun_when_the_default_grid_changes_and_records_the_grid_it_ran_on(tmp_path, monkeypatch):
    from scoresde.samplers import time_grids
    from scoresde.sde_lib import SDE

    target = bench.OracleTarget("ring_vp", oracle.ring(8, 1.0, 0.05), VPSDE(), 1e-4, n_samples=64)
    path = tmp_path / bench.RECORDS_FILE
    (first,) = bench.run(target, [bench.Sampler("ddim")], [6], seeds=[0], records_path=path)
    assert first["time_grid"] == "time_quadratic"  # sample's default for VP at 5 steps, not "default"
    (again,) = bench.run(target, [bench.Sampler("ddim")], [6], seeds=[0], records_path=path)
    assert again == first  # reused
    monkeypatch.setattr(time_grids, "SDE_DEFAULT_GRIDS", {SDE: ({"ddim": "uniform"}, {})})
    (changed,) = bench.run(target, [bench.Sampler("ddim")], [6], seeds=[0], records_path=path)
    assert changed["time_grid"] == "uniform" and changed["digest"] != first["digest"]
    assert changed["flow_rms"] != first["flow_rms"]  # run again, not the old record under new defaults


def test_grid_errors(ring_vp):
    with pytest.raises(ValueError, match="unknown sampler 'rk4'"):
        bench.Sampler("rk4")
    with pytest.raises(ValueError, match="unique"):
        bench.run(ring_vp, [bench.Sampler("ddim"), bench.Sampler("ddim")], [10])
    with pytest.raises(ValueError, match="budgets"):
        bench.run(ring_vp, [bench.Sampler("ddim")], [0])
    with pytest.raises(ValueError, match="unknown oracle problem"):
        bench.oracle_target("spiral", "vpsde", 10)


def test_sampler_specs_sweep_options_and_grids(ring_vp):
    """ "name@grid:key=value" specs: the same sampler with other options or grids is another line;
    the adaptive flow runs once per seed outside the budgets, tighter tolerances more accurate."""
    specs = [
        "dpmpp_2m",
        "dpmpp_2m@karras",
        "dpmpp_3m:lower_order_final=False",
        "probability_flow:rtol=1e-3,atol=1e-3",
        "probability_flow:rtol=1e-6,atol=1e-6",
    ]
    grid = [bench.parse_sampler_spec(spec) for spec in specs]
    assert grid[1].time_grid == "karras" and grid[2].options == {"lower_order_final": False}
    assert grid[3].options == {"rtol": 1e-3, "atol": 1e-3} and grid[3].label == specs[3]
    records = bench.run(ring_vp, grid, [10, 20], seeds=[0])
    by = {(r["sampler"], r["budget"]): r for r in records}
    assert len(records) == 3 * 2 + 2 and by[(specs[1], 10)]["time_grid"] == "karras"
    assert by[(specs[0], 10)]["flow_rms"] != by[(specs[1], 10)]["flow_rms"]  # the grid changed the result
    loose, tight = by[(specs[3], 0)], by[(specs[4], 0)]
    assert tight["nfe"] > loose["nfe"] > 20 and tight["flow_rms"] < loose["flow_rms"]  # (floored near 1e-4 by eps)
    assert "| adaptive | probability_flow:rtol=1e-6,atol=1e-6 |" in bench.markdown_table(
        bench.summarize(records, bench.OracleTarget.metric_names), bench.OracleTarget.metric_names
    )
    base = bench.parse_sampler_spec("unipc:predictor_order=3", {"predictor_order": 2, "interpolate_in": "s"})
    assert base.options == {"predictor_order": 3, "interpolate_in": "s"}  # the spec overrides the base options


@pytest.mark.parametrize(
    "spec, message",
    [
        ("unipcc", "unknown sampler 'unipcc'"),
        ("unipc@karrass", "unknown time grid"),
        ("unipc:foo=1", "no option 'foo'; valid: "),
        ("unipc:predictor_order", "key=value"),
    ],
)
def test_bad_sampler_specs_are_named(spec, message):
    from scoresde.config import schema as config_schema
    from scoresde.config.defaults import get_config

    with pytest.raises(ValueError, match=re.escape(message)):
        bench.parse_sampler_spec(spec)
    config = get_config()
    config.benchmark.samplers = ("ddim", spec)
    with pytest.raises(ValueError, match=re.escape(message)):
        config_schema.check(config)


def test_report_files_and_table(ring_vp, tmp_path):
    records = bench.run(ring_vp, [bench.Sampler("ddim"), bench.Sampler("unipc")], [6, 10], seeds=[0, 1])
    files = bench.write_report(records, tmp_path, bench.OracleTarget.metric_names, samples={"ddim": ring_vp.data})
    for path in files.values():
        assert path.exists() and path.stat().st_size > 0
    table = files["report"].read_text()
    assert "| 10 | unipc | 10 |" in table and "±" in table and "noise floors" in table and re.search(r"sw 0\.\d+", table)
    summary = json.loads(files["json"].read_text())["summary"]
    assert {row["n_seeds"] for row in summary} == {2}


@pytest.mark.slow
def test_main_benchmark_mode_end_to_end_and_resume(tmp_path):
    args = main_command(
        tmp_path,
        "--config.benchmark.n_samples=100",
        "--config.benchmark.budgets=(6,10)",
        "--config.benchmark.seeds=2",
        "--config.benchmark.problems=('ring',)",
        "--config.benchmark.samplers=('ddim','heun','dpmpp_2m@karras')",
        "--config.benchmark.plot_budget=6",
        config="configs/benchmark/oracle_fast.py",
        mode="benchmark",
    )
    first = subprocess.run(args, capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert first.returncode == 0, first.stderr[-2000:]
    out = tmp_path / "benchmark"
    expected = [
        "records.jsonl",
        "report.md",
        "summary.csv",
        "records.json",
        "samples.png",
        "ring_vesde_flow_rms_vs_nfe.png",
        "ring_vpsde_sw_vs_nfe.png",
        "ring_vpsde_wall_seconds_vs_nfe.png",
    ]
    for name in expected:
        assert (out / name).stat().st_size > 0, name
    lines = (out / "records.jsonl").read_text().splitlines()
    assert len(lines) == 2 * 3 * 2 * 2  # SDEs x samplers x budgets x seeds
    second = subprocess.run(args, capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert second.returncode == 0
    assert (out / "records.jsonl").read_text().splitlines() == lines  # nothing recomputed
    bad = subprocess.run(
        args + ["--config.benchmark.samplers=('ddim','rk4')"], capture_output=True, text=True, cwd=ROOT, timeout=600
    )
    assert bad.returncode != 0 and "rk4" in bad.stderr and "Traceback" not in bad.stderr


def test_checkpoint_target_end_to_end(tmp_path):
    """A briefly trained digits MLP benchmarked in classifier-feature space, with the classifier
    cached (same hash on a rerun) and every report file written."""
    import importlib

    from scoresde import run_lib

    config = importlib.import_module("configs.digits_mlp_vp").get_config()
    config.device = "cpu"
    config.training.n_steps, config.training.checkpoint_freq, config.training.sample_freq = 30, 30, 0
    config.training.progress = False
    config.sampling.n_samples = config.sampling.batch_size = 16
    config.sampling.steps = 10
    run_lib.train(config, tmp_path)
    b = config.benchmark
    b.target, b.samplers, b.budgets, b.seeds, b.n_samples, b.plot_budget = "checkpoint", ("ddim", "dpmpp_2m"), (6,), 1, 64, 6
    b.reference_rtol, b.progress = 1e-3, False
    result = run_lib.benchmark(config, tmp_path)
    out = tmp_path / "benchmark"
    for name in [
        "report.md",
        "summary.csv",
        "records.json",
        "classifier.safetensors",
        "samples_ddim_6nfe.png",
        "digits_mlp_vpsde_fd_vs_nfe.png",
    ]:
        assert (out / name).stat().st_size > 0, name
    report = (out / "report.md").read_text()
    assert "held-out accuracy" in report and "not literature FID" in report and "fd " in report
    info = json.loads((out / "classifier.json").read_text())
    assert info["test_accuracy"] > 0.85  # the feature classifier really recognises digits
    records = json.loads((out / "records.json").read_text())["records"]
    assert len(records) == 2 and all(0 <= r["precision"] <= 1 and r["fd"] > 0 for r in records)
    kept = [p.name for p in (out / "shards").iterdir()]
    # finished runs' shards are gone, the reference flow's one folder stays
    assert len(kept) == 1 and kept[0].startswith(f"{bench.REFERENCE_LABEL}_1steps_seed0_"), kept
    again = run_lib.benchmark(config, tmp_path)  # resumes: same records, classifier reused
    assert again["n_records"] == result["n_records"]
    assert json.loads((out / "classifier.json").read_text())["weights_sha256"] == info["weights_sha256"]


def test_feature_classifier_is_deterministic():
    from scoresde import data
    from scoresde.eval import features

    x, labels = data.load_digits()
    x, labels = torch.as_tensor(x[:300]), torch.as_tensor(labels[:300])
    first = features.train_classifier(x, labels, seed=3, epochs=2)
    second = features.train_classifier(x, labels, seed=3, epochs=2)
    other = features.train_classifier(x, labels, seed=4, epochs=2)
    assert features.weights_hash(first) == features.weights_hash(second) != features.weights_hash(other)
    assert features.features(first, x).shape == (300, 128)


def test_inception_metrics_join_the_network_target_when_weights_are_given():
    """With an Inception function the target reports fid_inception (the Fréchet distance of its
    features, with a floor from training images) and the Inception Score of its logits."""
    import numpy as np

    from scoresde.eval import metrics

    generator = torch.Generator().manual_seed(0)
    real, train = torch.randn(40, 3, generator=generator), torch.randn(60, 3, generator=generator)
    projection = torch.randn(3, 5, generator=generator)

    def inception_fn(x):  # a stand-in network: features and logits are fixed linear maps
        return (x.double() @ projection.double()).numpy(), (4.0 * x.double() @ projection.double()).numpy()

    sde = VPSDE()
    target = bench.NetworkTarget(
        "toy",
        sde,
        lambda x, t: -x,
        (3,),
        1e-3,
        16,
        lambda x: x.double().numpy(),
        real.double().numpy(),
        train.double().numpy(),
        reference_rtol=1e-3,
        inception=(inception_fn, real, train),
    )
    assert target.metric_names[-2:] == ("fid_inception", "inception_score")
    assert bench.NetworkTarget.metric_names[-1] == "flow_rms"  # the class default is untouched
    x = torch.randn(16, 3, generator=generator)
    result = target.evaluate(x, seed=0)
    expected = metrics.frechet_distance_from_samples(inception_fn(x)[0], inception_fn(real)[0])
    assert result["fid_inception"] == pytest.approx(expected, rel=1e-12)
    assert result["inception_score"] == pytest.approx(metrics.inception_score(inception_fn(x)[1], n_splits=8)[0], rel=1e-12)
    assert np.isfinite(result["fid_inception_floor"]) and result["fid_inception_floor"] >= 0


def test_checkpoint_benchmark_loads_the_inception_weights_it_is_given(tmp_path):
    """config.benchmark.inception_weights: the file is hash-checked (a wrong digest is refused) and
    the network maps model-space digits to 2048 features and 1008 logits."""
    import importlib

    from scoresde import run_lib
    from scoresde.cli import benchmark as cli_benchmark
    from scoresde.eval import inception

    path = tmp_path / "weights.pth"
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        torch.save(inception.FIDInceptionV3().state_dict(), path)
    config = importlib.import_module("configs.digits_mlp_vp").get_config()
    config.device = "cpu"
    config.benchmark.inception_weights = str(path)
    exp = run_lib.Experiment(config)
    with pytest.raises(ValueError, match="SHA-256"):  # the default digest is the real file's
        cli_benchmark.inception_metric_inputs(config, exp, exp.x_train[:2], exp.x_train.cpu())
    config.benchmark.inception_sha256 = inception.sha256_of_file(path)
    inception_fn, real, train = cli_benchmark.inception_metric_inputs(config, exp, exp.x_train[:2], exp.x_train.cpu())
    features, logits = inception_fn(real)
    assert features.shape == (2, 2048) and logits.shape == (2, 1008) and len(train) == len(exp.x_train)
    config.benchmark.inception_weights = ""
    assert cli_benchmark.inception_metric_inputs(config, exp, exp.x_train[:2], exp.x_train.cpu()) is None


def _network_target(**kwargs):
    """VP-SDE with N(0, I) data, whose score is exactly -x at every time: a network target with
    an elementwise score, so samples of one seed agree bit for bit in any batch."""
    import numpy as np

    real = np.random.default_rng(0).normal(size=(40, 3))
    train = np.random.default_rng(1).normal(size=(60, 3))
    return bench.NetworkTarget(
        "toy", VPSDE(), kwargs.pop("score_fn", lambda x, t: -x), (3,), 1e-3, 16,
        lambda x: x.double().cpu().numpy(), real, train, reference_rtol=1e-4, **kwargs,
    )  # fmt: skip


@pytest.mark.parametrize("name", ["euler_maruyama", "dpmpp_2m"])
def test_network_target_samples_are_per_sample_seeds_whatever_the_batch_or_shards(tmp_path, name):
    """Sample j of run s is the sample of seed s * n + j alone: the same in one batch of 16, in
    batches of 3 and in shards of 5 (stochastic and deterministic samplers)."""
    sampler = bench.Sampler(name)
    whole, _ = _network_target().draw(sampler, 4, seed=1)
    batched, _ = _network_target(batch_size=3).draw(sampler, 4, seed=1)
    sharded, info = _network_target(shard_folder=tmp_path, shard_size=5, batch_size=3).draw(sampler, 4, seed=1)
    alone, _ = _network_target(batch_size=1).draw(sampler, 4, seed=1)
    assert torch.equal(whole, batched) and torch.equal(whole, sharded) and torch.equal(whole, alone)
    first, _ = _network_target().draw(sampler, 4, seed=0)
    assert not torch.equal(first, whole)  # runs are other seed ranges
    picture, _ = _network_target().draw(sampler, 4, seed=1, count=4)
    assert torch.equal(picture, whole[:4])  # the report's pictures are the run's first samples
    assert info["nfe"] == 5 and info["seconds"] > 0  # 4 steps + the denoising evaluation


def test_network_target_run_killed_mid_way_resumes_from_its_shards(tmp_path):
    """A run interrupted after 2 of its 4 shards draws only the 2 missing ones when run again, and
    its record equals the uninterrupted run's; the run's shards go once its record is written,
    the reference flow's stay and are reused."""
    calls = {"n": 0, "fail_after": 10**9}

    def score_fn(x, t):
        calls["n"] += 1
        if calls["n"] > calls["fail_after"]:
            raise KeyboardInterrupt  # a kill
        return -x

    sampler = bench.Sampler("ddim")
    # in memory, in the same batches (the adaptive reference flow's steps depend on its batch)
    plain = bench.run(_network_target(batch_size=4), [sampler], [6], seeds=[0])[0]
    target = _network_target(score_fn=score_fn, shard_folder=tmp_path / "shards", shard_size=4, batch_size=4)
    target.exact_flow(0)  # the reference, kept on disk
    calls.update(n=0, fail_after=5 + 2 * 6)  # 5 timing calls, then 6 NFE per shard: shard 2 fails
    records = tmp_path / "records.jsonl"
    with pytest.raises(KeyboardInterrupt):
        bench.run(target, [sampler], [6], seeds=[0], records_path=records)
    run_folders = [p for p in (tmp_path / "shards").iterdir() if not p.name.startswith(bench.REFERENCE_LABEL)]
    (folder,) = run_folders
    assert sorted(p.name for p in folder.glob("shard_*.npz")) == ["shard_000000.npz", "shard_000001.npz"]

    calls.update(n=0, fail_after=10**9)
    resumed = _network_target(score_fn=score_fn, shard_folder=tmp_path / "shards", shard_size=4, batch_size=4)
    (record,) = bench.run(resumed, [sampler], [6], seeds=[0], records_path=records)
    assert calls["n"] == 5 + 2 * 6  # the timing, two shards drawn, the reference read from disk
    timeless = ("wall_seconds", "overhead_ms_per_step", "target_digest", "digest")
    assert {k: v for k, v in record.items() if k not in timeless} == {k: v for k, v in plain.items() if k not in timeless}
    assert not folder.exists()  # the record is the result: the run's shards are gone
    (reference,) = (tmp_path / "shards").iterdir()
    assert reference.name.startswith(bench.REFERENCE_LABEL) and list(reference.glob("shard_*.npz"))
