"""Controllable generation: inpainting, colorization, classifier guidance, classifier-free guidance.

Each method is a wrapper around a score function, so it works with every sampler of
`scoresde.samplers` (predictor–corrector, ancestral, Euler–Maruyama, annealed Langevin, the fixed-step
ODE solvers and the adaptive probability flow) without a copy of any sampling loop.

Inpainting by replacement (Song et al. 2021, app. I.2, the method of their Fig. 4)
    Known coordinates y (mask m = 1) are replaced, before every score evaluation, by a noised copy
    y_t = alpha(t) y + sigma(t) z at the evaluation's time:

        score_inpaint(x, t) = score((1 - m) x + m y_t, t).

    The paper replaces after every sampler step instead. The two are the same: every update of our
    samplers is, per example, a combination of x, the score (or the denoised D) and noise with
    scalar coefficients, so the unknown coordinates after a step depend on the known ones only
    through the score, which sees the replaced values either way. At the end the known coordinates
    are set to y exactly. `noise` picks z: "fresh" draws a new z at each evaluation (the paper's
    stochastic samplers); "fixed" draws one z for the whole trajectory, z = (x_T - alpha_T y) /
    sigma_T, so that y_t is the probability-flow ODE's own trajectory from x_T for data that are a
    point mass at y (the deterministic choice, the default for ODE samplers).

    It is an approximation (Song et al.'s eq. 50): the unknown part follows the score of the joint
    p_t at a *noised* y, not grad log p_t(x_u | x_k = y). For mixtures the two differ, and the
    replacement under-uses y (it commits to a mode while y_t is still noisy), so the mixture
    weights of the inpainted part drift towards the unconditional ones.
    `benchmarks/controllable_accuracy.py` measures the error against the exact conditional
    (`scoresde.oracle.GaussianMixture.condition`).

Inpainting by sequential Monte Carlo (`smc_inpaint`; Trippe et al. 2023, "SMCDiff", Algorithm 1)
    Exact as the number of particles K grows (given an exact score and enough steps). The known
    coordinates follow one forward-noised path y_{t_n} -> ... -> y_{t_0} of y (noised upwards with
    the forward transitions q(y_t | y_s), so the path has the forward process's joint law); K
    particles of the unknown part take ancestral steps (`samplers.ancestral_step`) and are weighted
    by how well the step's Gaussian predicts the next known value,

        w_k <- w_k N(y_{t_{i+1}}; mean_known(x_k, t_i), var_i),

    and resampled (systematically) when the effective sample size falls below a threshold. As the
    diffusion of y is independent of the rest of x given x_0, p(x_u | y_{0:T}) = p(x_u | y_0), the
    exact conditional. Cost: K score evaluations per example and step (one batched call).

Colorization (Song et al. 2021, app. I.3)
    Inpainting in a decoupled colour space: the orthogonal per-pixel map `COLOR_DECOUPLING`
    sends (r, g, b) to (sqrt(3) gray, two colour coordinates), gray = (r + g + b) / 3. Being
    orthogonal, it maps N(0, I) noise to N(0, I), so the replacement above applies unchanged to
    the gray coordinate; `smc_colorize` runs SMC on the decoupled variable, whose score is
    M score(M^T y) (`decoupled_score`).

Classifier guidance (Song et al. 2021, app. I.4; Dhariwal & Nichol 2021)
    grad_x log p_t(x | c) = grad_x log p_t(x) + grad_x log p_t(c | x) (Bayes' rule), with a
    noise-conditional classifier p_t(c | x):

        score_guided = score(x, t) + scale * grad_x log p_t(c | x).

    scale = 1 targets p(x | c) exactly (given an exact score and classifier); scale > 1 sharpens.

Classifier-free guidance (Ho & Salimans 2022)
    One network trained with labels dropped to a "no class" label with some probability gives
    both s(x, t, c) and s(x, t) = s(x, t, None):

        score_cfg = s(x, t) + scale * (s(x, t, c) - s(x, t)).

    scale = 1 is the conditional score, 0 the unconditional; Ho & Salimans' w is scale - 1. For
    scale not in {0, 1} the result is not the score of any diffused distribution (the tilted
    p(x | c)^scale p(x)^(1 - scale) is not preserved by diffusion), so its samples are not exactly
    p(c | x)^scale-tilted; the benchmark measures what they are.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import torch

from scoresde import samplers
from scoresde.samplers import noise as sampler_noise
from scoresde.samplers.ode import GridScales
from scoresde.samplers.registry import StepInfo, report_step
from scoresde.score import tweedie
from scoresde.sde_lib import SDE, time_vector

NOISE_MODES = ("fresh", "fixed")
METHODS = ("replacement", "smc")  # conditioning a sampler on known pixels: the replacement hook, or SMC
GUIDANCE = ("classifier", "free")

# Rows: sqrt(3) * gray, then two orthonormal colour directions: an orthonormal basis of RGB space
# whose first vector is (1, 1, 1) / sqrt(3).
COLOR_DECOUPLING = torch.tensor(
    [
        [1 / math.sqrt(3), 1 / math.sqrt(3), 1 / math.sqrt(3)],
        [1 / math.sqrt(2), -1 / math.sqrt(2), 0.0],
        [1 / math.sqrt(6), 1 / math.sqrt(6), -2 / math.sqrt(6)],
    ],
    dtype=torch.float64,
)


def _mix_channels(matrix: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """y[:, i] = sum_j matrix[i, j] x[:, j] over the channel axis 1 of (batch, C, ...)."""
    return torch.einsum("ij,bj...->bi...", matrix.to(x), x)


def to_decoupled(x: torch.Tensor) -> torch.Tensor:
    """RGB images (batch, 3, ...) to the decoupled space (sqrt(3) gray, colour, colour)."""
    return _mix_channels(COLOR_DECOUPLING, x)


def from_decoupled(x: torch.Tensor) -> torch.Tensor:
    """The inverse of `to_decoupled` (the transpose: the map is orthogonal)."""
    return _mix_channels(COLOR_DECOUPLING.T, x)


class Replacement:
    """Sets the known coordinates of x to a noised copy of the data at time t (module docstring).

    Args:
        sde: the forward SDE (its alpha(t), sigma(t) noise the known values).
        known: the data, shaped like the samples (batch, *dims); only masked coordinates are read.
            With `decoupled`, in the decoupled colour space.
        mask: 1 (or True) where known; broadcastable to `known`.
        noise: "fresh" or "fixed" (module docstring).
        x_T: the initial state, needed for "fixed" (z = (x_T - alpha_T y) / sigma_T).
        generator: the random source for "fresh" noise (a generator or one per example).
        decoupled: replace in `COLOR_DECOUPLING` space (colorization) instead of pixel space.

    Raises:
        ValueError: unknown noise mode, a mask that does not broadcast, or "fixed" without x_T.
    """

    def __init__(
        self,
        sde: SDE,
        known: torch.Tensor,
        mask: torch.Tensor,
        *,
        noise: str = "fresh",
        x_T: torch.Tensor | None = None,
        generator: sampler_noise.Generators = None,
        decoupled: bool = False,
    ):
        if noise not in NOISE_MODES:
            raise ValueError(f"unknown noise mode {noise!r}; valid: {', '.join(NOISE_MODES)}")
        mask = torch.as_tensor(mask, device=known.device)
        try:
            mask = torch.broadcast_to(mask, known.shape).to(known.dtype)
        except RuntimeError:
            raise ValueError(
                f"mask of shape {tuple(mask.shape)} does not broadcast to the data's shape {tuple(known.shape)}"
            ) from None
        if not bool(((mask == 0) | (mask == 1)).all()):
            raise ValueError("mask must hold only 0 / 1 (or False / True)")
        self.sde, self.known, self.mask, self.noise = sde, known, mask, noise
        self.generator, self.decoupled = generator, decoupled
        self.z = None
        if noise == "fixed":
            if x_T is None:
                raise ValueError("noise='fixed' needs x_T (the fixed noise is read from it)")
            T = time_vector(float(sde.T), known)
            alpha, sigma = self._scales(T)
            start = to_decoupled(x_T) if decoupled else x_T
            self.z = (start - alpha * known) / sigma

    def _scales(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        shape = (-1, *([1] * (self.known.ndim - 1)))
        alpha, sigma = self.sde.scales(t)
        return alpha.reshape(shape), sigma.reshape(shape)

    def noised(self, t: torch.Tensor) -> torch.Tensor:
        """y_t = alpha(t) y + sigma(t) z, with z fresh or fixed."""
        z = self.z if self.z is not None else sampler_noise.randn_like(self.known, self.generator)
        alpha, sigma = self._scales(t)
        return alpha * self.known + sigma * z

    def __call__(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """x with its known coordinates replaced by y_t."""
        if t.ndim == 0:
            t = t.expand(x.shape[0])
        x_work = to_decoupled(x) if self.decoupled else x
        x_work = torch.lerp(x_work, self.noised(t.to(x.dtype)), self.mask.to(x.dtype))
        return from_decoupled(x_work) if self.decoupled else x_work

    def paste(self, x: torch.Tensor) -> torch.Tensor:
        """x with its known coordinates set to y itself (the noise-free end point)."""
        x_work = to_decoupled(x) if self.decoupled else x
        x_work = torch.lerp(x_work, self.known.to(x.dtype), self.mask.to(x.dtype))
        return from_decoupled(x_work) if self.decoupled else x_work


def replaced_score(score_fn: Callable, replacement: Replacement) -> Callable:
    """score_fn(replacement(x, t), t): the inpainting score of the module docstring."""

    def score_with_replacement(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return score_fn(replacement(x, t), t)

    return score_with_replacement


def default_noise_mode(sampler: str) -> str:
    """ "fixed" for deterministic samplers (the ODE solvers), "fresh" for stochastic ones."""
    return "fresh" if samplers.get(sampler).kind == "sde" else "fixed"


def _sample_with_replacement(sampler, sde, score_fn, known, mask, noise, generator, decoupled, sample_kwargs):
    if "x_T" in sample_kwargs or "shape" in sample_kwargs:
        raise ValueError("the initial noise is drawn here from `generator`; x_T and shape are not accepted")
    noise = noise or default_noise_mode(sampler)
    shape = known.shape if not decoupled else (known.shape[0], 3, *known.shape[2:])
    x_T = samplers.initial_state(sde, shape, None, generator, known.device).to(known.dtype)
    replacement = Replacement(sde, known, mask, noise=noise, x_T=x_T, generator=generator, decoupled=decoupled)
    x, info = samplers.sample(sampler, sde, replaced_score(score_fn, replacement), x_T=x_T, generator=generator, **sample_kwargs)
    return replacement.paste(x), {**info, "noise": noise}


def inpaint(
    sampler: str,
    sde: SDE,
    score_fn: Callable,
    known: torch.Tensor,
    mask: torch.Tensor,
    *,
    noise: str | None = None,
    generator: sampler_noise.Generators = None,
    **sample_kwargs,
) -> tuple[torch.Tensor, dict]:
    """Fill in the unknown coordinates of `known` (mask = 0) with `sampler`, by replacement.

    Args:
        sampler: any name of `scoresde.samplers.available()`.
        sde, score_fn: the forward SDE and an (unconditional) score function.
        known: the data in the model's range, shape (batch, *dims); masked-out values are ignored.
        mask: 1 / True where known, broadcastable to `known` (e.g. one mask for all images).
        noise: "fresh" or "fixed"; default `default_noise_mode(sampler)`.
        generator: random source of the initial noise, the sampler and fresh replacement noise.
        **sample_kwargs: steps, eps, denoise, time_grid, callback and sampler options, as for
            `scoresde.samplers.sample`.

    Returns:
        (x, info): x equals `known` where mask = 1; info is the sampler's plus "noise".
    """
    return _sample_with_replacement(sampler, sde, score_fn, known, mask, noise, generator, False, sample_kwargs)


def colorize(
    sampler: str,
    sde: SDE,
    score_fn: Callable,
    gray: torch.Tensor,
    *,
    noise: str | None = None,
    generator: sampler_noise.Generators = None,
    **sample_kwargs,
) -> tuple[torch.Tensor, dict]:
    """Colour images whose channel mean is `gray`, by replacement in the decoupled colour space.

    Args:
        gray: gray images in the model's range, shape (batch, 1, *spatial).
        Others as `inpaint`; the score function is that of an RGB model, (batch, 3, *spatial).

    Returns:
        (x, info): RGB samples, shape (batch, 3, *spatial), whose channel mean equals `gray`.
    """
    known, mask = _gray_as_known(gray)
    return _sample_with_replacement(sampler, sde, score_fn, known, mask, noise, generator, True, sample_kwargs)


def _forward_path(g: GridScales, known: torch.Tensor, generator) -> list[torch.Tensor]:
    """y at every grid time, drawn upwards from y_0 with the forward transitions (one joint path)."""
    y = g.alpha[g.n] * known + g.sigma[g.n] * torch.randn(
        known.shape, generator=generator, dtype=known.dtype, device=known.device
    )
    upwards = [y]  # y at t_n, t_{n-1}, ..., t_0
    for i in range(g.n - 1, -1, -1):  # from t_{i+1} up to t_i > t_{i+1}
        a = g.alpha[i] / g.alpha[i + 1]
        std = math.sqrt(max(g.sigma[i] ** 2 - a**2 * g.sigma[i + 1] ** 2, 0.0))
        y = a * y + std * torch.randn(known.shape, generator=generator, dtype=known.dtype, device=known.device)
        upwards.append(y)
    return upwards[::-1]


def _systematic_resample(log_weights: torch.Tensor, generator) -> torch.Tensor:
    """Indices (batch, K) drawn by systematic resampling from each row's normalised weights."""
    batch, k = log_weights.shape
    cdf = torch.softmax(log_weights, dim=1).cumsum(dim=1)
    cdf[:, -1] = 1.0
    u = (torch.rand((batch, 1), generator=generator, dtype=cdf.dtype, device=cdf.device) + torch.arange(k, device=cdf.device)) / k
    return torch.searchsorted(cdf, u).clamp_(max=k - 1)


