"""What every mode builds from a config: the SDE, the network, its score adapter, the data, a checkpoint.

The command layer's one translation of a config into library objects and keyword arguments
(`Experiment`, `sampler_arguments`, `load_checkpoint`); the modes (one module each in
`scoresde.cli`) only add their files. Nothing here writes to the work directory.
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch
from absl import logging
from tqdm.auto import tqdm

from scoresde import data, samplers
from scoresde.cli import published
from scoresde.config import arguments, compare, schema
from scoresde.data import prepared
from scoresde.eval import features
from scoresde.models import MODELS, ExponentialMovingAverage, get_model
from scoresde.samplers.noise import per_sample_generators
from scoresde.score import NetworkScore
from scoresde.sde_lib import SDE, SDES, get_sde_from_options
from scoresde.train import checkpoint, distributed, loop, objectives


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
    """The network named by config.model.name with the options it takes from config.model
    (`config.arguments.model_options`)."""
    name = config.model.name
    if name not in MODELS:
        raise ValueError(f"config.model.name: unknown model {name!r}; valid: {', '.join(MODELS)}")
    return get_model(name, data_shape, **arguments.model_options(config))


def build_score_fn(config, model: torch.nn.Module, sde: SDE) -> NetworkScore:
    """The score adapter of config.model around `model` (`config.arguments.score_options`)."""
    return NetworkScore(model, sde, **arguments.score_options(config))


def load_data(config) -> tuple[data.Dataset, data.Dataset]:
    """(train, test) splits of the configured dataset, deterministic given config.seed.

    A `folder`, `npz` or `cifar10` dataset (`data.PREPARED_CACHE_DATASETS`) is decoded once into a prepared
    copy under config.data.cache_dir and streamed from it (config.data.cache; the same values as
    loading it whole, which config.data.cache=False still does).
    """
    d, options = config.data, arguments.dataset_options(config)
    if d.cache and d.dataset in data.PREPARED_CACHE_DATASETS:
        source = os.path.join(d.path, data.CIFAR10_FOLDER) if d.dataset == "cifar10" else d.path
        if d.dataset == "cifar10" and not os.path.isdir(source):
            raise data.DataNotFoundError(
                f"no {data.CIFAR10_FOLDER} in {d.path!r}: unpack CIFAR-10's python version there once "
                "(cifar-10-python.tar.gz, or torchvision's CIFAR10(root=..., download=True))"
            )
        copy = prepared.cached(
            source, d.cache_dir or None, resolution=d.image_size or None, grayscale=d.grayscale, pad_to=d.pad_to or None
        )
        logging.info("%s %s: streamed from its prepared copy %s", d.dataset, d.path, copy)
        options = {**options, "name": "prepared", "path": str(copy), "pad_to": None, "image_size": None, "grayscale": False}
    dataset = data.load_dataset(**options, seed=config.seed)
    return data.train_test_split(dataset, config.data.test_fraction, seed=config.seed)


def to_model_tensor(config, dataset: data.Dataset, device: torch.device) -> torch.Tensor:
    """The examples in the model's range on `device`: one tensor for data held in memory; for a
    prepared dataset a `prepared.StreamedExamples`, which reads the rows a batch indexes from the
    memory map (indexed like the tensor, never whole in memory). Only the bundled sets (toy data,
    digits, mnist5k) and user data loaded with config.data.cache=False reach the tensor; the latter
    were refused at load time if they would not fit (`data.check_fits_in_memory`)."""
    if isinstance(dataset.x, prepared.ImageRows):
        return prepared.StreamedExamples(dataset.x, device, config.data.centered)  # type: ignore[return-value]
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
    """config.sampling.time_grid for modes that take a named grid only ("" -> `sample`'s default,
    `samplers.default_time_grid`).

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


def sampler_from_spec(config, spec: str, mode: str, *, config_grid: bool = True):
    """The `eval.benchmark.Sampler` of a spec "name[@grid][:key=value,...]": the options of
    config.sampling.<name>, overridden by the spec's; the spec's grid, else (with `config_grid`)
    config.sampling's named grid (`named_time_grid`), else `sample`'s default."""
    from scoresde.eval import benchmark as bench

    name = spec.partition(":")[0].partition("@")[0]
    sampler = bench.parse_sampler_spec(spec, arguments.sampler_options(config, name) if name in samplers.available() else None)
    grid = named_time_grid(config, mode) if config_grid else None
    if sampler.time_grid is None and grid:
        sampler = bench.Sampler(sampler.label, sampler.sampler, sampler.options, grid)
    return sampler


