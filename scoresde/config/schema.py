"""Validation at the edge: every config value is checked before any work starts.

`check(config)` compares an experiment config with `scoresde/config/defaults.py` (the schema of record: every
key with its default) and raises one `ValueError` listing every problem, one line each:

    config.training.batch_size must be >= 1, got 0
    config.sde.name: unknown SDE 'vpsd' (did you mean 'vpsde'?); allowed: vpsde, subvpsde, ...
    config.training.batch_sise: unknown key; did you mean config.training.batch_size?

It checks, in order: unknown and missing keys; each value's type and range or allowed names
(`RULES`, one rule per key of base.py; a key without a rule must at least have its default's type);
and the rules that tie several keys together (`_cross_checks`), mostly dry runs of the code that will
use the values: each SDE built, the network built on the `meta` device with its score adapter, each
sampler's options, the dataset's options and the Trainer's settings checked by their own checks.
The allowed names come from the library modules that use them, so this table never lists a
sampler or an SDE twice. What only the
machine can tell (is CUDA there, does the file exist, the world size) is checked at run time.
"""

from __future__ import annotations

import difflib
import math
import re
from typing import Any, Callable

import ml_collections
import torch

from scoresde import controllable, data, integrate, likelihood, losses, samplers, score
from scoresde.config import arguments, defaults
from scoresde.eval import benchmark
from scoresde.integrate import min_rtol
from scoresde.models import MODELS, get_model, mlp, unet
from scoresde.score import NetworkScore
from scoresde.sde_lib import SDES, get_sde_from_options
from scoresde.train import distributed, loop

Rule = Callable[[str, Any], list]  # (dotted key, value) -> problem lines (empty: fine)


def _line(key: str, text: str) -> str:
    # "config.k must be ..." reads as a sentence; other problems follow a colon.
    return f"config.{key} {text}" if text.startswith("must") else f"config.{key}: {text}"


def _got(value: Any) -> str:
    return f"{value!r} ({type(value).__name__})"


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_real(value: Any) -> bool:
    return (_is_int(value) or isinstance(value, float)) and math.isfinite(value)


# -- rule helpers ----------------------------------------------------------------------------
def _number(kind: str, is_kind: Callable[[Any], bool], min, max, open_min, open_max) -> Rule:
    """`kind` (e.g. "an integer") with min <(=) value <(=) max; a bound of None is no bound."""
    if min is not None and max is not None:
        words = f"in {'(' if open_min else '['}{min}, {max}{')' if open_max else ']'}"
    elif min is not None:
        words = f"{'>' if open_min else '>='} {min}"
    else:
        words = "" if max is None else f"{'<' if open_max else '<='} {max}"

    def rule(key, value):
        if not is_kind(value):
            return [_line(key, f"must be {kind} {words}".rstrip() + f", got {_got(value)}")]
        fine = (min is None or (value > min if open_min else value >= min)) and (
            max is None or (value < max if open_max else value <= max)
        )
        return [] if fine else [_line(key, f"must {'lie' if words[:2] == 'in' else 'be'} {words}, got {value!r}")]

    return rule


def integer(min=None, max=None) -> Rule:
    """An int (not a bool) in [min, max]."""
    return _number("an integer", _is_int, min, max, False, False)


def real(min=None, max=None, open_min=False, open_max=False) -> Rule:
    """A finite float or int in the interval; open_min / open_max exclude the end points."""
    return _number("a finite number", _is_real, min, max, open_min, open_max)


def boolean() -> Rule:
    return lambda key, value: [] if isinstance(value, bool) else [_line(key, f"must be True or False, got {_got(value)}")]


def text() -> Rule:
    return lambda key, value: [] if isinstance(value, str) else [_line(key, f"must be a string, got {_got(value)}")]


def hex_digest() -> Rule:
    """ "" or a SHA-256 digest: 64 hexadecimal digits."""

    def rule(key, value):
        if isinstance(value, str) and (value == "" or re.fullmatch(r"[0-9a-fA-F]{64}", value)):
            return []
        return [_line(key, f"must be '' or a SHA-256 digest (64 hexadecimal digits), got {_got(value)}")]

    return rule