def effective_sample_size(log_weights: torch.Tensor) -> torch.Tensor:
    """1 / sum_k w_k^2 of each row's normalised weights, shape (batch,)."""
    return 1.0 / torch.softmax(log_weights, dim=1).pow(2).sum(dim=1)


@torch.no_grad()
def smc_inpaint(
    sde: SDE,
    score_fn: Callable,
    known: torch.Tensor,
    mask: torch.Tensor,
    *,
    n_particles: int,
    steps: int,
    time_grid: str = "log_snr",
    eps: float | None = None,
    ess_threshold: float = 0.5,
    denoise: bool = True,
    generator: torch.Generator | None = None,
    callback: Callable[[StepInfo], None] | None = None,
) -> tuple[torch.Tensor, dict]:
    """Inpainting by sequential Monte Carlo (module docstring): K particles per example.

    Args:
        known, mask: as `inpaint` (batch, *dims); mask 1 = known.
        n_particles: K, particles per example (the error of the conditional falls like 1 / K).
        steps, time_grid, eps: the ancestral grid (`scoresde.samplers.get_time_grid`).
        ess_threshold: resample when the effective sample size is below this fraction of K.
        denoise: finish the unknown part with Tweedie's formula.
        generator: a single torch.Generator (particles interact, so no per-example generators).

    Returns:
        (x, info): x of shape (batch, K, *dims), equally weighted particles (resampled at the end)
        with the known coordinates equal to `known`; info has "nfe" (batched score evaluations),
        "resamples" (how many times the particles were resampled), "min_ess" (the smallest
        effective sample size met), "time_grid".

    Raises:
        ValueError: n_particles < 1, ess_threshold outside [0, 1], or a bad mask.
    """
    if not isinstance(n_particles, int) or n_particles < 1:
        raise ValueError(f"n_particles must be an integer >= 1, got {n_particles!r}")
    if not 0 <= ess_threshold <= 1:
        raise ValueError(f"ess_threshold must lie in [0, 1], got {ess_threshold!r}")
    if generator is not None and not isinstance(generator, torch.Generator):
        raise ValueError("smc_inpaint takes one torch.Generator: its particles interact, so per-example generators do not apply")
    eps = samplers.DEFAULT_END_TIME if eps is None else eps
    batch, dims, k = known.shape[0], tuple(known.shape[1:]), n_particles
    mask = Replacement(sde, known, mask).mask  # checked and broadcast
    grid = samplers.get_time_grid(time_grid, sde, steps, eps)
    g = GridScales(sde, grid)

    def expand(v):
        return v.unsqueeze(1).expand(batch, k, *dims).reshape(batch * k, *dims)

    path = [expand(y) for y in _forward_path(g, known, generator)]
    mask_k = expand(mask)
    x = sde.prior_sampling((batch * k, *dims), generator=generator, device=known.device).to(known.dtype)
    x = torch.lerp(x, path[0], mask_k)
    log_weights = torch.zeros(batch, k, dtype=torch.float64, device=known.device)
    resamples, min_ess, nfe = 0, float(k), 0
    for i in range(g.n):
        d = g.denoise(score_fn, x, i)
        nfe += 1
        _, mean = samplers.ancestral_step(g, i, x, d, torch.zeros_like(x))
        std = math.sqrt(
            max(g.sigma[i] ** 2 - (g.alpha[i] / g.alpha[i + 1]) ** 2 * g.sigma[i + 1] ** 2, 0.0)
            * g.sigma[i + 1] ** 2
            / g.sigma[i] ** 2
        )
        misfit = (((path[i + 1] - mean) / std) ** 2 * mask_k).reshape(batch, k, -1).sum(dim=2)
        log_weights = log_weights - 0.5 * misfit.double()
        ess = effective_sample_size(log_weights)
        min_ess = min(min_ess, float(ess.min()))
        if i == g.n - 1 or bool((ess < ess_threshold * k).any()):
            index = _systematic_resample(log_weights, generator)
            flat = (index + torch.arange(batch, device=index.device).unsqueeze(1) * k).reshape(-1)
            mean = mean[flat]
            log_weights = torch.zeros_like(log_weights)
            resamples += 1
        noise = torch.randn(mean.shape, generator=generator, dtype=mean.dtype, device=mean.device)
        x = torch.lerp(mean + std * noise, path[i + 1], mask_k)
        report_step(callback, i, g.n, g.t[i], x, d)
    if denoise and g.sigma[-1] > 0:
        x = tweedie(x, score_fn(x, time_vector(g.t[-1], x)), g.alpha[-1], g.sigma[-1])
        nfe += 1
    x = torch.lerp(x, expand(known), mask_k)
    return x.reshape(batch, k, *dims), {"nfe": nfe, "resamples": resamples, "min_ess": min_ess, "time_grid": grid}


