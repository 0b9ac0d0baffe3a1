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
BORDER_VALUE = 128  # the grey of an image grid's gutters: neither the digits' black nor their white
BAND_VALUE = 48  # the dark grey of the labelled bands above a reference row and the samples
LABEL_HEIGHT = 16  # pixels of each labelled band
DENSITY_BINS = 60  # bins a side of the data histogram behind 2-D samples
SAMPLE_COLOUR = "tab:blue"
RAW_LOSS_COLOUR = "#6baed6"  # light blue markers: every logged loss
SMOOTH_LOSS_COLOUR = "#08306b"  # dark blue line: their moving average
WARMUP_COLOUR = "tab:orange"
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


def _finite_rows(points: np.ndarray) -> np.ndarray:
    return points[np.all(np.isfinite(points), axis=1)]


def scatter_figure(
    samples: np.ndarray | torch.Tensor,
    reference: np.ndarray | torch.Tensor | None = None,
    *,
    title: str | None = None,
    limits: tuple[float, float] | None = None,
) -> Figure:
    """The figure `save_scatter` writes (see there), for callers and tests that inspect its artists.

    With a reference, the samples panel (the last axes) has the reference's 2-D histogram
    (``DENSITY_BINS`` bins a side over ``limits``, empty bins left white) as a grey ``QuadMesh``
    behind the samples, so that one panel shows where the samples fall against where the data are.
    """
    samples = _points_2d(samples, "samples")
    panels = [("samples", samples, SAMPLE_COLOUR)]
    if reference is not None:
        panels.insert(0, ("data", _points_2d(reference, "reference"), "tab:gray"))
    if limits is None:
        limits = _auto_limits(panels[0][1])
    if len(limits) != 2 or not limits[0] < limits[1]:
        raise ValueError(f"limits must be a pair (low, high) with low < high, got {limits}")
    figure = _new_figure(figsize=(PANEL_INCHES * len(panels), PANEL_INCHES + 0.4))
    for index, (label, points, colour) in enumerate(panels):
        axes = figure.add_subplot(1, len(panels), index + 1)
        heading = f"{label} (n={len(points)})"
        if label == "samples" and reference is not None:
            kept = _finite_rows(panels[0][1])
            bounds = [list(limits), list(limits)]
            counts, x_edges, y_edges = np.histogram2d(kept[:, 0], kept[:, 1], bins=DENSITY_BINS, range=bounds)
            axes.pcolormesh(
                x_edges,
                y_edges,
                np.ma.masked_equal(counts.T, 0),
                cmap="Greys",
                vmin=0.0,
                vmax=max(float(counts.max()), 1.0) * 1.6,  # the densest bin mid-grey, so samples stay visible
                shading="flat",
                zorder=0,
            )
            heading = f"samples (n={len(points)}) over the data density"
        axes.scatter(points[:, 0], points[:, 1], s=3, alpha=0.6, color=colour, linewidths=0, zorder=2)
        axes.set(xlim=limits, ylim=limits, aspect="equal", title=heading)
    if title is not None:
        figure.suptitle(title)
    figure.tight_layout()
    return figure


