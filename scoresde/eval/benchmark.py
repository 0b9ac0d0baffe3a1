"""Sampler comparison: a grid of samplers x options x NFE budgets on a target, resumable.

A *target* supplies an SDE, a score function, initial noise and metrics; `run` evaluates every
cell of the grid (one sampler with its options and time grid at one NFE budget) for several seeds
and appends one JSON record per (cell, seed) to a file as soon as it is done, so an interrupted
benchmark resumes without recomputing finished cells. `summarize` averages the seeds with
Student-t confidence intervals; `write_report` writes the table, CSV / JSON and plots.

Targets:

- `OracleTarget`: an exact-score Gaussian mixture (`scoresde.oracle`) under an SDE, where the metrics
  are exact: `flow_rms`, the RMS error against the exact probability-flow solution from the same
  x_T (deterministic samplers follow that flow; stochastic ones do not, so for them it only says how
  far they end from it); `sw`, the sliced Wasserstein distance to exact data samples, next to
  `sw_floor`, the mean distance to them from 5 independent exact samples of the same size; and
  `nll_gap`, the mean negative log-density of the samples under the true density minus that of
  exact data samples (0 for a perfect sampler, positive when samples sit in low-density regions).

A sampler is a name of `scoresde.samplers.available()`, or a function of your own with the
signature of `samplers.sample` restricted to `(sde, score_fn, *, x_T, steps, eps, **options) ->
(x, info)` with `info["nfe"]`, given with a label: `Sampler("mine", my_function, {...})`.

In configs a grid entry is a *spec* string, `parse_sampler_spec`: `"name"`, `"name@grid"` (a time
grid) and/or `"name:key=value,key=value"` (options), e.g. `"unipc@karras"`,
`"predictor_corrector:snr=0.16,corrector_steps=2"`, `"probability_flow:rtol=1e-3"`: the same sampler
with several options or grids makes an option sweep, each spec one line of the report.

Records are keyed by a digest of everything that determines them (`record_digest`): the target's
identity (`target.identity()`: the problem or checkpoint with its step and weights digest, the SDE
and its parameters, eps, the sample count, the metric networks), the sampler spec with its options
and grid, the times of the grid it integrates over (a spec without a grid takes `sample`'s default for the
SDE and step count, `samplers.default_time_grid`, so a change of defaults is a change of digest),
the budget and the seed. A record is reused only when its digest matches; records of the
same target name computed under other settings (an earlier checkpoint, another sample count, other
SDE parameters) are stale: they are not reused, not reported, and stay in the file for the record.

Budgets are in score evaluations (NFE). Each sampler's evaluations per step are what its registry
declaration says (`samplers.SamplerInfo.evaluations`, with the spec's options; a sampler passed as
a function is measured by dry runs on one example instead), and the step count is the largest that
fits the budget including the final denoising evaluation. Samplers whose evaluations do not depend on the step count
(the adaptive `probability_flow`, whose NFE its tolerance sets) run once per seed, outside the
budgets: their records have budget 0, shown as "adaptive" in the report. Wall time is measured per run; `overhead_ms_per_step`
is the wall time minus the time the score function alone takes for that many evaluations (measured
on the same batch), per step.
"""

from __future__ import annotations

import ast
import csv
import dataclasses
import difflib
import hashlib
import inspect
import json
import math
import re
import shutil
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np
import torch
from absl import logging

from scoresde import files, oracle, samplers
from scoresde.eval import metrics, shards
from scoresde.samplers import noise
from scoresde.sde_lib import SDE, get_sde_from_options

RECORDS_FILE = "records.jsonl"
TARGETS = ("oracle", "checkpoint")  # exact-score mixtures (`OracleTarget`), or a trained model (`NetworkTarget`)
RECORD_VERSION = 2  # bump when a metric's definition changes: older records then no longer match
HIGHER_IS_BETTER = ("precision", "recall", "inception_score")
ZERO_IS_BEST = ("nll_gap",)  # a negative gap means over-concentrated samples, no better than a positive one


