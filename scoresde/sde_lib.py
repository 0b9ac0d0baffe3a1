"""Stochastic differential equations that diffuse data into noise.

Song et al., "Score-Based Generative Modeling through Stochastic Differential Equations",
ICLR 2021 (arXiv:2011.13456), write the forward process as the Itô SDE (their eq. 5)

    dx = f(x, t) dt + g(t) dw,   t in [0, T],

whose reverse in time is (eq. 6)

    dx = [f(x, t) - g(t)^2 grad_x log p_t(x)] dt + g(t) dw_bar,

and whose probability-flow ODE has the same marginals p_t (eq. 13)

    dx/dt = f(x, t) - 1/2 g(t)^2 grad_x log p_t(x).

Every SDE here is linear in x, so its perturbation kernel is Gaussian,

    p_0t(x(t) | x(0)) = N(alpha(t) x(0), sigma(t)^2 I),

and the whole library is written in terms of the two scalar functions alpha(t) (`alpha`) and
sigma(t) (`sigma`), and the log signal-to-noise ratio lambda(t) = log(alpha^2 / sigma^2)
(`log_snr`) with its inverse (`t_from_log_snr`). Losses, samplers and the score adapter ask an SDE
for these instead of testing its type, so a user-defined subclass works everywhere: writing
`_alpha` and `_sigma` is enough (the drift, diffusion, inverse log-SNR and prior are then derived;
see `SDE`).

    VPSDE        linear beta(t), the limit of DDPM                     (Song et al. 2021, eq. 11)
    subVPSDE     VP's drift with a smaller diffusion                   (Song et al. 2021, eq. 12)
    VESDE        geometric sigma(t), the limit of SMLD / NCSN          (Song et al. 2021, eq. 9)
    CosineVPSDE  VP with the cosine schedule of improved DDPM          (Nichol & Dhariwal 2021)
    EDMSDE       sigma(t) = t, alpha = 1, T = sigma_max                (Karras et al. 2022)

Conventions follow score_sde (Song et al.'s code): T = 1, `N` is the number of steps of the
discrete chain the SDE is the limit of (DDPM for VP, SMLD/NCSN for VE) and only a default for
samplers, `t` is a tensor of shape (batch,) (a Python float or a 0-d tensor is accepted too), and
every method works for data of any shape (batch, *dims).
"""

from __future__ import annotations

import abc
import inspect
import math
from typing import Any, Callable, Mapping

import torch

ScoreFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def time_vector(t: float, x: torch.Tensor) -> torch.Tensor:
    """One time t per example of `x`: shape (batch,), x's dtype and device (what a score function takes)."""
    return torch.full((x.shape[0],), t, dtype=x.dtype, device=x.device)


