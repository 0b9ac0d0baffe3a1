"""What one training step minimises: its batch, a pure function of (seed, step), and its loss.

The training loop (`scoresde.train.loop.Trainer`) knows nothing of scores or classes: it asks an
objective for the global batch of step k (`batch(step, size)`: a tuple of tensors along the
example axis, or None), cuts it into micro-batches, and asks for the loss of each on the wrapped
network (`loss(module, part)`). Two objectives:

    DenoisingScoreMatching  the score network's (`losses.dsm_loss`, Song et al. 2021, eq. 7):
                            E_t E_{x0, z} lambda(t) || s(x_t, t) + z / sigma(t) ||^2 with
                            x_t = alpha(t) x0 + sigma(t) z, weightings and EDM's time law
    NoisyClassification     the noise-conditional classifier of classifier guidance (Song et al.
                            2021, app. I.1; Dhariwal & Nichol 2021): cross-entropy of p_t(c | x_t)
                            on the same noisy x_t, t ~ U[eps, T]

Every random draw of a batch comes from generators seeded by (seed, step), so a resumed run
repeats the same steps; the noise and times are drawn for the whole batch before it is split, so
the gradient does not depend on how it is split.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
from typing import Any, Callable, Protocol

import torch
from torch import nn

from scoresde import data, losses
from scoresde.sde_lib import SDE, broadcast_to_data

# Tensors along the example axis (or None); anything the loop can slice into micro-batches.
Batch = tuple[Any, ...]


class Objective(Protocol):
    """What the Trainer needs of a training objective."""

    @property
    def n_examples(self) -> int:
        """The number of training examples (recorded with checkpoints as part of the data order)."""
        ...

    def batch(self, step: int, size: int) -> Batch:
        """The global batch of `size` examples of step `step`: tensors along the example axis (or None)."""
        ...

    def loss(self, module: nn.Module, part: Batch) -> torch.Tensor:
        """The loss of one micro-batch (a slice of every tensor of the batch) through `module`."""
        ...

    # Optional: `reading(steps, size, parts, num_workers)`, a context manager while which worker
    # processes read the examples of `steps` ahead (parts: this process's micro-batch slices);
    # the Trainer enters it when settings.num_workers > 0 (both objectives below have one).


def read_ahead(x, seed: int, steps: range, size: int, parts: list[slice], num_workers: int):
    """`Objective.reading` for examples `x` batched by `data.batch_indices(len(x), size, step,
    seed)` and read `parts` by `parts` (data.loader.StepReads); nothing for in-memory examples."""
    if num_workers < 1 or not hasattr(x, "reading"):
        return contextlib.nullcontext()
    from scoresde.data import loader

    return x.reading(loader.StepReads(len(x), size, seed, tuple(parts)), steps, num_workers)


@dataclasses.dataclass
class DenoisingScoreMatching:
    """Denoising score matching of a score network (`losses.dsm_loss`; module docstring).

    Batches: `data.batch_indices` (epoch-wise shuffles), flips from `data.flip_seed(seed, step)`,
    class labels dropped to "no class" (= num_classes) with probability `label_dropout` (for
    classifier-free guidance), then times and noise from one generator seeded by (seed, step).
    """

    sde: SDE
    score_fn_for: Callable[[nn.Module], Callable]  # the score adapter around the (wrapped) network
    x: torch.Tensor  # the training examples in model space, on the training device
    labels: torch.Tensor | None = None  # their classes, for a class-conditional network
    seed: int = 0
    eps: float = 1e-5
    weighting: str = "sigma2"
    reduce: str = "mean"
    sigma_data: float = 0.5
    time_distribution: str = "uniform"
    p_mean: float = -1.2
    p_std: float = 1.2
    random_flip: bool = False
    label_dropout: float = 0.0
    num_classes: int = 0
    _score_fns: dict = dataclasses.field(default_factory=dict, repr=False)

    @property
    def n_examples(self) -> int:
        return len(self.x)

    @property
    def device(self) -> torch.device:
        return torch.device(self.x.device)

    def batch(self, step: int, size: int) -> Batch:
        """(clean examples, times, noise, labels or None) of step `step`. For streamed examples
        (`data.prepared.StreamedExamples`) the clean examples are a `_Rows`: read when the loop
        slices out a micro-batch, so each process reads only its own rows."""
        device = self.device
        positions = data.batch_indices(len(self.x), size, step, self.seed)
        idx = torch.as_tensor(positions, device=device)
        streamed = not isinstance(self.x, torch.Tensor)  # rows read from disk when a micro-batch takes them
        x0: torch.Tensor | _Rows = _Rows(self.x, positions, (size, *self.x.shape[1:]), device) if streamed else self.x[idx]
        labels = None
        if self.labels is not None:  # its own generator: the draws below are the same either way
            labels = self.labels[idx]
            drop = torch.Generator(device).manual_seed(data.flip_seed(self.seed, step) + 1)
            dropped = torch.rand(labels.shape, generator=drop, device=device) < self.label_dropout
            labels = labels.masked_fill(dropped, self.num_classes)
        if self.random_flip:  # its own generator: the draws below are the same either way
            flips = torch.Generator(device).manual_seed(data.flip_seed(self.seed, step))
            x0 = x0.flipped(flips) if isinstance(x0, _Rows) else data.random_flip(x0, flips)
        generator = torch.Generator(device).manual_seed(self.seed * 1_000_003 + step)
        t = losses.sample_time(
            x0.shape[0],
            self.sde,
            self.eps,
            generator=generator,
            device=device,
            dtype=x0.dtype,
            distribution=self.time_distribution,
            p_mean=self.p_mean,
            p_std=self.p_std,
        )
        noise = torch.randn(x0.shape, generator=generator, device=device, dtype=x0.dtype)
        return x0, t, noise, labels

    def reading(self, steps: range, size: int, parts: list[slice], num_workers: int):
        return read_ahead(self.x, self.seed, steps, size, parts, num_workers)

    def loss(self, module: nn.Module, part: Batch) -> torch.Tensor:
        x0, t, noise, labels = part
        assert x0 is not None and t is not None and noise is not None  # batch() always returns them
        if id(module) not in self._score_fns:  # one adapter per wrapper (the DDP / compiled module)
            self._score_fns[id(module)] = self.score_fn_for(module)
        score_fn = self._score_fns[id(module)]
        if labels is not None:
            score_fn = functools.partial(score_fn, class_labels=labels)
        return losses.dsm_loss(
            score_fn,
            self.sde,
            x0,
            t=t,
            noise=noise,
            eps=self.eps,
            weighting=self.weighting,
            reduce=self.reduce,
            sigma_data=self.sigma_data,
        )


class _Rows:
    """The clean examples of a batch of streamed data, not read yet: slicing reads those rows
    (`examples[positions[part]]`, row numbers kept on the host so reading needs no device sync)
    and applies their share of the batch's flips, the same values as reading the whole batch and
    slicing it."""

    def __init__(self, examples, positions, shape: tuple[int, ...], device: torch.device, flip: torch.Tensor | None = None):
        self.examples, self.positions, self.shape, self.flip = examples, positions, shape, flip
        self.dtype, self.device = torch.float32, device

    def flipped(self, generator: torch.Generator) -> "_Rows":
        """`data.random_flip`'s coin flips for the whole batch (one draw of shape (N,)), applied on reading."""
        flip = torch.rand(self.shape[0], generator=generator, device=self.device) < 0.5
        return _Rows(self.examples, self.positions, self.shape, self.device, flip)

    def __getitem__(self, part: slice) -> torch.Tensor:
        rows = self.examples[self.positions[part]]
        if self.flip is None:
            return rows
        return torch.where(self.flip[part][:, None, None, None], rows.flip(-1), rows)


