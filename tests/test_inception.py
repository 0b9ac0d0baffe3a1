"""Tests of scoresde.eval.inception (the FID Inception network and its loader) and
metrics.inception_score.

The real weights file is not needed: the architecture is checked against a table of the tensors of
pytorch-fid's pt_inception-2015-12-05-6726825d.pth written here from the references (the layer
list of torchvision's / pytorch-fid's Inception-v3 and torch-fidelity's TF-to-PyTorch name map),
and the loader is exercised on randomly initialised weights saved to a temporary file. Forward
passes run at 75 x 75 without resizing (the smallest size the network takes), except two
single-image passes at the FID input size of 299 x 299.
"""

import copy
import hashlib
import itertools

import numpy as np
import pytest
import torch
from torch import nn

from scoresde.eval import inception, metrics
from scoresde.eval.inception import (
    FID_WEIGHTS_FILENAME,
    FID_WEIGHTS_SHA256,
    FIDInceptionV3,
    inception_features,
    load_fid_inception,
    sha256_of_file,
)

SMALL = inception.MIN_INPUT_SIZE


# ---------------------------------------------------------------------------------------------
# The tensors of pt_inception-2015-12-05-6726825d.pth
# ---------------------------------------------------------------------------------------------
def _units_a(name, cin, pool):
    return [
        (f"{name}.branch1x1", cin, 64, 1, 1),
        (f"{name}.branch5x5_1", cin, 48, 1, 1),
        (f"{name}.branch5x5_2", 48, 64, 5, 5),
        (f"{name}.branch3x3dbl_1", cin, 64, 1, 1),
        (f"{name}.branch3x3dbl_2", 64, 96, 3, 3),
        (f"{name}.branch3x3dbl_3", 96, 96, 3, 3),
        (f"{name}.branch_pool", cin, pool, 1, 1),
    ]


def _units_c(name, c7):
    return [
        (f"{name}.branch1x1", 768, 192, 1, 1),
        (f"{name}.branch7x7_1", 768, c7, 1, 1),
        (f"{name}.branch7x7_2", c7, c7, 1, 7),
        (f"{name}.branch7x7_3", c7, 192, 7, 1),
        (f"{name}.branch7x7dbl_1", 768, c7, 1, 1),
        (f"{name}.branch7x7dbl_2", c7, c7, 7, 1),
        (f"{name}.branch7x7dbl_3", c7, c7, 1, 7),
        (f"{name}.branch7x7dbl_4", c7, c7, 7, 1),
        (f"{name}.branch7x7dbl_5", c7, 192, 1, 7),
        (f"{name}.branch_pool", 768, 192, 1, 1),
    ]


def _units_e(name, cin):
    return [
        (f"{name}.branch1x1", cin, 320, 1, 1),
        (f"{name}.branch3x3_1", cin, 384, 1, 1),
        (f"{name}.branch3x3_2a", 384, 384, 1, 3),
        (f"{name}.branch3x3_2b", 384, 384, 3, 1),
        (f"{name}.branch3x3dbl_1", cin, 448, 1, 1),
        (f"{name}.branch3x3dbl_2", 448, 384, 3, 3),
        (f"{name}.branch3x3dbl_3a", 384, 384, 1, 3),
        (f"{name}.branch3x3dbl_3b", 384, 384, 3, 1),
        (f"{name}.branch_pool", cin, 192, 1, 1),
    ]


