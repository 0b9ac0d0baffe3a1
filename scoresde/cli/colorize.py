"""`--mode colorize`: the test split's first colour images turned gray (channel mean) and coloured again
by the configured sampler (replacement of the gray axis of the decoupled colour space) or by SMC.

Writes workdir/colorize/<sampler or smc_K>/: grid.png (rows: originals, gray, colorized),
results.npz and summary.json (the RMS error in [0, 1] pixel units and, for colored_digits, how often
the class's hue is recovered).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from absl import logging

from scoresde import controllable, data
from scoresde.cli.completion import complete
from scoresde.cli.experiment import Experiment, labels_of, load_trained, to_data_space, to_model_tensor
from scoresde.cli.outputs import save_image_rows


def colorize(config, workdir: str | Path) -> dict:
    """Colour the gray versions of the first controllable.n_images test images (module docstring)."""
    workdir = Path(workdir)
    c = config.controllable
    exp = Experiment(config)
    if not exp.test_data.is_image or exp.test_data.shape[0] != 3:
        raise ValueError(f"colorize needs RGB images (3 channels); {config.data.dataset!r} has shape {exp.test_data.shape}")
    exp, found = load_trained(config, workdir, exp)
    x_true = to_model_tensor(config, exp.test_data, exp.device)[: c.n_images]
    gray = x_true.mean(dim=1, keepdim=True)
    x, out, common = complete(
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
    save_image_rows(out / "grid.png", [images["original"], images["gray"], images["colorized"]])
    np.savez(out / "results.npz", **images)  # type: ignore[arg-type]  # numpy's stub types **kwds as bool
    summary = {
        "checkpoint": str(found),
        **common,
        "rms_error_pixels": float(np.sqrt(((images["colorized"] - images["original"]) ** 2).mean())),
        "max_gray_error": float((x.mean(dim=1, keepdim=True) - gray).abs().max()),
    }
    if config.data.dataset == "colored_digits":
        labels = labels_of(config, exp.test_data)[:n].numpy()
        summary["hue_agreement"] = {
            "colorized": float((data.palette_class(images["colorized"]) == labels).mean()),
            "originals": float((data.palette_class(images["original"]) == labels).mean()),
            "chance": 1.0 / len(data.digit_palette()),
        }
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    logging.info("colorize: %s", json.dumps(summary))
    return summary
