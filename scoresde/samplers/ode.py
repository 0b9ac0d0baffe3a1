"""Fixed-step solvers of the probability-flow ODE (Song et al. 2021, eq. 13).

For every SDE with kernel N(alpha x0, sigma^2 I), the ODE dx/dt = f - g^2 score / 2 is, in the
variables y = x / alpha and s = sigma / alpha (Karras et al. 2022, eq. 4 and app. B.2),

    dy/ds = (y - D(x, t)) / s,    D(x, t) = (x + sigma^2 score(x, t)) / alpha   (Tweedie),

and, in the half log-SNR lambda = log(alpha / sigma) with data prediction D (Lu et al. 2022b,
"DPM-Solver++", eq. 9), its exact solution from t to u is

    x_u = (sigma_u / sigma_t) x_t + sigma_u int_{lambda_t}^{lambda_u} e^{lambda} D dlambda.

The solvers below discretise these forms; each takes a decreasing time grid and returns x at its
last time. None depends on the SDE's type: they ask it for alpha, sigma and the log-SNR only.

    ode_euler   Euler in t on dx/dt = f - g^2 score / 2 (first order; Song et al.'s naive choice)
    ddim        first-order exponential integrator = DDIM (Song et al. 2021a) = Euler in (y, s)
    heun        Karras et al.'s 2nd-order Heun in (y, s) (Algorithm 1), 2 evaluations per step
    dpmpp_2m    DPM-Solver++(2M) multistep, 2nd order (Lu et al. 2022b, Algorithm 2)
    dpmpp_3m    DPM-Solver++(3M) multistep, 3rd order (Lu et al. 2022b, app. B)
    ipndm       improved pseudo-numerical: equal-step Adams–Bashforth (up to 4 steps) in (y, s)
                (Zhang & Chen 2022, "DEIS", sec. 4; Liu et al. 2022, "PNDM"); 2nd order on
                uneven grids
    lms         linear multistep: variable-step Adams–Bashforth in (y, s), order up to 4
                (the method of k-diffusion's `sample_lms`)
    unipc       exponential Adams predictor + free Adams–Moulton corrector in lambda
                (Zhao et al. 2023, "UniPC"), order + 1
"""

from __future__ import annotations

import math
from typing import Callable

import torch

from scoresde.samplers.noise import randn_like
from scoresde.samplers.registry import report_step
from scoresde.score import tweedie
from scoresde.sde_lib import SDE, time_vector


class GridScales:
    """alpha, sigma, lambda = log(alpha / sigma) and s = sigma / alpha at each grid time, in float64.

    Computed once per solve, so a step costs no SDE evaluations beyond the score itself.
    """

    def __init__(self, sde: SDE, time_grid: torch.Tensor):
        t = time_grid.to(torch.float64).cpu()
        self.t = t.tolist()
        self.alpha = sde.alpha(t).tolist()
        self.sigma = sde.sigma(t).tolist()
        self.lam = (0.5 * sde.log_snr(t)).tolist()
        self.s = [sg / a for sg, a in zip(self.sigma, self.alpha)]
        self.n = len(self.t) - 1

    def denoise(self, score_fn: Callable, x: torch.Tensor, i: int) -> torch.Tensor:
        """D(x, t_i) = (x + sigma_i^2 score(x, t_i)) / alpha_i, with the grid's scalars."""
        return tweedie(x, score_fn(x, time_vector(self.t[i], x)), self.alpha[i], self.sigma[i])


def ode_euler(sde, score_fn, x, time_grid, *, generator=None, callback=None):
    """Euler's method in t: x <- x + (t_{i+1} - t_i) (f(x, t_i) - g(t_i)^2 score / 2)."""
    last_score: list[torch.Tensor] = []

    def kept_score(x, t):  # the score the drift uses, kept to report D(x_i, t_i)
        last_score[:] = [score_fn(x, t)]
        return last_score[0]

    reverse_ode = sde.reverse(kept_score, probability_flow=True)
    g = GridScales(sde, time_grid)
    for i in range(g.n):
        drift, _ = reverse_ode.sde(x, time_vector(g.t[i], x))
        denoised = tweedie(x, last_score[0], g.alpha[i], g.sigma[i]) if callback is not None else None
        x = x + (g.t[i + 1] - g.t[i]) * drift
        report_step(callback, i, g.n, g.t[i], x, denoised)
    return x


