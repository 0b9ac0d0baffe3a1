"""Tests of the NCSN++ / DDPM++ U-Net, FIR resampling and the score_sde_pytorch checkpoint converter."""

import copy
import io
import json
import math
import pickle
from pathlib import Path

import numpy as np
import pytest
import scipy.signal
import torch

from scoresde.models import ScoreUNet, from_score_sde_pytorch_config, get_model, load_score_sde_pytorch_checkpoint, resampling
from scoresde.models.score_sde_pytorch import (
    DiscreteTimeScore,
    IndexedSigmaScaling,
    convert_state_dict,
    score_fn_for,
    unet_options,
)
from scoresde.score import NetworkScore
from scoresde.sde_lib import VESDE, VPSDE

FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "score_sde_pytorch"
needs_fixtures = pytest.mark.skipif(not (FIXTURES / "fixtures.json").exists(), reason="score_sde_pytorch fixtures not present")
TINY = dict(nf=8, ch_mult=(1, 2), num_res_blocks=1, attn_resolutions=(4,), dropout=0.0)


# --- FIR resampling ---------------------------------------------------------------------------


def reference_upfirdn_1d(signal: np.ndarray, kernel: np.ndarray, up: int, down: int, pad: tuple[int, int]) -> np.ndarray:
    """upfirdn by the definition, with numpy: zero insertion, padding, full convolution, decimation."""
    u = np.zeros(len(signal) * up)
    u[::up] = signal
    u = np.concatenate([np.zeros(pad[0]), u, np.zeros(pad[1])])
    return np.convolve(u, kernel, mode="valid")[::down]