@dataclasses.dataclass(frozen=True)
class Sampler:
    """A sampler in the grid: a name of `samplers.available()` or a function, with fixed options."""

    label: str
    sampler: str | Callable = ""
    options: dict = dataclasses.field(default_factory=dict)
    time_grid: str | None = None

    def __post_init__(self):
        if not self.sampler:
            object.__setattr__(self, "sampler", self.label)
        if isinstance(self.sampler, str) and self.sampler not in samplers.available():
            raise ValueError(f"unknown sampler {self.sampler!r}; available: {', '.join(samplers.available())}")

    def key(self) -> str:
        return json.dumps({"label": self.label, "options": self.options, "time_grid": self.time_grid}, sort_keys=True)

    def grid_name(self, sde: SDE, steps: int) -> str:
        """The grid this spec runs on: its own, else `sample`'s default for the SDE and step count
        ("default" for a sampler given as a function, which chooses its own)."""
        if self.time_grid:
            return self.time_grid
        return samplers.default_time_grid(self.sampler, sde, steps) if isinstance(self.sampler, str) else "default"

    def grid_digest(self, sde: SDE, steps: int, eps: float) -> str | None:
        """The SHA-256 of the times a named sampler integrates over (`samplers.resolve_time_grid`);
        None for a sampler given as a function."""
        if not isinstance(self.sampler, str):
            return None
        return _sha256_json(samplers.resolve_time_grid(self.sampler, sde, steps, eps, self.time_grid).tolist())

    def run(
        self,
        sde: SDE,
        score_fn: Callable,
        *,
        x_T: torch.Tensor,
        steps: int,
        eps: float,
        seed: int = 0,
        generator: noise.Generators = None,
    ):
        """Sample from x_T; the sampler's noise from `generator` (a list of one per sample allowed)
        or else from a generator seeded by `seed`."""
        if generator is None:
            generator = torch.Generator(x_T.device).manual_seed(seed)
        options = dict(self.options)
        if self.time_grid:
            options["time_grid"] = self.time_grid
        if isinstance(self.sampler, str):
            return samplers.sample(self.sampler, sde, score_fn, x_T=x_T, steps=steps, eps=eps, generator=generator, **options)
        return self.sampler(sde, score_fn, x_T=x_T, steps=steps, eps=eps, generator=generator, **options)


def _literal(text: str) -> Any:
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text  # a bare word: a string option such as a method name


def fingerprint(value: Any, depth: int = 3) -> Any:
    """A JSON-able description of `value` for record digests: numbers, strings and None as they
    are; tensors and arrays by shape, dtype and the SHA-256 of their bytes; containers element by
    element; other objects (an SDE, a mixture) by their class and attributes, `depth` levels deep;
    functions by their qualified name."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return repr(value)  # exact, and NaN-safe in JSON
    if isinstance(value, (torch.Tensor, np.ndarray)):
        array = np.ascontiguousarray(value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else value)
        return {"shape": list(array.shape), "dtype": str(array.dtype), "sha256": hashlib.sha256(array.tobytes()).hexdigest()}
    if isinstance(value, (list, tuple)):
        return [fingerprint(v, depth) for v in value]
    if isinstance(value, dict):
        return {str(k): fingerprint(v, depth) for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))}
    if isinstance(value, type) or inspect.isroutine(value):
        return f"{value.__module__}.{value.__qualname__}"
    attributes = vars(value) if depth > 0 and hasattr(value, "__dict__") else {}
    return {
        "class": f"{type(value).__module__}.{type(value).__qualname__}",
        **{k: fingerprint(v, depth - 1) for k, v in sorted(attributes.items())},
    }


def _sha256_json(content: Any) -> str:
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()


def target_digest(target) -> str:
    """The SHA-256 (hex) of a target's `identity()` (of its name alone for a target without one)."""
    return _sha256_json({"version": RECORD_VERSION, "target": target.identity() if hasattr(target, "identity") else target.name})


def record_digest(target_sha256: str, sampler: "Sampler", budget: int, seed: int, grid: str | None = None) -> str:
    """The SHA-256 (hex) of everything that determines one record: target, sampler spec, the
    times of its grid (`Sampler.grid_digest`), budget, seed."""
    return _sha256_json({"target": target_sha256, "sampler": sampler.key(), "grid": grid, "budget": budget, "seed": seed})


def parse_sampler_spec(spec: str, base_options: dict | None = None) -> Sampler:
    """A `Sampler` from "name[@time_grid][:key=value,...]", labelled by the spec itself.

    Values are Python literals (1e-3, 2, True, 'dopri5') or bare words (strings). `base_options`
    (e.g. the config's sampling options that apply to this sampler) are overridden by the spec's.

    Raises:
        ValueError: unknown sampler, time grid or option (listing the valid ones), or a malformed spec.
    """
    head, _, tail = spec.partition(":")
    name, _, grid = head.partition("@")

    def hint(word, names):
        close = difflib.get_close_matches(word, names, n=1, cutoff=0.7)
        return f" (did you mean {close[0]!r}?)" if close else ""

    if name not in samplers.available():
        raise ValueError(
            f"sampler spec {spec!r}: unknown sampler {name!r}{hint(name, samplers.available())}; "
            f"available: {', '.join(samplers.available())}"
        )
    if grid and grid not in samplers.TIME_GRIDS:
        raise ValueError(
            f"sampler spec {spec!r}: unknown time grid {grid!r}{hint(grid, samplers.TIME_GRIDS)}; "
            f"valid: {', '.join(samplers.TIME_GRIDS)}"
        )
    valid = samplers.sampler_options(name) | {"analytic_first_step"}  # `samplers.sample`'s, for every sampler
    options = dict(base_options or {})
    for item in filter(None, (part.strip() for part in tail.split(","))):
        key, equals, value = item.partition("=")
        key = key.strip()
        if not equals or not key:
            raise ValueError(f"sampler spec {spec!r}: options must be key=value, got {item!r}")
        if key not in valid:
            raise ValueError(f"sampler spec {spec!r}: {name} has no option {key!r}; valid: {', '.join(sorted(valid)) or 'none'}")
        options[key] = _literal(value.strip())
    return Sampler(spec, name, options, grid or None)