def load_checkpoint(config, workdir: Path, model: torch.nn.Module, *, ema: bool) -> Path:
    """Load config.sampling.checkpoint (or the newest complete checkpoint of workdir) into `model`
    (`load_weights`).

    Returns:
        The checkpoint directory (or the published model file).

    Raises:
        FileNotFoundError: no complete checkpoint.
        ValueError: a config mismatch, a damaged checkpoint, weights that do not fit or are not finite.
    """
    if config.sampling.checkpoint:
        found = Path(config.sampling.checkpoint)
    else:
        found = newest_checkpoint(Path(workdir) / loop.CHECKPOINTS, "train first or set config.sampling.checkpoint")
    load_weights(config, found, model, ema=ema)
    return found


def load_weights(config, found: Path, model: torch.nn.Module, *, ema: bool) -> None:
    """The EMA (or raw) weights of `found` into `model`, strictly: a checkpoint directory after its
    saved config is checked against this run's model-defining values
    (`scoresde.config.compare.check_checkpoint_config`), or the published model file of
    config.sampling.checkpoint (`scoresde.cli.published`). The weights must be finite."""
    if published.is_published(found):
        model.load_state_dict(published.load(config, ema=ema).net.state_dict(), strict=True)
        return
    checkpoint.check_identity(found)
    compare.check_checkpoint_config(config, found)
    checkpoint.load_weights(found, model, ema=ema)


def checkpoint_step(found: Path) -> int:
    """The training step of a checkpoint directory, or a published model file's (`published.step_of`)."""
    return published.step_of(found) if published.is_published(found) else checkpoint.step_of(found)


def newest_checkpoint(root: Path, remedy: str) -> Path:
    """The newest complete checkpoint under `root`.

    Raises:
        FileNotFoundError: there is none; the message names `root` and the `remedy`.
    """
    found = checkpoint.latest(root)
    if found is None:
        raise FileNotFoundError(f"no complete checkpoint in {root}; {remedy}")
    return found


