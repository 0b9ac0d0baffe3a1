"""The controllable-generation modes of main.py: train_classifier, inpaint, colorize, conditional.

    train_classifier  a noise-conditional classifier for classifier guidance, on the config's data
                      (workdir/classifier/: checkpoints, resumed like training; accuracy.json)
    inpaint           the test split's first images with a mask, filled in by the configured
                      sampler (replacement) or by SMC (workdir/inpaint/<sampler or smc_K>/: grid.png
                      (rows: the first 16 originals, masked, inpainted), results.npz,
                      summary.json with the clean classifier's agreement with the true labels)
    colorize          the test split's first colour images turned gray (channel mean) and coloured
                      again by the configured sampler, by replacement of the gray axis of the
                      decoupled colour space, or by SMC (workdir/colorize/<sampler or smc_K>/: grid.png (rows:
                      originals, gray, colorized), results.npz, summary.json with the RMS error in
                      [0, 1] pixel units and,
                      for colored_digits, how often the class's hue is recovered)
    conditional       class-conditional samples for every class at each guidance scale, by
                      classifier guidance or classifier-free guidance (workdir/conditional/:
                      one grid per scale, summary.json with how often a classifier trained on
                      clean data recognises the requested class)

The library functions are in `scoresde.controllable`; this module only loads checkpoints and data
and writes results.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from absl import logging
from tqdm.auto import tqdm

from scoresde import checkpoint, controllable, data, features, losses, plotting, samplers
from scoresde.models.classifier import NoiseConditionalClassifier
from scoresde.models.ema import ExponentialMovingAverage
from scoresde.run_lib import Experiment, load_checkpoint, named_time_grid, sampler_options, to_data_space, to_model_tensor

CLASSIFIER_DIR = "classifier"


def parse_scales(text: str) -> list[float]:
    """ "0,1,3" -> [0.0, 1.0, 3.0].

    Raises:
        ValueError: an empty list or a value that is not a finite number.
    """
    try:
        scales = [float(v) for v in str(text).split(",") if v.strip()]
    except ValueError:
        raise ValueError(f"config.controllable.scales must be comma-separated numbers, got {text!r}") from None
    if not scales or not all(math.isfinite(s) for s in scales):
        raise ValueError(f"config.controllable.scales must be comma-separated finite numbers, got {text!r}")
    return scales


def _load_score_model(config, workdir: Path, exp: Experiment | None = None) -> tuple[Experiment, Path]:
    exp = exp or Experiment(config)
    found = load_checkpoint(config, workdir, exp.model, ema=config.sampling.use_ema)
    exp.model.eval()
    return exp, found


def _labelled(config, exp: Experiment, split) -> torch.Tensor:
    if split.labels is None:
        raise ValueError(f"this mode needs labelled data; {config.data.dataset!r} has no labels")
    return torch.as_tensor(split.labels, dtype=torch.long)


def build_classifier(config, exp: Experiment) -> NoiseConditionalClassifier:
    c = config.classifier
    n_classes = int(_labelled(config, exp, exp.train_data).max()) + 1
    torch.manual_seed(config.seed)
    return NoiseConditionalClassifier(
        exp.train_data.shape,
        n_classes,
        exp.sde,
        width=c.width,
        depth=c.depth,
        embed_dim=c.embed_dim,
        fourier_scale=c.fourier_scale,
        dropout=c.dropout,
        sigma_data=config.model.sigma_data,
    ).to(exp.device)


def noisy_accuracy(classifier, exp: Experiment, x: torch.Tensor, y: torch.Tensor, times=(0.01, 0.1, 0.3, 0.5, 0.8, 1.0)) -> dict:
    """Accuracy of the noise-conditional classifier on x(t) = alpha x + sigma z at several t / T."""
    generator = torch.Generator(exp.device).manual_seed(1)
    out = {}
    classifier.eval()
    with torch.no_grad():
        for fraction in times:
            t = torch.full((len(x),), fraction * exp.sde.T, device=exp.device)
            mean, std = exp.sde.marginal_prob(x, t)
            xt = mean + std.reshape(-1, *[1] * (x.ndim - 1)) * torch.randn(x.shape, generator=generator, device=exp.device)
            out[f"{fraction:g}T"] = float((classifier(xt, t).argmax(1).cpu() == y).float().mean())
    return out


def train_classifier(config, workdir: str | Path) -> dict:
    """Train the noise-conditional classifier of config.classifier (resumes from its newest checkpoint).

    Cross-entropy on x(t) = alpha(t) x(0) + sigma(t) z with t ~ U[training.eps, T], Adam, batches
    and noise drawn from (seed, step) so a resumed run repeats the same steps.
    """
    workdir = Path(workdir)
    exp = Experiment(config)
    c = config.classifier
    model = build_classifier(config, exp)
    ema = ExponentialMovingAverage(model, decay=c.ema_decay)
    optimizer = torch.optim.Adam(model.parameters(), lr=c.lr)
    root = workdir / CLASSIFIER_DIR
    for path in checkpoint.clean_partial(root):
        logging.info("removed the partial checkpoint %s", path)
    found = checkpoint.latest(root)
    start = checkpoint.restore(found, model, ema, optimizer)[0] if found else 0
    y_train = _labelled(config, exp, exp.train_data).to(exp.device)
    x_train = exp.x_train
    bar = tqdm(total=c.n_steps, initial=start, desc="classifier", disable=None)
    model.train()
    for step in range(start, c.n_steps):
        idx = torch.as_tensor(data.batch_indices(len(x_train), c.batch_size, step, config.seed), device=exp.device)
        generator = torch.Generator(exp.device).manual_seed(config.seed * 1_000_003 + step + 7)
        x0, y = x_train[idx], y_train[idx]
        t = losses.sample_time(len(idx), exp.sde, config.training.eps, generator=generator, device=exp.device, dtype=x0.dtype)
        mean, std = exp.sde.marginal_prob(x0, t)
        xt = mean + std.reshape(-1, *[1] * (x0.ndim - 1)) * torch.randn(x0.shape, generator=generator, device=exp.device)
        loss = torch.nn.functional.cross_entropy(model(xt, t), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        ema.update(model)
        bar.update(1)
        bar.set_postfix(loss=f"{loss.item():.3f}", refresh=False)
        done = step + 1
        if done % c.checkpoint_freq == 0 or done == c.n_steps:
            checkpoint.save(root, done, model, ema, optimizer, config.to_dict(), keep=2)
    bar.close()
    found = checkpoint.latest(root)
    if found is None:
        raise FileNotFoundError(f"no complete classifier checkpoint in {root}")
    checkpoint.load_weights(found, model, ema=True)
    x_test = to_model_tensor(config, exp.test_data, exp.device)
    summary = {
        "checkpoint": str(found),
        "step": checkpoint.step_of(found),
        "n_classes": model.n_classes,
        "test_accuracy_at_t": noisy_accuracy(model, exp, x_test, _labelled(config, exp, exp.test_data)),
    }
    (root / "accuracy.json").write_text(json.dumps(summary, indent=2))
    logging.info("noise-conditional classifier: %s", json.dumps(summary))
    return summary


def _clean_classifier(config, exp: Experiment, workdir: Path):
    """The feature classifier of the benchmarks (trained on clean data, cached): recognises samples."""
    x_test = to_model_tensor(config, exp.test_data, torch.device("cpu"))
    return features.load_or_train(
        workdir / "benchmark",
        exp.x_train.cpu(),
        _labelled(config, exp, exp.train_data),
        x_test,
        _labelled(config, exp, exp.test_data),
    )


def _predict(classifier, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return classifier(x.float().cpu()).argmax(1)


GRID_COLUMNS = 16


def _save_rows(path: Path, rows: list[np.ndarray]) -> None:
    """One grid row per image set (originals, input, result), the first GRID_COLUMNS images of each."""
    shown = min(len(rows[0]), GRID_COLUMNS)
    plotting.save_image_grid(path, np.concatenate([r[:shown] for r in rows]), nrow=shown)


def _complete(config, exp: Experiment, out_root: Path, smc: Callable, replacement: Callable) -> tuple[torch.Tensor, Path, dict]:
    """Runs controllable.method on the chosen images: `smc(**kwargs)` (particles, info) or
    `replacement(sampler, **kwargs)` (x, info) with the configured sampler. Returns one completion
    per image, the output folder out_root/<sampler or smc_K>/ (created) and the summary's common part."""
    c, s = config.controllable, config.sampling
    generator = torch.Generator(exp.device).manual_seed(s.seed)
    start = time.perf_counter()
    if c.method == "smc":
        particles, info = smc(n_particles=c.particles, steps=s.steps, eps=s.eps, generator=generator)
        x = particles[:, 0]  # particles are equally weighted after the final resampling: any one is a draw
    else:
        x, info = replacement(
            s.sampler,
            noise=c.noise or None,
            generator=generator,
            steps=None if samplers.get(s.sampler).kind == "adaptive" else s.steps,
            eps=s.eps,
            denoise=s.denoise,
            time_grid=named_time_grid(config, "controllable"),
            **sampler_options(config),
        )
    seconds = time.perf_counter() - start
    out = out_root / (f"smc_{c.particles}" if c.method == "smc" else s.sampler)
    out.mkdir(parents=True, exist_ok=True)
    common = {
        "method": c.method,
        "sampler": s.sampler if c.method != "smc" else "smc_ancestral",
        "n_images": len(x),
        "nfe": info["nfe"],
        "seconds": seconds,
    }
    return x, out, common