# (conv-bn unit, in channels, out channels, kernel height, kernel width) for the 94 units.
UNITS = (
    [
        ("Conv2d_1a_3x3", 3, 32, 3, 3),
        ("Conv2d_2a_3x3", 32, 32, 3, 3),
        ("Conv2d_2b_3x3", 32, 64, 3, 3),
        ("Conv2d_3b_1x1", 64, 80, 1, 1),
        ("Conv2d_4a_3x3", 80, 192, 3, 3),
    ]
    + _units_a("Mixed_5b", 192, 32)
    + _units_a("Mixed_5c", 256, 64)
    + _units_a("Mixed_5d", 288, 64)
    + [
        ("Mixed_6a.branch3x3", 288, 384, 3, 3),
        ("Mixed_6a.branch3x3dbl_1", 288, 64, 1, 1),
        ("Mixed_6a.branch3x3dbl_2", 64, 96, 3, 3),
        ("Mixed_6a.branch3x3dbl_3", 96, 96, 3, 3),
    ]
    + _units_c("Mixed_6b", 128)
    + _units_c("Mixed_6c", 160)
    + _units_c("Mixed_6d", 160)
    + _units_c("Mixed_6e", 192)
    + [
        ("Mixed_7a.branch3x3_1", 768, 192, 1, 1),
        ("Mixed_7a.branch3x3_2", 192, 320, 3, 3),
        ("Mixed_7a.branch7x7x3_1", 768, 192, 1, 1),
        ("Mixed_7a.branch7x7x3_2", 192, 192, 1, 7),
        ("Mixed_7a.branch7x7x3_3", 192, 192, 7, 1),
        ("Mixed_7a.branch7x7x3_4", 192, 192, 3, 3),
    ]
    + _units_e("Mixed_7b", 1280)
    + _units_e("Mixed_7c", 2048)
)


def _file_tensor_shapes():
    shapes = {"fc.weight": (1008, 2048), "fc.bias": (1008,)}
    for unit, cin, cout, height, width in UNITS:
        shapes[f"{unit}.conv.weight"] = (cout, cin, height, width)
        for statistic in ("weight", "bias", "running_mean", "running_var"):
            shapes[f"{unit}.bn.{statistic}"] = (cout,)
    return shapes


