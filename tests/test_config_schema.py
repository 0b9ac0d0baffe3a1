"""scoresde.config_schema.check: every config value is checked before work starts, all problems at once."""

import importlib

import ml_collections
import pytest

from scoresde import samplers
from scoresde.config import defaults as base
from scoresde.config import schema as config_schema
from scoresde.config.schema import boolean, integer, one_of, real, sequence_of, text
from tests.helpers import ROOT

CONFIG_DIR = ROOT / "configs"
ALL_CONFIGS = sorted(
    ".".join(p.relative_to(CONFIG_DIR).with_suffix("").parts)
    for p in CONFIG_DIR.rglob("*.py")
    if p.stem not in ("__init__", "presets", "base")
)


def problems_of(config) -> str:
    with pytest.raises(ValueError) as info:
        config_schema.check(config)
    return str(info.value)


def with_values(**overrides) -> ml_collections.ConfigDict:
    """base config with "section__key" overrides, assigned past ml_collections' own type checks."""
    config = base.get_config()
    for name, value in overrides.items():
        *sections, key = name.split("__")
        node = config
        for section in sections:
            node = node[section]
        with node.ignore_type():
            node[key] = value
    return config


def test_base_config_passes():
    config_schema.check(base.get_config())


def test_every_key_of_base_has_a_rule_except_the_sampler_sections():
    """The samplers' sections are judged by the samplers themselves (a dry run), not by rules."""
    keys = set(config_schema._flatten(base.get_config()))
    sampler_keys = {k for k in keys if k.split(".")[:2] in [["sampling", name] for name in samplers.available()]}
    assert sampler_keys and keys - sampler_keys == set(config_schema.RULES)
    assert not sampler_keys & set(config_schema.RULES)


def test_each_sampler_section_holds_its_loops_defaults():
    config = base.get_config()
    for name, info in samplers.REGISTRY.items():
        assert config.sampling[name].to_dict() == info.option_defaults(), name


@pytest.mark.parametrize("name", ALL_CONFIGS)
def test_every_config_file_passes(name):
    config_schema.check(importlib.import_module(f"configs.{name}").get_config())


