"""Exact scores, densities, denoisers and samples of Gaussian mixtures under any SDE of the library.

A Gaussian mixture with diagonal covariances is the one non-trivial data distribution whose
diffused marginals stay in closed form under every linear SDE, so it can stand in for a trained
network anywhere a score function is accepted. That makes it the reference for testing samplers,
likelihoods and losses: here, and in users' own code.

The data distribution is

    p_0(x) = sum_k w_k N(x; mu_k, diag(s_k^2)),

and every SDE of `scoresde.sde_lib` perturbs data with the kernel N(alpha(t) x(0), sigma(t)^2 I)
(Song et al., ICLR 2021, eq. 29 and app. B), so the marginal at time t is again a mixture,

    p_t(x) = sum_k w_k N_k(x),   N_k = N(alpha mu_k, diag(v_k)),   v_k = alpha^2 s_k^2 + sigma^2.

With the responsibilities (the posterior probabilities of the components)

    r_k(x, t) = softmax_k(log w_k + log N_k(x)),

the score and the posterior mean of the data (Tweedie's formula, Efron 2011) are

    grad_x log p_t(x) = sum_k r_k (-(x - alpha mu_k) / v_k),
    E[x(0) | x(t) = x] = sum_k r_k (mu_k + alpha s_k^2 / v_k (x - alpha mu_k))
                       = (x + sigma^2 grad_x log p_t(x)) / alpha.

For a single Gaussian (K = 1) the probability-flow ODE (eq. 13) is linear in x and solved by

    x_t = mu_t + sqrt(v_t / v_s) (x_s - mu_s),   mu = alpha mu_0,   elementwise,

because dv/dt = 2 (d log alpha / dt) v + g^2 for every SDE here. A mixture's flow has no closed form.

Conventions: `t` is a float or a tensor of shape (batch,); for VESDE at t = 0 the kernel still has
std sigma_min (score_sde's convention, see `sde_lib.VESDE`), so p_t at t = 0 is p_0 blurred by it,
while `log_prob(x)` without an SDE is p_0 itself. Parameters are stored in float64; every method
computes in the dtype and on the device of its input `x`.
"""

from __future__ import annotations

import math
from typing import Callable

import torch

from scoresde import integrate
from scoresde.sde_lib import SDE

ScoreFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

_LOG_2PI = math.log(2.0 * math.pi)