@pytest.mark.parametrize("kernel", [(1, 3, 3, 1), (1, 2, 1), (1, 1), (2, 5, 1, 0.5)])
@pytest.mark.parametrize("direction", ["up", "down"])
def test_fir_resampling_matches_separable_reference(kernel, direction):
    """The 2-D FIR of a separable image equals the 1-D reference applied along both axes."""
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=12), rng.normal(size=12)
    image = torch.tensor(np.outer(a, b), dtype=torch.float64)[None, None].repeat(2, 3, 1, 1)
    k = np.asarray(kernel, dtype=np.float64) / np.sum(kernel)
    p = len(kernel) - 2
    if direction == "up":
        out = resampling.upsample_fir(image, kernel)
        pad = ((p + 1) // 2 + 1, p // 2)
        ref = np.outer(*(reference_upfirdn_1d(v, 2 * k, 2, 1, pad) for v in (a, b)))
        assert out.shape == (2, 3, 24, 24)
    else:
        out = resampling.downsample_fir(image, kernel)
        pad = ((p + 1) // 2, p // 2)
        ref = np.outer(*(reference_upfirdn_1d(v, k, 1, 2, pad) for v in (a, b)))
        assert out.shape == (2, 3, 6, 6)
    np.testing.assert_allclose(out[1, 2].numpy(), ref, atol=1e-12)


def test_fir_upsampling_agrees_with_scipy_upfirdn():
    """scipy.signal.upfirdn (an independent implementation) gives the same interior samples."""
    x = np.random.default_rng(1).normal(size=10)
    k = np.array([1, 3, 3, 1]) / 8.0
    ours = resampling.upsample_fir(torch.tensor(np.outer(x, np.ones(10)))[None, None], (1, 3, 3, 1))[0, 0, :, 4].numpy()
    theirs = scipy.signal.upfirdn(2 * k, x, up=2)  # the full convolution: K - 1 - p0 = 1 sample longer in front
    np.testing.assert_allclose(ours, theirs[1:21], atol=1e-12)


@pytest.mark.parametrize("kernel", [(1, 3, 3, 1), (1, 1)])
def test_fir_preserves_constants_and_linear_ramps(kernel):
    """Away from the borders, constants stay constant; a ramp is sampled at the new pixel centres.

    With pixel i centred at coordinate i, upsampled pixel o sits at o/2 - 1/4 and downsampled pixel o
    at 2 o + 1/2, so the linear image f(i, j) = 3 + 2 i - j maps to f at those coordinates: exactly
    for [1, 3, 3, 1] (linear interpolation at quarter offsets); the box [1, 1] upsamples by nearest
    neighbour, which only keeps constants.
    """
    n = 16
    constant = torch.full((1, 2, n, n), 0.7, dtype=torch.float64)
    torch.testing.assert_close(
        resampling.upsample_fir(constant, kernel)[..., 4:-4, 4:-4],
        torch.full((1, 2, 2 * n - 8, 2 * n - 8), 0.7, dtype=torch.float64),
    )
    torch.testing.assert_close(
        resampling.downsample_fir(constant, kernel)[..., 1:-1, 1:-1],
        torch.full((1, 2, n // 2 - 2, n // 2 - 2), 0.7, dtype=torch.float64),
    )
    i, j = torch.meshgrid(torch.arange(n, dtype=torch.float64), torch.arange(n, dtype=torch.float64), indexing="ij")
    ramp = (3 + 2 * i - j)[None, None]
    down = resampling.downsample_fir(ramp, kernel)[0, 0]
    id_, jd = torch.meshgrid(torch.arange(n // 2, dtype=torch.float64), torch.arange(n // 2, dtype=torch.float64), indexing="ij")
    expected_down = 3 + 2 * (2 * id_ + 0.5) - (2 * jd + 0.5)
    torch.testing.assert_close(down[1:-1, 1:-1], expected_down[1:-1, 1:-1])
    if kernel == (1, 1):
        return
    up = resampling.upsample_fir(ramp, kernel)[0, 0]
    io_, jo = torch.meshgrid(torch.arange(2 * n, dtype=torch.float64), torch.arange(2 * n, dtype=torch.float64), indexing="ij")
    interior = slice(4, -4)
    expected_up = 3 + 2 * (io_ / 2 - 0.25) - (jo / 2 - 0.25)
    torch.testing.assert_close(up[interior, interior], expected_up[interior, interior])


def test_fused_fir_convolutions_equal_their_definitions():
    """upsample_conv_fir = convolve the zero-inserted image with w, then FIR-interpolate;
    conv_downsample_fir = FIR low-pass, then a stride-2 convolution (both written out here)."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 8, 8, generator=gen, dtype=torch.float64)
    w = torch.randn(5, 3, 3, 3, generator=gen, dtype=torch.float64)
    k = resampling.fir_kernel_2d((1, 3, 3, 1)).double()
    zero_inserted = torch.zeros(2, 3, 16, 16, dtype=torch.float64)
    zero_inserted[..., ::2, ::2] = x
    conv = torch.nn.functional.conv2d(torch.nn.functional.pad(zero_inserted, (2, 1, 2, 1)), w)  # full: 17 x 17
    expected_up = resampling.upfirdn2d(conv, 4 * k, pad=(1, 1))
    torch.testing.assert_close(resampling.upsample_conv_fir(x, w, (1, 3, 3, 1)), expected_up)
    blurred = resampling.upfirdn2d(x, k, pad=(2, 2))
    torch.testing.assert_close(
        resampling.conv_downsample_fir(x, w, (1, 3, 3, 1)), torch.nn.functional.conv2d(blurred, w, stride=2)
    )


def test_fir_kernel_errors():
    with pytest.raises(ValueError, match="sum to zero"):
        resampling.fir_kernel_2d((1, -1))
    with pytest.raises(ValueError, match="square"):
        resampling.fir_kernel_2d(np.ones((2, 3)))
    with pytest.raises(ValueError, match="direction"):
        resampling.Resample("sideways", 4)


# --- the network ------------------------------------------------------------------------------


VARIANTS = {
    "ncsnpp": dict(resblock_type="biggan", fir=True, progressive="none", progressive_input="residual", embedding_type="fourier"),
    "ddpmpp": dict(resblock_type="biggan", fir=False, progressive="none", progressive_input="none", embedding_type="positional"),
    "ddpm_blocks_output_skip": dict(resblock_type="ddpm", fir=True, progressive="output_skip", progressive_input="input_skip"),
    "ddpm_blocks_no_fir_residual": dict(
        resblock_type="ddpm", fir=False, progressive="residual", progressive_input="residual", resamp_with_conv=False
    ),
    "input_skip_cat": dict(progressive_input="input_skip", progressive_combine="cat", progressive="output_skip", fir=False),
    "no_skip_rescale_unconditional": dict(skip_rescale=False, conditional=False, num_classes=3),
}


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("shape", [(3, 8, 8), (1, 16, 16)])
def test_output_shape_equals_input_shape(variant, shape):
    net = ScoreUNet(shape, **{**TINY, **VARIANTS[variant]})
    x = torch.randn(2, *shape)
    out = net(x, torch.tensor([0.3, 5.0]))
    assert out.shape == x.shape and torch.isfinite(out).all()


@pytest.mark.parametrize("embedding_type", ["fourier", "positional"])
def test_class_labels_condition_the_output(embedding_type):
    torch.manual_seed(0)
    net = ScoreUNet((2, 8, 8), **TINY, embedding_type=embedding_type, num_classes=4, init_scale=1.0)
    x, label = torch.randn(3, 2, 8, 8), torch.tensor([0.5, 1.0, 2.0])
    a = net(x, label, torch.tensor([0, 1, 2]))
    b = net(x, label, torch.tensor([3, 1, 2]))
    assert a.shape == x.shape
    assert not torch.allclose(a[0], b[0]) and torch.allclose(a[1:], b[1:])  # per-example conditioning
    torch.testing.assert_close(net(x, label), net(x, label, torch.full((3,), 4)))  # None = the "no class" index
    with pytest.raises(ValueError, match="class labels"):
        net(x, label, torch.tensor([0, 5, 1]))


def test_initial_network_is_near_zero_and_trains():
    """Layers closing residual branches start at ~zero (init_scale 0), so the initial output is ~0;
    a few Adam steps on a fixed denoising target reduce the loss (the gradients reach every layer)."""
    torch.manual_seed(0)
    net = ScoreUNet((1, 8, 8), **TINY)
    x, label = torch.randn(16, 1, 8, 8), torch.rand(16) + 0.1
    assert net(x, label).abs().max() < 1e-3
    target = -x / 2
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    losses = []
    for _ in range(30):
        loss = ((net(x, label) - target) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.3 * losses[0]
    assert all(p.grad is not None for p in net.parameters())


def test_scale_by_sigma_and_center_input():
    torch.manual_seed(0)
    plain = ScoreUNet((1, 8, 8), **TINY, init_scale=1.0)
    scaled = ScoreUNet((1, 8, 8), **TINY, init_scale=1.0, scale_by_sigma=True)
    scaled.load_state_dict(plain.state_dict())
    x, sigma = torch.rand(2, 1, 8, 8), torch.tensor([0.5, 4.0])
    torch.testing.assert_close(scaled(x, sigma), plain(x, sigma) / sigma[:, None, None, None])
    centred = ScoreUNet((1, 8, 8), **TINY, init_scale=1.0, center_input=True)
    centred.load_state_dict(plain.state_dict())
    torch.testing.assert_close(centred(x, sigma), plain(2 * x - 1, sigma))


def test_keys_are_named_by_role_and_resolution():
    keys = ScoreUNet((3, 16, 16), **TINY).state_dict().keys()
    for key in [
        "time_embed.fourier.W",
        "time_embed.dense_0.weight",
        "input_conv.weight",
        "down.16x16.blocks.0.conv_0.weight",
        "down.16x16.downsample.skip.weight",
        "down.16x16.input_pyramid.conv.weight",
        "middle.attention.qkv.weight",
        "up.8x8.blocks.1.time_proj.weight",
        "up.16x16.blocks.0.skip.weight",
        "output_conv.weight",
    ]:
        assert key in keys, key


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(data_shape=(3, 12, 12), ch_mult=(1, 2, 2, 2)), "divisible by the total down-sampling factor 8"),
        (dict(data_shape=(3, 8, 6)), "square images"),
        (dict(data_shape=(8, 8)), "square images"),
        (dict(data_shape=(3, 8, 8), nf=36, ch_mult=(1, 4)), "GroupNorm cannot split 144"),
        (dict(data_shape=(3, 8, 8), nf=48, ch_mult=(1, 2)), "GroupNorm cannot split 144 channels into 32"),
        (dict(data_shape=(3, 8, 8), resblock_type="vit"), "unknown resblock_type 'vit'; valid: biggan, ddpm"),
        (dict(data_shape=(3, 8, 8), progressive="both"), "unknown progressive"),
        (dict(data_shape=(3, 8, 8), embedding_type="learned"), "unknown embedding_type"),
        (dict(data_shape=(3, 8, 8), dropout=1.0), "dropout"),
        (dict(data_shape=(3, 8, 8), num_classes=-1), "num_classes"),
        (dict(data_shape=(3, 8, 8), nf=7, embedding_type="positional"), "even nf"),
    ],
)
def test_bad_configurations_are_refused(kwargs, match):
    options = {**TINY, **kwargs}
    with pytest.raises(ValueError, match=match):
        ScoreUNet(options.pop("data_shape"), **options)


def test_get_model_builds_the_unet_and_checks_inputs():
    net = get_model("unet", (1, 8, 8), **TINY)
    assert isinstance(net, ScoreUNet)
    with pytest.raises(ValueError, match="invalid options"):
        get_model("unet", (1, 8, 8), width=3)
    with pytest.raises(ValueError, match=r"expected inputs of shape \(batch, 1, 8, 8\)"):
        net(torch.zeros(2, 1, 16, 16), torch.ones(2))


# --- score_sde_pytorch checkpoints --------------------------------------------------------------


def fixture_configs():
    """Every fixture: the continuous NCSN++ / DDPM++ ones and the DDPM and discrete-time NCSN++ ones."""
    specs = json.loads((FIXTURES / "fixtures.json").read_text())
    return {**specs, **json.loads((FIXTURES / "fixtures_ddpm_discrete.json").read_text())}


ALL_FIXTURES = ["ncsnpp_ve", "ddpmpp_vp", "ddpm_vp", "ncsnpp_ve_discrete"]


@needs_fixtures
@pytest.mark.parametrize("name", ALL_FIXTURES)
@pytest.mark.parametrize("ema", [False, True])
def test_official_checkpoints_reproduce_reference_outputs(name, ema):
    spec = fixture_configs()[name]
    net = load_score_sde_pytorch_checkpoint(FIXTURES / f"{name}_checkpoint.pth", spec["model_config"], spec["data"], ema=ema)
    reference = np.load(FIXTURES / f"{name}_io.npz")
    with torch.no_grad():
        out = net(torch.tensor(reference["x"]), torch.tensor(reference["labels"])).numpy()
    expected = reference["y_ema" if ema else "y_model"]
    assert np.abs(out - expected).max() <= 1e-5 * np.abs(expected).max()
    other = reference["y_model" if ema else "y_ema"]  # the two weight sets really differ
    assert np.abs(other - expected).max() > 1e-3 * np.abs(expected).max()


@needs_fixtures
def test_official_state_dict_layout_maps_one_to_one():
    """Every key of the official layout is consumed and the parameter counts agree."""
    specs = fixture_configs()
    assert sorted(specs) == sorted(ALL_FIXTURES)
    for spec in specs.values():
        net = from_score_sde_pytorch_config(spec["model_config"], spec["data"])
        net = net.unet if isinstance(net, IndexedSigmaScaling) else net
        official = {entry["key"]: torch.zeros(entry["shape"]) for entry in spec["state_dict"]}
        if "sigmas" in official:
            official["sigmas"] = torch.exp(torch.linspace(math.log(50), math.log(0.01), 1000))
        converted = convert_state_dict(official, net, spec["model_config"])
        assert set(converted) == set(net.state_dict())
        n_official = sum(math.prod(e["shape"]) for e in spec["state_dict"] if e["kind"] != "buffer")
        assert n_official == sum(v.numel() for v in net.state_dict().values())


@needs_fixtures
def test_score_fn_for_official_networks():
    spec = fixture_configs()["ddpmpp_vp"]
    net = load_score_sde_pytorch_checkpoint(FIXTURES / "ddpmpp_vp_checkpoint.pth", spec["model_config"], spec["data"])
    reference = np.load(FIXTURES / "ddpmpp_vp_io.npz")
    sde = VPSDE()
    t = torch.tensor(reference["labels"]) / 999
    score = score_fn_for(net, sde, "vpsde")(torch.tensor(reference["x"]), t)
    std = sde.marginal_prob(torch.zeros(2, 3, 16, 16), t)[1].reshape(2, 1, 1, 1)
    torch.testing.assert_close(score, -torch.tensor(reference["y_ema"]) / std, rtol=1e-4, atol=1e-5)
    assert score_fn_for(net, VESDE(), "vesde").time_label == "sigma"
    with pytest.raises(ValueError, match="training_sde"):
        score_fn_for(net, sde, "edm")


@needs_fixtures
def test_discrete_time_score_functions_follow_score_sde_conventions():
    """VE (SMLD): label = round((1 - t)(N - 1)), the index of the descending sigmas, output = score;
    VP (DDPM): label = t (N - 1), score = -output / sqrt(1 - prod(1 - beta_j)) of the DDPM chain."""
    specs = fixture_configs()
    spec = specs["ncsnpp_ve_discrete"]
    net = load_score_sde_pytorch_checkpoint(FIXTURES / "ncsnpp_ve_discrete_checkpoint.pth", spec["model_config"], spec["data"])
    reference = np.load(FIXTURES / "ncsnpp_ve_discrete_io.npz")
    index = torch.tensor(reference["labels"])
    sde = VESDE(sigma_min=0.01, sigma_max=50, N=1000)
    score_fn = score_fn_for(net, sde, "vesde", continuous=False)
    assert isinstance(score_fn, DiscreteTimeScore)
    t = 1 - (index.double() + 0.3) / 999  # rounds to the fixture's indices
    with torch.no_grad():
        score = score_fn(torch.tensor(reference["x"]), t.float())
    torch.testing.assert_close(score.double(), torch.tensor(reference["y_ema"]), rtol=1e-5, atol=1e-5)

    spec = specs["ddpm_vp"]
    net = load_score_sde_pytorch_checkpoint(FIXTURES / "ddpm_vp_checkpoint.pth", spec["model_config"], spec["data"])
    x = torch.tensor(np.load(FIXTURES / "ddpm_vp_io.npz")["x"])
    t = torch.tensor([0.25, 0.9])
    score_fn = score_fn_for(net, VPSDE(beta_min=0.1, beta_max=20, N=1000), "vpsde", continuous=False)
    betas = np.linspace(0.1 / 1000, 20 / 1000, 1000)
    std = np.sqrt(1 - np.cumprod(1 - betas))[np.floor(t.numpy() * 999).astype(int)]
    with torch.no_grad():
        expected = -net(x, t * 999) / torch.tensor(std, dtype=torch.float32).reshape(2, 1, 1, 1)
        torch.testing.assert_close(score_fn(x, t), expected, rtol=1e-6, atol=1e-7)
    assert isinstance(score_fn_for(net, VPSDE(), "subvpsde", continuous=False), NetworkScore)  # always continuous


def _ddpm_official_layout(nf, ch_mult, num_res_blocks, attn_resolutions, size, channels=3):
    """The state_dict shapes of score_sde_pytorch's `ddpm` model, from Ho et al.'s architecture:
    temb dense layers, input conv, per level `num_res_blocks` residual blocks (each followed by
    attention at attention resolutions) and a downsampling conv, the middle, per level coarse to fine
    `num_res_blocks + 1` blocks on the concatenated skips, one attention, an upsampling conv, then
    GroupNorm and the output conv."""
    layout, index = {}, iter(range(10**6))

    def add(suffix_shapes):
        i = next(index)
        layout.update({f"all_modules.{i}.{k}" if k else f"all_modules.{i}": v for k, v in suffix_shapes.items()})

    def resblock(cin, cout):
        shapes = {"GroupNorm_0.weight": [cin], "GroupNorm_0.bias": [cin], "Conv_0.weight": [cout, cin, 3, 3]}
        shapes |= {"Conv_0.bias": [cout], "Dense_0.weight": [cout, 4 * nf], "Dense_0.bias": [cout]}
        shapes |= {"GroupNorm_1.weight": [cout], "GroupNorm_1.bias": [cout], "Conv_1.weight": [cout, cout, 3, 3]}
        shapes |= {"Conv_1.bias": [cout]} | ({"NIN_0.W": [cin, cout], "NIN_0.b": [cout]} if cin != cout else {})
        add(shapes)

    def attention(c):
        nins = {f"NIN_{j}.{p}": [c, c] if p == "W" else [c] for j in range(4) for p in "Wb"}
        add({"GroupNorm_0.weight": [c], "GroupNorm_0.bias": [c]} | nins)

    add({"weight": [4 * nf, nf], "bias": [4 * nf]})
    add({"weight": [4 * nf, 4 * nf], "bias": [4 * nf]})
    add({"weight": [nf, channels, 3, 3], "bias": [nf]})
    skips, c = [nf], nf
    for level, mult in enumerate(ch_mult):
        for _ in range(num_res_blocks):
            resblock(c, nf * mult)
            c = nf * mult
            if size >> level in attn_resolutions:
                attention(c)
            skips.append(c)
        if level != len(ch_mult) - 1:
            add({"Conv_0.weight": [c, c, 3, 3], "Conv_0.bias": [c]})
            skips.append(c)
    resblock(c, c), attention(c), resblock(c, c)
    for level in reversed(range(len(ch_mult))):
        for _ in range(num_res_blocks + 1):
            resblock(c + skips.pop(), nf * ch_mult[level])
            c = nf * ch_mult[level]
        if size >> level in attn_resolutions:
            attention(c)
        if level:
            add({"Conv_0.weight": [c, c, 3, 3], "Conv_0.bias": [c]})
    add({"weight": [c], "bias": [c]})
    add({"weight": [channels, c, 3, 3], "bias": [channels]})
    return layout


@pytest.mark.parametrize(
    "nf, ch_mult, num_res_blocks, attn_resolutions, size, channels",
    [(32, (1, 2, 2), 1, (8,), 16, 3), (64, (1, 2, 2, 2), 2, (16,), 32, 3), (32, (1, 1, 2), 3, (16, 4), 16, 1)],
)
def test_ddpm_networks_of_any_configuration_map_one_to_one(nf, ch_mult, num_res_blocks, attn_resolutions, size, channels):
    model = {"name": "ddpm", "nf": nf, "ch_mult": ch_mult, "num_res_blocks": num_res_blocks, "dropout": 0.1}
    model |= {"attn_resolutions": attn_resolutions, "resamp_with_conv": True, "scale_by_sigma": False, "conditional": False}
    net = from_score_sde_pytorch_config(model, {"image_size": size, "num_channels": channels, "centered": False})
    layout = _ddpm_official_layout(nf, ch_mult, num_res_blocks, attn_resolutions, size, channels)
    converted = convert_state_dict({k: torch.randn(shape) for k, shape in layout.items()}, net)
    assert set(converted) == set(net.state_dict())
    assert all(g.num_groups == 32 for g in net.modules() if isinstance(g, torch.nn.GroupNorm))  # DDPM's normalisation
    assert net.time_embed is not None  # that project's ddpm is time-conditioned whatever `conditional` says


@needs_fixtures
def test_official_networks_drive_our_samplers():
    """The README recipe: a loaded VE network sampled with a fast ODE solver, batch-independent."""
    from scoresde import samplers

    spec = fixture_configs()["ncsnpp_ve"]
    net = load_score_sde_pytorch_checkpoint(FIXTURES / "ncsnpp_ve_checkpoint.pth", spec["model_config"], spec["data"])
    sde = VESDE(sigma_min=0.01, sigma_max=50)
    score_fn = score_fn_for(net, sde, "vesde")
    x_T = sde.prior_sampling((3, 3, 16, 16), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        x, info = samplers.sample("dpmpp_2m", sde, score_fn, x_T=x_T, steps=4, eps=1e-5)
        single, _ = samplers.sample("dpmpp_2m", sde, score_fn, x_T=x_T[:1], steps=4, eps=1e-5)
    assert x.shape == x_T.shape and torch.isfinite(x).all() and info["nfe"] == 5
    torch.testing.assert_close(single, x[:1], rtol=1e-4, atol=1e-4)


@pytest.fixture
def official_checkpoint(tmp_path):
    spec = fixture_configs()["ncsnpp_ve"]
    return spec, torch.load(FIXTURES / "ncsnpp_ve_checkpoint.pth", weights_only=True), tmp_path


@needs_fixtures
def test_mismatched_checkpoints_name_the_keys(official_checkpoint):
    spec, checkpoint, tmp_path = official_checkpoint
    broken = copy.deepcopy(checkpoint)
    del broken["model"]["module.all_modules.4.Conv_1.weight"]
    broken["model"]["module.all_modules.99.extra"] = torch.zeros(1)
    torch.save(broken, tmp_path / "broken.pth")
    with pytest.raises(ValueError) as err:
        load_score_sde_pytorch_checkpoint(tmp_path / "broken.pth", spec["model_config"], spec["data"], ema=False)
    assert "down.16x16.blocks.0.conv_1.weight" in str(err.value) and "all_modules.99.extra" in str(err.value)
    extra_skip = copy.deepcopy(checkpoint)  # block 4 keeps its channels: it has no skip layer
    extra_skip["model"]["module.all_modules.4.Conv_2.weight"] = torch.zeros(16, 16, 1, 1)
    torch.save(extra_skip, tmp_path / "extra_skip.pth")
    with pytest.raises(ValueError, match=r"down.16x16.blocks.0.skip.weight \(as converted\)"):
        load_score_sde_pytorch_checkpoint(tmp_path / "extra_skip.pth", spec["model_config"], spec["data"], ema=False)
    wider = {**spec["model_config"], "nf": 32}
    with pytest.raises(ValueError, match="shape mismatches: .*checkpoint .* vs network"):
        load_score_sde_pytorch_checkpoint(FIXTURES / "ncsnpp_ve_checkpoint.pth", wider, spec["data"], ema=False)
    short_ema = copy.deepcopy(checkpoint)
    short_ema["ema"]["shadow_params"] = short_ema["ema"]["shadow_params"][:-1]
    torch.save(short_ema, tmp_path / "short_ema.pth")
    with pytest.raises(ValueError, match="EMA holds"):
        load_score_sde_pytorch_checkpoint(tmp_path / "short_ema.pth", spec["model_config"], spec["data"])
    with pytest.raises(ValueError, match="sigmas"):
        load_score_sde_pytorch_checkpoint(
            FIXTURES / "ncsnpp_ve_checkpoint.pth", {**spec["model_config"], "sigma_max": 80}, spec["data"], ema=False
        )


class _Payload:
    def __reduce__(self):
        return (print, ("this must never run",))


@needs_fixtures
def test_unreadable_checkpoints_give_clear_errors(official_checkpoint):
    spec, checkpoint, tmp_path = official_checkpoint
    with pytest.raises(FileNotFoundError, match="no checkpoint file"):
        load_score_sde_pytorch_checkpoint(tmp_path / "absent.pth", spec["model_config"], spec["data"])
    raw = (FIXTURES / "ncsnpp_ve_checkpoint.pth").read_bytes()
    (tmp_path / "truncated.pth").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(ValueError, match="not a readable PyTorch checkpoint"):
        load_score_sde_pytorch_checkpoint(tmp_path / "truncated.pth", spec["model_config"], spec["data"])
    buffer = io.BytesIO()
    torch.save({"model": checkpoint["model"], "payload": _Payload()}, buffer)
    (tmp_path / "malicious.pth").write_bytes(buffer.getvalue())
    with pytest.raises(ValueError, match="refusing to unpickle"):
        load_score_sde_pytorch_checkpoint(tmp_path / "malicious.pth", spec["model_config"], spec["data"])
    (tmp_path / "plain.pth").write_bytes(pickle.dumps([1, 2], protocol=2))
    with pytest.raises(ValueError):
        load_score_sde_pytorch_checkpoint(tmp_path / "plain.pth", spec["model_config"], spec["data"])


def test_unsupported_official_configurations_are_refused():
    model = dict(
        name="ncsnpp",
        nf=8,
        ch_mult=[1, 2],
        num_res_blocks=1,
        attn_resolutions=[4],
        dropout=0.0,
        resblock_type="biggan",
        resamp_with_conv=True,
        fir=False,
        fir_kernel=[1, 3, 3, 1],
        skip_rescale=True,
        progressive="none",
        progressive_input="none",
        progressive_combine="sum",
        embedding_type="positional",
        fourier_scale=16,
        conditional=True,
        scale_by_sigma=False,
        init_scale=0.0,
    )
    data = dict(image_size=8, num_channels=3, centered=True)
    assert unet_options(model, data)["data_shape"] == (3, 8, 8)
    with pytest.raises(ValueError, match="config.model.name='ncsnv2' is not supported"):
        unet_options({**model, "name": "ncsnv2"}, data)
    with pytest.raises(ValueError, match="lacks the fields: nf"):
        unet_options({k: v for k, v in model.items() if k != "nf"}, data)
    # positional embeddings with scale_by_sigma divide by a table of discrete sigmas: its fields are needed
    with pytest.raises(ValueError, match="lacks the fields: sigma_min, sigma_max, num_scales"):
        unet_options({**model, "scale_by_sigma": True}, data)
    table = {"sigma_min": 0.01, "sigma_max": 50, "num_scales": 10}
    assert isinstance(from_score_sde_pytorch_config({**model, "scale_by_sigma": True, **table}, data), IndexedSigmaScaling)
    without_scale = {k: v for k, v in model.items() if k != "fourier_scale"}
    assert unet_options(without_scale, data)["embedding_type"] == "positional"  # read only with Fourier features
    with pytest.raises(ValueError, match="lacks the fields: fourier_scale"):
        unet_options({**without_scale, "embedding_type": "fourier"}, data)
    with pytest.raises(ValueError, match="conditional=False is not supported"):
        unet_options({**model, "conditional": False}, data)