class Experiment:
    """Everything built from a config: data, SDE, network, EMA, optimizer, score function."""

    def __init__(self, config, device: torch.device | None = None):
        validate(config)
        self.config = config
        self.device = device if device is not None else resolve_device(config.device)
        self.sde = build_sde(config)
        self.train_data, self.test_data = load_data(config)
        self.published = None  # a published model file in place of our network (config.sampling.checkpoint)
        if published.is_published(config.sampling.checkpoint):
            self.published = published.load(config, ema=config.sampling.use_ema)
            self.published.check(config, self.train_data.shape)
            self.model = self.published.net.to(self.device)
        else:
            torch.manual_seed(config.seed)  # network initialisation
            self.model = build_model(config, self.train_data.shape).to(self.device)
        self.ema = ExponentialMovingAverage(self.model, decay=config.model.ema_decay)
        o = config.optim
        self.optimizer = torch.optim.Adam(
            self.model.parameters(), lr=o.lr, betas=(o.beta1, 0.999), eps=o.eps, weight_decay=o.weight_decay
        )
        self.score_fn = self.score_fn_for(self.model)
        self.y_train = class_labels(config, self.train_data, self.device)

    @functools.cached_property
    def x_train(self) -> torch.Tensor:
        """The training split in the model's range on the device, built on first use (by training and
        the noisy classifier; the sampling and evaluation modes never touch it): for a prepared set a
        `prepared.StreamedExamples` that reads each batch's rows from the memory map, for the small
        in-memory sets one tensor (`to_model_tensor`)."""
        return to_model_tensor(self.config, self.train_data, self.device)

    def score_fn_for(self, module: torch.nn.Module) -> Callable:
        """The configured score adapter around `module` (the network, or a DDP / compiled wrapper of
        it); a published model's own adapter (`published.Published.score_fn_for`)."""
        if self.published is not None:
            return self.published.score_fn_for(module, self.sde)
        return build_score_fn(self.config, module, self.sde)

    def training_settings(self) -> loop.Settings:
        """The training loop's settings from config.training and config.optim."""
        c, o = self.config, self.config.optim
        t = c.training
        return loop.Settings(
            n_steps=t.n_steps,
            batch_size=t.batch_size,
            lr=o.lr,
            seed=c.seed,
            warmup=o.warmup,
            grad_accum=t.grad_accum,
            grad_clip=o.grad_clip,
            compile=t.compile,
            checkpoint_freq=t.checkpoint_freq,
            keep_checkpoints=t.keep_checkpoints,
            meta_checkpoint_freq=t.meta_checkpoint_freq,
            **arguments.loop_policies(c),
        )

    def objective(self) -> objectives.DenoisingScoreMatching:
        """Denoising score matching of this network on the training split, as config.training says."""
        c, t = self.config, self.config.training
        return objectives.DenoisingScoreMatching(
            self.sde,
            self.score_fn_for,
            self.x_train,
            self.y_train,
            seed=c.seed,
            eps=t.eps,
            weighting=t.weighting,
            reduce=t.reduce,
            sigma_data=c.model.sigma_data,
            time_distribution=t.time_distribution,
            p_mean=t.p_mean,
            p_std=t.p_std,
            random_flip=c.data.random_flip,
            label_dropout=t.label_dropout,
            num_classes=c.model.num_classes,
        )

    def trainer(self, workdir: Path, ctx: distributed.Context | None = None) -> loop.Trainer:
        """The training loop for this network in `workdir` (resume refuses a checkpoint of another model)."""
        return loop.Trainer(
            self.model,
            self.ema,
            self.optimizer,
            self.objective(),
            self.training_settings(),
            workdir,
            ctx or distributed.Context(),
            device=self.device,
            run_config=self.config.to_dict(),
            check_checkpoint=lambda found: compare.check_checkpoint_config(self.config, found),
        )

    def analytic_first_step(self) -> tuple[float, float] | None:
        """(mean, std) of the training data in the model's space when config.sampling.analytic_first_step
        is on, else None: the Gaussian N(mean, std^2 I) whose exact score replaces the sampler's first
        evaluation (`samplers.AnalyticFirstStep`). Measured once, over at most `FEATURE_MAX_EXAMPLES`
        examples (a seeded subset of a larger set, read from its memory map)."""
        if not self.config.sampling.analytic_first_step:
            return None
        kept: tuple[float, float] | None = getattr(self, "_data_moments", None)
        if kept is None:
            x, _ = bounded_examples(self.config, self.train_data, torch.device("cpu"))
            x64 = x.double()
            kept = self._data_moments = (float(x64.mean()), float(x64.std()))
            logging.info("analytical first step: training data mean %.4f, std %.4f (%d examples)", *kept, len(x))
        return kept

    def tuned_time_grid(self, seed: int, grid_file: Path | None = None, checkpoint: str | None = None) -> torch.Tensor:
        """The configured sampler's grid searched for this network (sampling.time_grid = "tuned"):
        `samplers.search_time_grid` tunes on sampling.tune_samples starting points of one seed and
        judges every candidate (the named grids, the DP and the Nelder-Mead grids) on as many of
        another against the network's flow solved by the adaptive solver, so the grid is never
        worse there than the best named one. Computed once per Experiment; with `grid_file`, read
        from there when it was searched for the same sampler, step count and `checkpoint`, and
        written there otherwise (`samplers.save_time_grid`)."""
        s = self.config.sampling
        kept: torch.Tensor | None = getattr(self, "_tuned_grid", None)
        if kept is not None:
            return kept
        if grid_file is not None and grid_file.exists():
            try:
                self._tuned_grid = samplers.load_time_grid(grid_file, self.sde, sampler=s.sampler, checkpoint=checkpoint)
                if len(self._tuned_grid) == s.steps + 1:
                    logging.info("time grid read from %s (searched for %s)", grid_file, checkpoint)
                    return self._tuned_grid
            except ValueError as err:
                logging.info("searching the time grid again: %s", err)
        self.model.eval()

        def noise(offset: int) -> torch.Tensor:
            generator = torch.Generator(self.device).manual_seed(seed + offset)
            return self.sde.prior_sampling((s.tune_samples, *self.train_data.shape), generator=generator, device=self.device)

        start = time.perf_counter()
        result = samplers.search_time_grid(
            s.sampler,
            self.sde,
            self.score_fn,
            s.steps,
            x_tune=noise(104729),
            x_holdout=noise(1299709),
            options=arguments.sampler_options(self.config),
            eps=s.eps,
            denoise=s.denoise,
            max_evaluations=s.tune_evaluations,
            analytic_first_step=self.analytic_first_step(),
        )
        self._tuned_grid = result.grid
        logging.info(
            "searched the %s grid of %d steps in %.0f s: %s wins (%.2fx below the best named grid, %s, on held-out noise); "
            "times %s\n%s",
            s.sampler,
            s.steps,
            time.perf_counter() - start,
            result.winner,
            result.gain,
            result.best_handcrafted,
            [round(t, 5) for t in result.grid.tolist()],
            result.table(),
        )
        if grid_file is not None:
            samplers.save_time_grid(grid_file, result, self.sde, sampler=s.sampler, checkpoint=checkpoint)
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
                generator=generator,
                device=self.device,
                callback=lambda step: bar.update(1),
                analytic_first_step=self.analytic_first_step(),
                **sampler_arguments(self.config, time_grid),
            )
            chunks.append(x)
        bar.close()
        return torch.cat(chunks), info