def _batch_scales(sde: SDE, t: torch.Tensor | float, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """alpha(t) and sigma(t) of shape (batch,), in the dtype and on the device of `x`.

    Raises:
        ValueError: if t is outside [0, T] or a 1-D t does not have one entry per example.
    """
    if not torch.is_tensor(t):  # a Python float, converted at x's precision
        t = torch.tensor(float(t), dtype=x.dtype, device=x.device)
    t = sde.check_time(t, x)
    if t.ndim == 0:
        t = t.expand(x.shape[0])
    elif t.shape[0] != x.shape[0]:
        raise ValueError(f"t must be a float or have shape (batch,) = ({x.shape[0]},), got {tuple(t.shape)}")
    return sde.scales(t)


def _float64_time(t: float | torch.Tensor | None) -> torch.Tensor:
    """A scalar time as a 0-d float64 CPU tensor (`_check_sde_and_time` has refused None with an SDE)."""
    assert t is not None
    return torch.as_tensor(t, dtype=torch.float64).cpu().reshape(())


def _check_sde_and_time(sde: SDE | None, t) -> None:
    """Both or neither of `sde` and `t` must be given."""
    if (sde is None) != (t is None):
        raise ValueError("give both sde and t (for p_t) or neither (for the data distribution p_0)")


class GaussianMixture:
    """p_0 = sum_k w_k N(mu_k, diag(s_k^2)), with its exact marginals under any SDE (module docstring).

    Args:
        weights: shape (K,), positive; normalised to sum to one.
        means: shape (K, *event_shape), with at least one event dimension.
        stds: positive; a scalar, shape (K,) (one std per component; a 1-D `stds` of length K is
            always read this way), or any shape broadcastable to (K, *event_shape).

    Raises:
        ValueError: for non-positive or non-finite weights or stds, or inconsistent shapes.
    """

    def __init__(self, weights, means, stds):
        weights = torch.as_tensor(weights, dtype=torch.float64).detach()
        means = torch.as_tensor(means, dtype=torch.float64).detach()
        stds = torch.as_tensor(stds, dtype=torch.float64).detach()
        if weights.ndim != 1 or weights.numel() == 0:
            raise ValueError(f"weights must have shape (K,) with K >= 1, got {tuple(weights.shape)}")
        if not bool(torch.all(torch.isfinite(weights) & (weights > 0))):
            raise ValueError(f"weights must be finite and > 0, got {weights.tolist()}")
        n = weights.shape[0]
        if means.ndim < 2 or means.shape[0] != n:
            raise ValueError(
                f"means must have shape (K, *event_shape) = ({n}, ...) with at least one event "
                f"dimension, got {tuple(means.shape)}"
            )
        if stds.ndim == 1 and stds.shape[0] == n:
            stds = stds.reshape(n, *([1] * (means.ndim - 1)))
        try:
            stds = torch.broadcast_to(stds, means.shape).clone()
        except RuntimeError:
            raise ValueError(
                f"stds must have shape (K,) = ({n},) or broadcast to means' shape {tuple(means.shape)}, got {tuple(stds.shape)}"
            ) from None
        if not bool(torch.all(torch.isfinite(stds) & (stds > 0))):
            raise ValueError("stds must be finite and > 0")
        self.weights = weights / weights.sum()
        self.log_weights = torch.log(self.weights)
        self.means = means.clone()
        self.stds = stds

    def __repr__(self) -> str:
        return f"GaussianMixture(n_components={self.n_components}, event_shape={self.event_shape})"

    @property
    def event_shape(self) -> tuple[int, ...]:
        """The shape of one example."""
        return tuple(self.means.shape[1:])

    @property
    def dim(self) -> int:
        """The number of coordinates of one example."""
        return math.prod(self.event_shape)

    @property
    def n_components(self) -> int:
        """K, the number of mixture components."""
        return self.means.shape[0]

    # -- moments and samples ----------------------------------------------------------------------
    def mean(self, sde: SDE | None = None, t: float | None = None) -> torch.Tensor:
        """E[x] = sum_k w_k mu_k under p_0, or alpha(t) E[x] under p_t; float64, shape event_shape."""
        _check_sde_and_time(sde, t)
        weights = self.weights.reshape(-1, *([1] * len(self.event_shape)))
        mean = (weights * self.means).sum(0)
        return mean if sde is None else sde.alpha(_float64_time(t)) * mean

    def covariance_diagonal(self, sde: SDE | None = None, t: float | None = None) -> torch.Tensor:
        """Per-coordinate variance of p_0, sum_k w_k (s_k^2 + mu_k^2) - E[x]^2, or of p_t.

        Under p_t it is alpha(t)^2 Var_0 + sigma(t)^2. Float64, shape event_shape.
        """
        _check_sde_and_time(sde, t)
        weights = self.weights.reshape(-1, *([1] * len(self.event_shape)))
        mean = (weights * self.means).sum(0)
        variance = (weights * (self.stds**2 + self.means**2)).sum(0) - mean**2
        if sde is None:
            return variance
        alpha, sigma = sde.alpha(_float64_time(t)), sde.sigma(_float64_time(t))
        return alpha**2 * variance + sigma**2

    def sample(
        self,
        n: int,
        *,
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> torch.Tensor:
        """n exact draws of x(0) ~ p_0, shape (n, *event_shape).

        The component comes from `torch.multinomial`, then x = mu_k + s_k z; both are drawn in
        float64 on the generator's device (CPU without one) and cast to `device` and `dtype`.

        Raises:
            ValueError: if n is not a non-negative integer.
        """
        return self._sample(None, None, n, generator, device, dtype)

    def sample_marginal(
        self,
        sde: SDE,
        t: float | torch.Tensor,
        n: int,
        *,
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> torch.Tensor:
        """n exact draws of x(t) ~ p_t, shape (n, *event_shape): x = alpha mu_k + sqrt(v_k) z.

        Args:
            sde: the forward SDE.
            t: a float in [0, T], or a tensor of shape (n,) (one time per draw).

        Raises:
            ValueError: if n is not a non-negative integer or t is outside [0, T].
        """
        return self._sample(sde, t, n, generator, device, dtype)

    def _sample(self, sde, t, n, generator, device, dtype) -> torch.Tensor:
        """Draws of p_0 (sde None) or p_t: component k, then alpha mu_k + sqrt(v_k) z, in float64."""
        if not isinstance(n, int) or isinstance(n, bool) or n < 0:
            raise ValueError(f"n must be a non-negative integer, got {n!r}")
        work = generator.device if generator is not None else torch.device(device or "cpu")
        means, stds = self.means.to(work), self.stds.to(work)
        if n == 0:
            k = torch.zeros(0, dtype=torch.long, device=work)
        else:
            k = torch.multinomial(self.weights.to(work), n, replacement=True, generator=generator)
        z = torch.randn((n, *self.event_shape), generator=generator, dtype=torch.float64, device=work)
        if sde is None:
            x = means[k] + stds[k] * z
        else:
            shape = (n, *([1] * len(self.event_shape)))
            alpha, sigma = (v.reshape(shape) for v in _batch_scales(sde, t, z))
            x = alpha * means[k] + torch.sqrt(alpha**2 * stds[k] ** 2 + sigma**2) * z
        return x.to(device=device if device is not None else work, dtype=dtype)

    # -- densities, scores and denoisers --------------------------------------------------------
    def _check_x(self, x: torch.Tensor) -> None:
        if not torch.is_tensor(x) or not x.is_floating_point():
            raise TypeError(f"x must be a floating-point tensor, got {type(x).__name__}")
        if tuple(x.shape[1:]) != self.event_shape or x.ndim != len(self.event_shape) + 1:
            raise ValueError(f"x must have shape (batch, *event_shape) with event_shape {self.event_shape}, got {tuple(x.shape)}")

    def _components(self, x, sde, t):
        """alpha, x - alpha mu_k, v_k and log w_k + log N_k(x) in the dtype and device of x.

        Returns:
            alpha of shape (batch, 1, *[1]) (or () for p_0); diff and var of shape
            (batch, K, *event_shape) (var may have a leading 1); log_joint of shape (batch, K).
        """
        self._check_x(x)
        _check_sde_and_time(sde, t)
        means, variances = self.means.to(x), self.stds.to(x) ** 2
        if sde is None:
            alpha, var = x.new_ones(()), variances.unsqueeze(0)
        else:
            alpha_t, sigma_t = _batch_scales(sde, t, x)
            shape = (x.shape[0], 1, *([1] * len(self.event_shape)))
            alpha, sigma = alpha_t.reshape(shape), sigma_t.reshape(shape)
            var = alpha**2 * variances + sigma**2
        diff = x.unsqueeze(1) - alpha * means
        log_normal = -0.5 * (diff**2 / var + torch.log(var) + _LOG_2PI).flatten(2).sum(2)
        return alpha, diff, var, self.log_weights.to(x) + log_normal

    def _expand_responsibilities(self, log_joint: torch.Tensor) -> torch.Tensor:
        """softmax over components, shaped (batch, K, 1, ..., 1) to weight per-component tensors."""
        r = torch.softmax(log_joint, dim=1)
        return r.reshape(*r.shape, *([1] * len(self.event_shape)))

    def log_prob(self, x: torch.Tensor, sde: SDE | None = None, t: torch.Tensor | float | None = None) -> torch.Tensor:
        """log p_t(x) (log p_0(x) when sde and t are omitted), by logsumexp over components.

        Args:
            x: shape (batch, *event_shape).
            sde: the forward SDE, or None for the data distribution.
            t: a float or a tensor of shape (batch,) in [0, T]; given exactly when sde is.

        Returns:
            shape (batch,), in x's dtype; differentiable in x.

        Raises:
            TypeError: if x is not a floating-point tensor.
            ValueError: for a wrong shape of x or t, t outside [0, T], or only one of sde and t.
        """
        return torch.logsumexp(self._components(x, sde, t)[3], dim=1)

    def responsibilities(self, x: torch.Tensor, sde: SDE | None = None, t: torch.Tensor | float | None = None) -> torch.Tensor:
        """r_k(x, t) = P(component k | x(t) = x), shape (batch, K); arguments and errors as `log_prob`."""
        return torch.softmax(self._components(x, sde, t)[3], dim=1)

    def score(self, x: torch.Tensor, t: torch.Tensor | float, sde: SDE) -> torch.Tensor:
        """grad_x log p_t(x) = sum_k r_k (-(x - alpha mu_k) / v_k), shaped like x.

        Args:
            x: shape (batch, *event_shape).
            t: a float or a tensor of shape (batch,) in [0, T].
            sde: the forward SDE.

        Raises:
            TypeError, ValueError: as `log_prob`.
        """
        _, diff, var, log_joint = self._components(x, sde, t)
        return -(self._expand_responsibilities(log_joint) * diff / var).sum(1)

    def score_fn(self, sde: SDE) -> ScoreFn:
        """The exact score as a plain `score_fn(x, t)` (t of shape (batch,)), usable wherever a
        network's score function is accepted (samplers, likelihood, `SDE.reverse`)."""

        def exact_score(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            return self.score(x, t, sde)

        return exact_score

    def denoiser(self, x: torch.Tensor, t: torch.Tensor | float, sde: SDE) -> torch.Tensor:
        """E[x(0) | x(t) = x] = sum_k r_k (mu_k + alpha s_k^2 / v_k (x - alpha mu_k)), shaped like x.

        Equal to Tweedie's (x + sigma^2 score) / alpha, but computed without dividing by alpha, so
        it stays accurate where alpha(t) is small. Arguments and errors as `score`.
        """
        alpha, diff, var, log_joint = self._components(x, sde, t)
        means, variances = self.means.to(x), self.stds.to(x) ** 2
        posterior_means = means + alpha * variances / var * diff
        return (self._expand_responsibilities(log_joint) * posterior_means).sum(1)

    def flow(self, x_s: torch.Tensor, s: torch.Tensor | float, t: torch.Tensor | float, sde: SDE) -> torch.Tensor:
        """Exact probability-flow ODE solution from time s to time t, for K = 1 only.

        x_t = mu_t + sqrt(v_t / v_s) (x_s - mu_s) elementwise, with mu = alpha mu_0 and
        v = alpha^2 s_0^2 + sigma^2 (Song et al. 2021, eq. 13, solved for Gaussian data). Either
        direction works (t < s integrates backwards in time).

        Args:
            x_s: shape (batch, *event_shape), a state at time s.
            s, t: floats or tensors of shape (batch,) in [0, T].
            sde: the forward SDE.

        Returns:
            x_t, shaped like x_s.

        Raises:
            ValueError: for a mixture (K > 1), whose flow has no closed form; as `score` otherwise.
        """
        if self.n_components != 1:
            raise ValueError(
                f"flow needs a single Gaussian, this mixture has K = {self.n_components} components: "
                "the probability-flow ODE of a mixture has no closed form (integrate it with a solver)"
            )
        self._check_x(x_s)
        mu, variance = self.means[0].to(x_s), self.stds[0].to(x_s) ** 2
        moments = []
        for time in (s, t):
            alpha, sigma = (v.reshape(-1, *([1] * len(self.event_shape))) for v in _batch_scales(sde, time, x_s))
            moments.append((alpha * mu, alpha**2 * variance + sigma**2))
        (mu_s, v_s), (mu_t, v_t) = moments
        return mu_t + torch.sqrt(v_t / v_s) * (x_s - mu_s)

    def solve_flow(self, x_T: torch.Tensor, sde: SDE, *, rtol: float = 1e-10, atol: float = 1e-12) -> torch.Tensor:
        """The probability-flow ODE solution from x(T) = x_T down to zero noise, for any mixture.

        Solved in the scaled variables y = x / alpha, s = sigma / alpha, where every SDE's flow is
        dy/ds = -s grad_y log q_s(y) with q_s = p_0 * N(0, s^2 I) (Karras et al. 2022, eq. 4): regular
        down to s = 0, where y is the sample. Integrated in float64 by scipy's DOP853
        (`integrate.solve`, backend "scipy": scipy's 8th-order code, not the samplers' default
        solver), all examples as one system; `rtol`, `atol` as in `solve_ivp`.

        Args:
            x_T: shape (batch, *event_shape), states at time T of `sde`.
            sde: the forward SDE.

        Returns:
            The endpoints, float64, shaped like x_T.

        Raises:
            FloatingPointError: the solve failed (scipy's message).
        """
        self._check_x(x_T)
        T = torch.tensor(sde.T, dtype=torch.float64)
        alpha = sde.alpha(T).item()
        s_max = sde.sigma(T).item() / alpha
        variances = self.stds**2

        def rhs(y: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
            s = s.reshape(-1, *([1] * len(self.event_shape)))  # (batch, 1, ...): per example
            var = variances + s[:, None] ** 2  # (batch, K, *event_shape)
            diff = y.unsqueeze(1) - self.means
            log_joint = self.log_weights - 0.5 * (diff**2 / var + torch.log(var)).flatten(2).sum(2)
            score = -(self._expand_responsibilities(log_joint) * diff / var).sum(1)
            return -s * score

        y_T = x_T.detach().cpu().double() / alpha
        return integrate.solve(rhs, y_T, s_max, 0.0, backend="scipy", method="DOP853", rtol=rtol, atol=atol).y

    # -- standard benchmark problems ----------------------------------------------------------------------

    # -- conditioning (controllable generation) -------------------------------------------------
    def subset(self, components) -> "GaussianMixture":
        """The mixture of the given components only, weights renormalised: p_0(x | k in components).

        With components grouped into classes, `subset` of a class's components is the exact
        class-conditional distribution p_0(x | c).
        """
        index = torch.as_tensor(components, dtype=torch.long).reshape(-1)
        if index.numel() == 0 or int(index.min()) < 0 or int(index.max()) >= self.n_components:
            raise ValueError(f"components must be a non-empty list of indices in [0, {self.n_components}), got {index.tolist()}")
        return GaussianMixture(self.weights[index], self.means[index], self.stds[index])

    def _class_mask(self, component_classes, labels: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """0 where component k belongs to example i's class, -inf elsewhere; shape (batch, K)."""
        classes = torch.as_tensor(component_classes, dtype=torch.long, device=like.device).reshape(-1)
        if classes.shape[0] != self.n_components:
            raise ValueError(f"component_classes needs one class per component ({self.n_components}), got {classes.shape[0]}")
        labels = torch.as_tensor(labels, dtype=torch.long, device=like.device).reshape(-1)
        if labels.shape[0] != like.shape[0]:
            raise ValueError(f"labels must have shape (batch,) = ({like.shape[0]},), got {tuple(labels.shape)}")
        member = classes.unsqueeze(0) == labels.unsqueeze(1)
        if not bool(member.any(dim=1).all()):
            raise ValueError(
                f"labels {sorted(set(labels.tolist()) - set(classes.tolist()))} name no component; "
                f"classes present: {sorted(set(classes.tolist()))}"
            )
        return torch.zeros(member.shape, dtype=like.dtype, device=like.device).masked_fill_(~member, -math.inf)

    def class_log_posterior(self, x: torch.Tensor, sde: SDE, t: torch.Tensor | float, component_classes) -> torch.Tensor:
        """log P(c | x(t) = x) for every class c, shape (batch, C): the exact noise-conditional classifier.

        With components grouped into classes by `component_classes` (shape (K,), values 0..C-1),
        P(c | x_t) = sum_{k in c} r_k(x, t). Differentiable in x: its gradient is the exact
        classifier-guidance term.
        """
        classes = torch.as_tensor(component_classes, dtype=torch.long).reshape(-1)
        if classes.shape[0] != self.n_components:
            raise ValueError(f"component_classes needs one class per component ({self.n_components}), got {classes.shape[0]}")
        log_joint = self._components(x, sde, t)[3]
        n_classes = int(classes.max()) + 1
        member = classes.to(x.device).unsqueeze(0) == torch.arange(n_classes, device=x.device).unsqueeze(1)  # (C, K)
        masked = log_joint.unsqueeze(1).masked_fill(~member.unsqueeze(0), -math.inf)  # (batch, C, K)
        return torch.logsumexp(masked, dim=2) - torch.logsumexp(log_joint, dim=1, keepdim=True)

    def class_score_fn(self, sde: SDE, component_classes) -> Callable:
        """The exact class-conditional score as `score_fn(x, t, class_labels=None)`.

        class_labels (shape (batch,)) picks each example's class: the score of p_t(x | c), the
        mixture of that class's components; None gives the unconditional score. The convention
        of a class-conditional network's score function (`scoresde.score.NetworkScore`).
        """

        def exact_class_score(x: torch.Tensor, t: torch.Tensor, class_labels: torch.Tensor | None = None) -> torch.Tensor:
            _, diff, var, log_joint = self._components(x, sde, t)
            if class_labels is not None:
                log_joint = log_joint + self._class_mask(component_classes, class_labels, x)
            return -(self._expand_responsibilities(log_joint) * diff / var).sum(1)

        return exact_class_score

    def condition(self, known_mask, values) -> "GaussianMixture":
        """The exact conditional p_0(x_u | x_k = values) of the unknown coordinates given the known.

        Within a component the coordinates are independent (diagonal covariances), so the
        conditional is the mixture of the components' unknown parts with posterior weights
        w_k N(values_k; mu_k, s_k^2) / sum_j (...), evaluated on the known coordinates only.

        Args:
            known_mask: bool, shaped like one example (True = known).
            values: one example's values (only the known coordinates are read).

        Returns:
            a mixture with event_shape (number of unknown coordinates,), in the flattened order.
        """
        mask = torch.as_tensor(known_mask, dtype=torch.bool).cpu()
        values = torch.as_tensor(values, dtype=torch.float64).cpu()
        if tuple(mask.shape) != self.event_shape or tuple(values.shape) != self.event_shape:
            raise ValueError(
                f"known_mask and values must have the event shape {self.event_shape}, got "
                f"{tuple(mask.shape)} and {tuple(values.shape)}"
            )
        known, unknown = mask.reshape(-1), ~mask.reshape(-1)
        if not bool(unknown.any()):
            raise ValueError("known_mask marks every coordinate as known: nothing to condition")
        means, stds = self.means.reshape(self.n_components, -1), self.stds.reshape(self.n_components, -1)
        y = values.reshape(-1)[known]
        var = stds[:, known] ** 2
        log_lik = -0.5 * ((y - means[:, known]) ** 2 / var + torch.log(var) + _LOG_2PI).sum(1)
        posterior = torch.softmax(self.log_weights + log_lik, dim=0)
        keep = posterior > 0  # components that y rules out entirely (underflow) are dropped
        return GaussianMixture(posterior[keep], means[keep][:, unknown], stds[keep][:, unknown])


def gaussian(mean, std) -> GaussianMixture:
    """A single Gaussian N(mean, diag(std^2)) (K = 1), whose probability-flow ODE `flow` solves exactly.

    Args:
        mean: shape event_shape (at least one dimension).
        std: positive; a scalar or broadcastable to `mean`.

    Raises:
        ValueError: as `GaussianMixture`.
    """
    mean = torch.as_tensor(mean, dtype=torch.float64)
    if mean.ndim == 0:
        raise ValueError("mean must have at least one dimension (the event shape), got a scalar")
    std = torch.as_tensor(std, dtype=torch.float64)
    return GaussianMixture(torch.ones(1, dtype=torch.float64), mean.unsqueeze(0), std.unsqueeze(0))


def ring(n_components: int = 8, radius: float = 1.0, std: float = 0.05) -> GaussianMixture:
    """Equal-weight isotropic 2-D Gaussians with means radius (cos, sin)(2 pi k / K), k = 0..K-1.

    The classic multi-modal toy problem: with std << radius the modes are well separated and a
    sampler that misses or misweights some is easy to spot.

    Raises:
        ValueError: if n_components < 1, radius < 0 or std <= 0.
    """
    if not isinstance(n_components, int) or n_components < 1:
        raise ValueError(f"n_components must be an integer >= 1, got {n_components!r}")
    if not radius >= 0:
        raise ValueError(f"radius must be >= 0, got {radius!r}")
    angles = 2.0 * math.pi * torch.arange(n_components, dtype=torch.float64) / n_components
    means = radius * torch.stack([torch.cos(angles), torch.sin(angles)], dim=1)
    return GaussianMixture(torch.ones(n_components, dtype=torch.float64), means, std)


def stiff(dim: int = 64, n_components: int = 4, min_std: float = 0.01, max_std: float = 1.0, seed: int = 0) -> GaussianMixture:
    """An equal-weight mixture in `dim` dimensions with widely spread per-dimension scales.

    Every component has the same stds, log-spaced from `min_std` (coordinate 0) to `max_std`
    (coordinate dim - 1): like image data, some directions are nearly deterministic, which makes
    the score stiff at small t. The means are N(0, I) draws from a generator seeded with `seed`,
    so the problem is a deterministic function of the arguments.

    Returns:
        a mixture with event_shape (dim,).

    Raises:
        ValueError: if dim < 1, n_components < 1, min_std <= 0 or max_std < min_std.
    """
    if not isinstance(dim, int) or dim < 1:
        raise ValueError(f"dim must be an integer >= 1, got {dim!r}")
    if not isinstance(n_components, int) or n_components < 1:
        raise ValueError(f"n_components must be an integer >= 1, got {n_components!r}")
    if not (min_std > 0 and max_std >= min_std):
        raise ValueError(f"need 0 < min_std <= max_std, got min_std={min_std!r}, max_std={max_std!r}")
    log_stds = torch.linspace(math.log(min_std), math.log(max_std), dim, dtype=torch.float64)
    generator = torch.Generator().manual_seed(seed)
    means = torch.randn((n_components, dim), generator=generator, dtype=torch.float64)
    stds = torch.exp(log_stds).expand(n_components, dim)
    return GaussianMixture(torch.ones(n_components, dtype=torch.float64), means, stds)