# ---------------------------------------------------------------------------------------------
# Fixtures
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One intra-op thread for this module (as conftest's ``single_thread``): on a machine busy with
    other work, a second OpenMP thread made a 75 x 75 forward pass take seconds instead of 0.1 s."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def model():
    """Random weights of a sensible scale (He-normal convolutions, random BatchNorm statistics) in
    eval mode, without resizing so that 75 x 75 inputs keep forward passes cheap."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        network = FIDInceptionV3(resize_input=False)
        for module in network.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.uniform_(module.weight, 0.5, 1.5)
                nn.init.uniform_(module.bias, -0.1, 0.1)
                nn.init.uniform_(module.running_mean, -0.1, 0.1)
                nn.init.uniform_(module.running_var, 0.5, 1.5)
    return network.eval()


@pytest.fixture
def images(make_generator):
    # Two images: forward passes use batches of 2 and 1 only, which keeps the file fast.
    return torch.rand(2, 3, SMALL, SMALL, generator=make_generator(7))


@pytest.fixture(scope="module")
def saved_weights(model, tmp_path_factory):
    path = tmp_path_factory.mktemp("weights") / "random_inception.pth"
    torch.save(model.state_dict(), path)
    return path


# ---------------------------------------------------------------------------------------------
# Architecture
# ---------------------------------------------------------------------------------------------
def test_state_dict_has_the_tensors_of_the_standard_file(model):
    state = model.state_dict()
    counters = [key for key in state if key.endswith("num_batches_tracked")]
    tensors = {key: tuple(value.shape) for key, value in state.items() if key not in counters}
    expected = _file_tensor_shapes()
    assert len(UNITS) == 94 and len(expected) == 94 * 5 + 2 == 472
    assert tensors == expected
    # The only other entries are BatchNorm's step counters, one per BatchNorm (94).
    assert sorted(counters) == sorted(f"{unit}.bn.num_batches_tracked" for unit, *_ in UNITS)
    assert sum(isinstance(m, nn.BatchNorm2d) and m.eps == 0.001 for m in model.modules()) == 94
    assert sum(isinstance(m, nn.Conv2d) and m.bias is None for m in model.modules()) == 94
    # A few tensors by name, as in the file.
    assert tensors["Conv2d_1a_3x3.conv.weight"] == (32, 3, 3, 3)
    assert tensors["Mixed_5b.branch_pool.conv.weight"] == (32, 192, 1, 1)
    assert tensors["Mixed_6b.branch7x7_2.conv.weight"] == (128, 128, 1, 7)
    assert tensors["Mixed_6e.branch7x7dbl_5.conv.weight"] == (192, 192, 1, 7)
    assert tensors["Mixed_7c.branch3x3dbl_2.conv.weight"] == (384, 448, 3, 3)
    assert tensors["Mixed_7c.branch_pool.bn.running_var"] == (192,)
    assert tensors["fc.weight"] == (1008, 2048) and tensors["fc.bias"] == (1008,)


def test_parameter_count_is_that_of_the_fid_network(model):
    # 23,850,960 = torchvision's inception_v3 num_params 27,161,264 - 3,326,696 (its auxiliary
    # classifier) + 8 x 2049 (classes 1000 -> 1008); also the count printed for pytorch-fid's
    # fid_inception_v3(). Running statistics are buffers, not parameters.
    count = sum(p.numel() for p in model.parameters())
    assert count == inception.N_PARAMETERS == 23_850_960
    table = _file_tensor_shapes()
    table_count = sum(int(np.prod(shape)) for key, shape in table.items() if not key.endswith(("running_mean", "running_var")))
    assert table_count == count


@pytest.mark.parametrize(
    "block, pool", [("Mixed_5b", "average"), ("Mixed_6b", "average"), ("Mixed_7b", "average"), ("Mixed_7c", "max")]
)
def test_pool_branches_follow_the_tensorflow_graph(model, block, pool, make_generator):
    """The pool branch (the last output channels) of a block whose 1x1 convolution copies input
    channel 0 and whose BatchNorm is the identity: it shows the pool itself. Averages must skip
    the padding (TF's SAME average pool) and Mixed_7c must take the maximum."""
    module = copy.deepcopy(getattr(model, block))
    unit = module.branch_pool
    with torch.no_grad():
        unit.conv.weight.zero_()
        unit.conv.weight[:, 0] = 1.0
        unit.bn.weight.fill_(1.0), unit.bn.bias.zero_(), unit.bn.running_mean.zero_()
        unit.bn.running_var.fill_(1.0 - unit.bn.eps)
        x = torch.rand(1, unit.conv.in_channels, 4, 5, generator=make_generator(3)) + 0.1
        out = module(x)[0, -unit.conv.out_channels :]
    channel = x[0, 0].numpy()
    expected = np.empty_like(channel)
    for i, j in itertools.product(range(4), range(5)):
        window = channel[max(i - 1, 0) : i + 2, max(j - 1, 0) : j + 2]  # in-image part of the 3x3
        expected[i, j] = window.max() if pool == "max" else window.mean()
    for row in out:
        np.testing.assert_allclose(row.numpy(), expected, rtol=1e-5, atol=1e-6)


def test_forward_at_299_shapes_and_one_channel_input(model, make_generator):
    gray = torch.rand(1, 1, 28, 28, generator=make_generator(1))
    resizing = copy.copy(model)  # shares the weights; only resize_input differs
    resizing.resize_input = True
    preprocessed = resizing.preprocess(gray)
    assert preprocessed.shape == (1, 3, 299, 299)
    assert preprocessed.min() >= -1.0 and preprocessed.max() <= 1.0
    # One channel is repeated: the network sees exactly what the RGB image of three copies gives.
    torch.testing.assert_close(preprocessed, resizing.preprocess(gray.repeat(1, 3, 1, 1)), rtol=0, atol=0)
    # The grid sizes of the reference implementations' shape comments: 149, 147, 73, 71, 35, 17, 8.
    sizes = {
        "Conv2d_1a_3x3": (32, 149),
        "Conv2d_2b_3x3": (64, 147),
        "Conv2d_3b_1x1": (80, 73),
        "Conv2d_4a_3x3": (192, 71),
        "Mixed_5b": (256, 35),
        "Mixed_5d": (288, 35),
        "Mixed_6a": (768, 17),
        "Mixed_6e": (768, 17),
        "Mixed_7a": (1280, 8),
        "Mixed_7b": (2048, 8),
        "Mixed_7c": (2048, 8),
    }
    seen = {}

    def record(name):
        def hook(module, inputs, output):
            seen[name] = tuple(output.shape)

        return hook

    hooks = [getattr(model, name).register_forward_hook(record(name)) for name in sizes]
    try:
        with torch.no_grad():
            features, logits = resizing(gray)
    finally:
        for hook in hooks:
            hook.remove()
    assert seen == {name: (1, channels, side, side) for name, (channels, side) in sizes.items()}
    assert features.shape == (1, 2048) and logits.shape == (1, 1008)
    assert torch.isfinite(features).all() and torch.isfinite(logits).all()


def test_inputs_are_mapped_to_minus_one_one(model, images):
    # [0, 1] input -> 2 x - 1; centered input is taken as it is.
    torch.testing.assert_close(model.preprocess(images), 2 * images - 1)
    torch.testing.assert_close(model.preprocess(2 * images - 1, centered=True), 2 * images - 1)


def test_logits_with_and_without_the_fc_bias(model, images):
    with torch.no_grad():
        features, logits = model(images)
        _, biased = model(images, logits_bias=True)
    torch.testing.assert_close(logits, features @ model.fc.weight.T)
    torch.testing.assert_close(biased, logits + model.fc.bias)


@pytest.mark.parametrize(
    "bad, message",
    [
        (torch.zeros(3, 75, 75), "shape"),
        (torch.zeros(1, 2, 75, 75), "C = 1 or 3"),
        (torch.zeros(1, 3, 75, 75, dtype=torch.uint8), "floating point"),
        (torch.zeros(1, 3, 74, 75), "at least 75"),
    ],
)
def test_bad_images_raise(model, bad, message):
    with pytest.raises(ValueError, match=message):
        model(bad)


def test_features_do_not_depend_on_the_batch(model, images):
    features, logits = inception_features(model, images, batch_size=2)
    assert features.shape == (2, 2048) and logits.shape == (2, 1008)
    assert features.dtype == logits.dtype == np.float32
    assert features.std() > 0 and np.abs(logits).max() > 0
    assert not np.allclose(features[0], features[1], rtol=1e-3)
    one_by_one = inception_features(model, images.numpy(), batch_size=1)
    swapped = inception_features(model, images[[1, 0]], batch_size=5)
    for got_features, got_logits in (one_by_one, (swapped[0][[1, 0]], swapped[1][[1, 0]])):
        np.testing.assert_allclose(got_features, features, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(got_logits, logits, rtol=1e-4, atol=1e-4)
    # A model left in training mode is evaluated in eval mode and handed back in training mode.
    model.train()
    try:
        np.testing.assert_allclose(inception_features(model, images)[0], features, rtol=1e-4, atol=1e-5)
        assert model.training
    finally:
        model.eval()


@pytest.mark.parametrize("n, batch_size, message", [(1, 0, "batch_size"), (0, 50, "N >= 1")])
def test_inception_features_rejects_bad_arguments(model, n, batch_size, message):
    with pytest.raises(ValueError, match=message):
        inception_features(model, torch.zeros(n, 3, SMALL, SMALL), batch_size=batch_size)


# ---------------------------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------------------------
def test_round_trip_through_a_file(model, saved_weights, images):
    loaded = load_fid_inception(saved_weights, check_hash=False)
    assert not loaded.training and loaded.resize_input
    assert not any(p.requires_grad for p in loaded.parameters())
    loaded.resize_input = False
    with torch.no_grad():
        for got, want in zip(loaded(images), model(images)):
            torch.testing.assert_close(got, want, rtol=0, atol=0)


def test_state_dict_without_step_counters_in_the_legacy_format_loads(model, tmp_path):
    # Weights converted from TensorFlow need not carry BatchNorm's num_batches_tracked, and a file
    # written before PyTorch 1.6 has the legacy (non-zip) serialisation.
    state = {k: v for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}
    path = tmp_path / "no_counters.pth"
    torch.save(state, path, _use_new_zipfile_serialization=False)
    loaded = load_fid_inception(path, check_hash=False).state_dict()
    for key, value in state.items():
        assert torch.equal(loaded[key], value), key
    assert all(loaded[key] == 0 for key in loaded if key.endswith("num_batches_tracked"))


def test_wrong_digest_names_both(tmp_path):
    path = tmp_path / FID_WEIGHTS_FILENAME
    path.write_bytes(b"certainly not the Inception weights")
    actual = hashlib.sha256(b"certainly not the Inception weights").hexdigest()
    with pytest.raises(ValueError) as error:
        load_fid_inception(path)
    assert actual in str(error.value) and FID_WEIGHTS_SHA256 in str(error.value)


def test_digest_is_checked_on_a_real_state_dict_too(saved_weights):
    with pytest.raises(ValueError, match=FID_WEIGHTS_SHA256):
        load_fid_inception(saved_weights, check_hash=True)


def test_an_expected_digest_given_by_the_user_is_checked(model, saved_weights):
    digest = sha256_of_file(saved_weights)
    loaded = load_fid_inception(saved_weights, expected_sha256=digest.upper())  # case does not matter
    assert torch.equal(loaded.state_dict()["fc.weight"], model.state_dict()["fc.weight"])
    with pytest.raises(ValueError, match="64 hexadecimal digits"):
        load_fid_inception(saved_weights, expected_sha256="6726825d")


def test_missing_file_says_where_to_get_it(tmp_path):
    path = tmp_path / "nowhere" / FID_WEIGHTS_FILENAME
    with pytest.raises(FileNotFoundError) as error:
        load_fid_inception(path)
    message = str(error.value)
    assert str(path) in message and FID_WEIGHTS_FILENAME in message
    assert "pytorch-fid" in message and "nothing is downloaded" in message


def test_state_dict_that_does_not_fit_names_the_keys(model, tmp_path):
    state = dict(model.state_dict())
    del state["Mixed_6e.branch7x7_2.bn.running_var"]
    state["fc.weight"] = torch.zeros(1000, 2048)
    state["AuxLogits.fc.weight"] = torch.zeros(1008, 768)
    path = tmp_path / "torchvision_like.pth"
    torch.save(state, path)
    with pytest.raises(ValueError) as error:
        load_fid_inception(path, check_hash=False)
    message = str(error.value)
    assert "1 missing keys: Mixed_6e.branch7x7_2.bn.running_var" in message
    assert "1 unexpected keys: AuxLogits.fc.weight" in message
    assert "fc.weight (1000, 2048) (expected (1008, 2048))" in message


class _NotATensor:
    pass


@pytest.mark.parametrize(
    "content, message",
    [
        (torch.zeros(3), "not a state dict"),
        ({"Conv2d_1a_3x3.conv.weight": [1.0, 2.0]}, "not tensors"),
        ({"x": _NotATensor()}, "weights_only=True"),
    ],
)
def test_files_that_are_not_state_dicts(tmp_path, content, message):
    path = tmp_path / "other.pth"
    torch.save(content, path)
    with pytest.raises(ValueError, match=message):
        load_fid_inception(path, check_hash=False)


def test_unreadable_file(tmp_path):
    path = tmp_path / "garbage.pth"
    path.write_bytes(b"\x00garbage" * 10)
    with pytest.raises(ValueError, match="cannot read"):
        load_fid_inception(path, check_hash=False)


def test_sha256_of_file_matches_hashlib(tmp_path):
    data = bytes(range(256)) * 41 + b"tail"
    path = tmp_path / "data.bin"
    path.write_bytes(data)
    expected = hashlib.sha256(data).hexdigest()
    assert sha256_of_file(path) == expected
    assert sha256_of_file(str(path), chunk_size=7) == expected  # chunks that do not divide
    empty = tmp_path / "empty.bin"
    empty.write_bytes(b"")
    assert sha256_of_file(empty) == hashlib.sha256(b"").hexdigest()
    with pytest.raises(ValueError, match="chunk_size"):
        sha256_of_file(path, chunk_size=0)


def test_expected_digest_fits_the_file_name():
    # torch.hub's convention: the name carries the first 8 hex digits of the SHA-256.
    prefix = FID_WEIGHTS_FILENAME.rsplit("-", 1)[1].split(".")[0]
    assert prefix == "6726825d" and FID_WEIGHTS_SHA256.startswith(prefix)
    assert len(FID_WEIGHTS_SHA256) == 64 and int(FID_WEIGHTS_SHA256, 16) >= 0


# ---------------------------------------------------------------------------------------------
# Inception Score
# ---------------------------------------------------------------------------------------------
def _one_hot_logits(labels, n_classes, confidence=np.inf):
    logits = np.full((len(labels), n_classes), -confidence)
    logits[np.arange(len(labels)), labels] = 0.0
    return logits


@pytest.mark.parametrize("confidence", [np.inf, 60.0])
def test_confident_predictions_of_equally_used_classes_score_the_class_count(confidence):
    labels = np.tile(np.arange(10), 20)  # every split of 20 holds each class twice
    mean, std = metrics.inception_score(_one_hot_logits(labels, 10, confidence), n_splits=10)
    assert mean == pytest.approx(10.0, abs=1e-6) and std == pytest.approx(0.0, abs=1e-6)


def test_identical_predictions_score_one(make_generator):
    row = torch.randn(1, 7, generator=make_generator(0)).numpy()
    mean, std = metrics.inception_score(np.repeat(row, 40, axis=0), n_splits=4)
    assert mean == pytest.approx(1.0, abs=1e-12) and std == pytest.approx(0.0, abs=1e-12)


def test_two_class_closed_form():
    # Half the samples predict (a, 1 - a), half (1 - a, a): p(y) is uniform and
    # IS = exp(log 2 - H(a)) = 2 exp(-H(a)) with the binary entropy H.
    a = 0.8
    rows = np.log(np.array([[a, 1 - a], [1 - a, a]] * 6))
    entropy = -(a * np.log(a) + (1 - a) * np.log(1 - a))
    mean, _ = metrics.inception_score(torch.as_tensor(rows), n_splits=1)
    assert mean == pytest.approx(2.0 * np.exp(-entropy), rel=1e-12)


def test_splits_are_contiguous_and_std_is_over_splits():
    # First split: two classes used equally, confident (IS = 2); second: one prediction (IS = 1).
    first = _one_hot_logits(np.array([0, 1, 0, 1]), 3)
    second = np.zeros((4, 3))
    mean, std = metrics.inception_score(np.concatenate([first, second]), n_splits=2)
    assert mean == pytest.approx(1.5, abs=1e-12) and std == pytest.approx(0.5, abs=1e-12)


def test_score_is_invariant_to_permutations_within_splits(make_generator):
    logits = 3.0 * torch.randn(60, 5, generator=make_generator(4), dtype=torch.float64).numpy()
    rng = np.random.default_rng(0)
    permuted = np.concatenate([part[rng.permutation(20)] for part in np.split(logits, 3)])
    np.testing.assert_allclose(
        metrics.inception_score(permuted, n_splits=3), metrics.inception_score(logits, n_splits=3), rtol=1e-12
    )
    # Shifting a row's logits by a constant does not change its probabilities.
    np.testing.assert_allclose(
        metrics.inception_score(logits + 100.0, n_splits=3), metrics.inception_score(logits, n_splits=3), rtol=1e-10
    )


@pytest.mark.parametrize(
    "logits, n_splits, message",
    [
        (np.zeros(10), 1, "shape"),
        (np.zeros((10, 2, 2)), 1, "shape"),
        (np.zeros((10, 0)), 1, "shape"),
        (np.zeros((10, 3)), 0, "positive integer"),
        (np.zeros((10, 3)), 2.5, "positive integer"),
        (np.zeros((19, 3)), 10, "at least 2 samples per split"),
        (np.array([[0.0, np.nan]] * 4), 1, "nan"),
        (np.array([[0.0, np.inf]] * 4), 1, "nan or \\+inf"),
        (np.array([[-np.inf, -np.inf]] + [[0.0, 0.0]] * 3), 1, "finite entry"),
    ],
)
def test_inception_score_rejects_bad_inputs(logits, n_splits, message):
    with pytest.raises(ValueError, match=message):
        metrics.inception_score(logits, n_splits=n_splits)