def seed_draw(exp: "Experiment", sampler, time_grid, *, balanced_classes: bool = False) -> Callable:
    """seeds -> (samples in data space, {nfe, time_grid}), sample j from the per-sample generator
    seeded by seeds[j] (on the device). With `balanced_classes` (a class-conditional network),
    sample j is of class seeds[j] mod num_classes: every class equally often, the same in any split."""
    c = exp.config
    options = dict(sampler.options)
    steps = None if samplers.get(sampler.sampler).kind == "adaptive" else c.sampling.steps
    afs = options.pop("analytic_first_step", exp.analytic_first_step())  # a benchmark spec's own, else the config's

    def draw(seeds: np.ndarray) -> tuple[np.ndarray, dict]:
        shape = (len(seeds), *exp.train_data.shape)
        score_fn: Callable = exp.score_fn
        if balanced_classes:
            labels = torch.as_tensor(seeds % c.model.num_classes, dtype=torch.long, device=exp.device)
            score_fn = functools.partial(exp.score_fn, class_labels=labels)
        x, info = samplers.sample(
            sampler.sampler,
            exp.sde,
            score_fn,
            shape,
            generator=per_sample_generators(seeds.tolist(), exp.device),
            device=exp.device,
            steps=steps,
            eps=c.sampling.eps,
            denoise=c.sampling.denoise,
            time_grid=time_grid,
            analytic_first_step=afs,
            **options,
        )
        return to_data_space(c, x, exp.train_data.is_image), {"nfe": info["nfe"], "time_grid": info["time_grid"].tolist()}

    return draw


def sampling_identity(exp: "Experiment", sampler, time_grid, step: int) -> dict:
    """What a set of sharded samples are draws of (`eval.shards.Plan.about`): the checkpoint's step
    and weights, the sampler, its options and time grid, steps, eps, denoising, the analytical first
    step's Gaussian. The grid's times themselves are part of it (`samplers.resolve_time_grid`), so
    that draws made under other defaults (a default grid or end time changed) are never reused."""
    c = exp.config.sampling
    grid = time_grid.tolist() if isinstance(time_grid, torch.Tensor) else time_grid
    steps = None if samplers.get(sampler.sampler).kind == "adaptive" else c.steps
    times = samplers.resolve_time_grid(sampler.sampler, exp.sde, steps, c.eps, time_grid)
    afs = exp.analytic_first_step()
    return {
        "checkpoint_step": step,
        "ema": c.use_ema,
        "sampler": sampler.label,
        "options": sampler.options,
        "time_grid": grid,
        "grid_times": times.tolist(),
        "steps": c.steps,
        "eps": c.eps,
        "denoise": c.denoise,
        **({"analytic_first_step": list(afs)} if afs is not None else {}),  # absent when off: old shards stay valid
        "weights_sha256": features.weights_hash(exp.model),
    }