BAD = [
    # ranges (the phrases tests/test_main.py looks for included)
    (dict(training__batch_size=0), "config.training.batch_size must be >= 1, got 0"),
    (dict(optim__lr=0.0), "config.optim.lr must be > 0, got 0.0"),
    (dict(model__ema_decay=1.0), "config.model.ema_decay must lie in [0, 1), got 1.0"),
    (dict(data__test_fraction=0.0), "config.data.test_fraction must lie in (0, 1)"),
    (dict(sde__sigma_min=0.0), "config.sde.sigma_min must be > 0"),
    (dict(sampling__lms__max_order=5), "config.sampling.lms: max_order must be in 1..4, got 5"),
    (dict(optim__grad_clip=float("nan")), "config.optim.grad_clip must be a finite number >= 0"),
    # types
    (dict(training__batch_size="64"), "config.training.batch_size must be an integer >= 1, got '64' (str)"),
    (dict(training__n_steps=1.5), "config.training.n_steps must be an integer >= 1, got 1.5 (float)"),
    (dict(model__fir=1), "config.model.fir must be True or False, got 1 (int)"),
    (dict(sampling__checkpoint=None), "config.sampling.checkpoint must be a string, got None"),
    (dict(model__ch_mult=3), "config.model.ch_mult must be a tuple or list, got 3 (int)"),
    (dict(benchmark__budgets=(10, 0)), "config.benchmark.budgets[1] must be >= 1, got 0"),
    # names
    (dict(sde__name="vpsd"), "config.sde.name: unknown SDE 'vpsd' (did you mean 'vpsde'?); allowed: vpsde, subvpsde"),
    (dict(data__dataset="mnist_typo"), "unknown dataset 'mnist_typo'"),
    (dict(sampling__sampler="nope"), "config.sampling.sampler: unknown sampler 'nope'"),
    (dict(model__name="resnet"), "unknown model 'resnet'; allowed: mlp, unet"),
    (dict(sampling__time_grid="karas"), "unknown time grid 'karas' (did you mean 'karras'?); allowed: '', tuned, uniform"),
    (dict(training__weighting="sigma"), "config.training.weighting: unknown weighting 'sigma'"),
    (dict(model__parameterization="v"), "unknown parameterization 'v'; allowed: score, eps, x0, edm"),
    (dict(model__progressive="skip"), "config.model.progressive: unknown progressive 'skip'"),
    (dict(sampling__predictor_corrector__predictor="heun"), "config.sampling.predictor_corrector: unknown predictor 'heun'"),
    (dict(sampling__unipc__interpolate_in="t"), "config.sampling.unipc: interpolate_in must be 'lambda' or 's', got 't'"),
    (dict(sampling__dpm_solver_pp__order=4), "config.sampling.dpm_solver_pp: "),
    (dict(sampling__snr=0.16), "config.sampling.snr: unknown key; did you mean config.sampling.annealed_langevin.snr or"),
    (dict(sampling__denoise="tweedy"), "unknown denoise mode 'tweedy' (did you mean 'tweedie'?)"),
    (
        dict(benchmark__samplers=("ddim", "heun2")),
        "config.benchmark.samplers[1]: sampler spec 'heun2': unknown sampler 'heun2' (did you mean 'heun'?)",
    ),
    (dict(benchmark__problems=("donut",)), "config.benchmark.problems[0]: unknown problem 'donut'"),
    (dict(benchmark__target="model"), "config.benchmark.target: unknown target 'model'; allowed: oracle, checkpoint"),
    (dict(device="gpu"), "config.device: unknown device 'gpu'"),
    # the new keys
    (dict(training__grad_accum=0), "config.training.grad_accum must be >= 1"),
    (
        dict(training__precision="fp64"),
        "config.training.precision: unknown precision 'fp64' (did you mean 'fp16'?); allowed: fp32, bf16, fp16",
    ),
    (dict(training__compile="yes"), "config.training.compile must be True or False"),
    (dict(training__nonfinite="ignore"), "config.training.nonfinite: unknown policy 'ignore'; allowed: stop, skip"),
    (dict(training__meta_checkpoint_freq=-1), "config.training.meta_checkpoint_freq must be >= 0"),
    (dict(training__keep_checkpoints=0), "config.training.keep_checkpoints must be >= 1"),
    (dict(distributed__backend="mpi"), "config.distributed.backend: unknown backend 'mpi'; allowed: auto, nccl, gloo"),
    (dict(distributed__timeout_minutes=0), "config.distributed.timeout_minutes must be > 0"),
    # cross-key checks
    # the SDE constructors' own checks, on a dry build of each SDE the run builds
    (dict(sde__beta_max=0.01), "config.sde: beta_max must be > beta_min, got beta_min=0.1, beta_max=0.01"),
    (
        dict(sde__sigma_max=0.001),
        "config.sde: sigma_max must be > sigma_min, got sigma_min=0.01, sigma_max=0.001 "
        "(as config.benchmark.sdes builds 'vesde')",
    ),
    # the Trainer's own settings check (train.loop.check_settings)
    (dict(training__grad_accum=3), "config.training: batch_size=256 must be divisible by the number of micro-batches"),
    (dict(training__precision="fp16", device="cpu"), "config.training: precision='fp16' needs CUDA"),
    # the loader's own argument checks (data.check_dataset_options), on the arguments the run passes
    (dict(data__dataset="npz"), "config.data: dataset 'npz' needs a path to the .npz file"),
    (dict(data__path="x.npz"), "config.data: path is only used by the datasets 'npz', 'folder', 'cifar10'"),
    (dict(data__dataset="folder", data__path="imgs"), "config.data: dataset 'folder' needs an image_size"),
    (dict(data__dataset="digits", data__grayscale=True), "config.data: grayscale is only used by the 'folder' dataset"),
    (dict(data__dataset="digits", data__random_flip=True), "left-right flips do not make sense for dataset 'digits'"),
    (dict(sampling__probability_flow__method="RK45"), "config.sampling.probability_flow: unknown method 'RK45' for backend"),
    # the network's own constructor checks, on a dry build on the meta device for the data's shape
    (
        dict(data__dataset="digits", model__name="unet", model__embedding_type="positional", model__nf=6 - 1),
        "config.model: positional embeddings need an even nf >= 4, got 5 (building 'unet' for examples of shape (1, 8, 8))",
    ),
    (
        dict(data__dataset="digits", data__pad_to=10, model__name="unet", model__ch_mult=(1, 2, 2)),
        "config.model: image size 10 is not divisible by the total down-sampling factor 4",
    ),
    (dict(model__name="unet"), "config.model: the U-Net needs square images of shape (channels, size, size), got (2,)"),
    (dict(model__embed_dim=7), "config.model: need width >= 1, depth >= 1, even embed_dim >= 4"),
]


@pytest.mark.parametrize("overrides, expected", BAD, ids=[expected[:50] for _, expected in BAD])
def test_a_bad_value_is_reported_with_its_key(overrides, expected):
    message = problems_of(with_values(**overrides))
    assert expected in message
    assert message.startswith("1 problem(s)")  # one override, one problem: nothing reported twice


