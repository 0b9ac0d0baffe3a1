"""Orchestration for main.py: train, sample and benchmark from a config.

With `scoresde.training` (the training loop it drives) and `scoresde.config.schema` (the checks of
every value), the only modules that read configs: it translates an `ml_collections` config into
keyword arguments for the library at the edge, and owns the side effects: the work directory,
checkpoints, logs, pictures and progress bars.

Work directory layout:

    checkpoints/step_<k>/   complete checkpoints, `latest` names the newest (see scoresde.checkpoint)
    checkpoints-meta/       the single preemption checkpoint, written more often
    metrics.jsonl           one JSON record per log interval: step, loss, lr, steps/s
    metrics.dropped.jsonl   records of steps lost to an interruption and unreadable lines, kept
    .lock                   held (flock) by the run using the directory (scoresde.workdir)
    tensorboard/            the same scalars as TensorBoard events (when tensorboard is installed)
    samples/step_<k>.png    sample pictures during training
    samples.npz, samples.png, loss.png, quality.json   written at the end of training / by sample
"""

from __future__ import annotations

import inspect
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

from scoresde import checkpoint, data, distributed, metrics, plotting, samplers, training
from scoresde.config import arguments, compare, schema
from scoresde.models import MODELS, ExponentialMovingAverage, get_model
from scoresde.score import NetworkScore
from scoresde.sde_lib import SDE, SDES, get_sde_from_options

METRICS_FILE = training.METRICS_FILE