def save_scatter(
    path: str | os.PathLike,
    samples: np.ndarray | torch.Tensor,
    reference: np.ndarray | torch.Tensor | None = None,
    *,
    title: str | None = None,
    limits: tuple[float, float] | None = None,
) -> pathlib.Path:
    """Saves a scatter plot of 2-D samples, with the reference data in a panel beside them and its
    density shaded behind the samples.

    Args:
        path: output file; the format follows the extension (PNG when there is none).
        samples: points of shape (n, 2); non-finite points are left out of the plot.
        reference: optional data points of shape (m, 2), drawn in a left panel "data" next to a
            right panel "samples", on the same axes; the samples panel also shows the reference's
            2-D histogram in grey behind the samples.
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
    return _save_figure(scatter_figure(samples, reference, title=title, limits=limits), path)


def default_gutter(cell_pixels: int) -> int:
    """The gutter `save_image_grid` leaves between cells of `cell_pixels` (the shorter side): a
    tenth of the cell, at least 2 pixels (6 for 8x8 digits enlarged to 64)."""
    return max(2, cell_pixels // 10)


def _grid_array(images: np.ndarray, nrow: int, scale: int, gutter: int) -> np.ndarray:
    """Composes (N, C, H, W) uint8 images into one (rows*(sH+g)+g, nrow*(sW+g)+g, C) array."""
    count, channels, height, width = images.shape
    rows = math.ceil(count / nrow)
    big = images.repeat(scale, axis=2).repeat(scale, axis=3).transpose(0, 2, 3, 1)
    cell_h, cell_w = height * scale + gutter, width * scale + gutter
    grid = np.full((rows * cell_h + gutter, nrow * cell_w + gutter, channels), BORDER_VALUE, np.uint8)
    for index in range(count):
        top, left = (index // nrow) * cell_h + gutter, (index % nrow) * cell_w + gutter
        grid[top : top + cell_h - gutter, left : left + cell_w - gutter] = big[index]
    return grid


def _to_levels(images: np.ndarray) -> np.ndarray:
    levels = np.clip(np.nan_to_num(images, nan=0.0, posinf=0.0, neginf=0.0), 0.0, 1.0)
    return np.round(levels * 255.0).astype(np.uint8)


def _label_band(text: str, width: int, channels: int) -> np.ndarray:
    """A LABEL_HEIGHT-pixel dark band of `width` with `text` written on it in white."""
    from PIL import ImageDraw

    band = Image.new("L", (width, LABEL_HEIGHT), BAND_VALUE)
    ImageDraw.Draw(band).text((4, 2), text, fill=255)
    array = np.asarray(band)[..., None]
    return np.repeat(array, channels, axis=2)


def save_image_grid(
    path: str | os.PathLike,
    images: np.ndarray | torch.Tensor,
    *,
    nrow: int | None = None,
    scale: int | None = None,
    gutter: int | None = None,
    reference: np.ndarray | torch.Tensor | None = None,
    reference_label: str = "real examples (training set)",
    samples_label: str = "generated samples",
) -> pathlib.Path:
    """Saves images as one PNG grid, upscaled with nearest-neighbour so small images are visible.

    Images are clipped to [0, 1] (non-finite values become 0), quantised to 8 bits, enlarged by
    an integer ``scale`` and placed row by row on a grey (``BORDER_VALUE``) background, with
    ``gutter`` pixels of it around every cell, so that cells with black backgrounds read as
    separate pictures. Without ``reference`` the output is ``rows * (H * scale + gutter) + gutter``
    pixels high and ``nrow * (W * scale + gutter) + gutter`` wide, with ``rows = ceil(N / nrow)``;
    unused cells of the last row stay grey.

    With ``reference``, its first ``nrow`` images (real examples, for comparison) form one row
    above the samples: from the top, a ``LABEL_HEIGHT``-pixel dark band (``BAND_VALUE``) labelled
    ``reference_label``, the reference row (``H * scale + 2 * gutter`` pixels), a second band
    labelled ``samples_label`` and the sample grid as above.

    Args:
        path: output file (always written as PNG).
        images: array of shape (N, C, H, W), C = 1 (grey) or 3 (RGB), values in [0, 1].
        nrow: images per row; default ceil(sqrt(N)).
        scale: enlargement factor; default the smallest making each image at least 64 pixels
            on its shorter side (8 for 8x8 digits).
        gutter: background pixels between and around cells; default `default_gutter` of the
            enlarged cell (6 pixels for 64-pixel cells).
        reference: optional real images of shape (M, C, H, W) like ``images``.
        reference_label, samples_label: the texts of the two bands (with ``reference`` only).

    Returns:
        the path written.

    Raises:
        ValueError: if ``images`` is not NCHW with C in {1, 3} and N >= 1, ``reference`` has not
            the shape of one of ``images`` per row, or ``nrow`` or ``scale`` is smaller than 1
            or ``gutter`` smaller than 0.
    """
    images = to_numpy(images, np.float32)
    if images.ndim != 4 or images.shape[1] not in (1, 3) or 0 in images.shape:
        raise ValueError(f"images must have shape (N, C, H, W), C = 1 or 3, got {images.shape}")
    nrow = math.ceil(math.sqrt(len(images))) if nrow is None else nrow
    scale = math.ceil(MIN_IMAGE_PIXELS / min(images.shape[2:])) if scale is None else scale
    if nrow < 1 or scale < 1:
        raise ValueError(f"nrow and scale must be >= 1, got nrow={nrow}, scale={scale}")
    gutter = default_gutter(scale * min(images.shape[2:])) if gutter is None else gutter
    if gutter < 0:
        raise ValueError(f"gutter must be >= 0, got {gutter}")
    grid = _grid_array(_to_levels(images), nrow, scale, gutter)
    if reference is not None:
        reference = to_numpy(reference, np.float32)
        if reference.ndim != 4 or reference.shape[1:] != images.shape[1:] or len(reference) == 0:
            raise ValueError(f"reference must have shape (M, {', '.join(map(str, images.shape[1:]))}), got {reference.shape}")
        reference_row = _grid_array(_to_levels(reference[:nrow]), nrow, scale, gutter)
        width, channels = grid.shape[1], grid.shape[2]
        bands = [_label_band(text, width, channels) for text in (reference_label, samples_label)]
        grid = np.concatenate([bands[0], reference_row, bands[1], grid])
    picture = Image.fromarray(grid[..., 0] if grid.shape[2] == 1 else grid)
    path = _output_path(path)
    picture.save(path, format="PNG")
    return path


def _centred_average(values: np.ndarray, window: int) -> np.ndarray:
    """The mean of each value's centred window of `window` points (shrunk at the ends), one per value."""
    half = window // 2
    cumulative = np.cumsum(np.concatenate([[0.0], values]))
    index = np.arange(len(values))
    low, high = np.maximum(index - half, 0), np.minimum(index + half + 1, len(values))
    return (cumulative[high] - cumulative[low]) / (high - low)