def sampler_spec() -> Rule:
    """A benchmark grid entry, "name[@time_grid][:key=value,...]" (`benchmark.parse_sampler_spec`)."""

    def rule(key, value):
        if not isinstance(value, str):
            return [_line(key, f"must be a sampler spec string, got {_got(value)}")]
        try:
            parsed = benchmark.parse_sampler_spec(value)
            options = dict(parsed.options)
            if "analytic_first_step" in options:
                samplers.gaussian_moments(options.pop("analytic_first_step"))
            samplers.check_options(str(parsed.sampler), options)
        except ValueError as error:
            return [_line(key, str(error))]
        return []

    return rule


def registered_sampler() -> Rule:
    """A name of `samplers.available()` when the config is checked (samplers registered at run time count)."""
    return lambda key, value: one_of(samplers.available(), "sampler")(key, value)


def one_of(names, what: str = "value") -> Rule:
    """One of `names` (same type too: True is not 1); `what` names the kind in the message ('SDE')."""
    names = tuple(names)

    def rule(key, value):
        if any(type(value) is type(n) and value == n for n in names):
            return []
        strings = [n for n in names if isinstance(n, str)]
        close = difflib.get_close_matches(value, strings, n=1, cutoff=0.7) if isinstance(value, str) else []
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        allowed = ", ".join(repr(n) if n == "" else str(n) for n in names)
        return [_line(key, f"unknown {what} {value!r}{hint}; allowed: {allowed}")]

    return rule


def sequence_of(element: Rule, min_len: int = 0) -> Rule:
    """A tuple or list of at least min_len elements, each passing `element` (reported as key[i])."""

    def rule(key, value):
        if not isinstance(value, (tuple, list)):
            return [_line(key, f"must be a tuple or list, got {_got(value)}")]
        if len(value) < min_len:
            return [_line(key, f"must have at least {min_len} element(s), got {value!r}")]
        return [line for i, v in enumerate(value) for line in element(f"{key}[{i}]", v)]

    return rule


def device() -> Rule:
    def rule(key, value):
        if isinstance(value, str) and re.fullmatch(r"auto|cpu|cuda(:\d+)?", value):
            return []
        return [_line(key, f"unknown device {value!r}; allowed: auto, cpu, cuda, cuda:<k> (k = 0, 1, ...)")]

    return rule


def like(default: Any) -> Rule:
    """The fallback for a key of base.py without a rule: the default's type (an int is a float)."""
    kinds = (
        (int, float) if isinstance(default, float) else (tuple, list) if isinstance(default, (tuple, list)) else (type(default),)
    )

    def rule(key, value):
        ok = isinstance(value, kinds) and (isinstance(default, bool) or not isinstance(value, bool))
        expected = f"must be of type {type(default).__name__} like its default {default!r}"
        return [] if ok else [_line(key, f"{expected}, got {_got(value)}")]

    return rule


def _scales(key: str, value: Any) -> list:
    """Comma-separated finite numbers, e.g. "0,1,3"."""
    try:
        parts = [float(v) for v in str(value).split(",") if v.strip()]
    except ValueError:
        parts = []
    if not isinstance(value, str) or not parts or not all(math.isfinite(v) for v in parts):
        return [_line(key, f'must be comma-separated finite numbers such as "1,2,4", got {_got(value)}')]
    return []


positive, non_negative, probability = real(min=0, open_min=True), real(min=0), real(0, 1, open_max=True)
count, count0, flag = integer(min=1), integer(min=0), boolean()  # count0: 0 allowed ("never", "none")


def _checkpoint_selection(key: str, value: Any) -> list:
    """config.eval.checkpoints: a selection word or comma-separated non-negative steps."""
    from scoresde.cli.eval import CHECKPOINT_SELECTIONS

    if not isinstance(value, str):
        return [_line(key, f"must be a string, got {_got(value)}")]
    if value in CHECKPOINT_SELECTIONS or all(part.strip().isdigit() for part in value.split(",")):
        return []
    return [_line(key, f"must be one of {', '.join(CHECKPOINT_SELECTIONS)} or comma-separated steps, got {value!r}")]


def _one_of_class_labels(key: str, value: Any) -> list:
    from scoresde.cli.eval import CLASS_LABELS

    return one_of(CLASS_LABELS, "class labels")(key, value)