def inpaint(config, workdir: str | Path) -> dict:
    """Inpaint the first controllable.n_images test images with controllable.mask (module docstring)."""
    workdir = Path(workdir)
    c = config.controllable
    exp, found = _load_score_model(config, workdir)
    if not exp.test_data.is_image:
        raise ValueError(f"inpaint needs image data; {config.data.dataset!r} is not")
    x_true = to_model_tensor(config, exp.test_data, exp.device)[: c.n_images]
    mask = controllable.masks(
        c.mask, exp.test_data.shape, generator=torch.Generator().manual_seed(config.seed), fraction=c.mask_fraction
    ).to(exp.device)
    x, out, common = _complete(
        config,
        exp,
        workdir / "inpaint",
        smc=lambda **kw: controllable.smc_inpaint(exp.sde, exp.score_fn, x_true, mask, **kw),
        replacement=lambda sampler, **kw: controllable.inpaint(sampler, exp.sde, exp.score_fn, x_true, mask, **kw),
    )
    images = {
        k: to_data_space(config, v, True)
        for k, v in {"original": x_true, "masked": x_true * mask + (1 - mask) * x_true.min(), "inpainted": x}.items()
    }
    n = len(x)
    _save_rows(out / "grid.png", [images["original"], images["masked"], images["inpainted"]])
    np.savez(out / "results.npz", mask=mask.cpu().numpy(), **images)  # type: ignore[arg-type]  # numpy's stub
    summary = {
        "checkpoint": str(found),
        **common,
        "mask": c.mask,
        "rms_error_unknown_pixels": float(torch.sqrt((((x - x_true) * (1 - mask)) ** 2).sum() / ((1 - mask).sum() * n))),
    }
    if exp.test_data.labels is not None:
        classifier, clf_info = _clean_classifier(config, exp, workdir)
        labels = _labelled(config, exp, exp.test_data)[:n]
        summary["label_agreement"] = {
            "inpainted": float((_predict(classifier, x) == labels).float().mean()),
            "originals": float((_predict(classifier, x_true) == labels).float().mean()),
            "classifier_test_accuracy": clf_info["test_accuracy"],
        }
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    logging.info("inpaint: %s", json.dumps(summary))
    return summary


