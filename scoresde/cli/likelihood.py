"""`--mode likelihood`: the log-likelihood of a data split under a checkpoint, by the probability-flow ODE.

Writes workdir/likelihood/<split>.npz (per example: logp, bpd, bpd_iw, stderr, NFE) and <split>.json
(means with standard errors, NFE, seconds, the solver's settings); the numerics are
`scoresde.likelihood.evaluate_dataset`.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
from absl import logging
from tqdm.auto import tqdm

from scoresde import data
from scoresde import likelihood as lik
from scoresde.cli.experiment import Experiment, checkpoint_step, load_checkpoint


def examples_to_score(config, exp: Experiment) -> tuple[data.Dataset, Any, int | None]:
    """(split, its first config.likelihood.n_examples examples (all when 0), grey levels or None)."""
    settings = config.likelihood
    split = exp.test_data if settings.split == "test" else exp.train_data
    x_all = split.x[: settings.n_examples] if settings.n_examples else split.x
    return split, x_all, data.QUANTIZATION_LEVELS[config.data.dataset] if split.is_image else None


def dataset_options(config, exp: Experiment, levels: int | None) -> dict:
    """`likelihood.evaluate_dataset`'s keyword arguments from config.likelihood (but the examples,
    the callback and the first example's index)."""
    settings = config.likelihood
    return {
        "levels": levels,
        "centered": config.data.centered,
        "n_dequantize": settings.n_dequantize if levels else 1,
        "batch_size": settings.batch_size,
        "seed": settings.seed,
        "device": exp.device,
        "eps": settings.eps,
        "exact_divergence": lik.DIVERGENCES[settings.divergence],
        "n_probes": settings.n_probes,
        "probe": settings.probe,
        "rtol": settings.rtol,
        "atol": settings.atol,
        "method": settings.method,
        "steps": settings.steps,
    }


def summarize(config, values: dict[str, np.ndarray], dim: int, levels: int | None, found: Path, seconds: float) -> dict:
    """Means with standard errors over the examples, the NFE per example and the solver's settings."""
    settings = config.likelihood
    exact = lik.DIVERGENCES[settings.divergence]
    summary = {
        "checkpoint": str(found),
        "step": checkpoint_step(found),
        "split": settings.split,
        "n_examples": len(values["logp"]),
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
    return summary


def likelihood(config, workdir: str | Path) -> dict:
    """Log-likelihood of a data split under a checkpoint (EMA weights unless likelihood.use_ema=False).

    Toy data: nats per example. Images: bits per dimension of the discrete pixels, with uniform
    dequantization (scoresde.likelihood.bits_per_dim; the dataset's number of grey levels from
    data.QUANTIZATION_LEVELS; with n_dequantize > 1 also the importance-weighted bound). Writes
    workdir/likelihood/<split>.npz (per example: logp, bpd, bpd_iw, stderr, NFE) and <split>.json (mean
    and standard error over the examples, NFE, seconds). (`--mode eval` with config.eval.bpd does
    the same sharded over processes and resumable.)
    """
    workdir, settings = Path(workdir), config.likelihood
    exp = Experiment(config)
    found = load_checkpoint(config, workdir, exp.model, ema=settings.use_ema)
    exp.model.eval()
    split, x_all, levels = examples_to_score(config, exp)
    start = time.perf_counter()
    with tqdm(total=len(x_all), desc="likelihood", disable=None) as bar:
        values = lik.evaluate_dataset(exp.sde, exp.score_fn, x_all, callback=bar.update, **dataset_options(config, exp, levels))
    seconds = time.perf_counter() - start
    out = workdir / "likelihood"
    out.mkdir(parents=True, exist_ok=True)
    np.savez(out / f"{settings.split}.npz", **values)  # type: ignore[arg-type]  # numpy's stub types **kwds as bool
    summary = summarize(config, values, int(np.prod(split.shape)), levels, found, seconds)
    (out / f"{settings.split}.json").write_text(json.dumps(summary, indent=2))
    logging.info("likelihood: %s", json.dumps(summary))
    return summary
