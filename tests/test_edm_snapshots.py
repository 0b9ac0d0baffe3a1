"""EDM network snapshots: read without executing anything, rebuilt from the file alone, outputs reproduced."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from scoresde import samplers
from scoresde.models import edm
from scoresde.models.edm_snapshot import (
    ALLOWED_GLOBALS,
    SnapshotError,
    UnsafeSnapshotError,
    load_edm_snapshot,
    read_snapshot,
    snapshot_kimg,
)
from scoresde.score import DenoiserScore
from scoresde.sde_lib import EDMSDE, VPSDE

FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "edm"
NAMES = ["edm_ddpmpp_uncond", "edm_ncsnpp_uncond", "vp_ddpmpp_cond", "ve_ncsnpp_cond", "edm_adm_cond"]
needs_fixtures = pytest.mark.skipif(not FIXTURES.is_dir(), reason="EDM fixtures not present")


@needs_fixtures
@pytest.mark.parametrize("name", NAMES)
def test_fixture_reproduces_edm_denoiser(name):
    reference = json.loads((FIXTURES / "fixtures.json").read_text())[name]
    net = load_edm_snapshot(FIXTURES / f"{name}.pkl")
    assert type(net).__name__ == reference["class"]
    layout = [(k, list(v.shape)) for k, v in net.state_dict().items()]
    assert layout == [(e["key"], e["shape"]) for e in reference["state_dict"]]
    io = np.load(FIXTURES / f"{name}_io.npz")
    x, sigma = torch.from_numpy(io["x"]), torch.from_numpy(io["sigma"])
    labels = torch.from_numpy(io["class_labels"]) if "class_labels" in io else None
    with torch.no_grad():
        denoised = net(x, sigma, labels)
    expected = torch.from_numpy(io["denoised"])
    assert torch.allclose(denoised, expected, atol=2e-6 * expected.abs().max().item(), rtol=0)
    # the network's own part c_out F, not only the skip c_skip x, is reproduced
    c_skip = net.coefficients(sigma.reshape(-1, 1, 1, 1))[0]
    assert torch.allclose(denoised - c_skip * x, expected - c_skip * x, atol=2e-6, rtol=1e-4)
    assert net.label_dim == (10 if labels is not None else 0) and net.img_resolution == 16


@needs_fixtures
def test_snapshot_attributes_follow_the_preconditioning():
    vp = load_edm_snapshot(FIXTURES / "vp_ddpmpp_cond.pkl")
    assert (vp.beta_d, vp.beta_min, vp.M, vp.epsilon_t) == (19.9, 0.1, 1000, 1e-5)
    assert vp.sigma_max == pytest.approx(np.sqrt(np.expm1(0.5 * 19.9 + 0.1)), rel=1e-6)
    assert vp.sigma_inv(vp.sigma(torch.tensor([0.3, 0.9]))).tolist() == pytest.approx([0.3, 0.9], rel=1e-5)
    ve = load_edm_snapshot(FIXTURES / "ve_ncsnpp_cond.pkl")
    assert (ve.sigma_min, ve.sigma_max) == (0.02, 100.0)
    assert load_edm_snapshot(FIXTURES / "edm_adm_cond.pkl").sigma_data == 0.5


class _Witness:
    """Pickles as a call that would create a witness file if it were ever executed."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (Path.touch, (Path(self.path),))


def _hostile_snapshot(tmp_path, payload) -> Path:
    path = tmp_path / "network-snapshot-000100.pkl"
    path.write_bytes(pickle.dumps({"ema": payload, "loss_fn": None}))
    return path


def test_a_global_outside_the_allow_list_is_refused_by_name_and_never_called(tmp_path):
    witness = tmp_path / "witness"
    path = _hostile_snapshot(tmp_path, _Witness(witness))
    with pytest.raises(UnsafeSnapshotError, match=r"pathlib\.Path\.touch|pathlib\._local\.Path\.touch|refused"):
        load_edm_snapshot(path)
    assert not witness.exists()
    pickle.loads(path.read_bytes())  # the file is hostile indeed: plain pickle runs it
    assert witness.exists()


@needs_fixtures
def test_embedded_module_source_is_never_executed(tmp_path, monkeypatch):
    """A snapshot whose module_src would create a witness file loads; the file never appears."""
    monkeypatch.chdir(tmp_path)
    witness = tmp_path / "witness"
    data = (FIXTURES / "edm_ddpmpp_uncond.pkl").read_bytes()
    marker = b'raise RuntimeError("the module source of an EDM snapshot must never be executed")\n'
    assert marker in data
    hostile = b"open('witness', 'w').close()\n".ljust(len(marker), b"#")
    hostile = hostile[:-1] + b"\n"
    assert len(hostile) == len(marker)  # same length: the pickle's string lengths stay valid
    path = tmp_path / "tampered.pkl"
    path.write_bytes(data.replace(marker, hostile))
    net = load_edm_snapshot(path)
    assert isinstance(net, edm.EDMPrecond) and not witness.exists()


