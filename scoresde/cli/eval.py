"""`--mode eval`: sample quality of checkpoints at paper scale: sharded, resumable, per checkpoint.

For each selected checkpoint (config.eval.checkpoints: "latest", "all", steps "1000,2000", or
"follow": each new one while a training runs, until its last step), with EMA weights unless
config.sampling.use_ema is False, and each sampler spec of config.eval.samplers
(`name[@grid][:key=value,...]`, as the benchmark's; none: config.sampling's sampler):

1. **Samples.** config.eval.num_samples samples for each of config.eval.runs seed ranges, sample
   i of run r from seed first_seed + r * num_samples + i alone, written in shards of
   config.eval.shard_size (`scoresde.eval.shards`): the same samples whatever the number of
   processes and the batch size; a killed run resumes from the shards written; under torchrun
   each process draws its own shards (no collective inside a sampler).
2. **Features** of every shard, stored beside it: the FID Inception network from the weights
   file named by config.benchmark.inception_weights (SHA-256 checked, never downloaded), else the
   feature classifier trained on the data (`features.load_or_train`, labelled images), else the
   raw coordinates (toy data).
3. **Metrics** against the reference statistics (config.eval.reference: the "train" or "test"
   split, computed once by streaming it and cached under config.eval.stats_dir keyed by the
   data's and the feature network's SHA-256, or a statistics file: EDM's / pytorch-fid's mu and
   sigma, score_sde's pool_3 activations): the Frechet distance (FID with Inception features),
   the kernel distance (KID) and precision / recall on config.eval.kernel_examples feature rows
   when the reference has points, and the Inception Score. With several runs: the mean, the
   standard deviation and the best run (EDM reports the best of three).

Writes workdir/eval/step_<k>/<spec>/run_<r>/ (the shards), workdir/eval/step_<k>/<spec>.json
(every figure with its sample count, sampler spec, time grid, NFE and seed range),
workdir/eval/summary.json and summary.md (one row per checkpoint and sampler) and
workdir/eval/metrics.png (each metric against the training step, one line per sampler).
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from absl import logging
from tqdm.auto import tqdm

from scoresde import data
from scoresde import likelihood as lik
from scoresde.cli import likelihood as likelihood_mode
from scoresde.cli import published
from scoresde.cli.experiment import (
    Experiment,
    checkpoint_step,
    feature_classifier,
    load_weights,
    process_group,
    sampler_from_spec,
    sampling_identity,
    seed_draw,
)
from scoresde.eval import features, inception, metrics, plotting, shards, statistics
from scoresde.train import checkpoint, distributed, loop

CHECKPOINT_SELECTIONS = ("latest", "all", "follow")
CLASS_LABELS = ("balanced", "none")  # a class-conditional network's samples: class i mod num_classes, or no class
EVAL_DIR, SUMMARY_FILE, TABLE_FILE, PLOT_FILE = "eval", "summary.json", "summary.md", "metrics.png"
IS_SPLITS = 10  # the Inception Score's splits (Salimans et al. 2016)
KID_SUBSET = 1000  # examples per KID subset (Binkowski et al. 2018)
KID_SUBSETS = 100


@dataclasses.dataclass
class FeatureNetwork:
    """What the metrics are computed on: `fn(stored samples) -> {"features": (n, d)[, "logits"]}`,
    identified by `digest` (a change of network invalidates cached statistics and features)."""

    name: str
    digest: str
    dim: int
    fn: Callable[[np.ndarray], dict[str, np.ndarray]]
    inception: bool = False  # the metrics are then named FID / KID, else FD / KD (the same estimators)

    @property
    def metric_names(self) -> tuple[str, str]:
        return ("fid", "kid") if self.inception else ("fd", "kd")


def feature_network(config, exp: Experiment, workdir: Path) -> FeatureNetwork:
    """The Inception network when config.benchmark.inception_weights names its file; else the data's
    feature classifier (labelled images); else the coordinates themselves (toy data)."""
    e, b = config.eval, config.benchmark
    if b.inception_weights:
        model = inception.load_fid_inception(b.inception_weights, device=exp.device, expected_sha256=b.inception_sha256 or None)
        digest = inception.sha256_of_file(b.inception_weights)

        def inception_fn(x: np.ndarray) -> dict[str, np.ndarray]:
            pool, logits = inception.inception_features(model, _unit_range(x), batch_size=e.feature_batch)
            return {"features": pool, "logits": logits}

        return FeatureNetwork("inception-v3 pool_3", digest, 2048, inception_fn, inception=True)
    if not exp.train_data.is_image:
        dim = int(np.prod(exp.train_data.shape))
        return FeatureNetwork("coordinates", "coordinates", dim, lambda x: {"features": np.asarray(x).reshape(len(x), -1)})
    if exp.train_data.labels is None:
        raise ValueError(
            f"--mode eval on {config.data.dataset!r} (images without labels) needs the FID Inception weights: "
            "set config.benchmark.inception_weights (the local feature classifier needs labels)"
        )
    classifier, info = feature_classifier(exp, workdir)
    assert isinstance(classifier, features.FeatureClassifier)

    def classifier_fn(x: np.ndarray) -> dict[str, np.ndarray]:
        images = data.to_model_range(_unit_range(x), config.data.centered)
        return {"features": features.features(classifier, images, batch_size=e.feature_batch)}

    return FeatureNetwork("feature classifier", info["weights_sha256"], classifier.head.in_features, classifier_fn)


def _unit_range(x: np.ndarray) -> torch.Tensor:
    """Stored samples as float32 in [0, 1] (uint8 images / 255, exactly as the prepared data)."""
    t = torch.from_numpy(np.asarray(x))
    return t.float() / 255.0 if t.dtype == torch.uint8 else t.float()


# -- the reference ------------------------------------------------------------------------------
def split_batches(config, split: data.Dataset, batch: int) -> tuple[int, Callable]:
    """(count, batches()): a split's examples as a shard stores them (`shards.quantize`), `batch`
    at a time (a prepared set's rows read from its memory map, never all at once)."""
    e = config.eval
    n = min(len(split), e.reference_examples) if e.reference_examples else len(split)

    def batches():
        for start in range(0, n, batch):
            stop = min(n, start + batch)
            x = split.x[start:stop]
            if hasattr(x, "read_uint8"):
                yield x.read_uint8()
            else:
                yield shards.quantize(np.asarray(x), split.is_image)

    return n, batches


def reference_statistics(config, exp: Experiment, network: FeatureNetwork) -> statistics.Reference:
    """config.eval.reference's statistics: a file read and checked, or a split's, computed once and
    cached (`statistics.cached_reference`) under the data's and the feature network's digests."""
    e = config.eval
    if e.reference not in data.SPLITS:
        return statistics.read_reference_file(e.reference, dim=network.dim)
    split = exp.train_data if e.reference == "train" else exp.test_data
    n, batches = split_batches(config, split, max(e.feature_batch, 1000))
    identity = {
        "data": statistics.data_identity(split.x, n),
        "split": {"name": e.reference, "seed": config.seed, "test_fraction": config.data.test_fraction, "n": n},
        "features": {"name": network.name, "sha256": network.digest},
        "kept": e.kernel_examples,
    }

    def compute() -> statistics.Reference:
        stats = statistics.RunningStatistics(network.dim, keep=e.kernel_examples)
        with tqdm(total=n, desc=f"reference statistics ({e.reference})", disable=None, leave=False) as bar:
            for x in batches():
                stats.add(network.fn(x)["features"])
                bar.update(len(x))
        return statistics.Reference.of(stats, {"dataset": config.data.dataset, **identity})

    return statistics.cached_reference(e.stats_dir or statistics.default_stats_dir(), identity, compute)


# -- the checkpoints ----------------------------------------------------------------------------
def selected_checkpoints(config, workdir: Path) -> list[Path]:
    """The complete checkpoints config.eval.checkpoints selects (for "follow": those there now)."""
    root = Path(workdir) / loop.CHECKPOINTS
    found = checkpoint.list_complete(root)
    choice = config.eval.checkpoints
    if choice in ("all", "follow"):
        return found
    if choice == "latest":
        if not found:
            raise FileNotFoundError(f"no complete checkpoint in {root}; train first")
        return found[-1:]
    steps = [int(s) for s in choice.split(",")]
    by_step = {checkpoint.step_of(p): p for p in found}
    absent = [s for s in steps if s not in by_step]
    if absent:
        raise FileNotFoundError(
            f"config.eval.checkpoints: no complete checkpoint of step {', '.join(map(str, absent))} in {root} "
            f"(there are: {', '.join(str(s) for s in sorted(by_step)) or 'none'})"
        )
    return [by_step[s] for s in steps]


# -- one checkpoint -----------------------------------------------------------------------------
def slug(spec: str) -> str:
    """A file name for a sampler spec."""
    return re.sub(r"[^A-Za-z0-9_.@=-]+", "_", spec)


def run_metrics(folder: Path, plan: shards.Plan, network: FeatureNetwork, reference: statistics.Reference, config) -> dict:
    """The figures of one seed range's samples against the reference."""
    e = config.eval
    stats = statistics.RunningStatistics(network.dim, keep=e.kernel_examples)
    logits = []
    for part in shards.features(folder, plan, network.fn, network.digest):
        stats.add(part["features"])
        if "logits" in part:
            logits.append(part["logits"])
    fd, kd = network.metric_names
    out: dict = {fd: metrics.frechet_distance(stats.mean, stats.cov, reference.mu, reference.sigma)}
    if len(reference.points) >= 2:
        kept = stats.kept
        size = min(KID_SUBSET, len(kept), len(reference.points))
        out[kd], out[f"{kd}_std"] = metrics.kernel_inception_distance(
            kept, reference.points, subset_size=size, n_subsets=KID_SUBSETS, seed=plan.first_seed
        )
        k = min(len(kept), len(reference.points))
        if k > 3:
            out["precision"], out["recall"] = metrics.precision_recall(reference.points[:k], kept[:k])
    if logits:
        logits_all = np.concatenate(logits)  # 10 splits (Salimans et al.), fewer for fewer than 20 samples
        out["inception_score"], out["inception_score_std"] = metrics.inception_score(
            logits_all, min(IS_SPLITS, len(logits_all) // 2)
        )
    return out


def aggregate(runs: list[dict]) -> dict:
    """Mean, standard deviation and best (the lowest distance / highest score) over the runs."""
    out: dict = {}
    lower_is_better = ("fid", "fd", "kid", "kd")
    for key in runs[0]:
        if key.endswith("_std"):
            continue
        values = np.array([r[key] for r in runs], dtype=np.float64)
        best = values.min() if key in lower_is_better else values.max()
        out[key] = {
            "mean": float(values.mean()),
            "std": float(values.std(ddof=1)) if len(values) > 1 else 0.0,
            "best": float(best),
        }
    return out


def evaluate_checkpoint(config, exp, found: Path, specs, network, reference, ctx, workdir: Path, bar) -> list[dict]:
    """Sample, featurise and score one checkpoint with every sampler; returns (on rank 0) its records."""
    e = config.eval
    load_weights(config, found, exp.model, ema=config.sampling.use_ema)
    exp.model.eval()
    step = checkpoint_step(found)
    records = []
    for sampler, time_grid in specs:
        balanced = config.model.num_classes > 0 and e.class_labels == "balanced"
        draw = seed_draw(exp, sampler, time_grid, balanced_classes=balanced)
        base = Path(workdir) / EVAL_DIR / f"step_{step}" / slug(sampler.label)
        plans = []
        for r in range(e.runs):
            about = sampling_identity(exp, sampler, time_grid, step) | {"balanced_classes": balanced}
            plan = shards.Plan(e.num_samples, e.shard_size, e.first_seed + r * e.num_samples, about)
            plans.append(plan)
            start = time.perf_counter()
            drawn = shards.draw(
                base / f"run_{r}",
                plan,
                draw,
                is_image=exp.train_data.is_image,
                batch_size=config.sampling.batch_size,
                rank=ctx.rank,
                world=ctx.world_size,
                progress=bar.update,
            )
            for _ in shards.features(
                base / f"run_{r}", plan, network.fn, network.digest, plan.shards_of(ctx.rank, ctx.world_size)
            ):
                pass  # each process featurises its own shards; rank 0 reads them back for the metrics
            if drawn:
                logging.info(
                    "step %d, %s, run %d: drew %d shards in %.1f s",
                    step,
                    sampler.label,
                    r,
                    len(drawn),
                    time.perf_counter() - start,
                )
        distributed.barrier(ctx)
        if not ctx.is_main:
            continue
        start = time.perf_counter()
        runs = [run_metrics(base / f"run_{r}", plan, network, reference, config) for r, plan in enumerate(plans)]
        infos = [shards.sampling_info(base / f"run_{r}", plan) for r, plan in enumerate(plans)]
        info = infos[0]
        record = {
            "step": step,
            "checkpoint": str(found),
            "sampler": sampler.label,
            "time_grid": time_grid or sampler.grid_name(exp.sde, config.sampling.steps),
            "grid_times": info["time_grid"],
            "nfe": info["nfe"],  # score evaluations per sample (the mean, for an adaptive sampler)
            "num_samples": e.num_samples,
            "classes": f"sample i of class i mod {config.model.num_classes}" if balanced else None,
            "seed_ranges": [[p.first_seed, p.first_seed + p.num_samples - 1] for p in plans],
            "features": {"name": network.name, "sha256": network.digest},
            "reference": {k: v for k, v in reference.about.items() if k != "format"} | {"n": reference.n},
            "runs": runs,
            "aggregate": aggregate(runs),
            "sample_seconds": sum(i["seconds"] for i in infos),  # drawing every shard, summed over processes and sessions
            "metric_seconds": time.perf_counter() - start,
        }
        (base.parent / f"{slug(sampler.label)}.json").write_text(json.dumps(record, indent=1, default=float))
        records.append(record)
    return records


LIKELIHOOD_COLUMNS = ("logp", "stderr", "nfe", "bpd", "bpd_iw")  # `likelihood.evaluate_dataset`'s per-example values


def evaluate_likelihood(config, exp: Experiment, found: Path, ctx, workdir: Path) -> dict | None:
    """config.likelihood's split under the loaded checkpoint, in shards of config.eval.bpd_shard
    examples drawn by every process (shard k by process k mod K) and resumed like the samples;
    rank 0 writes and returns step_<k>/likelihood_<split>.json (`likelihood_mode.summarize`)."""
    e, settings = config.eval, config.likelihood
    split, x_all, levels = likelihood_mode.examples_to_score(config, exp)
    options = likelihood_mode.dataset_options(config, exp, levels)
    columns = LIKELIHOOD_COLUMNS if levels else LIKELIHOOD_COLUMNS[:3]
    step = checkpoint_step(found)
    described = {k: v for k, v in options.items() if k != "device"} | {"exact_divergence": str(options["exact_divergence"])}
    about = {"checkpoint_step": step, "split": settings.split, "weights_sha256": features.weights_hash(exp.model), **described}
    plan = shards.Plan(len(x_all), e.bpd_shard, 0, about)
    folder = Path(workdir) / EVAL_DIR / f"step_{step}" / f"likelihood_{settings.split}"

    def per_example(indices: np.ndarray) -> tuple[np.ndarray, dict]:
        first = int(indices[0])
        values = lik.evaluate_dataset(exp.sde, exp.score_fn, x_all[first : first + len(indices)], first_index=first, **options)
        return np.stack([values[c] for c in columns], axis=1), {}

    start = time.perf_counter()
    shards.draw(folder, plan, per_example, is_image=False, batch_size=plan.shard_size, rank=ctx.rank, world=ctx.world_size)
    seconds = time.perf_counter() - start
    distributed.barrier(ctx)
    if not ctx.is_main:
        return None
    table = np.concatenate(list(shards.samples(folder, plan)))
    values = {c: table[:, i] for i, c in enumerate(columns)}
    summary = likelihood_mode.summarize(config, values, int(np.prod(split.shape)), levels, found, seconds)
    summary |= {"shards": plan.n_shards, "shard_size": plan.shard_size, "processes": ctx.world_size}
    (folder.parent / f"likelihood_{settings.split}.json").write_text(json.dumps(summary, indent=1))
    return summary


# -- the mode -----------------------------------------------------------------------------------
def eval(config, workdir: str | Path) -> dict:
    """Evaluate the selected checkpoints (module docstring); returns the summary rows."""
    workdir = Path(workdir)
    e = config.eval
    with process_group(config) as (ctx, device):
        exp = Experiment(config, device)
        specs = [sampler_from_spec(config, spec, "eval") for spec in (e.samplers or (config.sampling.sampler,))]
        specs = [(s, s.time_grid) for s in specs]
        network = reference = None  # rank 0 builds the feature network (and its cache) and the reference first
        if ctx.is_main:
            network = feature_network(config, exp, workdir)
            reference = reference_statistics(config, exp, network)
            logging.info("reference: %d examples, %s features (%s)", reference.n, network.name, network.digest[:16])
        distributed.barrier(ctx)
        if not ctx.is_main:  # the others load it (a trained feature classifier comes from rank 0's cache)
            network = feature_network(config, exp, workdir)
        summary_path = workdir / EVAL_DIR / SUMMARY_FILE
        records = _load_summary(summary_path) if ctx.is_main else []
        total = e.num_samples * e.runs * len(specs)
        bar = tqdm(total=0, desc="eval samples", unit="sample", disable=None if ctx.is_main else True)
        for found in _checkpoints(config, workdir, ctx):
            bar.total += total
            bar.refresh()
            new = evaluate_checkpoint(config, exp, found, specs, network, reference, ctx, workdir, bar)
            if e.bpd:
                load_weights(config, found, exp.model, ema=config.likelihood.use_ema)
                bpd = evaluate_likelihood(config, exp, found, ctx, workdir)
                for record in new:
                    record["likelihood"] = bpd
            if ctx.is_main:
                records = [r for r in records if (r["step"], r["sampler"]) not in {(n["step"], n["sampler"]) for n in new}]
                records = sorted(records + new, key=lambda r: (r["step"], r["sampler"]))
                write_summary(workdir / EVAL_DIR, records)
        bar.close()
    return {"records": len(records), "summary": str(summary_path)}


def _checkpoints(config, workdir: Path, ctx):
    """The checkpoints to evaluate, in step order; with "follow", new ones as they appear (every
    process agrees on each before it is evaluated: no rank runs ahead of another)."""
    if published.is_published(config.sampling.checkpoint):  # a published model file: that one
        yield Path(config.sampling.checkpoint)
        return
    if config.eval.checkpoints != "follow":
        yield from selected_checkpoints(config, workdir)
        return
    e, last, waited = config.eval, -1, 0.0
    while True:
        by_step = {checkpoint.step_of(p): p for p in checkpoint.list_complete(Path(workdir) / loop.CHECKPOINTS)}
        candidate = min((s for s in by_step if s > last), default=math.inf)
        agreed = distributed.all_reduce(torch.tensor([float(candidate)], dtype=torch.float64), "max").item()
        if math.isfinite(agreed) and int(agreed) in by_step:
            last, waited = int(agreed), 0.0
            yield by_step[last]
            if last >= config.training.n_steps:
                return
            continue
        if waited >= e.follow_timeout:
            logging.info("no new checkpoint for %.0f s: stopped following", waited)
            return
        time.sleep(e.poll_seconds)
        waited += e.poll_seconds


def _load_summary(path: Path) -> list[dict]:
    if not path.exists():
        return []
    try:
        found = json.loads(path.read_text())
        return [r for r in found if isinstance(r, dict) and {"step", "sampler"} <= set(r)]
    except (ValueError, TypeError):
        logging.warning("%s is unreadable: starting a new summary", path)
        return []


def write_summary(out: Path, records: list[dict]) -> None:
    """summary.json, summary.md (one row per checkpoint and sampler) and metrics.png."""
    (out / SUMMARY_FILE).write_text(json.dumps(records, indent=1, default=float))
    names = [k for k in records[0]["aggregate"]] if records else []
    lines = [
        "| step | sampler | time grid | NFE | samples x runs | seeds | " + " | ".join(names) + " |",
        "|" + "---|" * (6 + len(names)),
    ]
    for r in records:
        cells = []
        for name in names:
            a = r["aggregate"].get(name)
            cells.append("" if a is None else f"{a['mean']:.4g}" + (f" ± {a['std']:.2g}" if len(r["runs"]) > 1 else ""))
        seeds = ", ".join(f"{a}-{b}" for a, b in r["seed_ranges"])
        lines.append(
            f"| {r['step']} | `{r['sampler']}` | {r['time_grid']} | {r['nfe']} | {r['num_samples']} x {len(r['runs'])} | "
            f"{seeds} | " + " | ".join(cells) + " |"
        )
    (out / TABLE_FILE).write_text("\n".join(lines) + "\n")
    if records:
        curves: dict = {}
        for r in records:
            for name, a in r["aggregate"].items():
                curves.setdefault(name, {}).setdefault(r["sampler"], []).append((r["step"], a["mean"]))
        plotting.save_metric_curves(out / PLOT_FILE, curves, xlabel="training step", title=f"{records[0]['num_samples']} samples")