def loss_curve_figure(
    steps: np.ndarray | torch.Tensor | Sequence[float],
    losses: np.ndarray | torch.Tensor | Sequence[float],
    *,
    title: str | None = None,
    window: int | None = None,
    warmup: int = 0,
) -> Figure:
    """The figure `save_loss_curve` writes (see there), for callers and tests that inspect it.

    Its one axes holds, in order: the raw losses as markers without a line (``Line2D`` with
    ``linestyle "None"``), the centred moving average as a solid line and, with ``warmup > 0``,
    one shaded span (a patch) from step 0 to ``warmup``.
    """
    step_values, loss_values = to_numpy(steps), to_numpy(losses)
    if step_values.ndim != 1 or step_values.shape != loss_values.shape or len(step_values) == 0:
        raise ValueError(f"steps and losses must be 1-D of the same length >= 1, got {step_values.shape} and {loss_values.shape}")
    if window is not None and window < 1:
        raise ValueError(f"window must be >= 1, got {window}")
    if warmup < 0:
        raise ValueError(f"warmup must be >= 0, got {warmup}")
    finite = np.isfinite(loss_values) & np.isfinite(step_values)
    kept_steps, kept_losses = step_values[finite], loss_values[finite]
    window = max(1, min(window or max(5, len(kept_losses) // 15), len(kept_losses))) // 2 * 2 + 1  # odd: centred
    positive = bool(len(kept_losses)) and bool(np.all(kept_losses > 0))
    figure = _new_figure(figsize=(6.0, 4.0))
    axes = figure.add_subplot(1, 1, 1)
    raw = axes.plot(kept_steps, kept_losses, linestyle="None", marker="o", markersize=2.5, label="logged loss")[0]
    raw.set(alpha=0.45, color=RAW_LOSS_COLOUR)
    if len(kept_losses):
        # On a log axis the average of the logarithms (a geometric mean) follows the points' middle.
        smoothed = np.exp(_centred_average(np.log(kept_losses), window)) if positive else _centred_average(kept_losses, window)
        label = f"centred moving average ({window} points)"
        axes.plot(kept_steps, smoothed, color=SMOOTH_LOSS_COLOUR, linewidth=2.0, label=label)
    if warmup:
        axes.axvspan(0, warmup, color=WARMUP_COLOUR, alpha=0.18, linewidth=0, label=f"learning-rate warm-up ({warmup} steps)")
    if positive:
        axes.set_yscale("log")
    axes.set(xlabel="step", ylabel="loss", title=title or "")
    axes.grid(True, which="major", alpha=0.3)
    axes.legend(loc="upper right", fontsize=8)
    figure.tight_layout()
    return figure


def save_loss_curve(
    path: str | os.PathLike,
    steps: np.ndarray | torch.Tensor | Sequence[float],
    losses: np.ndarray | torch.Tensor | Sequence[float],
    *,
    title: str | None = None,
    window: int | None = None,
    warmup: int = 0,
) -> pathlib.Path:
    """Saves a plot of the training loss against the step: the logged losses as small markers,
    their centred moving average as a line, and the learning-rate warm-up shaded.

    Non-finite losses are left out. The y axis is logarithmic when all remaining losses are
    positive, and the moving average is then taken of the logarithms.

    Args:
        path: output file; the format follows the extension (PNG when there is none).
        steps: step numbers of shape (n,).
        losses: loss values of shape (n,).
        title: optional plot title.
        window: moving-average window in points, centred on each point (rounded up to an odd
            number) and shrunk at the ends; default max(5, n // 15) (of the finite points).
        warmup: the learning-rate warm-up steps, shaded from step 0; 0 for none.

    Returns:
        the path written.

    Raises:
        ValueError: if ``steps`` and ``losses`` are not 1-D of the same non-zero length,
            ``window < 1`` or ``warmup < 0``.
    """
    return _save_figure(loss_curve_figure(steps, losses, title=title, window=window, warmup=warmup), path)


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
