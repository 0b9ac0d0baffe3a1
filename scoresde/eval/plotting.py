"""Pictures of samples and training curves, written straight to files.

Figures are built with ``matplotlib.figure.Figure`` on an Agg canvas, so nothing here touches
pyplot or the global matplotlib backend and the functions are safe in headless runs and threads.
Image grids are composed in numpy and written by Pillow. Every function creates the parent
directories of its output path, accepts numpy arrays or torch tensors, and returns the path it
wrote. matplotlib is imported on the first figure (it costs a second on every start of main.py).
"""

from __future__ import annotations

import math
import os
import pathlib
from typing import TYPE_CHECKING, Mapping, Sequence

import numpy as np
import torch
from PIL import Image

if TYPE_CHECKING:
    from matplotlib.figure import Figure

from scoresde.data import to_numpy

MIN_IMAGE_PIXELS = 64
BORDER_VALUE = 128
PANEL_INCHES = 4.0
DPI = 100


def _output_path(path: str | os.PathLike) -> pathlib.Path:
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def _new_figure(**options) -> Figure:
    from matplotlib.figure import Figure

    return Figure(**options)


def _save_figure(figure: Figure, path: str | os.PathLike) -> pathlib.Path:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    path = _output_path(path)
    FigureCanvasAgg(figure)
    figure.savefig(path, dpi=DPI)
    return path


def _points_2d(points: np.ndarray | torch.Tensor, what: str) -> np.ndarray:
    points = to_numpy(points)
    if points.ndim != 2 or points.shape[1] != 2 or len(points) == 0:
        raise ValueError(f"{what} must have shape (n, 2) with n >= 1, got {points.shape}")
    return points


def _auto_limits(points: np.ndarray) -> tuple[float, float]:
    finite = points[np.isfinite(points)]
    if finite.size == 0:
        return -1.0, 1.0
    low, high = float(finite.min()), float(finite.max())
    margin = 0.05 * (high - low) or 1.0
    return low - margin, high + margin


def save_scatter(
    path: str | os.PathLike,
    samples: np.ndarray | torch.Tensor,
    reference: np.ndarray | torch.Tensor | None = None,
    *,
    title: str | None = None,
    limits: tuple[float, float] | None = None,
) -> pathlib.Path:
    """Saves a scatter plot of 2-D samples, with the reference data in a panel beside them.

    Args:
        path: output file; the format follows the extension (PNG when there is none).
        samples: points of shape (n, 2); non-finite points are left out of the plot.
        reference: optional data points of shape (m, 2), drawn in a left panel "data" next to a
            right panel "samples", on the same axes.
        title: optional figure title.
        limits: ``(low, high)`` used for both axes of every panel; by default the range of the
            reference (or of the samples without one) plus a 5% margin, so that a few diverged
            samples do not squash the picture.

    Returns:
        the path written.

    Raises:
        ValueError: if ``samples`` or ``reference`` is not of shape (n, 2) or ``limits`` is not
            an increasing pair.
    """
    samples = _points_2d(samples, "samples")
    panels = [("samples", samples, "tab:blue")]
    if reference is not None:
        panels.insert(0, ("data", _points_2d(reference, "reference"), "tab:gray"))
    if limits is None:
        limits = _auto_limits(panels[0][1])
    if len(limits) != 2 or not limits[0] < limits[1]:
        raise ValueError(f"limits must be a pair (low, high) with low < high, got {limits}")
    figure = _new_figure(figsize=(PANEL_INCHES * len(panels), PANEL_INCHES + 0.4))
    for index, (label, points, colour) in enumerate(panels):
        axes = figure.add_subplot(1, len(panels), index + 1)
        axes.scatter(points[:, 0], points[:, 1], s=2, alpha=0.5, color=colour, linewidths=0)
        axes.set(xlim=limits, ylim=limits, aspect="equal", title=f"{label} (n={len(points)})")
    if title is not None:
        figure.suptitle(title)
    figure.tight_layout()
    return _save_figure(figure, path)