class OracleTarget:
    """An exact-score Gaussian-mixture problem (see the module docstring for its metrics).

    Args:
        name: a label for reports.
        mixture: the data distribution.
        sde: the SDE the samplers integrate.
        eps: the sampler's end time.
        n_samples: samples per run.
    """

    metric_names = ("flow_rms", "sw", "nll_gap")
    floors = {"sw": "sw_floor"}

    def __init__(self, name: str, mixture: oracle.GaussianMixture, sde: SDE, eps: float, n_samples: int):
        if n_samples < 2:
            raise ValueError(f"n_samples must be >= 2, got {n_samples}")
        self.name, self.mixture, self.sde, self.eps, self.n_samples = name, mixture, sde, eps, n_samples
        self.score_fn = mixture.score_fn(sde)
        self.shape = (n_samples, *mixture.event_shape)
        self._references: dict[int, torch.Tensor] = {}
        self.data = mixture.sample(n_samples, generator=torch.Generator().manual_seed(10_000))
        # The floor: the distance from independent exact samples of the same size, averaged over 5 draws
        # (in few dimensions one draw swings by tens of percent with the samples' component proportions).
        self.sw_floor = float(
            np.mean(
                [
                    metrics.sliced_wasserstein(
                        mixture.sample(n_samples, generator=torch.Generator().manual_seed(10_001 + k)), self.data
                    )
                    for k in range(5)
                ]
            )
        )
        self.data_nll = -mixture.log_prob(self.data.double()).mean().item()

    def identity(self) -> dict:
        """What determines this target's records: the mixture, the SDE with its parameters, eps, n_samples."""
        return {
            "kind": "oracle",
            "name": self.name,
            "mixture": fingerprint(self.mixture),
            "sde": fingerprint(self.sde),
            "eps": fingerprint(self.eps),
            "n_samples": self.n_samples,
        }

    def initial_noise(self, seed: int) -> torch.Tensor:
        return self.sde.prior_sampling(self.shape, generator=torch.Generator().manual_seed(seed))

    def exact_flow(self, seed: int) -> torch.Tensor:
        if seed not in self._references:
            self._references[seed] = self.mixture.solve_flow(self.initial_noise(seed).double(), self.sde)
        return self._references[seed]

    def evaluate(self, x: torch.Tensor, seed: int) -> dict:
        reference = self.exact_flow(seed)
        x64 = x.detach().cpu().double()
        return {
            "flow_rms": (x64 - reference).pow(2).mean().sqrt().item(),
            "sw": metrics.sliced_wasserstein(x64, self.data),
            "sw_floor": self.sw_floor,
            "nll_gap": -self.mixture.log_prob(x64).mean().item() - self.data_nll,
        }


