"""Tests of scoresde.models: the MLP score network, its time embeddings, and the weight EMA."""

import math

import pytest
import torch
from torch import nn

from scoresde.losses import dsm_loss
from scoresde.models import (
    MODELS,
    ExponentialMovingAverage,
    GaussianFourierProjection,
    ScoreMLP,
    get_model,
    sinusoidal_embedding,
)
from scoresde.score import NetworkScore
from scoresde.sde_lib import VPSDE

pytestmark = pytest.mark.usefixtures("single_thread")

SMALL = {"width": 32, "depth": 2, "embed_dim": 16}


@pytest.fixture(params=["fourier", "sinusoidal"])
def embedding(request):
    return request.param


# --- ScoreMLP -------------------------------------------------------------------------------------


@pytest.mark.parametrize("data_shape", [(2,), (1, 8, 8)], ids=["points", "digits"])
def test_output_shape_equals_input_shape(data_shape, embedding, dtype, seeded, make_generator):
    with seeded(0):
        model = ScoreMLP(data_shape, time_embedding=embedding, **SMALL).to(dtype)
    x = torch.randn((5, *data_shape), generator=make_generator(0), dtype=dtype)
    label = torch.rand(5, generator=make_generator(1), dtype=dtype)
    out = model(x, label)
    assert out.shape == x.shape and out.dtype == dtype
    assert torch.all(torch.isfinite(out))
    torch.testing.assert_close(model(x, torch.tensor(0.3, dtype=dtype)), model(x, torch.full((5,), 0.3, dtype=dtype)))


def test_examples_do_not_interact_and_the_label_matters(embedding, seeded, make_generator):
    with seeded(1):
        model = ScoreMLP((1, 8, 8), time_embedding=embedding, **SMALL).double()
    x = torch.randn(4, 1, 8, 8, generator=make_generator(2), dtype=torch.float64)
    label = torch.tensor([0.0, 0.2, 0.5, 1.0], dtype=torch.float64)
    out = model(x, label)
    for b in range(4):
        torch.testing.assert_close(model(x[b : b + 1], label[b : b + 1]), out[b : b + 1])
    assert not torch.allclose(model(x, label + 0.37), out)


def test_get_model_builds_the_mlp_and_rejects_unknown_names_and_options(seeded):
    with seeded(2):
        model = get_model("mlp", [2], **SMALL)
    assert isinstance(model, ScoreMLP) and model.data_shape == (2,)
    assert "mlp" in MODELS
    with pytest.raises(ValueError, match="mlp"):
        get_model("ncsnpp", (2,))
    with pytest.raises(ValueError, match="mlp"):
        get_model("mlp", (2,), widht=16)


@pytest.mark.parametrize(
    "options, match",
    [
        ({"width": 0}, "width"),
        ({"depth": 0}, "depth"),
        ({"embed_dim": 15}, "embed_dim"),
        ({"embed_dim": 2}, "embed_dim"),
        ({"time_embedding": "learned"}, "fourier.*sinusoidal"),
    ],
)
def test_bad_constructor_arguments_raise(options, match):
    with pytest.raises(ValueError, match=match):
        ScoreMLP((2,), **options)


@pytest.mark.parametrize(
    "data_shape, bad_shape",
    [((2,), (4, 3)), ((2,), (4, 2, 1)), ((1, 8, 8), (4, 1, 8, 7)), ((1, 8, 8), (4, 64)), ((1, 8, 8), (4, 8, 8))],
)
def test_inputs_of_the_wrong_shape_raise(data_shape, bad_shape, seeded):
    with seeded(3):
        model = ScoreMLP(data_shape, **SMALL)
    with pytest.raises(ValueError, match=", ".join(map(str, data_shape))):
        model(torch.zeros(bad_shape), torch.zeros(4))