def decoupled_score(score_fn: Callable) -> Callable:
    """The score of y = M x in the decoupled colour space (M = `COLOR_DECOUPLING`, per pixel).

    For orthogonal M, log p_y(y) = log p_x(M^T y), so grad_y log p_y(y) = M score(M^T y). The
    forward SDE acts on every coordinate with the same scalar drift and diffusion, so y diffuses
    under the same SDE as x and any sampler applies to y unchanged.
    """

    def score_of_decoupled(y: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return to_decoupled(score_fn(from_decoupled(y), t))

    return score_of_decoupled


def _gray_as_known(gray: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(known, mask) in the decoupled colour space: the first axis sqrt(3) gray known, colour unknown."""
    if gray.ndim < 3 or gray.shape[1] != 1:
        raise ValueError(f"gray must have shape (batch, 1, *spatial), got {tuple(gray.shape)}")
    known = torch.cat([math.sqrt(3.0) * gray, torch.zeros_like(gray), torch.zeros_like(gray)], dim=1)
    mask = torch.zeros_like(known)
    mask[:, 0] = 1
    return known, mask


def smc_colorize(
    sde: SDE, score_fn: Callable, gray: torch.Tensor, *, n_particles: int, steps: int, **smc_kwargs
) -> tuple[torch.Tensor, dict]:
    """Colorization by sequential Monte Carlo: `smc_inpaint` of the colour axes in the decoupled space.

    Args:
        gray: gray images (batch, 1, *spatial) in the model's range (the channel mean).
        n_particles, steps, **smc_kwargs: as `smc_inpaint`; `score_fn` is that of the RGB model.

    Returns:
        (x, info): RGB particles of shape (batch, K, 3, *spatial), each with channel mean `gray`.
    """
    known, mask = _gray_as_known(gray)
    particles, info = smc_inpaint(sde, decoupled_score(score_fn), known, mask, n_particles=n_particles, steps=steps, **smc_kwargs)
    batch, k = particles.shape[:2]
    rgb = from_decoupled(particles.reshape(batch * k, *particles.shape[2:]))
    return rgb.reshape(particles.shape), info


def _check_labels(labels, batch: int | None = None) -> torch.Tensor:
    labels = torch.as_tensor(labels)
    if labels.ndim != 1 or labels.is_floating_point():
        raise ValueError(f"labels must be integers of shape (batch,), got dtype {labels.dtype} and shape {tuple(labels.shape)}")
    if batch is not None and labels.shape[0] != batch:
        raise ValueError(f"got {labels.shape[0]} labels for a batch of {batch}")
    return labels.long()


def _check_guidance(labels, scale: float) -> torch.Tensor:
    if not math.isfinite(scale):
        raise ValueError(f"scale must be finite, got {scale!r}")
    return _check_labels(labels)


def classifier_guidance(score_fn: Callable, classifier_fn: Callable, labels: torch.Tensor, scale: float = 1.0) -> Callable:
    """score(x, t) + scale * grad_x log p_t(labels | x), with p_t from a noise-conditional classifier.

    Args:
        score_fn: the unconditional score_fn(x, t).
        classifier_fn: classifier_fn(x, t) -> logits or log-probabilities, shape (batch, C)
            (normalised here with log_softmax), differentiable in x.
        labels: the class of each example, shape (batch,).
        scale: the guidance scale (1 = Bayes' rule; module docstring).

    Returns:
        a score_fn(x, t) for any sampler.
    """
    labels = _check_guidance(labels, scale)

    def classifier_guided_score(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        _check_labels(labels, x.shape[0])
        score = score_fn(x, t)
        if scale == 0:
            return score
        with torch.enable_grad():
            x_in = x.detach().requires_grad_(True)
            log_probs = torch.log_softmax(classifier_fn(x_in, t).double(), dim=1)
            chosen = log_probs.gather(1, labels.to(x.device).unsqueeze(1)).sum()
            (grad,) = torch.autograd.grad(chosen, x_in)
        return score + scale * grad.to(score.dtype)

    return classifier_guided_score


def classifier_free_guidance(class_score_fn: Callable, labels: torch.Tensor, scale: float = 1.0) -> Callable:
    """s(x, t) + scale * (s(x, t, c) - s(x, t)) from one class-conditional score function.

    Args:
        class_score_fn: class_score_fn(x, t, class_labels) with class_labels of shape (batch,), or
            None for the unconditional score (a `NetworkScore` of a network trained with label
            dropout, or `GaussianMixture.class_score_fn`).
        labels: the class of each example, shape (batch,).
        scale: 1 = conditional, 0 = unconditional (module docstring). Two network evaluations per
            score evaluation unless scale is 0 or 1.

    Returns:
        a score_fn(x, t) for any sampler.
    """
    labels = _check_guidance(labels, scale)

    def classifier_free_guided_score(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        _check_labels(labels, x.shape[0])
        if scale == 0:
            return class_score_fn(x, t, None)
        conditional = class_score_fn(x, t, labels.to(x.device))
        if scale == 1:
            return conditional
        unconditional = class_score_fn(x, t, None)
        return torch.lerp(unconditional, conditional, scale)

    return classifier_free_guided_score


def network_evaluations_per_score(guidance: str, scale: float) -> int:
    """Network calls behind one guided score evaluation (for cost reports): classifier guidance
    adds a classifier forward and backward; classifier-free guidance needs two score passes."""
    if guidance not in GUIDANCE:
        raise ValueError(f"unknown guidance {guidance!r}; valid: {', '.join(GUIDANCE)}")
    return 1 if (guidance == "classifier" or scale in (0, 1)) else 2


def masks(name: str, shape: Sequence[int], *, generator: torch.Generator | None = None, fraction: float = 0.5) -> torch.Tensor:
    """A named image mask of shape `shape` = (C, H, W), 1 = known.

    Names: "left_half", "right_half", "top_half", "bottom_half" (that half known), "center"
    (the central square of side H/2 unknown), "random" (each pixel known with probability
    1 - fraction, the same for all channels).
    """
    c, h, w = shape
    mask = torch.ones(shape)
    if name == "left_half":
        mask[..., w // 2 :] = 0
    elif name == "right_half":
        mask[..., : w // 2] = 0
    elif name == "top_half":
        mask[:, h // 2 :, :] = 0
    elif name == "bottom_half":
        mask[:, : h // 2, :] = 0
    elif name == "center":
        mask[:, h // 4 : h // 4 + h // 2, w // 4 : w // 4 + w // 2] = 0
    elif name == "random":
        if not 0 < fraction < 1:
            raise ValueError(f"fraction (of unknown pixels) must lie in (0, 1), got {fraction!r}")
        mask = (torch.rand((1, h, w), generator=generator) >= fraction).float().expand(c, h, w).clone()
    else:
        raise ValueError(f"unknown mask {name!r}; valid: {', '.join(MASKS)}")
    return mask


MASKS = ("left_half", "right_half", "top_half", "bottom_half", "center", "random")