def test_os_system_and_eval_are_refused(tmp_path):
    for module, name in (("os", "system"), ("builtins", "eval"), ("torch_utils.persistence", "_reconstruct_persistent_class")):
        path = tmp_path / f"{name}.pkl"
        path.write_bytes(b"\x80\x04c" + module.encode() + b"\n" + name.encode() + b"\n)R.")
        with pytest.raises(UnsafeSnapshotError, match=rf"{module}\.{name}"):
            read_snapshot(path)
    assert "os.system" not in ALLOWED_GLOBALS and "torch._utils._rebuild_tensor_v2" in ALLOWED_GLOBALS


@needs_fixtures
def test_truncated_random_and_wrong_files_are_named(tmp_path):
    data = (FIXTURES / "edm_ncsnpp_uncond.pkl").read_bytes()
    cases = {
        "truncated.pkl": data[: len(data) // 2],
        "random.pkl": np.random.default_rng(0).bytes(4096),
        "empty.pkl": b"",
        "list.pkl": pickle.dumps([1, 2]),
        "nonet.pkl": pickle.dumps({"loss_fn": None}),
    }
    for name, content in cases.items():
        (tmp_path / name).write_bytes(content)
        with pytest.raises(SnapshotError, match=name):
            load_edm_snapshot(tmp_path / name)
    with pytest.raises(SnapshotError, match="cannot be read"):
        load_edm_snapshot(tmp_path / "missing.pkl")


@needs_fixtures
def test_tampered_arguments_or_weights_are_refused(tmp_path):
    data = (FIXTURES / "edm_ddpmpp_uncond.pkl").read_bytes()
    path = tmp_path / "tampered.pkl"
    path.write_bytes(data.replace(b"SongUNet", b"EvilUNet", 1))
    with pytest.raises(SnapshotError, match="EvilUNet"):
        load_edm_snapshot(path)
    path.write_bytes(data.replace(b"EDMPrecond", b"XYZPrecond", 1))
    with pytest.raises(SnapshotError, match="XYZPrecond"):
        load_edm_snapshot(path)


@pytest.mark.parametrize(
    "precond, kwargs",
    [
        (
            "EDMPrecond",
            dict(
                model_type="SongUNet",
                img_resolution=32,
                model_channels=8,
                channel_mult=[1, 2, 2],
                num_blocks=2,
                attn_resolutions=[16],
                encoder_type="skip",
                decoder_type="skip",
                augment_dim=9,
                label_dim=3,
                dropout=0.0,
            ),
        ),
        (
            "VEPrecond",
            dict(
                model_type="SongUNet",
                img_resolution=8,
                img_channels=1,
                model_channels=8,
                channel_mult=[1, 1, 2],
                num_blocks=1,
                attn_resolutions=[4, 2],
                embedding_type="fourier",
                encoder_type="residual",
                channel_mult_noise=2,
                resample_filter=[1, 3, 3, 1],
                dropout=0.0,
            ),
        ),
        (
            "EDMPrecond",
            dict(
                model_type="DhariwalUNet",
                img_resolution=16,
                model_channels=32,
                channel_mult=[1, 2, 4],
                num_blocks=2,
                attn_resolutions=[8, 4],
                label_dim=5,
                dropout=0.0,
            ),
        ),
        (
            "iDDPMPrecond",
            dict(img_resolution=8, model_channels=32, channel_mult=[1, 2], num_blocks=1, attn_resolutions=[4], dropout=0.0, M=50),
        ),
    ],
)
def test_other_configurations_build_and_denoise(precond, kwargs):  # fmt: skip
    kwargs = {"img_channels": 3, **kwargs}
    net = edm.PRECONDITIONINGS[precond](**kwargs).eval()
    res, ch = kwargs["img_resolution"], kwargs["img_channels"]
    x = torch.randn(2, ch, res, res)
    labels = torch.eye(kwargs.get("label_dim", 1))[:2] if kwargs.get("label_dim") else None
    with torch.no_grad():
        out = net(x, torch.tensor([0.5, 3.0]), labels)
    assert out.shape == x.shape and torch.isfinite(out).all()
    # the skip encoder / decoder and the aux layers are where EDM puts them
    names = dict(net.model.named_children())
    assert "enc" in names and "dec" in names


def test_iddpm_levels_decrease_to_zero():
    net = edm.iDDPMPrecond(img_resolution=8, img_channels=1, model_channels=32, channel_mult=[1], num_blocks=1,
                           attn_resolutions=[], M=20)  # fmt: skip
    u = net.u
    assert u[-1] == 0 and torch.all(u[:-1] > u[1:])
    # the index told the network is that of the nearest level: u[j] -> M - 1 - j
    c_noise = net.coefficients(u[[0, 5, 19]].reshape(-1, 1, 1, 1))[3].flatten()
    assert c_noise.tolist() == [19.0, 14.0, 0.0]


def test_snapshot_kimg_from_name():
    assert snapshot_kimg("run/network-snapshot-002000.pkl") == 2000
    assert snapshot_kimg("edm-cifar10-32x32-uncond-vp.pkl") == 0


def test_denoiser_score_is_exact_for_gaussian_data():
    """For x0 ~ N(0, s^2 I) the exact denoiser is D(x; sigma) = s^2 x / (s^2 + sigma^2); the adapter must
    give the exact score -x / (alpha^2 s^2 + sigma^2) of every SDE."""
    s = 0.7

    def denoiser(x, sigma, class_labels=None):
        sigma = torch.as_tensor(sigma).reshape(-1, 1)
        return s**2 * x / (s**2 + sigma**2)

    for sde in (EDMSDE(80.0), VPSDE()):
        score = DenoiserScore(denoiser, sde)
        t = torch.tensor([0.05, 0.5, 0.9]) * sde.T
        x = torch.randn(3, 4, dtype=torch.float64)
        alpha, sigma = (v.reshape(-1, 1).double() for v in sde.scales(t))
        exact = -x / (alpha**2 * s**2 + sigma**2)
        assert torch.allclose(score(x, t), exact, rtol=1e-5)


def test_denoiser_score_passes_one_hot_labels():
    seen = {}

    def denoiser(x, sigma, class_labels=None):
        seen["labels"] = class_labels
        return torch.zeros_like(x)

    score = DenoiserScore(denoiser, EDMSDE(80.0), num_classes=4)
    score(torch.randn(2, 3), torch.tensor([1.0, 2.0]), torch.tensor([3, 1]))
    assert seen["labels"].tolist() == [[0, 0, 0, 1], [0, 1, 0, 0]]
    score(torch.randn(2, 3), torch.tensor([1.0, 2.0]))
    assert seen["labels"] is None


@needs_fixtures
@pytest.mark.parametrize("name", ["edm_ncsnpp_uncond", "vp_ddpmpp_cond"])
def test_our_heun_on_edms_grid_equals_karras_algorithm_1(name):
    """Karras et al. 2022, Algorithm 1 (deterministic, sigma(t) = t, s(t) = 1), written out here on the
    snapshot's denoiser, against `samplers.sample("heun")` with the same grid and DenoiserScore."""
    net = load_edm_snapshot(FIXTURES / f"{name}.pkl")
    steps, sigma_min, sigma_max, rho = 6, 0.002, 80.0, 7.0
    i = torch.arange(steps, dtype=torch.float64)
    t = (sigma_max ** (1 / rho) + i / (steps - 1) * (sigma_min ** (1 / rho) - sigma_max ** (1 / rho))) ** rho
    t = torch.cat([t, torch.zeros(1, dtype=torch.float64)])  # t_N = 0
    labels = torch.eye(10)[[3, 7]] if net.label_dim else None

    def D(x, sigma):
        with torch.no_grad():
            return net(x, torch.full((x.shape[0],), float(sigma)), labels).double()

    x_T = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * t[0]
    x = x_T.clone()
    for k in range(steps):
        d = (x - D(x.float(), t[k])) / t[k]
        x_next = x + (t[k + 1] - t[k]) * d
        if t[k + 1] != 0:
            d_prime = (x_next - D(x_next.float(), t[k + 1])) / t[k + 1]
            x_next = x + (t[k + 1] - t[k]) * (0.5 * d + 0.5 * d_prime)
        x = x_next

    sde = EDMSDE(sigma_max=sigma_max)
    score_fn = DenoiserScore(net, sde, num_classes=net.label_dim)
    class_labels = torch.tensor([3, 7]) if net.label_dim else None
    with torch.no_grad():
        ours, info = samplers.sample("heun", sde, lambda y, s: score_fn(y, s, class_labels), x_T=x_T, time_grid=t, denoise=False)
    assert info["nfe"] == 2 * steps - 1  # no second evaluation at t_N = 0, as in Algorithm 1
    assert torch.allclose(ours.double(), x, atol=1e-4 * x.abs().max().item(), rtol=0)