def test_fourier_frequencies_are_a_buffer_that_survives_a_state_dict_round_trip(seeded, make_generator):
    with seeded(4):
        model = ScoreMLP((2,), time_embedding="fourier", **SMALL)
    with seeded(5):
        other = ScoreMLP((2,), time_embedding="fourier", **SMALL)
    assert "fourier.W" in dict(model.named_buffers())
    assert all("fourier" not in name for name, _ in model.named_parameters())
    assert "fourier.W" in model.state_dict()
    assert not torch.equal(model.fourier.W, other.fourier.W)
    other.load_state_dict(model.state_dict())
    torch.testing.assert_close(other.fourier.W, model.fourier.W, rtol=0, atol=0)
    x, label = torch.randn(6, 2, generator=make_generator(3)), torch.rand(6, generator=make_generator(4))
    torch.testing.assert_close(other(x, label), model(x, label), rtol=0, atol=0)
    # Training leaves the frequencies alone.
    before = model.fourier.W.clone()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    model(x, label).pow(2).sum().backward()
    optimizer.step()
    torch.testing.assert_close(model.fourier.W, before, rtol=0, atol=0)


def test_gradients_reach_every_parameter_through_the_adapter_and_loss(embedding, seeded, make_generator):
    with seeded(6):
        model = ScoreMLP((2,), time_embedding=embedding, **SMALL)
    x0 = torch.randn(32, 2, generator=make_generator(5))
    loss = dsm_loss(NetworkScore(model, VPSDE(), parameterization="eps"), VPSDE(), x0, generator=make_generator(6))
    loss.mean().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.any(p.grad != 0), name


# --- time embeddings ------------------------------------------------------------------------------


def test_gaussian_fourier_projection_formula(seeded):
    with seeded(7):
        projection = GaussianFourierProjection(embedding_size=8, scale=3.0)
    v = torch.tensor([0.0, 0.25, 1.0])
    features = projection(v)
    assert features.shape == (3, 16)
    angle = 2 * math.pi * v[:, None] * projection.W[None, :]
    torch.testing.assert_close(features, torch.cat([torch.sin(angle), torch.cos(angle)], dim=1))
    assert projection.W.shape == (8,) and not projection.W.requires_grad


def test_sinusoidal_embedding_formula():
    v = torch.tensor([0.0, 1.0, 37.5])
    emb = sinusoidal_embedding(v, 8, max_period=10000.0)
    assert emb.shape == (3, 8)
    k = torch.arange(4, dtype=torch.float64)
    arg = v.double()[:, None] / 10000.0 ** (k / 3)
    torch.testing.assert_close(emb, torch.cat([torch.sin(arg), torch.cos(arg)], dim=1).float())


@pytest.mark.parametrize(
    "build",
    [
        lambda: GaussianFourierProjection(0),
        lambda: GaussianFourierProjection(8, scale=0.0),
        lambda: sinusoidal_embedding(torch.zeros(2), 7),
        lambda: sinusoidal_embedding(torch.zeros(2), 2),
    ],
    ids=["fourier_size", "fourier_scale", "sinusoidal_odd", "sinusoidal_small"],
)
def test_bad_embedding_sizes_raise(build):
    with pytest.raises(ValueError):
        build()


# --- exponential moving average -----------------------------------------------------------------


def _parameter_sequence(k: int) -> list[torch.Tensor]:
    """theta_0, ..., theta_k: the flattened [weight, bias] of a Linear(3, 2) at each step."""
    base = torch.linspace(-1.0, 1.0, 8, dtype=torch.float64)
    return [base * (j + 1) + torch.sin(torch.tensor(float(j))) for j in range(k + 1)]


def _set_parameters(model: nn.Linear, flat: torch.Tensor) -> None:
    with torch.no_grad():
        model.weight.copy_(flat[:6].reshape(2, 3))
        model.bias.copy_(flat[6:])


def _shadow_flat(ema: ExponentialMovingAverage) -> torch.Tensor:
    return torch.cat([ema.shadow["weight"].reshape(-1), ema.shadow["bias"]])


def _run_updates(decay, warmup, k):
    model = nn.Linear(3, 2).double()
    thetas = _parameter_sequence(k)
    _set_parameters(model, thetas[0])
    ema = ExponentialMovingAverage(model, decay=decay, warmup=warmup)
    for theta in thetas[1:]:
        _set_parameters(model, theta)
        ema.update(model)
    return ema, thetas, model


@pytest.mark.parametrize("decay", [0.0, 0.5, 0.9, 0.999])
def test_ema_without_warmup_is_the_closed_form_exponential_average(decay):
    k = 12
    ema, thetas, _ = _run_updates(decay, warmup=False, k=k)
    expected = decay**k * thetas[0] + sum((1 - decay) * decay ** (k - j) * thetas[j] for j in range(1, k + 1))
    torch.testing.assert_close(_shadow_flat(ema), expected, rtol=1e-12, atol=1e-12)
    assert ema.num_updates == k