@pytest.mark.parametrize(
    "typo, suggestion",
    [
        ("training.batch_sise", "did you mean config.training.batch_size?"),
        ("training.lr", "did you mean config.classifier.lr or config.optim.lr?"),  # every section that has it
        ("sampling.num_steps", "did you mean config.sampling.steps?"),
        ("trainig", "did you mean config.training?"),
        ("sampling.lms.order", "did you mean config.sampling.lms.max_order?"),
    ],
)
def test_an_unknown_key_is_reported_with_a_suggestion(typo, suggestion):
    config = base.get_config()
    *sections, key = typo.split(".")
    node = config
    for section in sections:
        node = node[section]
    node[key] = 1
    assert f"config.{typo}: unknown key; {suggestion}" in problems_of(config)


def test_an_unknown_key_in_a_sampler_section_names_the_samplers_options():
    config = base.get_config()
    config.sampling.heun.gamma = 1.0
    assert "config.sampling.heun.gamma: unknown key (sampler 'heun' takes no option 'gamma'; its options: none)" in (
        problems_of(config)
    )
    config = base.get_config()
    config.sampling.heun.s_churn = 1.0  # EDM's churn is the stochastic sampler's option: the message says where
    assert "config.sampling.heun.s_churn: unknown key; did you mean config.sampling.edm_stochastic.s_churn?" in (
        problems_of(config)
    )


def test_a_section_replaced_by_a_value_and_a_missing_key_are_reported():
    config = base.get_config()
    with config.ignore_type():
        config.eval = 3
    del config.sampling.predictor_corrector["snr"]
    message = problems_of(config)
    assert "config.eval must be a section" in message
    assert "config.sampling.predictor_corrector.snr: missing" in message


def test_every_problem_is_reported_in_one_error():
    config = with_values(training__batch_size=0, sde__name="vpsd", sde__beta_max=0.01)
    config.training.batch_sise = 64
    message = problems_of(config)
    assert message.startswith("4 problem(s) in the config:")
    for expected in (
        "batch_size must be >= 1",
        "unknown SDE 'vpsd'",
        "beta_max must be > beta_min",
        "config.training.batch_sise: unknown key",
    ):
        assert expected in message
    assert len(message.splitlines()) == 5


def test_a_cross_check_waits_for_its_keys_own_rules():
    message = problems_of(with_values(training__grad_accum=0))  # no division by zero, one problem
    assert message.splitlines()[1:] == ["config.training.grad_accum must be >= 1, got 0"]


def test_rule_helpers():
    assert integer(min=1)("k", 1) == [] and integer(min=1)("k", True)  # a bool is no integer
    assert real(min=0, open_min=True)("k", 2) == []  # an int is a number
    assert real(0, 1, open_max=True)("k", 1.0) == ["config.k must lie in [0, 1), got 1.0"]
    assert real()("k", float("inf"))
    assert boolean()("k", False) == [] and boolean()("k", 0)
    assert text()("k", "") == [] and text()("k", b"x")
    assert one_of((True, False, "tweedie"))("k", True) == [] and one_of((True, False))("k", 1)
    assert sequence_of(integer(min=1), min_len=1)("k", []) == ["config.k must have at least 1 element(s), got []"]
    assert sequence_of(integer(min=1))("k", [1, 2]) == []
    assert config_schema.like(0.5)("k", 1) == [] and config_schema.like(0.5)("k", "0.5")


def test_inception_digest_must_be_sha256_hex():
    from scoresde.config import schema as config_schema
    from scoresde.config.defaults import get_config

    config = get_config()
    config.benchmark.inception_sha256 = "6726825d"
    with pytest.raises(ValueError, match="64 hexadecimal digits"):
        config_schema.check(config)
    config.benchmark.inception_sha256 = "ab" * 32
    config_schema.check(config)


def test_the_network_dry_build_allocates_nothing_and_skips_what_only_the_data_can_tell(monkeypatch):
    """The check builds the network on the meta device (a U-Net of 62 M parameters costs no memory),
    and does not read an .npz file to learn its shape (the run's real build checks it)."""
    from scoresde import data

    built = []

    def spy(*args, **kwargs):
        network = real_get_model(*args, **kwargs)
        built.append((sum(p.numel() for p in network.parameters()), {p.device.type for p in network.parameters()}))
        return network

    real_get_model = config_schema.get_model
    monkeypatch.setattr(config_schema, "get_model", spy)
    big = with_values(data__dataset="cifar10", data__path="nowhere", model__name="unet", model__nf=128)
    big.model.ch_mult, big.model.num_res_blocks = (1, 2, 2, 2), 4
    config_schema.check(big)  # nothing is loaded: the folder does not exist
    assert built[0][0] > 60_000_000 and built[0][1] == {"meta"}
    monkeypatch.setattr(data, "load_npz", lambda *a, **k: pytest.fail("the check read the data"))
    config_schema.check(with_values(data__dataset="npz", data__path="nowhere.npz", model__name="unet"))
    assert len(built) == 1  # no shape, no dry build
