"""The one place that turns a network's raw output into a score function score_fn(x, t).

Everything downstream (losses, samplers, likelihood) sees only a callable
`score_fn(x, t) -> grad_x log p_t(x)` with `t` of shape (batch,). Networks differ in what they
predict and how they are told the time; with x(t) = alpha x(0) + sigma z the three usual
parameterisations give the score as (Song et al. 2021, sec. 3.3; Kingma et al. 2021, app. B):

    score:  s = out                (or out / sigma with `scale_by_sigma`, NCSN++'s output scaling)
    eps:    s = -out / sigma       (the network predicts the noise z, as DDPM)
    x0:     s = (alpha out - x) / sigma^2   (the network predicts the clean data x(0))
    edm:    s = (alpha D - x) / sigma^2 with EDM's preconditioned denoiser (Karras et al. 2022,
            eq. 7 and table 1) in the scaled variables x~ = x / alpha, s~ = sigma / alpha:
                D = c_skip x~ + c_out out,  c_skip = sd^2 / (s~^2 + sd^2),  c_out = s~ sd / sqrt(s~^2 + sd^2),
            and the network always sees c_in x~ = x~ / sqrt(s~^2 + sd^2) (sd = `sigma_data`). With
            the "edm" loss weighting every noise level then has unit weight on `out`.

The network is called as `net(x_in, label)` where the label follows one of `TIME_LABELS`:

    t          the time itself, in [0, T]
    sigma      sigma(t), score_sde's label for continuous VE models
    log_sigma  log sigma(t)
    999t       999 t / T, score_sde's label for continuous VP / sub-VP models (T = 1 there)
    index      t (N - 1) / T, score_sde's label for models trained on the discrete chain

With `scale_input` the network sees x / sqrt(alpha^2 sigma_data^2 + sigma^2), which has about unit
variance at every t (the c_in of Karras et al. 2022, eq. 7); this helps small networks under VE.
"""

from __future__ import annotations

from typing import Callable

import torch

from scoresde.sde_lib import SDE, broadcast_to_data

PARAMETERIZATIONS = ("score", "eps", "x0", "edm")
TIME_LABELS = ("t", "sigma", "log_sigma", "999t", "index")

Network = Callable[..., torch.Tensor]  # net(x, label) or net(x, label, class_labels)


def time_label(sde: SDE, t: torch.Tensor, convention: str) -> torch.Tensor:
    """The label a network trained with `convention` expects at time t (shape (batch,)).

    Raises:
        ValueError: for an unknown convention, listing the valid ones.
    """
    if convention == "t":
        return t
    if convention == "sigma":
        return sde.sigma(t)
    if convention == "log_sigma":
        return torch.log(sde.sigma(t))
    if convention == "999t":
        return 999.0 * t / sde.T
    if convention == "index":
        return t * (sde.N - 1) / sde.T
    raise ValueError(f"unknown time label {convention!r}; valid: {', '.join(TIME_LABELS)}")


class NetworkScore:
    """score_fn(x, t) built from a network: see the module docstring for the formulas.

    Args:
        net: callable `net(x_in, label)` returning a tensor shaped like x.
        sde: the SDE whose alpha(t), sigma(t) define the parameterisation.
        parameterization: one of `PARAMETERIZATIONS`.
        time_label: one of `TIME_LABELS`.
        scale_by_sigma: divide a `score` output by sigma(t).
        scale_input: feed x / sqrt(alpha^2 sigma_data^2 + sigma^2) instead of x.
        sigma_data: the data's standard deviation assumed by `scale_input`.

    Raises:
        ValueError: for unknown parameterisations or labels, or `scale_by_sigma` with a
            parameterisation other than `score`.
    """

    def __init__(
        self,
        net: Network,
        sde: SDE,
        *,
        parameterization: str = "score",
        time_label: str = "t",
        scale_by_sigma: bool = False,
        scale_input: bool = False,
        sigma_data: float = 0.5,
    ):
        if parameterization not in PARAMETERIZATIONS:
            raise ValueError(f"unknown parameterization {parameterization!r}; valid: {', '.join(PARAMETERIZATIONS)}")
        if time_label not in TIME_LABELS:
            raise ValueError(f"unknown time label {time_label!r}; valid: {', '.join(TIME_LABELS)}")
        if scale_by_sigma and parameterization != "score":
            raise ValueError("scale_by_sigma only applies to the 'score' parameterization")
        if not sigma_data > 0:
            raise ValueError(f"sigma_data must be > 0, got {sigma_data!r}")
        self.net = net
        self.sde = sde
        self.parameterization = parameterization
        self.time_label = time_label
        self.scale_by_sigma = scale_by_sigma
        self.scale_input = scale_input
        self.sigma_data = float(sigma_data)

    def __call__(self, x: torch.Tensor, t: torch.Tensor, class_labels: torch.Tensor | None = None) -> torch.Tensor:
        """grad_x log p_t(x) (or grad_x log p_t(x | class) with `class_labels`, shape (batch,), for a
        class-conditional network) for x of shape (batch, *dims) and t of shape (batch,)."""
        t = self.sde.check_time(t, x)
        if t.ndim == 0:
            t = t.expand(x.shape[0])
        alpha, sigma = (broadcast_to_data(v, x) for v in self.sde.scales(t))
        x_in = x
        if self.scale_input or self.parameterization == "edm":  # x / sqrt(alpha^2 sd^2 + sigma^2) = c_in x~
            x_in = x * torch.rsqrt(alpha**2 * self.sigma_data**2 + sigma**2)
        label = time_label(self.sde, t, self.time_label)
        out = self.net(x_in, label) if class_labels is None else self.net(x_in, label, class_labels)
        if out.shape != x.shape:
            raise ValueError(f"the network returned shape {tuple(out.shape)} for input shape {tuple(x.shape)}")
        if self.parameterization == "eps":
            return -out / sigma
        if self.parameterization == "x0":
            return (alpha * out - x) / sigma**2
        if self.parameterization == "edm":
            ratio2, data2 = (sigma / alpha) ** 2, self.sigma_data**2
            denoised = (
                data2 / (ratio2 + data2) * (x / alpha) + (sigma / alpha) * self.sigma_data * torch.rsqrt(ratio2 + data2) * out
            )
            return (alpha * denoised - x) / sigma**2
        return out / sigma if self.scale_by_sigma else out


