"""`--mode benchmark`: samplers compared on the targets of config.benchmark; resumable.

config.benchmark.target is "oracle" (exact-score Gaussian mixtures: config.benchmark.problems x
sdes) or "checkpoint" (the trained model in workdir, scored in the feature space of a classifier
trained on the same data). The runs, records and report are `scoresde.eval.benchmark`'s; this module
builds the targets and the sampler grid from the config and writes the pictures.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch
from absl import logging
from tqdm.auto import tqdm

from scoresde.cli.experiment import (
    Experiment,
    bounded_examples,
    checkpoint_step,
    feature_classifier,
    load_trained,
    sampler_from_spec,
    to_data_space,
)
from scoresde.config import compare
from scoresde.eval import benchmark as bench
from scoresde.eval import features, inception, plotting
from scoresde.sde_lib import SDES

SHARDS_DIR = "shards"  # workdir/benchmark/shards: the checkpoint target's runs in progress and its reference flows


def _oracle_targets(config) -> list:
    b = config.benchmark
    bad = [p for p in b.problems if p not in bench.ORACLE_PROBLEMS]
    if bad:
        raise ValueError(f"config.benchmark.problems: unknown {bad}; valid: {', '.join(bench.ORACLE_PROBLEMS)}")
    targets = []
    for problem in b.problems:
        for sde_name in b.sdes:
            if sde_name not in SDES:
                raise ValueError(f"config.benchmark.sdes: unknown SDE {sde_name!r}; valid: {', '.join(SDES)}")
            targets.append(
                bench.oracle_target(problem, sde_name, b.n_samples, **{k: v for k, v in config.sde.items() if k != "name"})
            )
    return targets


def inception_metric_inputs(config, exp: Experiment, x_test: torch.Tensor, x_train: torch.Tensor):
    """(inception_fn, real, train) for NetworkTarget when config.benchmark.inception_weights names the
    FID Inception weights file (hash-checked, never downloaded); None otherwise."""
    b = config.benchmark
    if not b.inception_weights:
        return None
    model = inception.load_fid_inception(b.inception_weights, device=exp.device, expected_sha256=b.inception_sha256 or None)
    logging.info("FID Inception network loaded from %s (SHA-256 checked)", b.inception_weights)

    def inception_fn(x: torch.Tensor):
        return inception.inception_features(model, x.detach().float(), centered=config.data.centered)

    return inception_fn, x_test, x_train


def _checkpoint_target(config, workdir: Path):
    """The trained model of `workdir` (EMA weights), scored with a classifier trained on its data."""
    exp = Experiment(config)
    if exp.train_data.labels is None:
        raise ValueError(
            f"benchmarking a checkpoint needs labelled data for its feature classifier; {config.data.dataset!r} has none"
        )
    exp, found = load_trained(config, workdir, exp)
    x_test, x_train = (bounded_examples(config, split, torch.device("cpu"))[0] for split in (exp.test_data, exp.train_data))
    classifier, info = feature_classifier(exp, workdir)
    logging.info(
        "feature classifier: held-out accuracy %.3f, weights sha256 %s", info["test_accuracy"], info["weights_sha256"][:16]
    )
    low, high = (-1.0, 1.0) if config.data.centered else (0.0, 1.0)

    def feature_fn(x):
        return features.features(classifier, x.detach().cpu())

    target = bench.NetworkTarget(
        f"{config.data.dataset}_{config.model.name}_{config.sde.name}",
        exp.sde,
        exp.score_fn,
        exp.train_data.shape,
        config.sampling.eps,
        config.benchmark.n_samples,
        feature_fn,
        feature_fn(x_test),
        feature_fn(x_train),
        postprocess=lambda x: x.clamp(low, high),
        reference_rtol=config.benchmark.reference_rtol,
        device=exp.device,
        inception=inception_metric_inputs(config, exp, x_test, x_train),
        shard_folder=workdir / "benchmark" / SHARDS_DIR,
        shard_size=config.eval.shard_size,
        batch_size=config.sampling.batch_size,
        identity={
            "step": checkpoint_step(found),
            "ema": config.sampling.use_ema,
            "weights_sha256": features.weights_hash(exp.model),
            "config": compare.model_defining_values(config.to_dict()),
            "split": {"seed": config.seed, "test_fraction": config.data.test_fraction},
            "feature_classifier_sha256": info["weights_sha256"],
            "data_sha256": info["data_sha256"],
            "inception_weights_sha256": (config.benchmark.inception_sha256 or inception.FID_WEIGHTS_SHA256)
            if config.benchmark.inception_weights
            else "",
        },
    )
    target.classifier_info = {**info, "checkpoint": str(found), "step": checkpoint_step(found)}
    target.inception_weights = config.benchmark.inception_weights
    return target


def benchmark(config, workdir: str | Path) -> dict:
    """Compare samplers on the targets of config.benchmark; resumable (see scoresde.eval.benchmark).

    config.benchmark.target is "oracle" (exact-score Gaussian mixtures: config.benchmark.problems x
    sdes) or "checkpoint" (the trained model in workdir, scored in the feature space of a classifier
    trained on the same data). Writes into workdir/benchmark/: records.jsonl (one line per finished
    run, the resume state), report.md, summary.csv, records.json, the metric-against-NFE plots and
    the samples of every sampler at config.benchmark.plot_budget. The checkpoint target draws like
    `--mode eval` (sample j of run s from seed s * n_samples + j, in batches of
    config.sampling.batch_size), into shards of config.eval.shard_size under shards/, so a run
    killed part-way resumes from its finished shards.
    """
    b = config.benchmark
    workdir = Path(workdir)
    out = workdir / "benchmark"
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(config.seed)
    grid = []
    for spec in b.samplers:
        grid.append(sampler_from_spec(config, spec, "benchmark"))
    targets = _oracle_targets(config) if b.target == "oracle" else [_checkpoint_target(config, workdir)]
    metric_names = targets[0].metric_names
    seeds = list(range(b.seeds))
    total = len(targets) * len(grid) * len(b.budgets) * len(seeds)
    bar = tqdm(total=total, desc="benchmark", disable=None if b.progress else True)
    records: list[dict] = []
    for target in targets:
        before = len(records)
        records += bench.run(
            target,
            grid,
            list(b.budgets),
            seeds=seeds,
            records_path=out / bench.RECORDS_FILE,
            callback=lambda record: bar.update(1),
        )
        logging.info("%s: %d runs", target.name, len(records) - before)
    bar.close()
    samples = bench.samples_at_budget(grid, targets[0], b.plot_budget)
    title = f"Sampler benchmark: {', '.join(t.name for t in targets)}"
    if b.target == "oracle":
        files = bench.write_report(records, out, metric_names, samples={**samples, "exact data": targets[0].data}, title=title)
    else:
        files = bench.write_report(records, out, metric_names, title=title, notes=bench.network_report_notes(targets[0]))
        for label, x in samples.items():
            path = out / f"samples_{re.sub(r'[^A-Za-z0-9_.-]+', '_', label.rsplit(' (', 1)[0])}_{b.plot_budget}nfe.png"
            _save_pictures_to(x, config, path)
            files[f"samples_{label}"] = path
    logging.info("wrote %s", ", ".join(str(p) for p in files.values()))
    return {"n_records": len(records), "files": {k: str(v) for k, v in files.items()}}


def _save_pictures_to(x: torch.Tensor, config, path: Path) -> None:
    plotting.save_image_grid(path, to_data_space(config, x, True)[:64])