def ddim_step(g: GridScales, i: int, x: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
    """x_{i+1} = (sigma_{i+1} / sigma_i) x_i - alpha_{i+1} expm1(-h) D_i, h = lambda_{i+1} - lambda_i."""
    h = torch.tensor(g.lam[i + 1] - g.lam[i], dtype=torch.float64)
    return torch.add(x * (g.sigma[i + 1] / g.sigma[i]), d, alpha=-g.alpha[i + 1] * torch.expm1(-h).item())


def ddim(sde, score_fn, x, time_grid, *, generator=None, callback=None):
    """Deterministic DDIM: the first-order exponential integrator with data prediction."""
    g = GridScales(sde, time_grid)
    for i in range(g.n):
        d = g.denoise(score_fn, x, i)
        x = ddim_step(g, i, x, d)
        report_step(callback, i, g.n, g.t[i], x, d)
    return x


def heun_step(g: GridScales, score_fn: Callable, x: torch.Tensor, i: int) -> tuple[torch.Tensor, torch.Tensor]:
    """One step of Karras et al.'s Heun method from t_i to t_{i+1}: (x_{i+1}, D(x_i, t_i)).

    In y = x / alpha: y_e = y_i + (s_{i+1} - s_i) (y_i - D_i) / s_i (Euler), then the trapezoidal
    rule with the slope at y_e; a step to s = 0 stays Euler (the slope is undefined there).
    """
    y = x / g.alpha[i]
    d = g.denoise(score_fn, x, i)
    slope = (y - d) / g.s[i]
    y_euler = y + (g.s[i + 1] - g.s[i]) * slope
    x_euler = g.alpha[i + 1] * y_euler
    if g.s[i + 1] == 0:
        return x_euler, d
    slope_next = (y_euler - g.denoise(score_fn, x_euler, i + 1)) / g.s[i + 1]
    return g.alpha[i + 1] * (y + (g.s[i + 1] - g.s[i]) * 0.5 * (slope + slope_next)), d


def heun(sde, score_fn, x, time_grid, *, generator=None, callback=None):
    """Karras et al.'s Heun step in y = x / alpha, s = sigma / alpha (Algorithm 1, no churn)."""
    g = GridScales(sde, time_grid)
    for i in range(g.n):
        x, d = heun_step(g, score_fn, x, i)
        report_step(callback, i, g.n, g.t[i], x, d)
    return x


def _dpmpp_step(g: GridScales, i: int, x: torch.Tensor, history: list, order: int) -> torch.Tensor:
    """One DPM-Solver++ multistep update of the given order from the last `order` data predictions.

    Expanding D(lambda_i + tau) = D_i + tau D' + tau^2 D'' / 2 in the exact solution gives, with
    h = lambda_{i+1} - lambda_i, phi_1 = expm1(-h), phi_2 = phi_1 / h + 1, phi_3 = phi_2 / h - 1/2
    (int_0^h e^(tau - h) dtau = -phi_1, int_0^h tau e^(tau - h) dtau = h phi_2,
    int_0^h tau^2/2 e^(tau - h) dtau = -h^2 phi_3):

        x_{i+1} = (sigma_{i+1}/sigma_i) x_i - alpha_{i+1} (phi_1 D_i - phi_2 D1 + 2 phi_3 D2),

    where D1 ~ h D'(lambda_i) and D2 ~ h^2 D'' / 2 are divided differences of past predictions
    (Lu et al. 2022b, sec. 4 and app. B; here derived on a non-uniform lambda grid).
    """
    weights = _dpmpp_weights(g, i, order)
    out = x * (g.sigma[i + 1] / g.sigma[i])
    for d, w in zip(reversed(history), weights):  # newest prediction first
        out.add_(d, alpha=w)
    return out


def _dpmpp_weights(g: GridScales, i: int, order: int) -> list[float]:
    """The update above as scalar weights of D_i, D_{i-1}, D_{i-2} (one fused combination).

    Order 2 integrates the linear interpolant of D exactly (the phi_2 form); Lu et al.'s
    Algorithm 2 instead uses D_i + D1 / 2 with phi_1 (a midpoint rule); both are 2nd order.
    With A = alpha phi_2 and B = alpha (phi_2 r0 - 2 phi_3) / (r0 + r1), the 3rd-order term
    alpha (phi_2 D1 - 2 phi_3 D2) equals (A + B) D1_0 - B D1_1, D1_0 = (D_i - D_{i-1}) / r0,
    D1_1 = (D_{i-1} - D_{i-2}) / r1.
    """
    lam, a = g.lam, g.alpha[i + 1]
    h = lam[i + 1] - lam[i]
    phi_1 = torch.expm1(torch.tensor(-h, dtype=torch.float64)).item()
    if order == 1:
        return [-a * phi_1]
    phi_2 = phi_1 / h + 1.0
    r0 = (lam[i] - lam[i - 1]) / h
    if order == 2:
        return [-a * phi_1 + a * phi_2 / r0, -a * phi_2 / r0]
    phi_3 = phi_2 / h - 0.5
    r1 = (lam[i - 1] - lam[i - 2]) / h
    A, B = a * phi_2, a * (phi_2 * r0 - 2.0 * phi_3) / (r0 + r1)
    return [-a * phi_1 + (A + B) / r0, -(A + B) / r0 - B / r1, B / r1]


def dpm_solver_pp(sde, score_fn, x, time_grid, *, order: int = 2, lower_order_final: bool = True, generator=None, callback=None):
    """DPM-Solver++ multistep of order 1, 2 or 3, one score evaluation per step.

    The first steps use lower orders (there is no history yet); with `lower_order_final` the
    last steps do too when the grid has fewer than 15 steps, which Lu et al. recommend for
    stability at very few steps.

    Raises:
        ValueError: if order is not 1, 2 or 3.
    """
    if order not in (1, 2, 3):
        raise ValueError(f"order must be 1, 2 or 3, got {order!r}")
    g = GridScales(sde, time_grid)
    history: list[torch.Tensor] = []
    for i in range(g.n):
        history = (history + [g.denoise(score_fn, x, i)])[-order:]
        step_order = min(order, len(history))
        if lower_order_final and g.n < 15:
            step_order = min(step_order, g.n - i)
        if g.sigma[i + 1] == 0:  # h is infinite: only the first-order (Tweedie) step is defined
            step_order = 1
        x = _dpmpp_step(g, i, x, history, step_order)
        report_step(callback, i, g.n, g.t[i], x, history[-1])
    return x


def dpmpp_2m(sde, score_fn, x, time_grid, *, lower_order_final: bool = True, generator=None, callback=None):
    """DPM-Solver++(2M)."""
    return dpm_solver_pp(sde, score_fn, x, time_grid, order=2, lower_order_final=lower_order_final, callback=callback)


def dpmpp_3m(sde, score_fn, x, time_grid, *, lower_order_final: bool = True, generator=None, callback=None):
    """DPM-Solver++(3M)."""
    return dpm_solver_pp(sde, score_fn, x, time_grid, order=3, lower_order_final=lower_order_final, callback=callback)


# Adams–Bashforth coefficients for equal steps, orders 1..4 (newest derivative first).
_ADAMS_BASHFORTH = ((1.0,), (1.5, -0.5), (23 / 12, -16 / 12, 5 / 12), (55 / 24, -59 / 24, 37 / 24, -9 / 24))


def equal_step_coefficients(nodes: list[float], s_next: float) -> list[float]:
    """iPNDM: the equal-step Adams–Bashforth weights, times the step s_next - nodes[0]."""
    return [c * (s_next - nodes[0]) for c in _ADAMS_BASHFORTH[len(nodes) - 1]]


def variable_step_coefficients(nodes: list[float], s_next: float) -> list[float]:
    """LMS: c_j = int_{nodes[0]}^{s_next} l_j(s) ds for the Lagrange basis l_j on `nodes`.

    The Adams–Bashforth method on an arbitrary grid, exact for polynomial slopes of degree
    len(nodes) - 1, so of order len(nodes) (Hairer, Norsett & Wanner, "Solving ODEs I", III.5).
    Exactness on the monomials u^m, u = (s - nodes[0]) / H with H = s_next - nodes[0], is the
    Vandermonde system sum_j c_j u_j^m = H / (m + 1), m = 0..k-1, solved directly.
    """
    H = s_next - nodes[0]
    weights = _interpolatory_weights([(node - nodes[0]) / H for node in nodes], [1.0 / (m + 1) for m in range(len(nodes))])
    return [H * w for w in weights]


def _adams_bashforth_in_s(sde, score_fn, x, time_grid, max_order, coefficients_fn, callback):
    """y_{i+1} = y_i + sum_j c_j slope_{i-j} on dy/ds = (y - D) / s, with lower-order warm-up."""
    if max_order not in (1, 2, 3, 4):
        raise ValueError(f"max_order must be in 1..4, got {max_order!r}")
    g = GridScales(sde, time_grid)
    slopes: list[torch.Tensor] = []
    for i in range(g.n):
        y = x / g.alpha[i]
        d = g.denoise(score_fn, x, i)
        slopes = [(y - d).div_(g.s[i])] + slopes[: max_order - 1]
        coefficients = coefficients_fn([g.s[i - j] for j in range(len(slopes))], g.s[i + 1])
        for c, slope in zip(coefficients, slopes):
            y.add_(slope, alpha=c)
        x = y.mul_(g.alpha[i + 1])
        report_step(callback, i, g.n, g.t[i], x, d)
    return x


def ipndm(sde, score_fn, x, time_grid, *, max_order: int = 4, generator=None, callback=None):
    """Improved PNDM: equal-step Adams–Bashforth on dy/ds = (y - D) / s (order 2 on uneven grids).

    Raises:
        ValueError: if max_order is not in 1..4.
    """
    return _adams_bashforth_in_s(sde, score_fn, x, time_grid, max_order, equal_step_coefficients, callback)


def lms(sde, score_fn, x, time_grid, *, max_order: int = 4, generator=None, callback=None):
    """Linear multistep (variable-step Adams–Bashforth) on dy/ds = (y - D) / s, order max_order.

    Raises:
        ValueError: if max_order is not in 1..4.
    """
    return _adams_bashforth_in_s(sde, score_fn, x, time_grid, max_order, variable_step_coefficients, callback)


def _interpolatory_weights(u: list[float], moments: list[float]) -> list[float]:
    """w with sum_j w_j u_j^m = moments[m] for m < k = len(u): the quadrature weights exact on
    polynomials of degree < k. w_j = sum_m moments[m] c_jm, where sum_m c_jm u^m is the Lagrange
    basis polynomial of node j (1 at u_j, 0 at the other nodes). Plain floats: for k <= 4 this is
    several times faster than a numpy solve, which matters once per step."""
    weights = []
    for j, u_j in enumerate(u):
        coefficients, denominator = [1.0], 1.0
        for i, u_i in enumerate(u):
            if i != j:  # multiply by (u - u_i)
                coefficients = [0.0] + coefficients
                for m in range(len(coefficients) - 1):
                    coefficients[m] -= u_i * coefficients[m + 1]
                denominator *= u_j - u_i
        weights.append(sum(c * b for c, b in zip(coefficients, moments)) / denominator)
    return weights


def exponential_adams_weights(g: GridScales, i: int, nodes: list[int], rate: float = 1.0) -> list[float]:
    """Weights w_j with int_0^h c e^(c (tau - h)) P(tau) dtau = sum_j w_j D_j, tau = lambda - lambda_i, c = `rate`.

    P interpolates the data predictions D_j at lambda_j (j in `nodes`, past and/or next grid
    points); with it the exact solution of the module docstring gives
    x_{i+1} = (sigma_{i+1} / sigma_i) x_i + alpha_{i+1} sum_j w_j D_j (c = 1). Exactness on monomials,
    with I_m = int_0^h tau^m c e^(c (tau - h)) dtau = h^m - (m / c) I_{m-1}, I_0 = -expm1(-c h), is a
    small Vandermonde system, solved in u = tau / h. Past nodes only give the DPM-Solver++ multistep
    predictors; adding node i + 1 gives the corrector of UniPC (Zhao et al. 2023, "UniC").
    A rate c = 1 + eta > 1 is the drift of the reverse SDE family of `scoresde.samplers.stochastic`
    (eta = 1: the reverse-time SDE itself; Lu et al. 2022b, sec. 5; Xue et al. 2023, "SA-Solver").
    """
    h = g.lam[i + 1] - g.lam[i]
    k = len(nodes)
    moments = [-math.expm1(-rate * h)]
    for m in range(1, k):
        moments.append(h**m - (m / rate) * moments[-1])
    scaled = [moment / h**m for m, moment in enumerate(moments)]
    return _interpolatory_weights([(g.lam[j] - g.lam[i]) / h for j in nodes], scaled)


def s_adams_weights(g: GridScales, i: int, nodes: list[int]) -> list[float]:
    """Weights w_j with s_{i+1} int_{s_{i+1}}^{s_i} P(s) / s^2 ds = sum_j w_j D_j, P interpolating D in s.

    The exact solution of the module docstring, written in s = sigma / alpha = e^(-lambda), is
    y_{i+1} = (s_{i+1} / s_i) y_i + s_{i+1} int_{s_{i+1}}^{s_i} D(s) / s^2 ds, i.e. again
    x_{i+1} = (sigma_{i+1} / sigma_i) x_i + alpha_{i+1} sum_j w_j D_j. Here D is interpolated as a
    polynomial in s rather than in lambda: D is smooth in s down to s = 0 (for a Gaussian it is
    a rational function of s^2), while in lambda it saturates exponentially at both ends, so a
    polynomial in s carries fewer interpolation errors over long steps. Exactness on u^m,
    u = s / s_i, gives the moments M_0 = 1 - r, M_1 = -r log r, M_m = r (1 - r^(m-1)) / (m - 1),
    r = s_{i+1} / s_i (at r = 0, the step to zero noise, M = e_0: D extrapolated to s = 0).
    """
    r = g.s[i + 1] / g.s[i]
    k = len(nodes)
    moments = [1.0 - r, -r * math.log(r) if r > 0 else 0.0] + [r * (1.0 - r ** (m - 1)) / (m - 1) for m in range(2, k)]
    return _interpolatory_weights([g.s[j] / g.s[i] for j in nodes], moments[:k])


def _exponential_adams_step(
    g: GridScales, i: int, x: torch.Tensor, predictions: dict, nodes: list[int], weights: list[float], decay: float
) -> torch.Tensor:
    """x_{i+1} = decay x_i + alpha_{i+1} sum_j w_j D_j (decay = sigma_{i+1} / sigma_i for the ODE)."""
    out = x * decay
    for j, w in zip(nodes, weights):
        out.add_(predictions[j], alpha=g.alpha[i + 1] * w)
    return out


def unipc(
    sde, score_fn, x, time_grid, *, predictor_order: int = 2, interpolate_in: str = "lambda", generator=None, callback=None
):
    """UniPC-style predictor–corrector, one score evaluation per step (Zhao et al. 2023).

    Predictor: exponential Adams–Bashforth of `predictor_order` on past data predictions (= DPM-Solver++
    multistep). Corrector: the exponential Adams–Moulton step that also interpolates D at the
    predicted point x_{i+1}; that evaluation is reused by the next predictor, so the corrector
    is free and raises the order by one. The last step has no corrector (its evaluation would
    be extra); lower orders at the start and, below 15 steps, at the end, and a first-order last
    step up to `FIRST_ORDER_LAST_CORRECTED_STEP` steps (measured; see there).

    `interpolate_in` is the variable in which D is interpolated: "lambda" (UniPC, DPM-Solver++) or
    "s" (`s_adams_weights`: the same predictor–corrector with D a polynomial in s = sigma / alpha).
    On the exact-score mixtures of benchmarks/sampler_accuracy.py, "s" with predictor_order 3 is
    the most accurate setting at 20-50 evaluations (2-4x below "lambda" on the 64-D problems),
    where the "lambda" form degrades above predictor order 2.

    Raises:
        ValueError: if predictor_order is not 1, 2 or 3, or interpolate_in is not "lambda" or "s".
    """
    if interpolate_in not in ("lambda", "s"):
        raise ValueError(f"interpolate_in must be 'lambda' or 's', got {interpolate_in!r}")
    weights = exponential_adams_weights if interpolate_in == "lambda" else s_adams_weights
    return exponential_adams_loop(sde, score_fn, x, time_grid, predictor_order, True, weights, callback=callback)


# UniPC's (and SA-Solver's) last step has no corrector; up to this many steps it is first order.
# Measured on the exact-score problems of benchmarks/sampler_accuracy.py (ring and 64-D stiff, VE
# and VP; 512 samples; log-SNR and Karras grids, both end steps, predictor orders 2 and 3: 32
# settings per step count), error of order 2-3 on the last step over first order: at 15 steps
# median 1.10 (0.70-2.29, 4 of 32 worse), at 20 1.04 (0.70-1.73, 4 worse), at 30 1.00
# (0.47-1.35, 9 worse), at 50 0.98 (0.80-1.20, 13 worse); so first order up to 25 steps.
FIRST_ORDER_LAST_CORRECTED_STEP = 25


def exponential_adams_loop(
    sde,
    score_fn,
    x,
    time_grid,
    predictor_order: int,
    corrector: bool,
    weights_fn: Callable = exponential_adams_weights,
    *,
    eta: float = 0.0,
    generator=None,
    callback=None,
):
    """The multistep loop shared by UniPC (eta = 0, corrector), DPM-Solver++ SDE and SA-Solver (eta > 0).

    Step i, with h = lambda_{i+1} - lambda_i, c = 1 + eta and z ~ N(0, I) (Lu et al. 2022b, sec. 5;
    Xue et al. 2023, eq. 15 with eta = tau^2):

        x_{i+1} = (sigma_{i+1} / sigma_i) e^(-eta h) x_i + alpha_{i+1} sum_j w_j(c) D_j
                  + sigma_{i+1} sqrt(-expm1(-2 eta h)) z,

    the predictor on the newest `predictor_order` predictions; with `corrector`, the same step
    again with the same z, interpolating also D at the predicted x_{i+1}, whose evaluation the
    next step reuses (so the corrector is free). Lower orders at the start (no history) and, below
    15 steps, at the end; the last step has no corrector (its evaluation would be extra) and, with
    a corrector, is first order up to `FIRST_ORDER_LAST_CORRECTED_STEP` steps (measured; see
    there); a step to sigma = 0 is first order (h is infinite).
    """
    if predictor_order not in (1, 2, 3):
        raise ValueError(f"predictor_order must be 1, 2 or 3, got {predictor_order!r}")
    if not (isinstance(eta, (int, float)) and 0 <= eta < math.inf):
        raise ValueError(f"eta must be a number >= 0, got {eta!r}")
    g = GridScales(sde, time_grid)
    predictions: dict[int, torch.Tensor] = {}
    for i in range(g.n):
        if i not in predictions:
            predictions[i] = g.denoise(score_fn, x, i)
        p = min(predictor_order, i + 1, g.n - i) if g.n < 15 else min(predictor_order, i + 1)
        if g.sigma[i + 1] == 0:
            p = 1
        if corrector and i == g.n - 1 and g.n <= FIRST_ORDER_LAST_CORRECTED_STEP:
            p = 1
        nodes = [i - j for j in range(p)]
        rate = 1.0 + eta
        predictor = weights_fn(g, i, nodes, rate) if eta else weights_fn(g, i, nodes)
        decay = g.sigma[i + 1] / g.sigma[i]
        noise = None
        if eta and g.sigma[i + 1] > 0:
            h = g.lam[i + 1] - g.lam[i]
            decay *= math.exp(-eta * h)
            noise = randn_like(x, generator).mul_(g.sigma[i + 1] * math.sqrt(-math.expm1(-2.0 * eta * h)))
        x_pred = _exponential_adams_step(g, i, x, predictions, nodes, predictor, decay)
        if noise is not None:
            x_pred.add_(noise)
        if corrector and i + 1 < g.n:
            predictions[i + 1] = g.denoise(score_fn, x_pred, i + 1)
            # the corrector from x_pred: its weights minus the predictor's (one pass less than from x)
            nodes_c = [i + 1] + nodes
            correction = weights_fn(g, i, nodes_c, rate) if eta else weights_fn(g, i, nodes_c)
            x = x_pred.add_(predictions[i + 1], alpha=g.alpha[i + 1] * correction[0])
            for j, c, w in zip(nodes, correction[1:], predictor):
                x.add_(predictions[j], alpha=g.alpha[i + 1] * (c - w))
        else:
            x = x_pred
        report_step(callback, i, g.n, g.t[i], x, predictions[i])
        predictions.pop(i - predictor_order, None)
    return x