class DenoiserScore:
    """score_fn(x, t) from a denoiser D(x~; s~) ~ E[x0 | x0 + s~ z = x~] in EDM's convention (its
    snapshots, `scoresde.models.load_edm_snapshot`), for any of our SDEs.

    With x(t) = alpha x0 + sigma z, x~ = x / alpha is x0 plus noise of level s~ = sigma / alpha, so
    Tweedie's formula gives (Karras et al. 2022, eq. 3 and sec. 4):

        score(x, t) = (alpha D(x / alpha; sigma / alpha) - x) / sigma^2

    Args:
        denoiser: `denoiser(x, sigma, class_labels=None)` with sigma of shape (batch,).
        sde: the SDE whose alpha(t), sigma(t) the samplers use (the denoiser is told only s~).
        num_classes: the denoiser's one-hot label count (0: unconditional); integer class labels
            given to the score function are turned into one-hot rows.
    """

    def __init__(self, denoiser: Network, sde: SDE, num_classes: int = 0):
        self.denoiser, self.sde, self.num_classes = denoiser, sde, int(num_classes)

    def __call__(self, x: torch.Tensor, t: torch.Tensor, class_labels: torch.Tensor | None = None) -> torch.Tensor:
        t = self.sde.check_time(t, x)
        if t.ndim == 0:
            t = t.expand(x.shape[0])
        alpha, sigma = self.sde.scales(t)
        one_hot = None
        if class_labels is not None and self.num_classes:
            one_hot = torch.nn.functional.one_hot(class_labels.long(), self.num_classes).to(x.dtype)
        denoised = self.denoiser(x / broadcast_to_data(alpha, x), sigma / alpha, one_hot).to(x.dtype)
        alpha, sigma = broadcast_to_data(alpha, x), broadcast_to_data(sigma, x)
        return (alpha * denoised - x) / sigma**2


def get_score_fn(net: Network, sde: SDE, **options) -> NetworkScore:
    """Shorthand for `NetworkScore(net, sde, **options)`."""
    return NetworkScore(net, sde, **options)


def tweedie(x: torch.Tensor, score: torch.Tensor, alpha: float | torch.Tensor, sigma: float | torch.Tensor) -> torch.Tensor:
    """Tweedie's formula: the data prediction D = E[x(0) | x(t) = x] = (x + sigma^2 score) / alpha.

    (Efron 2011; the "denoising" last step of Song et al. 2021 and Karras et al. 2022, and the
    data prediction of every exponential integrator.) `alpha`, `sigma`: floats (one time for the
    whole batch; computed in place, one temporary) or tensors that broadcast against x.
    """
    if isinstance(alpha, float) and isinstance(sigma, float):
        return torch.add(x, score, alpha=sigma**2).div_(alpha)
    return (x + sigma**2 * score) / alpha


def denoise(sde: SDE, score_fn: Callable, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Tweedie's formula (`tweedie`) at time t, one score evaluation: (x + sigma(t)^2 score(x, t)) / alpha(t)."""
    t = sde.check_time(t, x)
    if t.ndim == 0:
        t = t.expand(x.shape[0])
    alpha, sigma = (broadcast_to_data(v, x) for v in sde.scales(t))
    return tweedie(x, score_fn(x, t), alpha, sigma)