def _grid_array(images: np.ndarray, nrow: int, scale: int) -> np.ndarray:
    """Composes (N, C, H, W) uint8 images into one (rows*(sH+1)+1, nrow*(sW+1)+1, C) array."""
    count, channels, height, width = images.shape
    rows = math.ceil(count / nrow)
    big = images.repeat(scale, axis=2).repeat(scale, axis=3).transpose(0, 2, 3, 1)
    cell_h, cell_w = height * scale + 1, width * scale + 1
    grid = np.full((rows * cell_h + 1, nrow * cell_w + 1, channels), BORDER_VALUE, np.uint8)
    for index in range(count):
        top, left = (index // nrow) * cell_h + 1, (index % nrow) * cell_w + 1
        grid[top : top + cell_h - 1, left : left + cell_w - 1] = big[index]
    return grid


def save_image_grid(
    path: str | os.PathLike, images: np.ndarray | torch.Tensor, *, nrow: int | None = None, scale: int | None = None
) -> pathlib.Path:
    """Saves images as one PNG grid, upscaled with nearest-neighbour so small images are visible.

    Images are clipped to [0, 1] (non-finite values become 0), quantised to 8 bits, enlarged by
    an integer ``scale`` and placed row by row with a 1-pixel grey (128) border around each.
    The output is ``rows * (H * scale + 1) + 1`` pixels high and ``nrow * (W * scale + 1) + 1``
    wide, with ``rows = ceil(N / nrow)``; unused cells of the last row stay grey.

    Args:
        path: output file (always written as PNG).
        images: array of shape (N, C, H, W), C = 1 (grey) or 3 (RGB), values in [0, 1].
        nrow: images per row; default ceil(sqrt(N)).
        scale: enlargement factor; default the smallest making each image at least 64 pixels
            on its shorter side (8 for 8x8 digits).

    Returns:
        the path written.

    Raises:
        ValueError: if ``images`` is not NCHW with C in {1, 3} and N >= 1, or ``nrow`` or
            ``scale`` is smaller than 1.
    """
    images = to_numpy(images, np.float32)
    if images.ndim != 4 or images.shape[1] not in (1, 3) or 0 in images.shape:
        raise ValueError(f"images must have shape (N, C, H, W), C = 1 or 3, got {images.shape}")
    nrow = math.ceil(math.sqrt(len(images))) if nrow is None else nrow
    scale = math.ceil(MIN_IMAGE_PIXELS / min(images.shape[2:])) if scale is None else scale
    if nrow < 1 or scale < 1:
        raise ValueError(f"nrow and scale must be >= 1, got nrow={nrow}, scale={scale}")
    levels = np.clip(np.nan_to_num(images, nan=0.0, posinf=0.0, neginf=0.0), 0.0, 1.0)
    grid = _grid_array(np.round(levels * 255.0).astype(np.uint8), nrow, scale)
    picture = Image.fromarray(grid[..., 0] if grid.shape[2] == 1 else grid)
    path = _output_path(path)
    picture.save(path, format="PNG")
    return path


def _moving_average(values: np.ndarray, window: int) -> np.ndarray:
    cumulative = np.cumsum(np.concatenate([[0.0], values]))
    return (cumulative[window:] - cumulative[:-window]) / window


def save_loss_curve(
    path: str | os.PathLike,
    steps: np.ndarray | torch.Tensor | Sequence[float],
    losses: np.ndarray | torch.Tensor | Sequence[float],
    *,
    title: str | None = None,
    window: int | None = None,
) -> pathlib.Path:
    """Saves a plot of the training loss against the step, with its moving average.

    Non-finite losses are left out. The y axis is logarithmic when all remaining losses are
    positive.

    Args:
        path: output file; the format follows the extension (PNG when there is none).
        steps: step numbers of shape (n,).
        losses: loss values of shape (n,).
        title: optional plot title.
        window: moving-average window in points; default max(1, n // 20) (of the finite points).

    Returns:
        the path written.

    Raises:
        ValueError: if ``steps`` and ``losses`` are not 1-D of the same non-zero length, or
            ``window < 1``.
    """
    step_values, loss_values = to_numpy(steps), to_numpy(losses)
    if step_values.ndim != 1 or step_values.shape != loss_values.shape or len(step_values) == 0:
        raise ValueError(f"steps and losses must be 1-D of the same length >= 1, got {step_values.shape} and {loss_values.shape}")
    if window is not None and window < 1:
        raise ValueError(f"window must be >= 1, got {window}")
    finite = np.isfinite(loss_values) & np.isfinite(step_values)
    kept_steps, kept_losses = step_values[finite], loss_values[finite]
    window = min(window or max(1, len(kept_losses) // 20), max(len(kept_losses), 1))
    figure = _new_figure(figsize=(6.0, 4.0))
    axes = figure.add_subplot(1, 1, 1)
    axes.plot(kept_steps, kept_losses, color="tab:blue", alpha=0.3, linewidth=0.8, label="loss")
    if len(kept_losses) >= window > 1:
        axes.plot(
            kept_steps[window - 1 :],
            _moving_average(kept_losses, window),
            color="tab:blue",
            linewidth=1.5,
            label=f"moving average ({window})",
        )
    if len(kept_losses) and np.all(kept_losses > 0):
        axes.set_yscale("log")
    axes.set(xlabel="step", ylabel="loss", title=title or "")
    axes.legend(loc="upper right")
    figure.tight_layout()
    return _save_figure(figure, path)


def save_metric_vs_nfe(
    path: str | os.PathLike, rows: list[dict], metric: str, *, title: str | None = None, floor: float | None = None
) -> pathlib.Path:
    """One line per sampler of `metric` (with its 95% interval as a band) against the NFE used.

    Args:
        path: output file.
        rows: summary rows with keys "sampler", "nfe", `metric` and `metric + "_ci95"`.
        metric: the key to plot; the y axis is logarithmic when every value is positive.
        title: optional title.
        floor: a horizontal dashed line (e.g. the metric's noise floor).

    Raises:
        ValueError: if no row has the metric.
    """
    rows = [r for r in rows if metric in r and np.isfinite(r[metric])]
    if not rows:
        raise ValueError(f"no rows with a finite {metric!r}")
    figure = _new_figure(figsize=(6.5, 4.2))
    axes = figure.add_subplot(1, 1, 1)
    for sampler in dict.fromkeys(r["sampler"] for r in rows):
        line = sorted((r for r in rows if r["sampler"] == sampler), key=lambda r: r["nfe"])
        nfe = np.array([r["nfe"] for r in line], dtype=float)
        value = np.array([r[metric] for r in line])
        half = np.nan_to_num(np.array([r.get(f"{metric}_ci95", np.nan) for r in line]))
        (drawn,) = axes.plot(nfe, value, marker="o", markersize=3, linewidth=1.2, label=sampler)
        if np.any(half > 0):
            axes.fill_between(nfe, value - half, value + half, color=drawn.get_color(), alpha=0.15, linewidth=0)
    if floor is not None:
        axes.axhline(floor, color="gray", linestyle="--", linewidth=1, label="noise floor")
    axes.set_xscale("log")
    if all(r[metric] > 0 for r in rows) and (floor is None or floor > 0):
        axes.set_yscale("log")
    axes.set_xlabel("score evaluations (NFE)")
    axes.set_ylabel(metric)
    if title:
        axes.set_title(title)
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(fontsize=7, ncol=2)
    return _save_figure(figure, path)


def save_metric_curves(
    path: str | os.PathLike, curves: dict[str, dict[str, list[tuple[float, float]]]], *, xlabel: str, title: str | None = None
) -> pathlib.Path:
    """One panel per metric, one line per series: curves[metric][series] = [(x, value), ...]
    (e.g. FID against the training step, one line per sampler).

    Raises:
        ValueError: if there are no curves.
    """
    if not curves:
        raise ValueError("no curves to plot")
    columns = min(3, len(curves))
    rows = -(-len(curves) // columns)
    figure = _new_figure(figsize=(4.2 * columns, 3.2 * rows))
    for i, (metric, series) in enumerate(curves.items()):
        axes = figure.add_subplot(rows, columns, i + 1)
        for label, points in series.items():
            xs, ys = zip(*sorted(points))
            axes.plot(xs, ys, marker="o", markersize=3, linewidth=1.2, label=label)
        axes.set_xlabel(xlabel)
        axes.set_ylabel(metric)
        axes.grid(True, alpha=0.3)
        if i == 0:
            axes.legend(fontsize=7)
    if title:
        figure.suptitle(title)
    figure.tight_layout()
    return _save_figure(figure, path)


def save_sample_panels(
    path: str | os.PathLike, panels: Mapping[str, np.ndarray | torch.Tensor], *, columns: int = 4
) -> pathlib.Path:
    """A scatter of the first two coordinates of each named set of samples, one panel per name,
    all panels on the same axes limits (for comparing samplers at one budget)."""
    if not panels:
        raise ValueError("no sample sets to plot")
    points = {name: to_numpy(x).reshape(len(x), -1)[:, :2] for name, x in panels.items()}
    everything = np.concatenate(list(points.values()))
    low, high = _auto_limits(everything)
    columns = min(columns, len(points))
    rows = math.ceil(len(points) / columns)
    figure = _new_figure(figsize=(3.0 * columns, 3.0 * rows))
    for i, (name, xy) in enumerate(points.items()):
        axes = figure.add_subplot(rows, columns, i + 1)
        axes.scatter(xy[:, 0], xy[:, 1], s=1.5, alpha=0.5, linewidths=0)
        axes.set_xlim(low, high)
        axes.set_ylim(low, high)
        axes.set_aspect("equal")
        axes.set_title(name, fontsize=8)
        axes.tick_params(labelsize=6)
    figure.tight_layout()
    return _save_figure(figure, path)