# -- building the pieces ---------------------------------------------------------------------
def resolve_device(name: str) -> torch.device:
    """ "auto" -> CUDA when available, else CPU; "cuda..." must be available."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ValueError(f"config.device: unknown device {name!r}; use 'auto', 'cpu' or 'cuda[:k]'") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"config.device={name!r} but CUDA is not available on this machine; use 'cpu' or 'auto'")
    return device


def build_sde(config) -> SDE:
    """The SDE named by config.sde.name with the constructor arguments it takes from config.sde."""
    if config.sde.name.lower() not in SDES:
        raise ValueError(f"config.sde.name: unknown SDE {config.sde.name!r}; valid: {', '.join(SDES)}")
    return get_sde_from_options(config.sde.name.lower(), config.sde, N=config.sde.num_scales)


def build_model(config, data_shape: tuple[int, ...]) -> torch.nn.Module:
    """The network named by config.model.name with the keyword arguments it takes from config.model.

    config.model holds the options of every network (the MLP's width, the U-Net's nf, ...); each
    network receives the ones in its signature.
    """
    name = config.model.name
    if name not in MODELS:
        raise ValueError(f"config.model.name: unknown model {name!r}; valid: {', '.join(MODELS)}")
    accepted = inspect.signature(MODELS[name]).parameters
    options = {k: v for k, v in config.model.items() if k in accepted and k != "data_shape"}
    return get_model(name, data_shape, **options)


def build_score_fn(config, model: torch.nn.Module, sde: SDE) -> NetworkScore:
    m = config.model
    return NetworkScore(
        model,
        sde,
        parameterization=m.parameterization,
        time_label=m.time_label,
        scale_input=m.scale_input,
        sigma_data=m.sigma_data,
    )


def load_data(config) -> tuple[data.Dataset, data.Dataset]:
    """(train, test) splits of the configured dataset, deterministic given config.seed."""
    dataset = data.load_dataset(**arguments.dataset_options(config), seed=config.seed)
    return data.train_test_split(dataset, config.data.test_fraction, seed=config.seed)


def to_model_tensor(config, dataset: data.Dataset, device: torch.device) -> torch.Tensor:
    x = data.to_model_range(dataset.x, config.data.centered) if dataset.is_image else dataset.x
    return torch.as_tensor(np.ascontiguousarray(x), dtype=torch.float32, device=device)


def to_data_space(config, x: torch.Tensor, is_image: bool) -> np.ndarray:
    """Samples back in data space: images in [0, 1] (clipped), toy points unchanged."""
    array = x.detach().cpu().numpy()
    return np.clip(data.from_model_range(array, config.data.centered), 0, 1) if is_image else array


def class_labels(config, dataset: data.Dataset, device: torch.device) -> torch.Tensor | None:
    """The labels of a class-conditional model's data (model.num_classes > 0), else None.

    Raises:
        ValueError: the data have no labels, or labels outside [0, num_classes).
    """
    n = config.model.num_classes
    if not n:
        return None
    if dataset.labels is None:
        raise ValueError(f"config.model.num_classes={n} needs labelled data; {config.data.dataset!r} has no labels")
    labels = torch.as_tensor(dataset.labels, dtype=torch.long, device=device)
    if int(labels.min()) < 0 or int(labels.max()) >= n:
        raise ValueError(
            f"labels of {config.data.dataset!r} span [{int(labels.min())}, {int(labels.max())}] but "
            f"config.model.num_classes={n}; it must exceed the largest label"
        )
    return labels


def validate(config) -> None:
    """Every config value checked before work starts (see scoresde.config.schema); one ValueError lists all problems."""
    schema.check(config)


def named_time_grid(config, mode: str) -> str | None:
    """config.sampling.time_grid for modes that take a named grid only ("" -> the sampler's default).

    Raises:
        ValueError: for "tuned", which only the train and sample modes tune (Experiment.sample).
    """
    grid = config.sampling.time_grid
    if grid == "tuned":
        raise ValueError(
            f"config.sampling.time_grid='tuned' is tuned by --mode sample and training samples only, not by "
            f"--mode {mode}; name a grid ({', '.join(samplers.TIME_GRIDS)}) or tune one with "
            "samplers.tune_time_grid and pass it from Python"
        )
    return grid or None


sampler_options = arguments.sampler_options


def load_checkpoint(config, workdir: Path, model: torch.nn.Module, *, ema: bool) -> Path:
    """Load config.sampling.checkpoint (or the newest complete checkpoint of workdir) into `model`.

    The checkpoint's saved config is checked against this run's model-defining values first
    (`scoresde.config.compare.check_checkpoint_config`); the weights are loaded strictly and must be finite.

    Returns:
        The checkpoint directory.

    Raises:
        FileNotFoundError: no complete checkpoint.
        ValueError: a config mismatch, a damaged checkpoint, weights that do not fit or are not finite.
    """
    found = Path(config.sampling.checkpoint) if config.sampling.checkpoint else checkpoint.latest(Path(workdir) / "checkpoints")
    if found is None:
        raise FileNotFoundError(
            f"no complete checkpoint in {Path(workdir) / 'checkpoints'}; train first or set config.sampling.checkpoint"
        )
    checkpoint.check_identity(found)
    compare.check_checkpoint_config(config, found)
    checkpoint.load_weights(found, model, ema=ema)
    return found


class Experiment:
    """Everything built from a config: data, SDE, network, EMA, optimizer, score function."""

    def __init__(self, config, device: torch.device | None = None):
        validate(config)
        self.config = config
        self.device = device if device is not None else resolve_device(config.device)
        self.sde = build_sde(config)
        self.train_data, self.test_data = load_data(config)
        torch.manual_seed(config.seed)  # network initialisation
        self.model = build_model(config, self.train_data.shape).to(self.device)
        self.ema = ExponentialMovingAverage(self.model, decay=config.model.ema_decay)
        o = config.optim
        self.optimizer = torch.optim.Adam(
            self.model.parameters(), lr=o.lr, betas=(o.beta1, 0.999), eps=o.eps, weight_decay=o.weight_decay
        )
        self.score_fn = self.score_fn_for(self.model)
        self.x_train = to_model_tensor(config, self.train_data, self.device)
        self.y_train = class_labels(config, self.train_data, self.device)

    def score_fn_for(self, module: torch.nn.Module) -> NetworkScore:
        """The configured score adapter around `module` (the network, or a DDP / compiled wrapper of it)."""
        return build_score_fn(self.config, module, self.sde)

    def learning_rate(self, step: int) -> float:
        """Linear warm-up to config.optim.lr over config.optim.warmup steps."""
        warmup = self.config.optim.warmup
        return self.config.optim.lr * min(1.0, (step + 1) / warmup) if warmup else self.config.optim.lr

    def tuned_time_grid(self, seed: int) -> torch.Tensor:
        """The configured sampler's grid tuned to this network (sampling.time_grid = "tuned"): on
        sampling.tune_samples starting points of their own seed, against the network's flow solved
        by the adaptive solver (`samplers.tune_time_grid`); computed once per Experiment."""
        s = self.config.sampling
        if getattr(self, "_tuned_grid", None) is None:
            self.model.eval()
            x_T = self.sde.prior_sampling(
                (s.tune_samples, *self.train_data.shape),
                generator=torch.Generator(self.device).manual_seed(seed + 104729),
                device=self.device,
            )

            def run(x, grid):
                return samplers.sample(
                    s.sampler, self.sde, self.score_fn, x_T=x, time_grid=grid, denoise=s.denoise, **sampler_options(self.config)
                )[0]

            start = time.perf_counter()
            init = samplers.get(s.sampler).default_grid
            self._tuned_grid, info = samplers.tune_time_grid(
                run, self.sde, x_T, s.steps, score_fn=self.score_fn, init=init, eps=s.eps, max_evaluations=s.tune_evaluations
            )
            logging.info(
                "tuned the %s grid of %d steps in %.0f s: RMS to the flow %.3g (from %s) -> %.3g; times %s",
                s.sampler,
                s.steps,
                time.perf_counter() - start,
                info["rms_initial"],
                init,
                info["rms"],
                [round(t, 5) for t in self._tuned_grid.tolist()],
            )
        return self._tuned_grid

    def sample(
        self, n: int, *, seed: int, progress: bool = False, before_evaluation: Callable[[], None] | None = None
    ) -> tuple[torch.Tensor, dict]:
        """n samples (in model space) with the configured sampler, in batches, in eval mode.

        `before_evaluation` is called before every score evaluation (of any sampler, adaptive ones
        too); raising in it abandons the draw (training's periodic pictures do, on a stop signal).
        """
        s = self.config.sampling
        if n == 0:  # a process's share of a sharded draw can be empty
            return torch.empty((0, *self.train_data.shape), device=self.device), {"nfe": 0}
        time_grid = self.tuned_time_grid(seed) if s.time_grid == "tuned" else (s.time_grid or None)
        generator = torch.Generator(self.device).manual_seed(seed)
        self.model.eval()
        score_fn: Callable = self.score_fn
        if before_evaluation is not None:
            hook = before_evaluation

            def score_fn_with_hook(x, t, **kwargs):
                hook()
                return self.score_fn(x, t, **kwargs)

            score_fn = score_fn_with_hook
        chunks: list[torch.Tensor] = []
        info: dict = {}
        bar = tqdm(total=math.ceil(n / s.batch_size) * s.steps, desc="sampling", disable=None if progress else True, leave=False)
        for start in range(0, n, s.batch_size):
            shape = (min(s.batch_size, n - start), *self.train_data.shape)
            x, info = samplers.sample(
                s.sampler,
                self.sde,
                score_fn,
                shape,
                steps=None if samplers.get(s.sampler).kind == "adaptive" else s.steps,
                eps=s.eps,
                denoise=s.denoise,
                generator=generator,
                device=self.device,
                time_grid=time_grid,
                callback=lambda step: bar.update(1),
                **sampler_options(self.config),
            )
            chunks.append(x)
        bar.close()
        return torch.cat(chunks), info


# -- work directory helpers --------------------------------------------------------------------
def _save_pictures(exp: Experiment, samples: np.ndarray, path: Path) -> None:
    if exp.train_data.is_image:
        plotting.save_image_grid(path, samples[:64])
    else:
        plotting.save_scatter(path, samples, reference=exp.test_data.x, title=path.stem)


def quality(exp: Experiment, samples: np.ndarray) -> dict:
    """Sliced Wasserstein distance from the samples to held-out data, next to the same distance from
    as many training examples (the noise floor a perfect model would reach)."""
    test = exp.test_data.x
    n = min(len(samples), len(exp.train_data.x))
    rng = np.random.default_rng(exp.config.seed)
    train_subset = exp.train_data.x[rng.choice(len(exp.train_data.x), n, replace=False)]
    k = exp.config.eval.n_projections
    return {
        "sliced_wasserstein_to_test": metrics.sliced_wasserstein(samples[:n], test, n_projections=k),
        "noise_floor_train_to_test": metrics.sliced_wasserstein(train_subset, test, n_projections=k),
        "n_samples": n,
        "n_test": len(test),
    }


def _finish(exp: Experiment, workdir: Path, step: int, x: np.ndarray, nfe: int) -> dict:
    """The final samples (model space, EMA weights): their picture, quality figure, and the loss plot."""
    c = exp.config
    samples = to_data_space(c, torch.as_tensor(x), exp.train_data.is_image)
    np.savez(workdir / "samples.npz", samples=samples, step=step, nfe=nfe)
    _save_pictures(exp, samples, workdir / "samples.png")
    figures = {"step": step, "sampler": c.sampling.sampler, "nfe": nfe, **quality(exp, samples)}
    (workdir / "quality.json").write_text(json.dumps(figures, indent=2))
    records = training.read_metrics(workdir / METRICS_FILE)
    if records:
        plotting.save_loss_curve(
            workdir / "loss.png", [r["step"] for r in records], [r["loss"] for r in records], title="training loss"
        )
    return figures


# -- modes -------------------------------------------------------------------------------------
def train(config, workdir: str | Path) -> dict:
    """Train (resuming from the newest complete checkpoint in workdir) and write samples at the end.

    Under torchrun every process runs this; rank 0 writes (see scoresde.training).

    Returns:
        The quality figures of the final samples (an empty dict on ranks other than 0).

    Raises:
        training.TrainingInterrupted: SIGTERM / SIGINT (a checkpoint at the current step is written).
        training.NonFiniteLossError: the loss diverged and config.training.nonfinite is "stop".
    """
    workdir = Path(workdir)
    validate(config)
    device = resolve_device(config.device)
    owns_group = not (torch.distributed.is_available() and torch.distributed.is_initialized())
    ctx = distributed.init(
        config.distributed.backend, device_type=device.type, timeout_minutes=config.distributed.timeout_minutes
    )
    try:
        if not ctx.is_main:
            logging.set_verbosity(logging.WARNING)
        exp = Experiment(config, device=distributed.device_for(ctx, device))
        trainer = training.Trainer(exp, workdir, ctx, exp.score_fn_for)
        start = trainer.resume(config.training.resume_from)
        c = config.training

        def pictures(done: int) -> None:
            if c.sample_freq and done % c.sample_freq == 0 and done != c.n_steps:
                x, info = trainer.sample(min(config.sampling.n_samples, 256), seed=config.sampling.seed, interruptible=True)
                if ctx.is_main and not info["interrupted"]:
                    path = workdir / "samples" / f"step_{done:08d}.png"
                    _save_pictures(exp, to_data_space(config, torch.as_tensor(x), exp.train_data.is_image), path)

        trainer.run(start, on_step=pictures)
        x, info = trainer.sample(config.sampling.n_samples, seed=config.sampling.seed, progress=c.progress)
        figures = {}
        if ctx.is_main:
            figures = _finish(exp, workdir, c.n_steps, x, info["nfe"])
            logging.info("quality: %s", json.dumps(figures))
        distributed.barrier(ctx)
        return figures
    finally:
        if owns_group:
            distributed.shutdown()


def sample(config, workdir: str | Path) -> dict:
    """Load a checkpoint (EMA weights unless config.sampling.use_ema is False) and write samples."""
    workdir = Path(workdir)
    exp = Experiment(config)
    found = load_checkpoint(config, workdir, exp.model, ema=config.sampling.use_ema)
    step = checkpoint.step_of(found)
    out = workdir / "sample" / config.sampling.sampler
    out.mkdir(parents=True, exist_ok=True)  # before the work: a directory that cannot be made fails now
    x, info = exp.sample(config.sampling.n_samples, seed=config.sampling.seed, progress=True)
    samples = to_data_space(config, x, exp.train_data.is_image)
    np.savez(out / "samples.npz", samples=samples, step=step, nfe=info["nfe"])
    _save_pictures(exp, samples, out / "samples.png")
    figures = {
        "checkpoint": str(found),
        "ema": config.sampling.use_ema,
        "nfe": info["nfe"],
        "time_grid": [round(t, 6) for t in info["time_grid"].tolist()],
        **quality(exp, samples),
    }
    (out / "quality.json").write_text(json.dumps(figures, indent=2))
    logging.info("wrote %s; quality: %s", out, json.dumps(figures))
    return figures


def likelihood(config, workdir: str | Path) -> dict:
    """Log-likelihood of a data split under a checkpoint (EMA weights unless likelihood.use_ema=False).

    Toy data: nats per example. Images: bits per dimension of the discrete pixels, with uniform
    dequantization (scoresde.likelihood.bits_per_dim; the dataset's number of grey levels from
    data.QUANTIZATION_LEVELS; with n_dequantize > 1 also the importance-weighted bound). Writes
    workdir/likelihood/<split>.npz (per example: logp, bpd, bpd_iw, stderr, NFE) and <split>.json (mean
    and standard error over the examples, NFE, seconds).
    """
    from scoresde import likelihood as lik

    workdir, settings = Path(workdir), config.likelihood
    exp = Experiment(config)
    found = load_checkpoint(config, workdir, exp.model, ema=settings.use_ema)
    exp.model.eval()
    split = exp.test_data if settings.split == "test" else exp.train_data
    x_all = split.x[: settings.n_examples] if settings.n_examples else split.x
    levels = data.QUANTIZATION_LEVELS[config.data.dataset] if split.is_image else None
    exact = lik.DIVERGENCES[settings.divergence]
    dim = int(np.prod(split.shape))
    start = time.perf_counter()
    with tqdm(total=len(x_all), desc="likelihood", disable=None) as bar:
        values = lik.evaluate_dataset(
            exp.sde,
            exp.score_fn,
            x_all,
            levels=levels,
            centered=config.data.centered,
            n_dequantize=settings.n_dequantize if levels else 1,
            batch_size=settings.batch_size,
            seed=settings.seed,
            device=exp.device,
            callback=bar.update,
            eps=settings.eps,
            exact_divergence=exact,
            n_probes=settings.n_probes,
            probe=settings.probe,
            rtol=settings.rtol,
            atol=settings.atol,
            method=settings.method,
            steps=settings.steps,
        )
    seconds = time.perf_counter() - start
    out = workdir / "likelihood"
    out.mkdir(parents=True, exist_ok=True)
    np.savez(out / f"{settings.split}.npz", **values)  # type: ignore[arg-type]  # numpy's stub types **kwds as bool

    summary = {
        "checkpoint": str(found),
        "step": checkpoint.step_of(found),
        "split": settings.split,
        "n_examples": len(x_all),
        "dimensions": dim,
        "logp_nats": lik.mean_and_stderr(values["logp"]),
        "nfe_per_example": float(values["nfe"].mean()),
        "seconds": seconds,
        "method": settings.method,
        "rtol": settings.rtol,
        "atol": settings.atol,
        "eps": settings.eps,
        "divergence": "exact" if lik.uses_exact_divergence(exact, dim) else f"hutchinson x{settings.n_probes}",
    }
    if levels:
        summary.update(
            {"bits_per_dim": lik.mean_and_stderr(values["bpd"]), "levels": levels, "n_dequantize": settings.n_dequantize}
        )
        if settings.n_dequantize > 1:  # the tighter log-mean-exp bound over the draws (likelihood.importance_weighted_logp)
            summary["bits_per_dim_importance_weighted"] = lik.mean_and_stderr(values["bpd_iw"])
    if np.isfinite(values["stderr"]).any():
        summary["mean_hutchinson_stderr_nats"] = float(np.nanmean(values["stderr"]))
    (out / f"{settings.split}.json").write_text(json.dumps(summary, indent=2))
    logging.info("likelihood: %s", json.dumps(summary))
    return summary


def _oracle_targets(config) -> list:
    from scoresde import benchmark as bench

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


def _inception_metric_inputs(config, exp: Experiment, x_test: torch.Tensor):
    """(inception_fn, real, train) for NetworkTarget when config.benchmark.inception_weights names the
    FID Inception weights file (hash-checked, never downloaded); None otherwise."""
    b = config.benchmark
    if not b.inception_weights:
        return None
    from scoresde import inception

    model = inception.load_fid_inception(b.inception_weights, device=exp.device, expected_sha256=b.inception_sha256 or None)
    logging.info("FID Inception network loaded from %s (SHA-256 checked)", b.inception_weights)

    def inception_fn(x: torch.Tensor):
        return inception.inception_features(model, x.detach().float(), centered=config.data.centered)

    return inception_fn, x_test, exp.x_train.cpu()


def _checkpoint_target(config, workdir: Path):
    """The trained model of `workdir` (EMA weights), scored with a classifier trained on its data."""
    from scoresde import benchmark as bench
    from scoresde import features, inception

    exp = Experiment(config)
    if exp.train_data.labels is None:
        raise ValueError(
            f"benchmarking a checkpoint needs labelled data for its feature classifier; {config.data.dataset!r} has none"
        )
    found = load_checkpoint(config, workdir, exp.model, ema=config.sampling.use_ema)
    exp.model.eval()
    x_test = to_model_tensor(config, exp.test_data, torch.device("cpu"))
    classifier, info = features.load_or_train(
        workdir / "benchmark",
        exp.x_train.cpu(),
        torch.as_tensor(exp.train_data.labels),
        x_test,
        torch.as_tensor(exp.test_data.labels),
    )
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
        feature_fn(exp.x_train),
        postprocess=lambda x: x.clamp(low, high),
        reference_rtol=config.benchmark.reference_rtol,
        device=exp.device,
        inception=_inception_metric_inputs(config, exp, x_test),
        identity={
            "step": checkpoint.step_of(found),
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
    target.classifier_info = {**info, "checkpoint": str(found), "step": checkpoint.step_of(found)}
    target.inception_weights = config.benchmark.inception_weights
    return target


def benchmark(config, workdir: str | Path) -> dict:
    """Compare samplers on the targets of config.benchmark; resumable (see scoresde.benchmark).

    config.benchmark.target is "oracle" (exact-score Gaussian mixtures: config.benchmark.problems x
    sdes) or "checkpoint" (the trained model in workdir, scored in the feature space of a classifier
    trained on the same data). Writes into workdir/benchmark/: records.jsonl (one line per finished
    run, the resume state), report.md, summary.csv, records.json, the metric-against-NFE plots and
    the samples of every sampler at config.benchmark.plot_budget.
    """
    from scoresde import benchmark as bench

    b = config.benchmark
    workdir = Path(workdir)
    out = workdir / "benchmark"
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(config.seed)
    grid = []
    for spec in b.samplers:
        name = spec.partition(":")[0].partition("@")[0]
        sampler = bench.parse_sampler_spec(spec, sampler_options(config, name) if name in samplers.available() else None)
        if sampler.time_grid is None and named_time_grid(config, "benchmark"):
            sampler = bench.Sampler(sampler.label, sampler.sampler, sampler.options, config.sampling.time_grid)
        grid.append(sampler)
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
    images = to_data_space(config, x, True)
    plotting.save_image_grid(path, images[:64])