@dataclasses.dataclass
class NoisyClassification:
    """Cross-entropy of a noise-conditional classifier on x_t = alpha(t) x0 + sigma(t) z, t ~ U[eps, T].

    Batches: `data.batch_indices`, then times and noise from a generator seeded by (seed, step)
    (a stream of its own, apart from the score network's).
    """

    sde: SDE
    x: torch.Tensor  # the training examples in model space, on the training device
    labels: torch.Tensor  # their classes, on the same device
    seed: int = 0
    eps: float = 1e-5

    @property
    def n_examples(self) -> int:
        return len(self.x)

    def batch(self, step: int, size: int) -> Batch:
        """(clean examples, classes, times, noise) of step `step`."""
        device = self.labels.device
        positions = data.batch_indices(len(self.x), size, step, self.seed)
        idx = torch.as_tensor(positions, device=device)
        generator = torch.Generator(device).manual_seed(self.seed * 1_000_003 + step + 7)
        streamed = not isinstance(self.x, torch.Tensor)  # rows read from disk (host row numbers: no device sync)
        x0, y = self.x[positions] if streamed else self.x[idx], self.labels[idx]
        t = losses.sample_time(len(idx), self.sde, self.eps, generator=generator, device=device, dtype=x0.dtype)
        noise = torch.randn(x0.shape, generator=generator, device=device)
        return x0, y, t, noise

    def reading(self, steps: range, size: int, parts: list[slice], num_workers: int):
        return read_ahead(self.x, self.seed, steps, size, [slice(None)], num_workers)  # the batch is read whole

    def loss(self, module: nn.Module, part: Batch) -> torch.Tensor:
        x0, y, t, noise = part
        assert x0 is not None and y is not None and t is not None and noise is not None
        mean, std = self.sde.marginal_prob(x0, t)
        return nn.functional.cross_entropy(module(mean + broadcast_to_data(std, x0) * noise, t), y)