def broadcast_to_data(v: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Reshape a per-example tensor of shape (batch,) (or a scalar) to broadcast against `x`.

    Args:
        v: shape (batch,) or () .
        x: shape (batch, *dims).

    Returns:
        `v` viewed as (batch, 1, ..., 1) with x.ndim dimensions (a 0-d `v` is returned as is).
    """
    if v.ndim == 0:
        return v
    return v.reshape(v.shape[0], *([1] * (x.ndim - 1)))


class SDE(abc.ABC):
    """A linear forward SDE dx = f(x, t) dt + g(t) dw with Gaussian perturbation kernels.

    A subclass writes two functions of a validated time tensor, `_alpha` and `_sigma`; everything
    else is derived here from them, and a subclass overrides a derivation only to give a closed form:

        _drift_and_diffusion  f = (d log alpha / dt) x and g^2 = d sigma^2/dt - 2 (d log alpha/dt) sigma^2,
                              the coefficients of the linear SDE whose kernel is N(alpha x(0), sigma^2 I)
                              (Kingma et al. 2021, "Variational Diffusion Models", app. A), computed by
                              automatic differentiation in t;
        t_from_log_snr        the inverse of log_snr by bisection on [0, T];
        prior_sampling / prior_logp
                              N(0, sigma(T)^2 I);
        discretize            Euler–Maruyama with step T / N (VP and VE use their DDPM / SMLD chains).

    The one requirement on a schedule is that sigma / alpha increases strictly with t (otherwise g^2
    would be negative and no forward SDE has these marginals). A subclass whose times do not run
    over [0, 1] overrides `T`.

    Args:
        N: number of discretization steps of the discrete chain (a default for samplers).

    Raises:
        ValueError: if N < 1.
    """

    def __init__(self, N: int):
        if not isinstance(N, int) or isinstance(N, bool) or N < 1:
            raise ValueError(f"N (number of discretization steps) must be an integer >= 1, got {N!r}")
        self.N = N

    @property
    def T(self) -> float:
        """End time of the forward SDE."""
        return 1.0

    # -- what a subclass writes ------------------------------------------------------------
    @abc.abstractmethod
    def _alpha(self, t: torch.Tensor) -> torch.Tensor:
        """alpha(t), the scale of x(0) in the perturbation kernel, for a validated t."""

    @abc.abstractmethod
    def _sigma(self, t: torch.Tensor) -> torch.Tensor:
        """sigma(t), the noise std of the perturbation kernel, for a validated t."""

    # -- derived, overridden where a closed form exists ---------------------------------------
    def _drift_and_diffusion(self, x: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """f(x, t) shaped like x, and g(t) shaped like t, for a validated t.

        The linear SDE dx = c(t) x dt + g(t) dw has mean alpha(t) x(0) with c = d log alpha / dt and
        variance obeying d sigma^2 / dt = 2 c sigma^2 + g^2; both derivatives come from autograd.
        Where autograd gives no finite value (typically at t = 0 when sigma is written through a
        square root of zero), the coefficients are the limit from above, taken one float epsilon later.
        """
        c, g2 = self._derived_coefficients(t)
        bad = ~(torch.isfinite(c) & torch.isfinite(g2))
        if bool(bad.any()):
            nudged = torch.where(bad, t + torch.finfo(t.dtype).eps * self.T, t)
            c, g2 = self._derived_coefficients(nudged)
        return broadcast_to_data(c, x) * x, torch.sqrt(g2.clamp_min(0.0))

    def _derived_coefficients(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """c(t) = d log alpha / dt and g(t)^2 = d sigma^2 / dt - 2 c sigma^2, by autograd in t."""
        with torch.inference_mode(False), torch.enable_grad():
            tt = t.detach().clone().requires_grad_(True)
            log_alpha, variance = torch.log(self._alpha(tt)), self._sigma(tt) ** 2
            c, dvar = _time_derivative(log_alpha, tt), _time_derivative(variance, tt)
        return c.detach(), (dvar - 2.0 * c * variance).detach()

    def t_from_log_snr(self, log_snr: torch.Tensor) -> torch.Tensor:
        """The inverse of `log_snr`: the time t with log(alpha(t)^2 / sigma(t)^2) = log_snr.

        By bisection on [0, T] in float64 (log_snr decreases in t); subclasses give closed forms.
        """
        target = log_snr.to(torch.float64)
        low, high = torch.zeros_like(target), torch.full_like(target, self.T)
        for _ in range(64):  # 2^-64 T: below float64 resolution
            mid = 0.5 * (low + high)
            too_early = 2.0 * (torch.log(self._alpha(mid)) - torch.log(self._sigma(mid))) > target
            low, high = torch.where(too_early, mid, low), torch.where(too_early, high, mid)
        return (0.5 * (low + high)).to(log_snr.dtype)

    def prior_sampling(
        self,
        shape: tuple[int, ...],
        *,
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> torch.Tensor:
        """Draw x(T) from the prior p_T, shape `shape` = (batch, *dims); by default N(0, sigma(T)^2 I)."""
        return _gaussian_prior_sample(shape, generator, device, dtype, self._prior_std())

    def prior_logp(self, z: torch.Tensor) -> torch.Tensor:
        """log p_T(z) summed over all but the batch dimension; shape (batch,)."""
        return _standard_normal_logp(z, self._prior_std())

    def _prior_std(self) -> float:
        return float(self._sigma(torch.tensor(self.T, dtype=torch.float64)))

    # -- validated public API ----------------------------------------------------------------
    def check_time(self, t: torch.Tensor | float, like: torch.Tensor | None = None) -> torch.Tensor:
        """Turn `t` into a tensor and check that it lies in [0, T].

        Args:
            t: a float, a 0-d tensor or a tensor of shape (batch,).
            like: optional tensor whose device (and floating dtype) `t` is moved to.

        Returns:
            `t` as a floating tensor.

        Raises:
            ValueError: if any t is outside [0, T] or is NaN, or t has more than one dimension.
        """
        if not torch.is_tensor(t):  # a Python number: keep its full precision
            t = torch.tensor(float(t), dtype=like.dtype if like is not None and like.is_floating_point() else torch.float64)
        if like is not None:
            dtype = like.dtype if like.is_floating_point() else torch.get_default_dtype()
            t = t.to(device=like.device, dtype=dtype)
        elif not t.is_floating_point():
            t = t.to(torch.get_default_dtype())
        if t.ndim > 1:
            raise ValueError(f"t must be a scalar or a 1-D tensor of shape (batch,), got shape {tuple(t.shape)}")
        if bool(torch.any((t < 0) | (t > self.T) | torch.isnan(t))):
            raise ValueError(f"t must lie in [0, T] = [0, {self.T}], got values in [{t.min().item()}, {t.max().item()}]")
        return t

    def sde(self, x: torch.Tensor, t: torch.Tensor | float) -> tuple[torch.Tensor, torch.Tensor]:
        """Drift f(x, t) (shaped like x) and diffusion g(t) (shape (batch,) or ()) of eq. 5."""
        return self._drift_and_diffusion(x, self.check_time(t, x))

    def scales(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(alpha(t), sigma(t)) for a t the caller has validated (`check_time`) or produced itself.

        The unchecked accessor for code inside a sampler, a loss or a network wrapper: the
        validation of `alpha` / `sigma` is a host synchronisation per call, which a loop that
        checked its times once at its entry should not pay at every step.
        """
        return self._alpha(t), self._sigma(t)

    def alpha(self, t: torch.Tensor | float) -> torch.Tensor:
        """alpha(t): the mean of the perturbation kernel is alpha(t) x(0)."""
        return self._alpha(self.check_time(t))

    def sigma(self, t: torch.Tensor | float) -> torch.Tensor:
        """sigma(t): the standard deviation of the perturbation kernel."""
        return self._sigma(self.check_time(t))

    def log_snr(self, t: torch.Tensor | float) -> torch.Tensor:
        """lambda(t) = log(alpha(t)^2 / sigma(t)^2), decreasing in t (Kingma et al. 2021)."""
        t = self.check_time(t)
        return 2.0 * (torch.log(self._alpha(t)) - torch.log(self._sigma(t)))

    def marginal_prob(self, x: torch.Tensor, t: torch.Tensor | float) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean alpha(t) x(0) (shaped like x) and std sigma(t) (shape (batch,)) of p_0t(x(t) | x(0))."""
        t = self.check_time(t, x)
        return broadcast_to_data(self._alpha(t), x) * x, self._sigma(t)

    def perturb(self, x0: torch.Tensor, t: torch.Tensor | float, noise: torch.Tensor) -> torch.Tensor:
        """x(t) = alpha(t) x(0) + sigma(t) z, a draw from p_0t(. | x(0)) given z ~ N(0, I)."""
        mean, std = self.marginal_prob(x0, t)
        return mean + broadcast_to_data(std, x0) * noise

    def discretize(self, x: torch.Tensor, t: torch.Tensor | float) -> tuple[torch.Tensor, torch.Tensor]:
        """One step of the discrete chain x_{i+1} = x_i + f_i + G_i z_i at t = t_i.

        The default is Euler–Maruyama with step T / N: f_i = f(x, t) T/N, G_i = g(t) sqrt(T/N).
        VP and VE override it with the DDPM and SMLD chains they are the limits of.

        Returns:
            f_i shaped like x and G_i of shape (batch,).
        """
        drift, diffusion = self.sde(x, t)
        dt = self.T / self.N
        return drift * dt, diffusion * math.sqrt(dt)

    def reverse(self, score_fn: ScoreFn, probability_flow: bool = False) -> "ReverseSDE":
        """The reverse-time SDE (eq. 6) or the probability-flow ODE (eq. 13) for `score_fn`."""
        return ReverseSDE(self, score_fn, probability_flow)

    def discrete_marginals(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(alpha_i, sigma_i) for i = 0..N-1 of the discrete chain this SDE is the limit of.

        Used by the discrete DDPM / SMLD losses. SDEs without such a chain raise.

        Raises:
            ValueError: always, in the base class.
        """
        raise ValueError(
            f"{type(self).__name__} has no discrete chain with closed-form marginals; use the continuous-time DSM loss"
        )

    def discrete_index(self, t: torch.Tensor) -> torch.Tensor:
        """Index i of the discrete chain at time t: round-down of t (N - 1) / T, as score_sde."""
        return (t * (self.N - 1) / self.T).long().clamp(0, self.N - 1)


class ReverseSDE:
    """dx = [f - g^2 score] dt + g dw_bar, or with probability_flow the ODE dx/dt = f - g^2 score / 2.

    Time runs from T to 0: a step from t to t - h moves x by -drift * h (+ noise). Shares `T`, `N`
    with the forward SDE.
    """

    def __init__(self, forward: SDE, score_fn: ScoreFn, probability_flow: bool = False):
        self.forward = forward
        self.score_fn = score_fn
        self.probability_flow = probability_flow
        self.T = forward.T
        self.N = forward.N

    def _reversed(self, x: torch.Tensor, t: torch.Tensor | float, forward_step) -> tuple[torch.Tensor, torch.Tensor]:
        """(f - w G^2 score, G or 0) from a forward (f, G) pair; w = 1/2 for the ODE, else 1."""
        t = self.forward.check_time(t, x)
        f, G = forward_step(x, t)
        score = self.score_fn(x, t.expand(x.shape[0]) if t.ndim == 0 else t)
        weight = 0.5 if self.probability_flow else 1.0
        reverse_f = f - broadcast_to_data(G**2, x) * score * weight
        return reverse_f, torch.zeros_like(G) if self.probability_flow else G

    def sde(self, x: torch.Tensor, t: torch.Tensor | float) -> tuple[torch.Tensor, torch.Tensor]:
        """Drift f - w g^2 score and diffusion (g, or 0 for the ODE); w = 1/2 for the ODE else 1."""
        return self._reversed(x, t, self.forward._drift_and_diffusion)

    def discretize(self, x: torch.Tensor, t: torch.Tensor | float) -> tuple[torch.Tensor, torch.Tensor]:
        """The reverse of the forward chain step: f_i - w G_i^2 score and G_i (0 for the ODE)."""
        return self._reversed(x, t, self.forward.discretize)


def _time_derivative(value: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """d value / dt elementwise (value[i] depends on t[i] only); zero for a constant."""
    if not value.requires_grad:
        return torch.zeros_like(t)
    return torch.autograd.grad(value.sum(), t, retain_graph=True)[0]


def _standard_normal_logp(z: torch.Tensor, std: float) -> torch.Tensor:
    """log N(z; 0, std^2 I) summed over all but the batch dimension."""
    d = z[0].numel()
    sq = z.reshape(z.shape[0], -1).pow(2).sum(dim=1)
    return -0.5 * d * math.log(2 * math.pi * std**2) - sq / (2 * std**2)


def _gaussian_prior_sample(shape, generator, device, dtype, std: float) -> torch.Tensor:
    if generator is not None and device is None:
        device = generator.device
    return std * torch.randn(*shape, generator=generator, device=device, dtype=dtype)


def _check_bounds(low_name: str, low: float, high_name: str, high: float) -> None:
    """Require 0 < low < high, naming the offending parameter."""
    if not low > 0:
        raise ValueError(f"{low_name} must be > 0, got {low!r}")
    if not high > low:
        raise ValueError(f"{high_name} must be > {low_name}, got {low_name}={low!r}, {high_name}={high!r}")


class _VariancePreserving(SDE):
    """SDEs with alpha(t)^2 + sigma(t)^2 = 1 (Song et al. 2021, eq. 11, for any beta(t)):

        dx = -1/2 beta(t) x dt + sqrt(beta(t)) dw,   log alpha(t) = -1/2 int_0^t beta,

    with prior N(0, I) and, as discrete chain, DDPM's x_{i+1} = sqrt(1 - beta_i) x_i + sqrt(beta_i) z
    (Ho et al. 2020) with the betas `discrete_betas` (float64, length N) a subclass sets.
    Subclasses write `beta(t)`, `_log_alpha(t)` and `t_from_log_snr`.
    """

    discrete_betas: torch.Tensor

    @abc.abstractmethod
    def beta(self, t: torch.Tensor) -> torch.Tensor:
        """The noise rate beta(t) = -2 d log alpha / dt."""

    @abc.abstractmethod
    def _log_alpha(self, t: torch.Tensor) -> torch.Tensor:
        """log alpha(t) = -1/2 int_0^t beta(s) ds."""

    def _alpha(self, t):
        return torch.exp(self._log_alpha(t))

    def _sigma(self, t):
        return torch.sqrt(-torch.expm1(2.0 * self._log_alpha(t)))

    def _drift_and_diffusion(self, x, t):
        beta_t = self.beta(t)
        return -0.5 * broadcast_to_data(beta_t, x) * x, torch.sqrt(beta_t)

    def prior_sampling(self, shape, *, generator=None, device=None, dtype=torch.float32):
        """x(T) ~ N(0, I)."""
        return _gaussian_prior_sample(shape, generator, device, dtype, 1.0)

    def prior_logp(self, z):
        """log N(z; 0, I)."""
        return _standard_normal_logp(z, 1.0)

    def _check_chain(self) -> None:
        """Raise if the chain's betas are not all below 1 (only the chain needs this)."""

    def discretize(self, x, t):
        """DDPM (Ho et al. 2020) step: x_{i+1} = sqrt(1 - beta_i) x_i + sqrt(beta_i) z."""
        self._check_chain()
        t = self.check_time(t, x)
        i = self.discrete_index(t)
        beta = self.discrete_betas.to(x.device)[i].to(x.dtype)
        f = broadcast_to_data(torch.sqrt(1.0 - beta), x) * x - x
        return f, torch.sqrt(beta)

    def discrete_marginals(self) -> tuple[torch.Tensor, torch.Tensor]:
        """alpha_i = sqrt(prod_{j<=i}(1 - beta_j)) and sigma_i = sqrt(1 - alpha_i^2) of the DDPM chain."""
        self._check_chain()
        alphas_cumprod = torch.cumprod(1.0 - self.discrete_betas, dim=0)
        return torch.sqrt(alphas_cumprod), torch.sqrt(1.0 - alphas_cumprod)


class _LinearBeta:
    """beta(t) = beta_min + t (beta_max - beta_min), shared by VP and sub-VP."""

    def _set_betas(self, beta_min: float, beta_max: float) -> None:
        _check_bounds("beta_min", beta_min, "beta_max", beta_max)
        self.beta_0 = float(beta_min)
        self.beta_1 = float(beta_max)

    def beta(self, t: torch.Tensor) -> torch.Tensor:
        """beta(t) = beta_min + t (beta_max - beta_min)."""
        return self.beta_0 + t * (self.beta_1 - self.beta_0)

    def _log_alpha(self, t: torch.Tensor) -> torch.Tensor:
        """log alpha(t) = -1/2 int_0^t beta(s) ds = -t^2 (beta_max - beta_min) / 4 - t beta_min / 2."""
        return -0.25 * t**2 * (self.beta_1 - self.beta_0) - 0.5 * t * self.beta_0

    def _t_from_log_alpha(self, log_alpha: torch.Tensor) -> torch.Tensor:
        """Solve (beta_max - beta_min) t^2 / 2 + beta_min t = c with c = -2 log alpha >= 0.

        Written as t = 2c / (beta_min + sqrt(beta_min^2 + 2 (beta_max - beta_min) c)), the root
        that is stable when beta_max is close to beta_min.
        """
        c = -2.0 * log_alpha
        delta = self.beta_1 - self.beta_0
        return 2.0 * c / (self.beta_0 + torch.sqrt(self.beta_0**2 + 2.0 * delta * c))


class VPSDE(_LinearBeta, _VariancePreserving):
    """Variance-preserving SDE, the continuous limit of DDPM (Song et al. 2021, eq. 11).

        dx = -1/2 beta(t) x dt + sqrt(beta(t)) dw,   beta(t) = beta_min + t (beta_max - beta_min),
        alpha(t) = exp(-1/2 int_0^t beta),  sigma(t)^2 = 1 - alpha(t)^2.

    Args:
        beta_min: beta(0) > 0.
        beta_max: beta(1) > beta_min.
        N: steps of the DDPM chain with betas linspace(beta_min / N, beta_max / N, N).
    """

    def __init__(self, beta_min: float = 0.1, beta_max: float = 20.0, N: int = 1000):
        super().__init__(N)
        self._set_betas(beta_min, beta_max)
        self.discrete_betas = torch.linspace(self.beta_0 / N, self.beta_1 / N, N, dtype=torch.float64)

    def _check_chain(self) -> None:
        """The DDPM chain needs every beta_i = beta / N < 1 (samplers do not: they take any steps)."""
        if self.beta_1 / self.N >= 1:
            raise ValueError(
                f"the DDPM chain needs beta_max / N < 1, got beta_max={self.beta_1}, N={self.N}; "
                "raise N (samplers take their own step counts and are not limited by N)"
            )

    def t_from_log_snr(self, log_snr):
        """alpha^2 = sigmoid(lambda), so log alpha = -softplus(-lambda) / 2."""
        return self._t_from_log_alpha(-0.5 * torch.nn.functional.softplus(-log_snr))


class subVPSDE(_LinearBeta, SDE):
    """Sub-variance-preserving SDE (Song et al. 2021, eq. 12); its variance never exceeds VP's.

        dx = -1/2 beta(t) x dt + sqrt(beta(t) (1 - exp(-2 int_0^t beta))) dw,
        alpha(t) = exp(-1/2 int_0^t beta),  sigma(t) = 1 - alpha(t)^2,  prior N(0, I).

    Its discrete chain is the Euler–Maruyama one (the default `discretize`).
    """

    def __init__(self, beta_min: float = 0.1, beta_max: float = 20.0, N: int = 1000):
        super().__init__(N)
        self._set_betas(beta_min, beta_max)

    def _drift_and_diffusion(self, x, t):
        beta_t = self.beta(t)
        discount = -torch.expm1(4.0 * self._log_alpha(t))
        return -0.5 * broadcast_to_data(beta_t, x) * x, torch.sqrt(beta_t * discount)

    def _alpha(self, t):
        return torch.exp(self._log_alpha(t))

    def _sigma(self, t):
        return -torch.expm1(2.0 * self._log_alpha(t))

    def t_from_log_snr(self, log_snr):
        """Solve u / (1 - u)^2 = exp(lambda) for u = alpha^2 in (0, 1).

        With r = exp(-lambda): u = 2 / (2 + r + sqrt(r^2 + 4 r)), i.e.
        -log u = log1p((r + sqrt(r^2 + 4r)) / 2), free of cancellation at both ends.
        """
        r = torch.exp(-log_snr)
        minus_log_u = torch.log1p(0.5 * (r + torch.sqrt(r * r + 4.0 * r)))
        return self._t_from_log_alpha(-0.5 * minus_log_u)

    def prior_sampling(self, shape, *, generator=None, device=None, dtype=torch.float32):
        """x(T) ~ N(0, I)."""
        return _gaussian_prior_sample(shape, generator, device, dtype, 1.0)

    def prior_logp(self, z):
        """log N(z; 0, I)."""
        return _standard_normal_logp(z, 1.0)


class CosineVPSDE(_VariancePreserving):
    """The variance-preserving SDE of the cosine schedule (Nichol & Dhariwal 2021, "Improved DDPM", eq. 17).

        alpha(t)^2 = f(t) / f(0),   f(t) = cos^2(theta(t)),   theta(t) = pi/2 (t + s) / (1 + s),
        beta(t) = -d log alpha^2 / dt = pi / (1 + s) tan(theta(t)),

    so alpha^2 falls nearly linearly through the middle of [0, T], and only the last few percent of
    the time is spent in near-pure noise (alpha^2 < 0.01 after t = 0.93, against t = 0.68 for the
    linear schedule of `VPSDE`; the paper's fig. 5). beta(t) -> infinity at t = 1; the discrete chain
    clips each beta_i at `max_beta` (0.999 in the paper), and the SDE clips its rate at the equivalent
    bound beta(t) <= -N log(1 - max_beta) (a chain step of length T / N decays by
    1 - beta_i = exp(-int beta) >= 1 - max_beta), which only
    changes the last fraction of the last chain step and leaves alpha(T) > 0 (log-SNR about -17 at
    T for N = 1000) rather than exactly zero.

    Discrete chain (DDPM with the paper's betas): beta_i = min(1 - f((i + 1)/N) / f(i / N), max_beta).

    Args:
        s: the offset s >= 0 that keeps beta(0) away from zero (0.008 in the paper).
        max_beta: the chain's clipping bound, in (0, 1).
        N: steps of the discrete chain.
    """

    def __init__(self, s: float = 0.008, max_beta: float = 0.999, N: int = 1000):
        super().__init__(N)
        if not (s >= 0 and math.isfinite(s)):
            raise ValueError(f"s (the cosine schedule's offset) must be a finite number >= 0, got {s!r}")
        if not 0 < max_beta < 1:
            raise ValueError(f"max_beta must lie in (0, 1), got {max_beta!r}")
        self.s, self.max_beta = float(s), float(max_beta)
        self._rate = math.pi / (2.0 * (1.0 + self.s))  # d theta / dt; theta(t) = theta_0 + rate t
        self._theta_0 = self._rate * self.s
        self.beta_clip = -N * math.log1p(-self.max_beta)
        theta_clip = math.atan(self.beta_clip / (2.0 * self._rate))  # beta = 2 rate tan(theta)
        self.t_clip = min((theta_clip - self._theta_0) / self._rate, self.T)
        t_clip = torch.tensor(self.t_clip, dtype=torch.float64)
        self._log_alpha_clip = self._log_alpha_cosine(t_clip).item()
        self._log_snr_clip = _vp_log_snr(torch.tensor(self._log_alpha_clip)).item()
        f = torch.exp(2.0 * self._log_alpha_cosine(torch.arange(N + 1, dtype=torch.float64) / N))
        self.discrete_betas = torch.clamp(1.0 - f[1:] / f[:-1], max=self.max_beta)

    def _log_alpha_cosine(self, t: torch.Tensor) -> torch.Tensor:
        """log(cos theta(t) / cos theta_0), unclipped, free of cancellation at both ends.

        Near t = 0: log1p((cos theta - cos theta_0) / cos theta_0), with the difference written as
        -2 sin((theta + theta_0)/2) sin(rate t / 2); near t = 1: cos theta = sin(rate (1 - t)).
        """
        half_gap = 0.5 * self._rate * t
        early = torch.log1p(-2.0 * torch.sin(self._theta_0 + half_gap) * torch.sin(half_gap) / math.cos(self._theta_0))
        late = torch.log(torch.sin(self._rate * (1.0 - t))) - math.log(math.cos(self._theta_0))
        return torch.where(t <= 0.5, early, late)

    def _log_alpha(self, t):
        clipped = self._log_alpha_clip - 0.5 * self.beta_clip * (t - self.t_clip)
        return torch.where(t <= self.t_clip, self._log_alpha_cosine(t), clipped)

    def beta(self, t):
        """pi / (1 + s) tan(theta(t)) up to t_clip, then the constant beta_clip."""
        cosine = 2.0 * self._rate / torch.tan(self._rate * (1.0 - t))  # tan(theta) = 1 / tan(pi/2 - theta)
        return torch.where(t <= self.t_clip, cosine, torch.full_like(t, self.beta_clip))

    def t_from_log_snr(self, log_snr):
        """Invert cos theta = alpha cos theta_0 with alpha^2 = sigmoid(lambda), sigma^2 = sigmoid(-lambda).

        With S = sin theta = sqrt(sin^2 theta_0 + sigma^2 cos^2 theta_0), the angle difference is
        theta - theta_0 = atan2(cos theta_0 sigma^2, (S + alpha sin theta_0)(alpha cos^2 theta_0 + S sin theta_0)),
        exact and free of cancellation; t = (theta - theta_0) / rate. Past t_clip, log alpha is linear in t.
        """
        var, alpha = torch.sigmoid(-log_snr), torch.sqrt(torch.sigmoid(log_snr))
        sin0, cos0 = math.sin(self._theta_0), math.cos(self._theta_0)
        sin_theta = torch.sqrt(sin0**2 + var * cos0**2)
        gap = torch.atan2(cos0 * var, (sin_theta + alpha * sin0) * (alpha * cos0**2 + sin_theta * sin0))
        log_alpha = -0.5 * torch.nn.functional.softplus(-log_snr)
        clipped = self.t_clip + 2.0 * (self._log_alpha_clip - log_alpha) / self.beta_clip
        return torch.where(log_snr >= self._log_snr_clip, gap / self._rate, clipped)


def _vp_log_snr(log_alpha: torch.Tensor) -> torch.Tensor:
    """log(alpha^2 / (1 - alpha^2)) from log alpha."""
    return 2.0 * log_alpha - torch.log(-torch.expm1(2.0 * log_alpha))


class VESDE(SDE):
    """Variance-exploding SDE, the continuous limit of SMLD / NCSN (Song et al. 2021, eq. 9).

        dx = sqrt(d sigma(t)^2 / dt) dw,  sigma(t) = sigma_min (sigma_max / sigma_min)^t,
        alpha(t) = 1.

    Like score_sde, `marginal_prob` returns sigma(t) itself as the std: the kernel of SMLD, where
    the data are already perturbed by N(0, sigma_min^2). Started from a noiseless x(0) the SDE's
    exact variance is sigma(t)^2 - sigma_min^2, which differs by sigma_min^2.

    Args:
        sigma_min: sigma(0) > 0.
        sigma_max: sigma(1) > sigma_min.
        N: levels of the SMLD chain, geometric from sigma_min to sigma_max.
    """

    def __init__(self, sigma_min: float = 0.01, sigma_max: float = 50.0, N: int = 1000):
        super().__init__(N)
        _check_bounds("sigma_min", sigma_min, "sigma_max", sigma_max)
        self.sigma_min = float(sigma_min)
        self.sigma_max = float(sigma_max)
        self._log_ratio = math.log(self.sigma_max / self.sigma_min)
        self.discrete_sigmas = torch.exp(
            torch.linspace(math.log(self.sigma_min), math.log(self.sigma_max), N, dtype=torch.float64)
        )

    def _drift_and_diffusion(self, x, t):
        diffusion = self._sigma(t) * math.sqrt(2.0 * self._log_ratio)
        return torch.zeros_like(x), diffusion

    def _alpha(self, t):
        return torch.ones_like(t)

    def _sigma(self, t):
        return self.sigma_min * torch.exp(t * self._log_ratio)

    def t_from_log_snr(self, log_snr):
        """lambda = -2 log sigma(t), so t = (-lambda / 2 - log sigma_min) / log(sigma_max / sigma_min)."""
        return (-0.5 * log_snr - math.log(self.sigma_min)) / self._log_ratio

    def prior_sampling(self, shape, *, generator=None, device=None, dtype=torch.float32):
        """x(T) ~ N(0, sigma_max^2 I)."""
        return _gaussian_prior_sample(shape, generator, device, dtype, self.sigma_max)

    def prior_logp(self, z):
        """log N(z; 0, sigma_max^2 I)."""
        return _standard_normal_logp(z, self.sigma_max)

    def discretize(self, x, t):
        """SMLD step: x_{i+1} = x_i + sqrt(sigma_i^2 - sigma_{i-1}^2) z, with sigma_{-1} = 0."""
        t = self.check_time(t, x)
        i = self.discrete_index(t)
        sigmas = self.discrete_sigmas.to(x.device)
        sigma = sigmas[i]
        previous = torch.where(i == 0, torch.zeros_like(sigma), sigmas[(i - 1).clamp(min=0)])
        return torch.zeros_like(x), torch.sqrt(sigma**2 - previous**2).to(x.dtype)

    def discrete_marginals(self) -> tuple[torch.Tensor, torch.Tensor]:
        """alpha_i = 1 and sigma_i of the SMLD noise levels, increasing in i."""
        return torch.ones_like(self.discrete_sigmas), self.discrete_sigmas


class EDMSDE(SDE):
    """The variance-exploding SDE of Karras et al. (2022, "Elucidating the design space...", EDM):

        sigma(t) = t,  alpha(t) = 1,  dx = sqrt(2 t) dw,  t in [0, T = sigma_max],

    so time is the noise level, and the probability-flow ODE is dx/dsigma = (x - D(x, sigma)) / sigma
    with D(x, sigma) = x + sigma^2 grad log p the denoiser (Tweedie). Unlike `VESDE`, the kernel is
    that of the SDE started from noiseless data (sigma(0) = 0). Prior N(0, sigma_max^2 I). A
    sampler's final time `eps` is EDM's sigma_min (0.002 in the paper); its discrete chain is the
    default Euler–Maruyama one.

    Args:
        sigma_max: the largest noise level and end time T (80 in the paper).
        N: steps of the Euler–Maruyama chain (a default for samplers).
    """

    def __init__(self, sigma_max: float = 80.0, N: int = 1000):
        super().__init__(N)
        if not (sigma_max > 0 and math.isfinite(sigma_max)):
            raise ValueError(f"sigma_max must be a finite number > 0, got {sigma_max!r}")
        self.sigma_max = float(sigma_max)

    @property
    def T(self) -> float:
        """End time T = sigma_max."""
        return self.sigma_max

    def _drift_and_diffusion(self, x, t):
        return torch.zeros_like(x), torch.sqrt(2.0 * t)

    def _alpha(self, t):
        return torch.ones_like(t)

    def _sigma(self, t):
        return t.clone()

    def t_from_log_snr(self, log_snr):
        """lambda = -2 log t, so t = exp(-lambda / 2)."""
        return torch.exp(-0.5 * log_snr)

    def prior_sampling(self, shape, *, generator=None, device=None, dtype=torch.float32):
        """x(T) ~ N(0, sigma_max^2 I)."""
        return _gaussian_prior_sample(shape, generator, device, dtype, self.sigma_max)

    def prior_logp(self, z):
        """log N(z; 0, sigma_max^2 I)."""
        return _standard_normal_logp(z, self.sigma_max)


SDES = {"vpsde": VPSDE, "subvpsde": subVPSDE, "vesde": VESDE, "cosinevpsde": CosineVPSDE, "edmsde": EDMSDE}


def get_sde(name: str, **kwargs) -> SDE:
    """Build an SDE by name (`vpsde`, `subvpsde`, `vesde`, `cosinevpsde`, `edmsde`; case, "-" and "_" ignored).

    Raises:
        ValueError: for an unknown name, listing the valid ones.
    """
    key = name.lower().replace("-", "").replace("_", "")
    if key not in SDES:
        raise ValueError(f"unknown SDE {name!r}; valid names: {', '.join(SDES)}")
    return SDES[key](**kwargs)


def get_sde_from_options(name: str, options: Mapping[str, Any], **kwargs) -> SDE:
    """`get_sde(name, **kwargs)` plus the entries of `options` that the SDE's constructor takes.

    `options` may hold the parameters of every SDE (a config section: beta_min, sigma_max, s, ...);
    only those in the chosen SDE's signature are passed on.
    """
    key = name.lower().replace("-", "").replace("_", "")
    if key not in SDES:
        raise ValueError(f"unknown SDE {name!r}; valid names: {', '.join(SDES)}")
    accepted = inspect.signature(SDES[key]).parameters
    return SDES[key](**{k: v for k, v in options.items() if k in accepted and k not in kwargs}, **kwargs)
