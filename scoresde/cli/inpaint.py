"""`--mode inpaint`: the test split's first images with a mask, filled in by the configured sampler
(replacement) or by SMC.

Writes workdir/inpaint/<sampler or smc_K>/: grid.png (rows: the first 16 originals, masked,
inpainted), results.npz and summary.json (with a clean-data classifier's agreement with the true labels).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from absl import logging

from scoresde import controllable
from scoresde.cli.completion import complete
from scoresde.cli.experiment import (
    feature_classifier,
    labels_of,
    load_trained,
    predicted_classes,
    to_data_space,
    to_model_tensor,
)
from scoresde.cli.outputs import save_image_rows


def inpaint(config, workdir: str | Path) -> dict:
    """Inpaint the first controllable.n_images test images with controllable.mask (module docstring)."""
    workdir = Path(workdir)
    c = config.controllable
    exp, found = load_trained(config, workdir)
    if not exp.test_data.is_image:
        raise ValueError(f"inpaint needs image data; {config.data.dataset!r} is not")
    x_true = to_model_tensor(config, exp.test_data, exp.device)[: c.n_images]
    mask = controllable.masks(
        c.mask, exp.test_data.shape, generator=torch.Generator().manual_seed(config.seed), fraction=c.mask_fraction
    ).to(exp.device)
    x, out, common = complete(
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
    save_image_rows(out / "grid.png", [images["original"], images["masked"], images["inpainted"]])
    np.savez(out / "results.npz", mask=mask.cpu().numpy(), **images)  # type: ignore[arg-type]  # numpy's stub
    summary = {
        "checkpoint": str(found),
        **common,
        "mask": c.mask,
        "rms_error_unknown_pixels": float(torch.sqrt((((x - x_true) * (1 - mask)) ** 2).sum() / ((1 - mask).sum() * n))),
    }
    if exp.test_data.labels is not None:
        classifier, clf_info = feature_classifier(exp, workdir)
        labels = labels_of(config, exp.test_data)[:n]
        summary["label_agreement"] = {
            "inpainted": float((predicted_classes(classifier, x) == labels).float().mean()),
            "originals": float((predicted_classes(classifier, x_true) == labels).float().mean()),
            "classifier_test_accuracy": clf_info["test_accuracy"],
        }
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    logging.info("inpaint: %s", json.dumps(summary))
    return summary