@pytest.mark.parametrize("decay", [0.5, 0.999])
def test_ema_warmup_uses_decay_min_of_decay_and_one_plus_n_over_ten_plus_n(decay):
    k = 15
    ema, thetas, _ = _run_updates(decay, warmup=True, k=k)
    expected = thetas[0].clone()
    for n in range(1, k + 1):
        d = min(decay, (1 + n) / (10 + n))
        expected = d * expected + (1 - d) * thetas[n]
    torch.testing.assert_close(_shadow_flat(ema), expected, rtol=1e-12, atol=1e-12)
    assert ema.current_decay() == min(decay, (1 + k) / (10 + k))
    # The first update uses 2/11: little weight on the initial parameters.
    first, thetas, _ = _run_updates(decay, warmup=True, k=1)
    torch.testing.assert_close(_shadow_flat(first), 2 / 11 * thetas[0] + 9 / 11 * thetas[1], rtol=1e-12, atol=1e-12)


def test_average_parameters_swaps_in_the_average_and_restores_the_live_weights():
    ema, thetas, model = _run_updates(0.9, warmup=False, k=5)
    live = {n: p.detach().clone() for n, p in model.named_parameters()}
    with ema.average_parameters(model) as swapped:
        assert swapped is model
        torch.testing.assert_close(model.weight, ema.shadow["weight"], rtol=0, atol=0)
        torch.testing.assert_close(model.bias, ema.shadow["bias"], rtol=0, atol=0)
    for name, p in model.named_parameters():
        torch.testing.assert_close(p, live[name], rtol=0, atol=0)
    with pytest.raises(RuntimeError, match="inside"):
        with ema.average_parameters(model):
            raise RuntimeError("inside")
    for name, p in model.named_parameters():
        torch.testing.assert_close(p, live[name], rtol=0, atol=0)
    assert not torch.equal(ema.shadow["weight"], live["weight"])


def test_ema_state_dict_round_trip():
    ema, thetas, model = _run_updates(0.9, warmup=True, k=7)
    state = {key: value for key, value in ema.state_dict().items()}
    state["shadow"] = {n: v.clone() for n, v in state["shadow"].items()}
    other_model = nn.Linear(3, 2).double()
    restored = ExponentialMovingAverage(other_model, decay=0.5, warmup=True)
    restored.load_state_dict(state)
    assert restored.decay == 0.9 and restored.num_updates == 7
    torch.testing.assert_close(_shadow_flat(restored), _shadow_flat(ema), rtol=0, atol=0)
    ema.update(model)
    restored.update(model)
    torch.testing.assert_close(_shadow_flat(restored), _shadow_flat(ema), rtol=0, atol=0)


@pytest.mark.parametrize(
    "other",
    [lambda: nn.Linear(3, 2, bias=False), lambda: nn.Linear(4, 2), lambda: nn.Sequential(nn.Linear(3, 2))],
    ids=["missing_key", "wrong_shape", "renamed_keys"],
)
def test_ema_load_state_dict_rejects_mismatched_keys_and_shapes(other):
    ema, _, _ = _run_updates(0.9, warmup=False, k=2)
    target = ExponentialMovingAverage(other().double())
    with pytest.raises(ValueError, match="EMA"):
        target.load_state_dict(ema.state_dict())


def test_ema_averages_trainable_parameters_only(seeded):
    with seeded(8):
        model = ScoreMLP((2,), time_embedding="fourier", **SMALL)
    model.input.bias.requires_grad_(False)
    ema = ExponentialMovingAverage(model, decay=0.9)
    assert "fourier.W" not in ema.shadow and "input.bias" not in ema.shadow
    assert "input.weight" in ema.shadow
    with pytest.raises(ValueError, match="lacks"):
        ema.copy_to(nn.Linear(2, 2))


@pytest.mark.parametrize("decay", [1.0, -0.1, 1.5])
def test_ema_decay_outside_zero_to_one_raises(decay):
    with pytest.raises(ValueError, match="decay"):
        ExponentialMovingAverage(nn.Linear(2, 2), decay=decay)