@contextlib.contextmanager
def process_group(config) -> Iterator[tuple[distributed.Context, torch.device]]:
    """This process's place in the torchrun group (a group of one without torchrun) and its device;
    the group is shut down at the end if this call started it. Ranks other than 0 log warnings only."""
    device = resolve_device(config.device)
    owns_group = not (torch.distributed.is_available() and torch.distributed.is_initialized())
    ctx = distributed.init(
        config.distributed.backend, device_type=device.type, timeout_minutes=config.distributed.timeout_minutes
    )
    try:
        if not ctx.is_main:
            logging.set_verbosity(logging.WARNING)
        yield ctx, distributed.device_for(ctx, device)
    finally:
        if owns_group:
            distributed.shutdown()


def load_trained(config, workdir: Path, exp: Experiment | None = None) -> tuple[Experiment, Path]:
    """`exp` (built from `config` when None) with the weights of the selected checkpoint
    (`load_checkpoint`; EMA unless config.sampling.use_ema is False), in eval mode; and that checkpoint."""
    exp = exp or Experiment(config)
    found = load_checkpoint(config, workdir, exp.model, ema=config.sampling.use_ema)
    exp.model.eval()
    return exp, found


def sampler_arguments(config, time_grid: str | torch.Tensor | None = None) -> dict[str, Any]:
    """`samplers.sample`'s keyword arguments from config.sampling, but for the sampler's name, the
    score and what is drawn: steps (None for an adaptive sampler), eps, denoise, the time grid (a
    name, a tensor or None for `sample`'s default, `samplers.default_time_grid`) and the sampler's own options
    (config.sampling.<sampler>). Every mode that samples calls the library with these."""
    s = config.sampling
    return {
        "steps": None if samplers.get(s.sampler).kind == "adaptive" else s.steps,
        "eps": s.eps,
        "denoise": s.denoise,
        "time_grid": time_grid,
        **arguments.sampler_options(config),
    }


def labels_of(config, split: data.Dataset) -> torch.Tensor:
    """The class labels of a data split (CPU, long).

    Raises:
        ValueError: the dataset has no labels.
    """
    if split.labels is None:
        raise ValueError(f"this mode needs labelled data; {config.data.dataset!r} has no labels")
    return torch.as_tensor(split.labels, dtype=torch.long)


# Examples a digits-style feature classifier is trained on, and the benchmark's real-data features
# are computed from, at most: a large (prepared) set contributes a seeded subset, never all of it.
FEATURE_MAX_EXAMPLES = 50_000


def bounded_examples(config, split: data.Dataset, device: torch.device, limit: int = FEATURE_MAX_EXAMPLES):
    """A split in the model's range on `device` as one tensor, with its labels (or None): all of
    it when it has at most `limit` examples, else `limit` of them chosen with config.seed (read from
    a prepared set's memory map, never the whole set)."""
    n = len(split)
    positions = np.arange(n) if n <= limit else np.sort(np.random.default_rng(config.seed).choice(n, limit, replace=False))
    x = to_model_tensor(config, split, device)
    if not (n <= limit and isinstance(x, torch.Tensor)):
        x = x[positions]
    labels = None if split.labels is None else torch.as_tensor(np.asarray(split.labels)[positions], dtype=torch.long)
    return x, labels


def feature_classifier(exp: Experiment, workdir: Path) -> tuple[torch.nn.Module, dict]:
    """The classifier trained on the clean data (`features.load_or_train`, cached in
    workdir/benchmark/): the feature space of the checkpoint benchmark, and what recognises the
    class of a completed or guided sample. Returns (classifier on CPU, its info)."""
    cpu = torch.device("cpu")
    x_train, y_train = bounded_examples(exp.config, exp.train_data, cpu)
    x_test, y_test = bounded_examples(exp.config, exp.test_data, cpu)
    if y_train is None or y_test is None:
        raise ValueError(f"this mode needs labelled data; {exp.config.data.dataset!r} has no labels")
    return features.load_or_train(Path(workdir) / "benchmark", x_train, y_train, x_test, y_test)


def predicted_classes(classifier: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The classes a (clean-data) classifier assigns to x, on CPU."""
    with torch.no_grad():
        return classifier(x.float().cpu()).argmax(1)