def _section(section: str, /, **rules: Rule) -> dict[str, Rule]:
    return {f"{section}.{key}": rule for key, rule in rules.items()}


# -- one rule per key of config/defaults.py (see its comments for what each key means) ---------------
RULES: dict[str, Rule] = {
    "seed": count0,
    "device": device(),
    "allow_config_mismatch": flag,
    **_section(
        "data",
        dataset=one_of(data.DATASETS, "dataset"),
        path=text(),
        image_size=count0,
        grayscale=flag,
        n_examples=count,
        pad_to=count0,
        centered=flag,
        random_flip=flag,
        cache=flag,
        cache_dir=text(),
        prefetch=flag,
        num_workers=count0,
        test_fraction=real(0, 1, open_min=True, open_max=True),
    ),
    **_section(
        "sde",
        name=one_of(SDES, "SDE"),
        beta_min=positive,
        beta_max=positive,
        sigma_min=positive,
        sigma_max=positive,
        s=non_negative,
        max_beta=real(0, 1, open_min=True, open_max=True),
        num_scales=count,
    ),
    **_section(
        "model",
        name=one_of(MODELS, "model"),
        fourier_scale=positive,
        dropout=probability,
        width=count,
        depth=count,
        embed_dim=count,
        time_embedding=one_of(mlp.TIME_EMBEDDINGS, "time_embedding"),
        nf=count,
        ch_mult=sequence_of(count, min_len=1),
        num_res_blocks=count,
        attn_resolutions=sequence_of(count),
        resblock_type=one_of(unet.RESBLOCK_TYPES, "resblock_type"),
        resamp_with_conv=flag,
        fir=flag,
        fir_kernel=sequence_of(real(), min_len=1),
        skip_rescale=flag,
        progressive=one_of(unet.PROGRESSIVE, "progressive"),
        progressive_input=one_of(unet.PROGRESSIVE_INPUT, "progressive_input"),
        progressive_combine=one_of(unet.PROGRESSIVE_COMBINE, "progressive_combine"),
        embedding_type=one_of(unet.EMBEDDING_TYPES, "embedding_type"),
        log_label=flag,
        scale_by_sigma=flag,
        center_input=flag,
        num_classes=count0,
        init_scale=non_negative,
        parameterization=one_of(score.PARAMETERIZATIONS, "parameterization"),
        time_label=one_of(score.TIME_LABELS, "time label"),
        scale_input=flag,
        sigma_data=positive,
        ema_decay=probability,
    ),
    **_section(
        "training",
        batch_size=count,
        n_steps=count,
        eps=positive,
        weighting=one_of(losses.WEIGHTINGS, "weighting"),
        time_distribution=one_of(losses.TIME_DISTRIBUTIONS, "time distribution"),
        p_mean=real(),
        p_std=positive,
        reduce=one_of(losses.REDUCTIONS, "reduction"),
        log_freq=count,
        checkpoint_freq=count,
        keep_checkpoints=count,
        meta_checkpoint_freq=count0,
        resume_from=text(),
        sample_freq=count0,
        grad_accum=count,
        precision=one_of(loop.PRECISIONS, "precision"),
        compile=flag,
        nonfinite=one_of(loop.NONFINITE_POLICIES, "policy"),
        progress=flag,
        tensorboard=flag,
        label_dropout=probability,
    ),
    **_section("distributed", backend=one_of(distributed.BACKENDS, "backend"), timeout_minutes=positive),
    **_section(
        "optim",
        lr=positive,
        beta1=probability,
        eps=positive,
        weight_decay=non_negative,
        warmup=count0,
        grad_clip=non_negative,
    ),
    **_section(
        "sampling",
        sampler=registered_sampler(),
        steps=integer(1, samplers.MAX_STEPS),
        eps=positive,
        time_grid=one_of(("", "tuned") + tuple(samplers.TIME_GRIDS), "time grid"),
        tune_samples=count,
        tune_evaluations=count,
        denoise=one_of(samplers.DENOISE_MODES, "denoise mode"),
        analytic_first_step=flag,
        n_samples=count,
        batch_size=count,
        use_ema=flag,
        checkpoint=text(),
        checkpoint_settings=text(),
        seed=count0,
    ),
    **_section(
        "benchmark",
        target=one_of(benchmark.TARGETS, "target"),
        problems=sequence_of(one_of(benchmark.ORACLE_PROBLEMS, "problem"), min_len=1),
        sdes=sequence_of(one_of(SDES, "SDE"), min_len=1),
        samplers=sequence_of(sampler_spec(), min_len=1),
        budgets=sequence_of(count, min_len=1),
        seeds=count,
        n_samples=integer(min=4),
        plot_budget=count,
        reference_rtol=positive,
        progress=flag,
        inception_weights=text(),
        inception_sha256=hex_digest(),
    ),
    **_section(
        "likelihood",
        split=one_of(data.SPLITS, "split"),
        n_examples=count0,
        batch_size=count,
        divergence=one_of(likelihood.DIVERGENCES, "divergence"),
        n_probes=count,
        probe=one_of(likelihood.PROBES, "probe"),
        method=one_of(likelihood.METHODS, "method"),
        steps=count,
        rtol=positive,
        atol=positive,
        eps=real(0, 1, open_min=True, open_max=True),
        n_dequantize=count,
        use_ema=flag,
        seed=count0,
    ),
    **_section(
        "classifier",
        width=count,
        depth=count,
        embed_dim=integer(min=4),
        fourier_scale=positive,
        dropout=probability,
        n_steps=count,
        batch_size=count,
        lr=positive,
        ema_decay=real(0, 1),
        checkpoint_freq=count,
    ),
    **_section(
        "controllable",
        mask=one_of(controllable.MASKS, "mask"),
        mask_fraction=real(0, 1, open_min=True, open_max=True),
        n_images=count,
        method=one_of(controllable.METHODS, "method"),
        particles=count,
        noise=one_of(("",) + controllable.NOISE_MODES, "noise mode"),
        guidance=one_of(controllable.GUIDANCE, "guidance"),
        scales=_scales,
        n_per_class=count,
        classifier_workdir=text(),
    ),
    **_section(
        "eval",
        n_projections=count,
        checkpoints=_checkpoint_selection,
        samplers=sequence_of(sampler_spec()),
        num_samples=integer(min=2),
        shard_size=count,
        runs=count,
        first_seed=count0,
        reference=text(),
        reference_examples=count0,
        kernel_examples=integer(min=2),
        feature_batch=count,
        stats_dir=text(),
        follow_timeout=positive,
        poll_seconds=positive,
        class_labels=_one_of_class_labels,
        bpd=flag,
        bpd_shard=count,
    ),
}