def colorize(config, workdir: str | Path) -> dict:
    """Colour the gray versions of the first controllable.n_images test images (module docstring)."""
    workdir = Path(workdir)
    c = config.controllable
    exp = Experiment(config)
    if not exp.test_data.is_image or exp.test_data.shape[0] != 3:
        raise ValueError(f"colorize needs RGB images (3 channels); {config.data.dataset!r} has shape {exp.test_data.shape}")
    exp, found = _load_score_model(config, workdir, exp)
    x_true = to_model_tensor(config, exp.test_data, exp.device)[: c.n_images]
    gray = x_true.mean(dim=1, keepdim=True)
    x, out, common = _complete(
        config,
        exp,
        workdir / "colorize",
        smc=lambda **kw: controllable.smc_colorize(exp.sde, exp.score_fn, gray, **kw),
        replacement=lambda sampler, **kw: controllable.colorize(sampler, exp.sde, exp.score_fn, gray, **kw),
    )
    images = {
        k: to_data_space(config, v, True) for k, v in {"original": x_true, "gray": gray.expand_as(x_true), "colorized": x}.items()
    }
    n = len(x)
    _save_rows(out / "grid.png", [images["original"], images["gray"], images["colorized"]])
    np.savez(out / "results.npz", **images)  # type: ignore[arg-type]  # numpy's stub types **kwds as bool
    summary = {
        "checkpoint": str(found),
        **common,
        "rms_error_pixels": float(np.sqrt(((images["colorized"] - images["original"]) ** 2).mean())),
        "max_gray_error": float((x.mean(dim=1, keepdim=True) - gray).abs().max()),
    }
    if config.data.dataset == "colored_digits":
        labels = _labelled(config, exp, exp.test_data)[:n].numpy()
        summary["hue_agreement"] = {
            "colorized": float((data.palette_class(images["colorized"]) == labels).mean()),
            "originals": float((data.palette_class(images["original"]) == labels).mean()),
            "chance": 1.0 / len(data.digit_palette()),
        }
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    logging.info("colorize: %s", json.dumps(summary))
    return summary


