"""Exact log-likelihood through the probability-flow ODE, bits per dimension, encoding and decoding.

The probability-flow ODE of a forward SDE dx = f(x, t) dt + g(t) dw (Song et al. 2021, eq. 13)

    dx/dt = F(x, t) = f(x, t) - g(t)^2 / 2 * score(x, t)

carries p_eps to p_T, and by the instantaneous change of variables (Chen et al. 2018; Song et al.
2021, app. D.2, eq. 39) the density along a solution obeys d log p_t(x(t)) / dt = -div F(x(t), t),
so for x(eps) = x

    log p_eps(x) = log p_T(x(T)) + int_eps^T div F(x(t), t) dt.

`log_likelihood` integrates x and the integral together. The divergence is either exact (the sum
of the Jacobian's diagonal: one backward pass per data dimension, the default up to
`EXACT_DIVERGENCE_MAX_DIM` dimensions) or the Hutchinson–Skilling estimate eps^T (dF/dx) eps with
probes eps fixed along each trajectory (Gaussian or Rademacher; one backward pass per probe). With
K probes the K estimates of log p are independent given the trajectory, so their mean comes with a
standard error.

Solvers (`method`, each a back end of `scoresde.integrate`, `SOLVERS`):
    dopri5       (default) Dormand–Prince 5(4) in torch with a step size per sample: every sample
                 advances at its own time with its own accepted steps, so its result does not
                 depend on what else is in the batch (score functions get t of shape (batch,)),
                 and the error control (RMS over the sample's coordinates, and its log-density
                 channels separately) holds for each sample.
    torchdiffeq  torchdiffeq's dopri5 with the batch's largest per-sample error (shared steps).
    scipy        scipy.integrate.solve_ivp RK45 on the flattened batch as one system, as
                 score_sde_pytorch does: for parity with published numbers, not for speed.
    rk4          classic fixed-step Runge–Kutta 4 with `steps` steps (no error control).

Bits per dimension of discrete data (`bits_per_dim`, `dequantize`): integers k in {0, ..., L-1}
are dequantized as v = (k + u) / L with u ~ U[0, 1)^D and mapped to the model's range
x = c v + b (c = 2, b = -1 for data centred on [-1, 1]; c = 1, b = 0 for [0, 1]). Since P(k) =
int p_V(v) dv over a cube of side 1/L, Jensen gives the variational bound (Theis et al. 2016;
Ho et al. 2019)

    log P(k) >= E_u[ log p_x(x) ] + D log(c / L),   bits/dim = -(log p_x(x) + D log(c / L)) / (D ln 2),

which for L = 256 and [0, 1] data is score_sde's "+8" and for [-1, 1] data "+7"; any L works (e.g.
17 for scikit-learn's digits). With K dequantization draws u_1..u_K the importance-weighted bound
(Burda et al. 2016; Ho et al. 2019, eq. 13 with a uniform q)

    log P(k) >= E[ log (1/K) sum_j p_x(x_j) ] + D log(c / L)

is tighter, increases with K, and tends to log P(k) as K grows (`importance_weighted_logp`).
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np
import torch

from scoresde import integrate
from scoresde.sde_lib import SDE, broadcast_to_data

# The solvers by name (`method`, module docstring) -> integrate.solve's (backend, method).
SOLVERS = {
    "dopri5": ("per_sample", "dopri5"),
    "torchdiffeq": ("torchdiffeq", "dopri5"),
    "scipy": ("scipy", "RK45"),
    "rk4": ("fixed_step", "rk4"),
}
METHODS = tuple(SOLVERS)
PROBES = ("gaussian", "rademacher")
# The divergence by name (config.likelihood.divergence) -> `log_likelihood`'s exact_divergence.
DIVERGENCES = {"auto": None, "exact": True, "hutchinson": False}
EXACT_DIVERGENCE_MAX_DIM = 64
DEFAULT_START_TIME = 1e-5


def flow_drift(sde: SDE, score_fn: Callable) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """F(x, t) = f(x, t) - g(t)^2 / 2 * score(x, t), the probability-flow ODE's drift in forward time."""

    def drift(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        f, g = sde.sde(x, t)
        return f - 0.5 * broadcast_to_data(g**2, x) * score_fn(x, t)

    return drift


def _divergence_exact(out: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """sum_d dF_d/dx_d per sample: one backward pass per dimension (d of every sample at once)."""
    flat_out = out.reshape(out.shape[0], -1)
    div = torch.zeros(out.shape[0], dtype=out.dtype, device=out.device)
    for d in range(flat_out.shape[1]):
        (grad,) = torch.autograd.grad(flat_out[:, d].sum(), x, retain_graph=True)
        div = div + grad.reshape(grad.shape[0], -1)[:, d]
    return div


def _divergence_hutchinson(out: torch.Tensor, x: torch.Tensor, probes: torch.Tensor) -> torch.Tensor:
    """eps_k^T (dF/dx) eps_k per sample and probe k: shape (batch, K)."""
    estimates = []
    for k in range(probes.shape[1]):
        probe = probes[:, k].reshape(x.shape)
        (vjp,) = torch.autograd.grad(out, x, probe, retain_graph=True)
        estimates.append((vjp * probe).reshape(x.shape[0], -1).sum(dim=1))
    return torch.stack(estimates, dim=1)


def _make_probes(x: torch.Tensor, n_probes: int, kind: str, generator) -> torch.Tensor:
    shape = (x.shape[0], n_probes, *x.shape[1:])
    if kind == "gaussian":
        return torch.randn(shape, generator=generator, dtype=x.dtype, device=x.device)
    return torch.randint(0, 2, shape, generator=generator, device=x.device).to(x.dtype) * 2 - 1


class _Augmented:
    """The ODE for the state (x, int div F): y = [x flattened, one column per divergence channel]."""

    def __init__(self, drift, data_shape, divergence: str | None, probes: torch.Tensor | None):
        self.drift, self.data_shape, self.divergence, self.probes = drift, tuple(data_shape), divergence, probes
        self.dim = math.prod(self.data_shape)

    def __call__(self, y: torch.Tensor, t: torch.Tensor, rows: torch.Tensor | None = None) -> torch.Tensor:
        """dy/dt for the samples `rows` (all when None), with t of shape (rows,)."""
        x = y[:, : self.dim].reshape(-1, *self.data_shape)
        if self.divergence is None:
            with torch.no_grad():
                return self.drift(x, t).reshape(x.shape[0], -1)
        with torch.enable_grad():
            x = x.detach().requires_grad_(True)
            out = self.drift(x, t)
            if self.divergence == "exact":
                div = _divergence_exact(out, x)[:, None]
            else:
                assert self.probes is not None  # hutchinson is built with its probes
                probes = self.probes if rows is None else self.probes[rows]
                div = _divergence_hutchinson(out, x, probes)
        return torch.cat([out.detach().reshape(x.shape[0], -1), div.detach()], dim=1)


def _solve(fn, y0, t0, t1, method, rtol, atol, steps, channels) -> integrate.Solution:
    """`integrate.solve` with the solver named `method`; the per-sample solver's error norm keeps
    the last `channels` columns (the log-density integrals) apart from the data's."""
    backend, name = SOLVERS[method]
    tail = channels if backend == "per_sample" else 0
    return integrate.solve(fn, y0, t0, t1, backend=backend, method=name, rtol=rtol, atol=atol, steps=steps, tail=tail)


def _check(method, rtol, atol, steps, eps, sde, dtype):
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; valid: {', '.join(METHODS)}")
    backend, name = SOLVERS[method]
    integrate.check_options(backend, name, rtol=rtol, atol=atol, dtype=dtype, steps=steps)
    if not 0 < eps < sde.T:
        raise ValueError(f"eps must lie in (0, T={sde.T}), got {eps!r}")


def uses_exact_divergence(exact_divergence: bool | None, dim: int) -> bool:
    """`log_likelihood`'s choice: the exact Jacobian trace when asked, or by default up to
    EXACT_DIVERGENCE_MAX_DIM data dimensions; else Hutchinson's estimator."""
    return dim <= EXACT_DIVERGENCE_MAX_DIM if exact_divergence is None else bool(exact_divergence)


def log_likelihood(
    sde: SDE,
    score_fn: Callable,
    x: torch.Tensor,
    *,
    eps: float | None = None,
    exact_divergence: bool | None = None,
    n_probes: int = 1,
    probe: str = "gaussian",
    rtol: float = 1e-5,
    atol: float = 1e-5,
    method: str = "dopri5",
    steps: int | None = None,
    generator: torch.Generator | None = None,
    prior_logp: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> tuple[torch.Tensor, dict]:
    """log p_eps(x) in nats by the probability-flow ODE (module docstring), for each example.

    Args:
        sde: the forward SDE.
        score_fn: score_fn(x, t), t of shape (batch,); a network adapter or an exact score.
        x: data, shape (batch, *dims), floating point.
        eps: the start time (default 1e-5, as score_sde's likelihood).
        exact_divergence: exact Jacobian trace; default True up to EXACT_DIVERGENCE_MAX_DIM data
            dimensions, else Hutchinson–Skilling.
        n_probes, probe: Hutchinson probes per example, "gaussian" or "rademacher".
        rtol, atol: tolerances of the adaptive solvers.
        method: one of METHODS; steps: the step count of "rk4".
        generator: the probes' random source.
        prior_logp: log p_T(z), shape (batch,); default `sde.prior_logp`. The true p_T of a
            finite-T SDE is not exactly the prior (a VP marginal keeps alpha(T) of the data mean),
            which biases every ODE likelihood slightly; an exact p_T (e.g. from scoresde.oracle)
            removes that term and leaves only the solver's error.

    Returns:
        (logp, info): logp of shape (batch,); info holds "nfe" (batched function evaluations,
        each one score evaluation plus the divergence's backward passes), "nfe_per_sample",
        "latent" (x(T)), "prior_logp", "delta_logp" (the integral), and with probes "stderr"
        (per example; NaN for one probe) and "probe_estimates" (batch, n_probes).

    Raises:
        ValueError: unknown method or probe kind, bad tolerances, eps outside (0, T), n_probes < 1.
    """
    eps = DEFAULT_START_TIME if eps is None else float(eps)
    if not x.is_floating_point() or x.ndim < 2:
        raise ValueError(f"x must be a floating-point tensor of shape (batch, *dims), got {x.dtype} {tuple(x.shape)}")
    _check(method, rtol, atol, steps, eps, sde, x.dtype)
    if probe not in PROBES:
        raise ValueError(f"unknown probe {probe!r}; valid: {', '.join(PROBES)}")
    if n_probes < 1:
        raise ValueError(f"n_probes must be >= 1, got {n_probes}")
    data_shape, dim = tuple(x.shape[1:]), math.prod(x.shape[1:])
    exact_divergence = uses_exact_divergence(exact_divergence, dim)
    probes = None if exact_divergence else _make_probes(x, n_probes, probe, generator).reshape(x.shape[0], n_probes, -1)
    fn = _Augmented(flow_drift(sde, score_fn), data_shape, "exact" if exact_divergence else "hutchinson", probes)
    channels = 1 if exact_divergence else n_probes
    y0 = torch.cat([x.detach().reshape(x.shape[0], -1), x.new_zeros(x.shape[0], channels)], dim=1)
    solution = _solve(fn, y0, eps, float(sde.T), method, rtol, atol, steps, channels)
    y1 = solution.y
    latent = y1[:, :dim].reshape(x.shape)
    prior = (prior_logp or sde.prior_logp)(latent)
    delta = y1[:, dim:]
    estimates = prior[:, None] + delta
    logp = estimates.mean(dim=1)
    info = {
        "nfe": solution.nfe,
        "nfe_per_sample": solution.nfe_per_sample,
        "latent": latent,
        "prior_logp": prior,
        "delta_logp": delta.mean(dim=1),
        "method": method,
        "exact_divergence": exact_divergence,
    }
    if not exact_divergence:
        info["probe_estimates"] = estimates
        info["stderr"] = estimates.std(dim=1) / math.sqrt(n_probes) if n_probes > 1 else torch.full_like(logp, float("nan"))
    return logp, info


def _transport(sde, score_fn, x, t0, t1, rtol, atol, method, steps):
    _check(method, rtol, atol, steps, min(t0, t1), sde, x.dtype)
    fn = _Augmented(flow_drift(sde, score_fn), x.shape[1:], None, None)
    solution = _solve(fn, x.detach().reshape(x.shape[0], -1), t0, t1, method, rtol, atol, steps, 0)
    return solution.y.reshape(x.shape), {"nfe": solution.nfe, "nfe_per_sample": solution.nfe_per_sample}


def encode(
    sde: SDE,
    score_fn: Callable,
    x: torch.Tensor,
    *,
    eps: float | None = None,
    rtol: float = 1e-5,
    atol: float = 1e-5,
    method: str = "dopri5",
    steps: int | None = None,
) -> tuple[torch.Tensor, dict]:
    """The latent z = x(T) of data x = x(eps) under the probability-flow ODE (a bijection)."""
    eps = DEFAULT_START_TIME if eps is None else float(eps)
    return _transport(sde, score_fn, x, eps, float(sde.T), rtol, atol, method, steps)


def decode(
    sde: SDE,
    score_fn: Callable,
    z: torch.Tensor,
    *,
    eps: float | None = None,
    rtol: float = 1e-5,
    atol: float = 1e-5,
    method: str = "dopri5",
    steps: int | None = None,
) -> tuple[torch.Tensor, dict]:
    """The data x(eps) of a latent z = x(T): `encode`'s inverse, the same ODE backwards in time."""
    eps = DEFAULT_START_TIME if eps is None else float(eps)
    return _transport(sde, score_fn, z, float(sde.T), eps, rtol, atol, method, steps)


# -- discrete data -----------------------------------------------------------------------------
def dequantize(
    levels_k: torch.Tensor,
    levels: int,
    *,
    centered: bool,
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """x = c (k + u) / L + b with u ~ U[0, 1): integers k in {0..L-1} to the model's range (module docstring)."""
    k = torch.as_tensor(levels_k)
    if k.is_floating_point() and not torch.equal(k, k.round()):
        raise ValueError("dequantize expects integer levels k (e.g. uint8 pixels), got non-integer values")
    if levels < 2 or int(k.min()) < 0 or int(k.max()) > levels - 1:
        raise ValueError(
            f"levels must be >= 2 and k in [0, {levels - 1}], got levels={levels}, k in [{int(k.min())}, {int(k.max())}]"
        )
    u = torch.rand(k.shape, generator=generator, dtype=dtype, device=k.device)
    v = (k.to(dtype) + u) / levels
    return 2 * v - 1 if centered else v


def importance_weighted_logp(logps: torch.Tensor) -> torch.Tensor:
    """log (1/K) sum_j exp(logps[j]) over the first axis: K dequantization draws -> one tighter bound.

    Args:
        logps: shape (K, batch), log p_x of K dequantizations of the same examples.
    """
    if logps.ndim < 1 or logps.shape[0] < 1:
        raise ValueError(f"need logps of shape (K, batch) with K >= 1, got {tuple(logps.shape)}")
    return torch.logsumexp(logps, dim=0) - math.log(logps.shape[0])


def bits_per_dim(logp: torch.Tensor, dim: int, levels: int, *, centered: bool) -> torch.Tensor:
    """-(log p_x(x) + D log(c / L)) / (D ln 2): the discrete negative log-likelihood bound in bits per dimension."""
    scale = 2.0 if centered else 1.0
    return -(logp + dim * math.log(scale / levels)) / (dim * math.log(2.0))


def evaluate_dataset(
    sde: SDE,
    score_fn: Callable,
    x: np.ndarray | torch.Tensor,
    *,
    levels: int | None = None,
    centered: bool = False,
    n_dequantize: int = 1,
    batch_size: int = 256,
    seed: int = 0,
    device: torch.device | str = "cpu",
    callback: Callable[[int], None] | None = None,
    first_index: int = 0,
    **options,
) -> dict[str, np.ndarray]:
    """Per-example log-likelihoods of a whole data set, batch by batch (`log_likelihood` each).

    Continuous data (`levels` None): log p(x) in nats. Images of `levels` grey levels (values
    k / (levels - 1) in [0, 1]): each of `n_dequantize` draws adds uniform dequantization noise
    (`dequantize`); "logp" and "stderr" are the means over the draws, "bpd" the mean of the draws'
    bits per dimension (`bits_per_dim`), "bpd_iw" the importance-weighted bound over the draws
    (`importance_weighted_logp`), tighter for more draws (Ho et al. 2019). The dequantization
    noise of draw j of the batch starting at example b is seeded by (seed, b, j), and the
    divergence probes by one generator seeded by `seed`, so a result is a function of the seed.
    `first_index` is the index of x[0] in a larger set of which x is a part (a shard): its
    batches then draw the dequantization noise of the whole set's, so shards of a multiple of
    `batch_size` examples give the unsharded values (the Hutchinson probes restart per call).

    Args:
        x: the examples, (n, *dims), in [0, 1] for images.
        callback: called with the number of examples done after each batch (progress bars).
        **options: `log_likelihood`'s (eps, exact_divergence, n_probes, probe, rtol, atol, method, steps).

    Returns:
        numpy arrays of length n: "logp", "stderr" (Hutchinson's standard error, NaN for the exact
        divergence), "nfe" (summed over the draws), and for images "bpd" and "bpd_iw".
    """
    if n_dequantize < 1 or (levels is None and n_dequantize != 1):
        raise ValueError(f"n_dequantize must be >= 1, and 1 for continuous data (levels=None), got {n_dequantize}")
    dim = int(np.prod(x.shape[1:]))  # x stays as given: a lazy array (a prepared set's rows) is read chunk by chunk
    generator = torch.Generator(device).manual_seed(seed)
    columns: dict[str, list[torch.Tensor]] = {"logp": [], "stderr": [], "nfe": []}
    if levels is not None:
        columns["bpd"], columns["bpd_iw"] = [], []
    for begin in range(0, len(x), batch_size):
        chunk = x[begin : begin + batch_size]
        chunk = chunk if isinstance(chunk, torch.Tensor) else torch.as_tensor(np.asarray(chunk))
        draws = []
        for draw in range(n_dequantize):
            if levels is not None:
                noise = torch.Generator().manual_seed(seed * 7919 + (first_index + begin) * 31 + draw)
                x_in = dequantize(
                    torch.round(chunk * (levels - 1)), levels, centered=centered, generator=noise, dtype=torch.float32
                )
            else:
                x_in = chunk.to(torch.float32)
            logp, info = log_likelihood(sde, score_fn, x_in.to(device), generator=generator, **options)
            stderr = info.get("stderr", torch.full_like(logp, float("nan")))
            draws.append((logp.detach().cpu(), stderr.cpu(), info["nfe_per_sample"].cpu()))
        logps = torch.stack([d[0] for d in draws])
        columns["logp"].append(logps.mean(0))
        columns["stderr"].append(torch.stack([d[1] for d in draws]).mean(0))
        columns["nfe"].append(torch.stack([d[2] for d in draws]).sum(0))
        if levels is not None:
            columns["bpd"].append(bits_per_dim(logps.double(), dim, levels, centered=centered).mean(0))
            columns["bpd_iw"].append(bits_per_dim(importance_weighted_logp(logps.double()), dim, levels, centered=centered))
        if callback is not None:
            callback(len(chunk))
    return {k: torch.cat(v).double().numpy() for k, v in columns.items()}


def mean_and_stderr(values: np.ndarray) -> dict[str, float]:
    """{"mean", "stderr"}: the mean over examples and its standard error (NaN for one example)."""
    stderr = float(values.std(ddof=1) / math.sqrt(len(values))) if len(values) > 1 else float("nan")
    return {"mean": float(values.mean()), "stderr": stderr}