# -- keys ------------------------------------------------------------------------------------------
def _flatten(config: ml_collections.ConfigDict, prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key in config.keys():
        value = config[key]
        flat.update(_flatten(value, f"{prefix}{key}.") if isinstance(value, ml_collections.ConfigDict) else {prefix + key: value})
    return flat


def _suggest(path: str, siblings: list[str]) -> str:
    """'did you mean ...' for a mistyped key: a close name in its section, else the same name elsewhere."""
    prefix, _, leaf = path.rpartition(".")
    close = [f"{prefix}.{k}".lstrip(".") for k in difflib.get_close_matches(leaf, siblings, n=1)]
    close = close or [k for k in _flatten(defaults.get_config()) if k.rpartition(".")[2] == leaf][:3]
    if close:
        return f"; did you mean {' or '.join('config.' + k for k in close)}?"
    section, _, sampler = prefix.rpartition(".")
    if section == "sampling" and sampler in samplers.REGISTRY:  # a sampler's section: its loop's options
        options = ", ".join(samplers.get(sampler).options) or "none"
        return f" (sampler {sampler!r} takes no option {leaf!r}; its options: {options})"
    return " (scoresde/config/defaults.py has no such key)"


def _key_problems(config: ml_collections.ConfigDict, schema: ml_collections.ConfigDict, prefix: str = "") -> list[str]:
    problems = []
    for key in config.keys():
        path = prefix + key
        if key not in schema:
            problems.append(_line(path, f"unknown key{_suggest(path, list(schema.keys()))}"))
        elif isinstance(schema[key], ml_collections.ConfigDict) != isinstance(config[key], ml_collections.ConfigDict):
            kind = "a section (a ConfigDict)" if isinstance(schema[key], ml_collections.ConfigDict) else "a value, not a section,"
            problems.append(_line(path, f"must be {kind} as in scoresde/config/defaults.py, got {_got(config[key])}"))
        elif isinstance(schema[key], ml_collections.ConfigDict):
            problems += _key_problems(config[key], schema[key], path + ".")
    missing = [key for key in schema.keys() if key not in config]
    problems += [_line(prefix + key, "missing (every key of scoresde/config/defaults.py must be present)") for key in missing]
    return problems


# -- rules across keys -------------------------------------------------------------------------------
def _cross_checks(c: ml_collections.ConfigDict, fine: Callable[..., bool]):
    """Rules tying keys together, as (key, problem); each runs when its keys passed their own rules."""
    d, t, s = c.data, c.training, c.sampling
    yield from _sde_checks(c, fine)
    if fine("device", *(f"training.{k}" for k in ("precision", "nonfinite", "batch_size", "grad_accum"))):
        try:  # the Trainer's own check; the device is known here only when it is "cpu" (else: at run time)
            loop.check_settings(t, "cpu" if c.device == "cpu" else "cuda")
        except ValueError as error:
            yield "training", str(error).removeprefix("config.training.")

    def data_fine(key):
        return fine("data.dataset", f"data.{key}")

    data_ok = fine(*(f"data.{k}" for k in ("dataset", "n_examples", "path", "pad_to", "image_size", "grayscale")))
    if data_ok:
        try:  # the loader's own argument check, on the arguments the run will pass it
            data.check_dataset_options(**arguments.dataset_options(c))
        except ValueError as error:
            data_ok = False
            yield "data", str(error)
    if data_ok:
        yield from _network_checks(c, fine)
    if data_fine("random_flip") and d.random_flip and d.dataset in data.NO_FLIP_DATASETS:
        flippable = ", ".join(n for n in data.DATASETS if n not in data.NO_FLIP_DATASETS)
        yield (
            "data.random_flip",
            (
                f"left-right flips do not make sense for dataset {d.dataset!r} (toy points are no "
                f"images, mirrored digits are no digits); use it with {flippable}"
            ),
        )
    if fine("sampling.time_grid", "sampling.sampler") and s.time_grid == "tuned" and s.sampler not in samplers.deterministic():
        yield (
            "sampling.time_grid",
            (
                f"'tuned' needs a fixed-step ODE solver ({', '.join(samplers.deterministic())}), "
                f"not {s.sampler!r}: the grid is tuned against the flow's solution"
            ),
        )
    yield from _sampler_option_checks(c, fine)
    yield from _time_and_tolerance_checks(c, fine)


def _network_checks(c: ml_collections.ConfigDict, fine: Callable[..., bool]):
    """A dry build of the network on the `meta` device (shapes only: no memory, no weights) for the
    data's example shape, then of its score adapter: the constructors' own ValueErrors (a U-Net's
    resolution against its levels, positional embeddings' nf, a parameterisation that does not fit,
    ...). Skipped where the shape is only known by reading the data (an .npz file)."""
    shape = data.example_shape(**arguments.dataset_options(c))
    if shape is None or not fine(*(f"model.{k}" for k in c.model.keys())):
        return
    try:
        with torch.device("meta"):
            network = get_model(c.model.name, shape, **arguments.model_options(c))
    except ValueError as error:
        yield "model", f"{error} (building {c.model.name!r} for examples of shape {shape})"
        return
    if not fine(*(f"sde.{k}" for k in c.sde.keys())):
        return
    try:
        sde = get_sde_from_options(c.sde.name, c.sde, N=c.sde.num_scales)
    except ValueError:  # reported by _sde_checks
        return
    try:
        NetworkScore(network, sde, **arguments.score_options(c))
    except ValueError as error:
        yield "model", str(error)


def _sampler_option_checks(c: ml_collections.ConfigDict, fine: Callable[..., bool]):
    """Each sampler's section, config.sampling.<name>, as the sampler itself judges it
    (`samplers.check_options`: its own ValueErrors, from a dry run that samples nothing). Every
    section is checked, not only the chosen sampler's: the benchmark reads them all."""
    name = c.sampling.sampler
    if fine("sampling.sampler") and name in samplers.available() and c.sampling.get(name) is None:
        yield (
            f"sampling.{name}",
            f"missing: sampler {name!r} was registered after get_config() built the defaults; register it before",
        )
    for sampler in samplers.available():
        section = c.sampling.get(sampler)
        if not isinstance(section, ml_collections.ConfigDict) or not fine(*(f"sampling.{sampler}.{k}" for k in section.keys())):
            continue
        known = {k: v for k, v in section.items() if k in samplers.get(sampler).options}  # others: unknown keys
        try:
            samplers.check_options(sampler, known)
        except ValueError as error:
            yield f"sampling.{sampler}", str(error)


def _sde_checks(c: ml_collections.ConfigDict, fine: Callable[..., bool]):
    """A dry build of each SDE the run will build from config.sde's parameters: config.sde.name's,
    and the benchmark's config.benchmark.sdes; the constructors' own ValueErrors."""
    if not fine(*(f"sde.{k}" for k in c.sde.keys() if k != "name")):
        return
    names = ([c.sde.name] if fine("sde.name") else []) + (list(c.benchmark.sdes) if fine("benchmark.sdes") else [])
    for name in dict.fromkeys(names):
        try:
            get_sde_from_options(name, c.sde, N=c.sde.num_scales)
        except ValueError as error:
            where = "" if name == c.sde.name else f" (as config.benchmark.sdes builds {name!r})"
            yield "sde", f"{error}{where}"


def _time_and_tolerance_checks(c: ml_collections.ConfigDict, fine: Callable[..., bool]):
    """Times against the SDE's end time T (a dry build of the SDE), tolerances against float32."""
    sde_keys = [f"sde.{k}" for k in c.sde.keys()]
    if fine(*sde_keys):
        try:
            T = float(get_sde_from_options(c.sde.name, c.sde, N=c.sde.num_scales).T)
        except ValueError:  # its parameters' own problems are reported by _sde_checks
            T = math.inf
        for key in ("training.eps", "sampling.eps", "likelihood.eps"):
            section, name = key.split(".")
            if fine(key) and not c[section][name] < T:
                yield key, f"must be < T = {T:g}, the end time of SDE {c.sde.name!r}, got {c[section][name]!r}"
    lik = c.likelihood
    if fine(*(f"likelihood.{k}" for k in ("method", "rtol", "atol", "steps"))):
        backend, method = likelihood.SOLVERS[lik.method]
        try:  # the integrator's own check, in float32 (the network's precision; scipy's is float64)
            integrate.check_options(backend, method, rtol=lik.rtol, atol=lik.atol, dtype=torch.float32, steps=lik.steps)
        except ValueError as error:
            yield "likelihood", f"{error} (method {lik.method!r})"
    low = min_rtol(torch.float32)  # the reference flows run on float32 networks (the sampler's own rtol: its dry run)
    if fine("benchmark.reference_rtol") and c.benchmark.reference_rtol < low:
        yield (
            "benchmark.reference_rtol",
            (
                f"must be >= {low:.2g}: float32 (the network's precision) cannot resolve a smaller relative "
                f"tolerance and the adaptive solver would stall; got {c.benchmark.reference_rtol!r}"
            ),
        )


def check(config: ml_collections.ConfigDict) -> None:
    """Raise one ValueError listing every problem of `config` (see the module docstring); else None."""
    schema = defaults.get_config()
    problems = _key_problems(config, schema)
    values, default_values = _flatten(config), _flatten(schema)
    bad = {key for key in default_values if key not in values}
    for key in (k for k in default_values if k in values):
        found = RULES.get(key, like(default_values[key]))(key, values[key])
        problems += found
        bad |= {key} if found else set()
    sections = [k for k in schema.keys() if isinstance(schema[k], ml_collections.ConfigDict)]
    if all(isinstance(config.get(k), ml_collections.ConfigDict) for k in sections):
        problems += [_line(key, text) for key, text in _cross_checks(config, lambda *keys: bad.isdisjoint(keys))]
    if problems:
        raise ValueError(f"{len(problems)} problem(s) in the config:\n" + "\n".join(problems))