def conditional(config, workdir: str | Path) -> dict:
    """Class-conditional samples of every class at each of controllable.scales (module docstring)."""
    workdir = Path(workdir)
    c, s = config.controllable, config.sampling
    scales = parse_scales(c.scales)
    exp, found = _load_score_model(config, workdir)
    n_classes = int(_labelled(config, exp, exp.train_data).max()) + 1
    if c.guidance == "free":
        if not config.model.num_classes:
            raise ValueError("classifier-free guidance needs a class-conditional model: train with config.model.num_classes > 0")
        guided_for = lambda labels, scale: controllable.classifier_free_guidance(exp.score_fn, labels, scale)  # noqa: E731
    elif c.guidance == "classifier":
        classifier = build_classifier(config, exp)
        path = checkpoint.latest(Path(c.classifier_workdir or workdir) / CLASSIFIER_DIR)
        if path is None:
            raise FileNotFoundError(
                f"no classifier checkpoint in {Path(c.classifier_workdir or workdir) / CLASSIFIER_DIR}; "
                "run --mode train_classifier first"
            )
        checkpoint.load_weights(path, classifier, ema=True)
        classifier.eval()
        guided_for = lambda labels, scale: controllable.classifier_guidance(exp.score_fn, classifier, labels, scale)  # noqa: E731
    else:
        raise ValueError(f"config.controllable.guidance: unknown {c.guidance!r}; valid: {', '.join(controllable.GUIDANCE)}")
    clean, clean_info = _clean_classifier(config, exp, workdir)
    labels = torch.arange(n_classes).repeat_interleave(c.n_per_class).to(exp.device)
    out = workdir / "conditional"
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for scale in scales:
        generator = torch.Generator(exp.device).manual_seed(s.seed)
        start = time.perf_counter()
        x, info = samplers.sample(
            s.sampler,
            exp.sde,
            guided_for(labels, scale),
            (len(labels), *exp.train_data.shape),
            steps=None if samplers.get(s.sampler).kind == "adaptive" else s.steps,
            eps=s.eps,
            denoise=s.denoise,
            generator=generator,
            device=exp.device,
            time_grid=named_time_grid(config, "controllable"),
            **sampler_options(config),
        )
        seconds = time.perf_counter() - start
        images = to_data_space(config, x, exp.train_data.is_image)
        recognised = float(
            (_predict(clean, torch.as_tensor(to_model_tensor_like(config, images))) == labels.cpu()).float().mean()
        )
        rows.append(
            {
                "scale": scale,
                "recognised": recognised,
                "nfe": info["nfe"],
                "seconds": seconds,
                "network_evaluations_per_score": controllable.network_evaluations_per_score(c.guidance, scale),
            }
        )
        shown = min(c.n_per_class, 10)
        grid = images.reshape(n_classes, c.n_per_class, *images.shape[1:])[:, :shown].reshape(-1, *images.shape[1:])
        if exp.train_data.is_image:
            plotting.save_image_grid(out / f"{c.guidance}_scale{scale:g}.png", grid, nrow=shown)
        logging.info("%s guidance, scale %g: %.1f%% recognised as the requested class", c.guidance, scale, 100 * recognised)
    summary = {
        "checkpoint": str(found),
        "guidance": c.guidance,
        "sampler": s.sampler,
        "steps": s.steps,
        "n_per_class": c.n_per_class,
        "n_classes": n_classes,
        "clean_classifier_test_accuracy": clean_info["test_accuracy"],
        "results": rows,
    }
    (out / f"{c.guidance}.json").write_text(json.dumps(summary, indent=2))
    return summary


def to_model_tensor_like(config, images: np.ndarray) -> np.ndarray:
    """Images in [0, 1] back to the model's range (what the clean classifier was trained on)."""
    return data.to_model_range(images, config.data.centered).astype(np.float32)


__all__ = ["colorize", "conditional", "inpaint", "parse_scales", "train_classifier"]