class NetworkTarget:
    """A trained score network, scored in the feature space of a classifier trained on its data.

    Metrics (local: comparable across samplers on the same data and classifier, not with literature
    FIDs): `fd`, the Fréchet distance between the Gaussian fits of sample and held-out features;
    `kid`, the unbiased polynomial-kernel MMD^2 (KID) between them; `precision` / `recall`
    (Kynkäänniemi et al. 2019, k = 3); and `flow_rms`, the RMS distance to the model's own
    probability-flow solution from the same x_T by the adaptive solver at `reference_rtol` (the
    solver error, with the network as it is). `fd_floor` and `kid_floor` are the same distances from
    as many real training examples.

    Args:
        name: a label for reports.
        sde, score_fn: the model's SDE and score function.
        example_shape: the shape of one example.
        eps: the samplers' end time.
        n_samples: samples per run.
        feature_fn: maps a batch of samples (in the model's space) to features (n, d).
        real_features: features of held-out real data; train_features: of training data (floors).
        postprocess: applied to samples before features (e.g. clipping to the data range).
        reference_rtol: tolerance of the reference flow solve.
        identity: what determines the score function and the metric networks beyond the SDE, eps
            and sample count, which the target adds itself: e.g. the checkpoint, its step and the
            digest of its weights, the network's config, the feature classifier's weights digest.
            Records are reused only for the same identity (see the module docstring).
        inception: optional `(inception_fn, real_images, train_images)`: `inception_fn(images)`
            returns the FID Inception network's (pool features, logits) of images in the model's
            space (`scoresde.eval.inception.inception_features` of a user-supplied, hash-checked weights
            file, after mapping to [0, 1]); `real_images` / `train_images` are held-out / training
            images in the model's space. Adds
            `fid_inception` (the Fréchet distance in Inception features: FID, but from
            `n_samples` samples against the held-out set, so compare it only at equal sizes) with
            its floor, and `inception_score` (Salimans et al. 2016, in min(10, n / 2) splits).
        shard_folder: where each run's samples are drawn in shards (`scoresde.eval.shards`, float32
            in the model's space), written as they finish, so a run killed part-way resumes from its
            finished shards; a run's shards are removed once its record is written (the record is the
            result), the reference flows (`flow_rms`) are kept and reused. None: drawn in memory.
        shard_size: samples per shard.
        batch_size: samples per sampler call (default: the whole run).

    Sample j of run `seed` is drawn from its own generator seeded by seed * n_samples + j (the
    prior draw and every step's noise), as `--mode eval` draws: the samples, and so the records, do
    not depend on the batch size, the shard size or on where a run was interrupted.
    """

    metric_names: tuple[str, ...] = ("fd", "kid", "precision", "recall", "flow_rms")
    inception_metric_names = ("fid_inception", "inception_score")

    def __init__(
        self,
        name: str,
        sde: SDE,
        score_fn: Callable,
        example_shape: tuple[int, ...],
        eps: float,
        n_samples: int,
        feature_fn: Callable,
        real_features: np.ndarray,
        train_features: np.ndarray,
        *,
        postprocess: Callable | None = None,
        reference_rtol: float = 1e-5,
        device: torch.device | str = "cpu",
        inception: tuple[Callable, np.ndarray, np.ndarray] | None = None,
        identity: dict | None = None,
        shard_folder: str | Path | None = None,
        shard_size: int = 1000,
        batch_size: int | None = None,
    ):
        if n_samples < 4:
            raise ValueError(f"n_samples must be >= 4, got {n_samples}")
        if shard_size < 1 or (batch_size is not None and batch_size < 1):
            raise ValueError(f"shard_size and batch_size must be >= 1, got {shard_size} and {batch_size}")
        self.shard_folder = None if shard_folder is None else Path(shard_folder)
        self.shard_size, self.batch_size = shard_size, batch_size or n_samples
        self._identity = {
            "kind": "network",
            "noise": "per-sample seeds",  # sample j of run s from seed s * n_samples + j
            "name": name,
            "sde": fingerprint(sde),
            "eps": fingerprint(eps),
            "n_samples": n_samples,
            "reference_rtol": fingerprint(reference_rtol),
            "inception": inception is not None,
            **fingerprint(identity or {}),
        }
        self.name, self.sde, self.score_fn, self.eps, self.n_samples = name, sde, score_fn, eps, n_samples
        self.shape = (n_samples, *example_shape)
        self.feature_fn, self.real_features = feature_fn, real_features
        self.postprocess = postprocess or (lambda x: x)
        self.reference_rtol, self.device = reference_rtol, torch.device(device)
        self._references: dict[int, torch.Tensor] = {}
        rng = np.random.default_rng(0)
        floor_features = train_features[rng.choice(len(train_features), min(n_samples, len(train_features)), replace=False)]
        self.fd_floor = metrics.frechet_distance_from_samples(floor_features, real_features)
        self.kid_floor = metrics.kernel_inception_distance(floor_features, real_features)[0]
        self.inception_fn: Callable | None = None
        self.classifier_info: dict = {}  # set by the caller that trained the feature classifier (run_lib)
        self.inception_weights = ""  # the Inception weights file, when `inception` is given (for the report)
        if inception is not None:
            self.inception_fn, real_images, train_images = inception
            self.metric_names = self.metric_names + self.inception_metric_names
            self.real_inception = self.inception_fn(real_images)[0]
            floor_images = train_images[rng.choice(len(train_images), min(n_samples, len(train_images)), replace=False)]
            self.fid_inception_floor = metrics.frechet_distance_from_samples(
                self.inception_fn(floor_images)[0], self.real_inception
            )

    def identity(self) -> dict:
        """What determines this target's records (see the `identity` argument)."""
        return self._identity

    def sample_seeds(self, seed: int) -> np.ndarray:
        """The per-sample seeds of run `seed`: seed * n_samples + j, disjoint ranges for the runs."""
        return np.arange(seed * self.n_samples, (seed + 1) * self.n_samples, dtype=np.int64)

    def _generators(self, seeds: np.ndarray) -> list[torch.Generator]:
        return noise.per_sample_generators(seeds.tolist(), self.device)

    def initial_noise(self, seed: int) -> torch.Tensor:
        """Run `seed`'s x_T: sample j's prior draw from its own generator."""
        seeds = self.sample_seeds(seed)
        return samplers.initial_state(self.sde, self.shape, None, self._generators(seeds), self.device)

    def draw(self, sampler: Sampler, steps: int, seed: int, count: int | None = None) -> tuple[torch.Tensor, dict]:
        """Run `seed` of `sampler` at `steps` (its first `count` samples only, in memory, when given).

        Returns:
            (samples on the device, {"nfe": score evaluations per sample, the mean over the sampler
            calls; "seconds": the time spent drawing, summed over the shards of every session}).
        """
        seeds = self.sample_seeds(seed)[:count]

        def sample_seeds(part: np.ndarray) -> tuple[np.ndarray, dict]:
            generators = self._generators(part)
            x_T = samplers.initial_state(self.sde, (len(part), *self.shape[1:]), None, generators, self.device)
            with torch.no_grad():
                x, info = sampler.run(self.sde, self.score_fn, x_T=x_T, steps=steps, eps=self.eps, generator=generators)
            grid = info.get("time_grid")
            return x.detach().cpu().numpy(), {"nfe": int(info["nfe"]), "time_grid": [] if grid is None else list(grid)}

        if self.shard_folder is None or count is not None:
            start, parts, nfe = time.perf_counter(), [], []
            for i in range(0, len(seeds), self.batch_size):
                x, info = sample_seeds(seeds[i : i + self.batch_size])
                parts.append(x)
                nfe += [info["nfe"]] * len(x)
            samples = np.concatenate(parts)
            info = {"nfe": float(np.mean(nfe)), "seconds": time.perf_counter() - start}
        else:
            folder, plan = self._run_folder(sampler, steps, seed)
            shards.draw(folder, plan, sample_seeds, is_image=False, batch_size=self.batch_size, replace=True)
            samples = np.concatenate(list(shards.samples(folder, plan)))
            info = shards.sampling_info(folder, plan)
        return torch.from_numpy(samples).to(self.device), info

    def _run_folder(self, sampler: Sampler, steps: int, seed: int) -> tuple[Path, shards.Plan]:
        about = {
            "target": target_digest(self),
            "sampler": sampler.key(),
            "steps": steps,
            "grid": sampler.grid_digest(self.sde, steps, self.eps),
        }
        plan = shards.Plan(self.n_samples, self.shard_size, seed * self.n_samples, about)
        name = re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{sampler.label}_{steps}steps_seed{seed}")
        assert self.shard_folder is not None
        return self.shard_folder / f"{name}_{_sha256_json(about)[:12]}", plan

    def finished(self, sampler: Sampler, steps: int, seed: int) -> None:
        """The run's record is written: its shards go (the reference flows stay)."""
        if self.shard_folder is not None and sampler.label != REFERENCE_LABEL:
            shutil.rmtree(self._run_folder(sampler, steps, seed)[0], ignore_errors=True)

    def exact_flow(self, seed: int) -> torch.Tensor:
        """The adaptive probability-flow solution (rtol = atol = reference_rtol) from run `seed`'s
        x_T, drawn like a run (in shards when there is a folder, kept there for later sessions). Its
        adaptive steps are chosen per sampler batch, so it changes with batch_size at the level of
        the tolerance."""
        if seed not in self._references:
            reference = Sampler(REFERENCE_LABEL, "probability_flow", {"rtol": self.reference_rtol, "atol": self.reference_rtol})
            x, _ = self.draw(reference, 1, seed)
            self._references[seed] = x.detach().cpu().double()
        return self._references[seed]

    def evaluate(self, x: torch.Tensor, seed: int) -> dict:
        fake = self.feature_fn(self.postprocess(x))
        precision, recall = metrics.precision_recall(self.real_features, fake, k=3)
        return {
            "fd": metrics.frechet_distance_from_samples(fake, self.real_features),
            "fd_floor": self.fd_floor,
            "kid": metrics.kernel_inception_distance(fake, self.real_features)[0],
            "kid_floor": self.kid_floor,
            "precision": precision,
            "recall": recall,
            "flow_rms": (x.detach().cpu().double() - self.exact_flow(seed)).pow(2).mean().sqrt().item(),
            **(self._inception_metrics(x) if self.inception_fn is not None else {}),
        }

    def _inception_metrics(self, x: torch.Tensor) -> dict:
        assert self.inception_fn is not None
        pool, logits = self.inception_fn(self.postprocess(x))
        return {
            "fid_inception": metrics.frechet_distance_from_samples(pool, self.real_inception),
            "fid_inception_floor": self.fid_inception_floor,
            "inception_score": metrics.inception_score(logits, n_splits=max(1, min(10, len(logits) // 2)))[0],
        }


REFERENCE_LABEL = "reference_flow"  # the `NetworkTarget`'s reference runs (flow_rms), kept in its shard folder


ORACLE_PROBLEMS = {
    "ring": lambda: oracle.ring(8, 1.0, 0.05),
    "stiff64": lambda: oracle.stiff(64, 4, 0.01, 1.0, seed=0),
}
# The end time eps of an oracle problem by SDE (score_sde's 1e-5 for VE; EDM's sigma_min = 0.002), else 1e-4.
END_TIME_BY_SDE = {"vesde": 1e-5, "edmsde": 2e-3}


def oracle_target(problem: str, sde_name: str, n_samples: int, **sde_options) -> OracleTarget:
    """A standard oracle problem ("ring": 8 narrow Gaussians on a circle in 2-D; "stiff64": a 64-D
    mixture with per-dimension stds from 0.01 to 1) under the SDE `sde_name`, built with those of
    `sde_options` its constructor takes (the others are ignored)."""
    if problem not in ORACLE_PROBLEMS:
        raise ValueError(f"unknown oracle problem {problem!r}; valid: {', '.join(ORACLE_PROBLEMS)}")
    sde = get_sde_from_options(sde_name, sde_options)
    key = sde_name.lower().replace("-", "").replace("_", "")
    return OracleTarget(f"{problem}_{key}", ORACLE_PROBLEMS[problem](), sde, END_TIME_BY_SDE.get(key, 1e-4), n_samples)


def evaluations_per_step(sampler: Sampler, target) -> tuple[int, int]:
    """(a, b) with NFE(steps) = a steps + b.

    A registered sampler's a is its declaration (`samplers.SamplerInfo.evaluations` with the
    sampler's options; 0 for adaptive ones) and b is the final denoising evaluation (1 when the
    run's end time has noise left, as every target's eps > 0 has) plus its declared
    `fixed_evaluations` (Restart's). A sampler given as a function
    declares nothing: its a and b are read from the `info["nfe"]` of dry runs with 2 and 3 steps
    on one example.
    """
    if isinstance(sampler.sampler, str):  # run with samplers.sample's default denoise=True
        info = samplers.get(sampler.sampler)
        options = {k: v for k, v in sampler.options.items() if k != "analytic_first_step"}
        saved = int(sampler.options.get("analytic_first_step") is not None)  # AFS: the first evaluation is free
        return info.evaluations(options), 1 + info.fixed_evaluations(options) - saved
    counts = []
    x_T = target.initial_noise(0)[:1]
    for steps in (2, 3):
        with torch.no_grad():
            _, info = sampler.run(target.sde, target.score_fn, x_T=x_T, steps=steps, eps=target.eps, seed=0)
        counts.append(int(info["nfe"]))
    per_step = counts[1] - counts[0]
    return per_step, counts[0] - 2 * per_step


def steps_for_budget(per_step: int, constant: int, budget: int) -> int | None:
    """The most steps whose NFE fits the budget, or None when not even one step does."""
    if per_step <= 0:
        raise ValueError("the sampler's NFE does not grow with the step count")
    steps = (budget - constant) // per_step
    return steps if steps >= 1 else None


def score_seconds_per_call(target) -> float:
    """The seconds one score evaluation of a whole run's samples takes (median of 5), measured on
    one sampler batch (`target.batch_size`, when the target has one) and scaled to the run."""
    x = target.initial_noise(0)
    n = len(x)
    batch = min(getattr(target, "batch_size", n), n)
    x = x[:batch]
    t = torch.full((batch,), 0.5 * target.sde.T, device=x.device)
    times = []
    with torch.no_grad():
        for _ in range(5):
            start = time.perf_counter()
            target.score_fn(x, t)
            times.append(time.perf_counter() - start)
    return float(np.median(times)) * n / batch


def read_records(path: str | Path) -> list[dict]:
    """The records of a (possibly interrupted) benchmark; a torn last line is ignored."""
    return files.read_jsonl(path)[0]


def run(
    target,
    grid: Sequence[Sampler],
    budgets: Sequence[int],
    *,
    seeds: Sequence[int] = (0, 1, 2),
    records_path: str | Path | None = None,
    callback: Callable[[dict], None] | None = None,
) -> list[dict]:
    """Evaluate every (sampler, budget, seed) of the grid on the target; resumable through `records_path`.

    Args:
        target: e.g. an `OracleTarget`; its `identity()` (when it has one) decides which stored
            records are still valid.
        grid: the samplers with their options and time grids.
        budgets: NFE budgets.
        seeds: one run per seed (initial noise and sampler noise both seeded by it).
        records_path: a JSONL file; records already there are reused, new ones appended.
        callback: called with each new record (progress bars).

    Returns:
        All records of this grid (reused and new); cells a sampler cannot fit in a budget are skipped.
    """
    labels = [s.label for s in grid]
    if len(set(labels)) != len(labels):
        raise ValueError(f"sampler labels must be unique, got {labels}")
    if not budgets or min(budgets) < 1:
        raise ValueError(f"budgets must be positive NFE counts, got {list(budgets)}")
    this_target = target_digest(target)
    done, stale = {}, 0
    if records_path:
        for r in read_records(records_path):
            if "digest" in r:
                done[r["digest"]] = r
            stale += r.get("target") == target.name and r.get("target_digest") != this_target
    score_seconds = None
    results = []
    for sampler in grid:
        per_step, constant = evaluations_per_step(sampler, target)
        adaptive = per_step == 0  # its NFE does not depend on the steps: one run per seed, budget 0
        for budget in [0] if adaptive else budgets:
            steps = 1 if adaptive else steps_for_budget(per_step, constant, budget)
            if steps is None:
                continue
            for seed in seeds:
                digest = record_digest(this_target, sampler, budget, seed, sampler.grid_digest(target.sde, steps, target.eps))
                if digest in done:
                    results.append(done[digest])
                    continue
                if score_seconds is None:
                    score_seconds = score_seconds_per_call(target)
                if hasattr(target, "draw"):  # drawn by the target (per-sample seeds, resumable shards)
                    x, info = target.draw(sampler, steps, seed)
                    wall = info["seconds"]
                else:
                    x_T = target.initial_noise(seed)
                    start = time.perf_counter()
                    with torch.no_grad():
                        x, info = sampler.run(target.sde, target.score_fn, x_T=x_T, steps=steps, eps=target.eps, seed=seed)
                    wall = time.perf_counter() - start
                record = {
                    "target": target.name,
                    "target_digest": this_target,
                    "digest": digest,
                    "sampler": sampler.label,
                    "sampler_key": sampler.key(),
                    "options": sampler.options,
                    "time_grid": sampler.grid_name(target.sde, steps),
                    "budget": budget,
                    "steps": steps,
                    "nfe": int(round(info["nfe"])),
                    "seed": seed,
                    "n_samples": int(x.shape[0]),
                    "wall_seconds": wall,
                    "overhead_ms_per_step": 1e3 * max(wall - info["nfe"] * score_seconds, 0.0) / steps,
                    **target.evaluate(x, seed),
                }
                if records_path:
                    files.append_jsonl(records_path, record)
                if hasattr(target, "finished"):
                    target.finished(sampler, steps, seed)
                if callback:
                    callback(record)
                results.append(record)
    if stale > 0:
        logging.warning(
            "%s: %d stored records of target %s were computed under other settings (another checkpoint, "
            "sample count, SDE parameters, sampler options, ...): not reused, not reported, kept in the file",
            records_path,
            stale,
            target.name,
        )
    return results


def summarize(records: Iterable[dict], metric_names: Sequence[str]) -> list[dict]:
    """One row per (target, sampler, budget): each metric's mean and 95% half-width over seeds."""
    groups: dict[tuple, list[dict]] = {}
    for r in records:
        groups.setdefault((r["target"], r["sampler"], r["budget"]), []).append(r)
    rows = []
    for (target, sampler, budget), group in sorted(groups.items(), key=lambda kv: (kv[0][0], kv[0][2], kv[0][1])):
        row = {
            "target": target,
            "sampler": sampler,
            "budget": budget,
            "nfe": round(float(np.mean([r["nfe"] for r in group]))),
            "steps": group[0]["steps"],
            "time_grid": group[0]["time_grid"],
            "n_seeds": len(group),
            "n_samples": group[0]["n_samples"],
        }
        for name in (*metric_names, "wall_seconds", "overhead_ms_per_step"):
            mean, half = metrics.mean_confidence_interval([r[name] for r in group])
            row[name], row[f"{name}_ci95"] = mean, half
        for key in group[0]:
            if key.endswith("_floor"):
                row[key] = group[0][key]
        rows.append(row)
    return rows


def _format(mean: float, half: float) -> str:
    return f"{mean:.3g}" if not math.isfinite(half) else f"{mean:.3g} ± {half:.2g}"


def _best(metric: str, values: list[float]) -> float:
    if metric in HIGHER_IS_BETTER:
        return max(values)
    if metric in ZERO_IS_BEST:
        return min(values, key=abs)
    return min(values)


def markdown_table(rows: list[dict], metric_names: Sequence[str]) -> str:
    """A table per target: rows by budget then sampler, the best value of each metric in bold."""
    lines = []
    for target in dict.fromkeys(r["target"] for r in rows):
        part = [r for r in rows if r["target"] == target]
        n = part[0]["n_samples"]
        lines += [f"### {target} ({n} samples per run, {part[0]['n_seeds']} seeds, mean ± 95% CI)", ""]
        header = ["budget", "sampler", "NFE", *metric_names, "wall s", "overhead ms/step"]
        lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for budget in sorted({r["budget"] for r in part}):
            block = [r for r in part if r["budget"] == budget]
            best = {m: _best(m, [r[m] for r in block]) for m in metric_names}
            for r in block:
                cells = [str(budget) if budget else "adaptive", r["sampler"], str(r["nfe"])]
                for m in metric_names:
                    text = _format(r[m], r[f"{m}_ci95"])
                    cells.append(f"**{text}**" if r[m] == best[m] else text)
                cells += [f"{r['wall_seconds']:.3g}", f"{r['overhead_ms_per_step']:.3g}"]
                lines.append("| " + " | ".join(cells) + " |")
        floors = {k[: -len("_floor")]: v for k, v in part[0].items() if k.endswith("_floor")}
        if floors:
            lines += [
                "",
                "noise floors (the metric between two independent real samples of this size): "
                + ", ".join(f"{k} {v:.4g}" for k, v in floors.items()),
            ]
        lines.append("")
    return "\n".join(lines)


def samples_at_budget(grid: Sequence[Sampler], target, budget: int, picture_count: int = 64) -> dict[str, torch.Tensor]:
    """Samples of every sampler in `grid` at `budget` evaluations (adaptive ones once) from the
    target's first initial noise, labelled "<label> (<NFE> NFE)", for the report's pictures (a
    target that draws per-sample seeds draws only the first `picture_count`)."""
    samples = {}
    for sampler in grid:
        per_step, constant = evaluations_per_step(sampler, target)
        steps = 1 if per_step == 0 else steps_for_budget(per_step, constant, budget)  # 0: adaptive
        if steps is None:  # the budget is below this sampler's smallest run
            continue
        if hasattr(target, "draw"):  # the first `picture_count` samples of run 0, equal to the run's own
            x, info = target.draw(sampler, steps, 0, count=min(picture_count, target.n_samples))
        else:
            with torch.no_grad():
                x, info = sampler.run(
                    target.sde, target.score_fn, x_T=target.initial_noise(0), steps=steps, eps=target.eps, seed=0
                )
        samples[f"{sampler.label} ({int(round(info['nfe']))} NFE)"] = x
    return samples


def network_report_notes(target: NetworkTarget) -> str:
    """What the numbers of a `NetworkTarget` mean: its feature space, and the Inception metrics' terms."""
    info = target.classifier_info
    notes = (
        f"\nFeature space: the penultimate layer of a classifier trained on the {info['n_train']} training "
        f"examples (held-out accuracy {info['test_accuracy']:.3f} on {info['n_test']}; weights sha256 "
        f"{info['weights_sha256'][:16]}); checkpoint step {info['step']}. fd and kid are local figures in this "
        "feature space, not literature FID / KID.\n"
    )
    if "fid_inception" in target.metric_names:
        notes += (
            f"\nfid_inception and inception_score: the FID Inception network (weights {target.inception_weights}, "
            f"SHA-256 checked), {target.n_samples} samples per run against the {info['n_test']} held-out images; "
            "FID's bias grows as the sample count falls, so compare these only at equal counts "
            "(literature FIDs use 50,000 samples).\n"
        )
    return notes


def write_report(
    records: list[dict],
    outdir: str | Path,
    metric_names: Sequence[str],
    *,
    samples: dict[str, torch.Tensor] | None = None,
    title: str = "Sampler benchmark",
    notes: str = "",
) -> dict[str, Path]:
    """report.md (the summary table, then `notes`), summary.csv, records.json and the plots (metric
    and wall time against NFE, one line per sampler; a scatter of samples per sampler when
    `samples` is given)."""
    from scoresde.eval import plotting

    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    rows = summarize(records, metric_names)
    files = {"report": outdir / "report.md", "csv": outdir / "summary.csv", "json": outdir / "records.json"}
    files["report"].write_text(f"# {title}\n\n" + markdown_table(rows, metric_names) + notes)
    with open(files["csv"], "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    files["json"].write_text(json.dumps({"summary": rows, "records": records}, indent=1))
    for target in dict.fromkeys(r["target"] for r in rows):
        part = [r for r in rows if r["target"] == target]
        for m in (*metric_names, "wall_seconds"):
            path = outdir / f"{target}_{m}_vs_nfe.png"
            plotting.save_metric_vs_nfe(path, part, m, title=f"{target}: {m}", floor=part[0].get(f"{m}_floor"))
            files[f"{target}_{m}"] = path
    if samples:
        path = outdir / "samples.png"
        plotting.save_sample_panels(path, samples)
        files["samples"] = path
    return files
