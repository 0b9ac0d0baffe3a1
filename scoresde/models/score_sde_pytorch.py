"""Networks and checkpoints of score_sde_pytorch (Song et al. 2021's PyTorch code) in scoresde.

Its two network families are both `ScoreUNet` configurations: NCSN++ / DDPM++ (`config.model.name`
"ncsnpp", continuous or discrete-time) and Ho et al.'s DDPM U-Net ("ddpm": DDPM residual blocks,
separate resampling convolutions, plain residual sums, GroupNorm with 32 groups; `_DDPM_AS_SCORE_UNET`).
Only the fields a configuration's network reads are required (a positional-embedding NCSN++ never
reads `fourier_scale`).

That project keeps every layer in one flat list, `all_modules`, in the order the forward pass calls
them; its checkpoints are `{"model": state_dict, "ema": {"shadow_params": [...]}, "optimizer": ...,
"step": ...}` with keys `module.all_modules.<i>.<layer>.<param>` (the `module.` prefix comes from
`DataParallel`) and the EMA as a list of the trainable parameters in `parameters()` order.
`ScoreUNet` is the same network with named submodules, so loading is a renaming in call order:

    all_modules.<i>.GroupNorm_0 / Conv_0 / Dense_0 / GroupNorm_1 / Conv_1 / Conv_2   (residual blocks)
        -> <block>.norm_0 / conv_0 / time_proj / norm_1 / conv_1 / skip
    all_modules.<i>.NIN_0 (a 1x1 layer stored as an (in, out) matrix W and b) -> <block>.skip
    all_modules.<i>.NIN_0..2 / NIN_3 (attention)   -> <attention>.qkv (stacked) / proj
    all_modules.<i>.Conv_0 / Conv2d_0 (resampling) -> <resample>.conv

The `sigmas` buffer (the table of discrete noise levels) is checked against the configuration and
dropped; networks told a noise-level index that divide by sigmas[index] (`scale_by_sigma` with
positional embeddings: discrete-time NCSN++) are wrapped in `IndexedSigmaScaling`, which keeps it.

The networks keep that project's calling convention, `net(x, labels)`, with labels sigma(t) for
continuous VE, 999 t for continuous VP / sub-VP, round((1 - t)(N - 1)) for discrete VE (SMLD) and
t (N - 1) for discrete VP (DDPM); `score_fn_for` wraps one into a score function for our samplers
(VE networks output the score, VP / sub-VP networks the noise eps).
"""

from __future__ import annotations

import math
import os
import pickle
from typing import Any, Mapping, cast

import torch
from torch import nn

from scoresde.models.layers import GaussianFourierProjection
from scoresde.models.resampling import Resample
from scoresde.models.unet import ResBlock, ScoreUNet, SelfAttention
from scoresde.score import NetworkScore
from scoresde.sde_lib import SDE

SUPPORTED = {"normalization": "GroupNorm", "nonlinearity": "swish", "attention_type": "ddpm", "conv_size": 3}
NETWORKS = ("ncsnpp", "ddpm")  # config.model.name values we build (DDPM++ configs are named "ncsnpp" too)
# score_sde_pytorch config.model fields passed to ScoreUNet unchanged, per network; "fourier_scale"
# is read only with Fourier embeddings, so discrete-time configurations (positional) need not have it.
_SAME_NAME = {
    "ncsnpp": (
        "nf",
        "ch_mult",
        "num_res_blocks",
        "attn_resolutions",
        "dropout",
        "resblock_type",
        "resamp_with_conv",
        "fir",
        "fir_kernel",
        "skip_rescale",
        "progressive",
        "progressive_input",
        "progressive_combine",
        "embedding_type",
        "conditional",
        "init_scale",
    ),
    "ddpm": ("nf", "ch_mult", "num_res_blocks", "attn_resolutions", "dropout", "resamp_with_conv"),
}
# Ho et al.'s DDPM U-Net (score_sde_pytorch's `ddpm` model) as a configuration of ScoreUNet: DDPM
# residual blocks with separate resampling layers, plain residual sums, no progressive paths, the
# sinusoidal embedding of the label, and GroupNorm with 32 groups everywhere. It is time-conditioned
# whatever `config.model.conditional` says (that project builds the same blocks either way).
_DDPM_AS_SCORE_UNET = {
    "conditional": True,
    "resblock_type": "ddpm",
    "fir": False,
    "skip_rescale": False,
    "progressive": "none",
    "progressive_input": "none",
    "embedding_type": "positional",
    "norm_groups": 32,
}
_SIGMA_TABLE_FIELDS = ("sigma_min", "sigma_max", "num_scales")
TRAINING_SDES = ("vesde", "vpsde", "subvpsde")  # its config.training.sde values (= our config.sde.name ones)
DISCRETE_TIME_SDES = TRAINING_SDES[:2]  # those with discrete-time label conventions (sub-VP has none)
_RESBLOCK_NAMES = {
    "GroupNorm_0": "norm_0",
    "Conv_0": "conv_0",
    "Dense_0": "time_proj",
    "GroupNorm_1": "norm_1",
    "Conv_1": "conv_1",
    "Conv_2": "skip",
    "NIN_0": "skip",
}


def _as_dict(config: Any) -> dict:
    if hasattr(config, "to_dict"):  # an ml_collections ConfigDict
        return config.to_dict()
    if isinstance(config, Mapping):
        return dict(config)
    raise TypeError(f"expected a mapping (score_sde_pytorch's config.model / config.data), got {type(config).__name__}")


def _required_fields(model: dict) -> list[str]:
    """The config.model fields the network named `model["name"]` reads."""
    fields = ["name", *_SAME_NAME[model["name"]], "scale_by_sigma"]
    if model["name"] == "ncsnpp" and model.get("embedding_type") == "fourier":
        fields.append("fourier_scale")
    if model.get("scale_by_sigma") and _indexes_sigmas(model):
        fields += _SIGMA_TABLE_FIELDS
    return fields


def _indexes_sigmas(model: dict) -> bool:
    """Whether the network is told the index of a discrete noise level (positional embeddings), so
    that `scale_by_sigma` divides by a table entry sigmas[index] rather than by the label."""
    return model["name"] == "ddpm" or model.get("embedding_type") == "positional"


def unet_options(model_config: Mapping, data_config: Mapping) -> dict:
    """ScoreUNet's keyword arguments (with `data_shape`) for a score_sde_pytorch configuration.

    Only the fields the configured network reads are required (score_sde_pytorch's `ncsnpp` with
    positional embeddings never reads `fourier_scale`; its `ddpm` reads none of the NCSN++ choices).

    Raises:
        ValueError: for an unknown network, a missing field or an architecture choice ScoreUNet does not have.
    """
    model, data = _as_dict(model_config), _as_dict(data_config)
    if model.get("name") not in NETWORKS:
        raise ValueError(f"config.model.name={model.get('name')!r} is not supported; valid: {', '.join(NETWORKS)}")
    missing = [k for k in _required_fields(model) if k not in model] + [
        f"data.{k}" for k in ("image_size", "num_channels", "centered") if k not in data
    ]
    if missing:
        raise ValueError(f"the score_sde_pytorch configuration lacks the fields: {', '.join(missing)}")
    for key, value in SUPPORTED.items():
        if key in model and model[key] != value:
            raise ValueError(f"config.model.{key}={model[key]!r} is not supported; scoresde's U-Net implements {key}={value!r}")
    if model["name"] == "ncsnpp" and not model["conditional"]:
        raise ValueError(
            "config.model.conditional=False is not supported: score_sde_pytorch's unconditional "
            "networks keep unused time layers that ours leave out (none of its configs use it)"
        )
    options = {key: model[key] for key in _SAME_NAME[model["name"]]}
    if model["name"] == "ddpm":
        options.update(_DDPM_AS_SCORE_UNET)
    elif model["embedding_type"] == "fourier":
        options["fourier_scale"] = model["fourier_scale"]
    options["ch_mult"], options["attn_resolutions"] = tuple(options["ch_mult"]), tuple(options["attn_resolutions"])
    if "fir_kernel" in options:
        options["fir_kernel"] = tuple(options["fir_kernel"])
    options["scale_by_sigma"] = bool(model["scale_by_sigma"]) and not _indexes_sigmas(model)  # else: IndexedSigmaScaling
    options["log_label"] = options["embedding_type"] == "fourier"  # NCSN++ embeds log sigma
    options["center_input"] = not data["centered"]  # data in [0, 1]: the network maps x to 2x - 1
    options["data_shape"] = (data["num_channels"], data["image_size"], data["image_size"])
    return options


class IndexedSigmaScaling(nn.Module):
    """`net(x, i) / sigmas[i]`: score_sde_pytorch's `scale_by_sigma` for networks told the index i of
    a discrete noise level (positional embeddings: discrete-time NCSN++ for SMLD, and its `ddpm`),
    with its table sigmas_i = exp(linspace(log sigma_max, log sigma_min, num_scales)), descending.

    Args:
        unet: the network proper (its state_dict is the checkpoint's, less the `sigmas` table).
        sigmas: the table, shape (num_scales,).
    """

    def __init__(self, unet: ScoreUNet, sigmas: torch.Tensor):
        super().__init__()
        self.unet = unet
        self.register_buffer("sigmas", sigmas.float(), persistent=False)

    def forward(self, x: torch.Tensor, label: torch.Tensor, class_labels: torch.Tensor | None = None) -> torch.Tensor:
        if label.ndim == 0:
            label = label.expand(x.shape[0])
        index, sigmas = label.long(), cast(torch.Tensor, self.sigmas)
        if index.min() < 0 or index.max() >= len(sigmas):
            raise ValueError(f"noise-level indices must lie in [0, {len(sigmas)}), got {label.min()}..{label.max()}")
        out = self.unet(x, label, class_labels)
        return out / sigmas[index].reshape(-1, *([1] * (out.ndim - 1)))


def from_score_sde_pytorch_config(model_config: Mapping, data_config: Mapping) -> nn.Module:
    """Our network built from score_sde_pytorch's `config.model` and `config.data` fields (randomly
    initialised), called as `net(x, labels)` with that project's labels (sigma for continuous VE,
    999 t for continuous VP / sub-VP, the noise-level index for discrete-time models).

    Returns a `ScoreUNet`, or an `IndexedSigmaScaling` around one for networks that divide their
    output by a table entry sigmas[index].
    """
    options = unet_options(model_config, data_config)
    unet = ScoreUNet(options.pop("data_shape"), **options)
    model = _as_dict(model_config)
    if model["scale_by_sigma"] and _indexes_sigmas(model):
        return IndexedSigmaScaling(unet, _expected_sigmas(model))
    return unet


def _unet(net: nn.Module) -> ScoreUNet:
    return net.unet if isinstance(net, IndexedSigmaScaling) else cast(ScoreUNet, net)


def _official_order(net: ScoreUNet) -> list[nn.Module]:
    """Our submodules in the order of score_sde_pytorch's `all_modules` (= its call order)."""
    order: list[nn.Module] = []
    if net.time_embed is not None:
        if net.time_embed.fourier is not None:
            order.append(net.time_embed.fourier)
        order += [net.time_embed.dense_0, net.time_embed.dense_1]
    order.append(net.input_conv)
    for level in net.down_levels():
        for i, block in enumerate(level.blocks):
            order.append(block)
            if len(level.attentions):
                order.append(level.attentions[i])
        order += [m for m in (level.downsample, level.input_pyramid) if m is not None]
    order += [net.middle["block_0"], net.middle["attention"], net.middle["block_1"]]
    for up_level in net.up_levels():
        order += list(up_level.blocks)
        order += [
            m
            for m in (
                up_level.attention,
                up_level.pyramid_norm,
                up_level.pyramid_conv,
                up_level.pyramid_upsample,
                up_level.upsample,
            )
            if m is not None
        ]
    if net.progressive != "output_skip":
        order += [net.output_norm, net.output_conv]
    return order


def _nin_as_conv(w: torch.Tensor) -> torch.Tensor:
    """score_sde's NIN layer stores a 1x1 convolution as an (in, out) matrix."""
    return w.t()[:, :, None, None]


def _convert_module(module: nn.Module, official: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """One layer's official tensors (keys relative to `all_modules.<i>.`) under our names."""
    if isinstance(module, SelfAttention):
        nin = lambda i, p: official.pop(f"NIN_{i}.{p}")  # noqa: E731
        out = {
            "norm.weight": official.pop("GroupNorm_0.weight"),
            "norm.bias": official.pop("GroupNorm_0.bias"),
            "qkv.weight": torch.cat([_nin_as_conv(nin(i, "W")) for i in range(3)]),
            "qkv.bias": torch.cat([nin(i, "b") for i in range(3)]),
            "proj.weight": _nin_as_conv(nin(3, "W")),
            "proj.bias": nin(3, "b"),
        }
        return out
    out = {}
    for key in list(official):
        layer, _, param = key.rpartition(".")
        if isinstance(module, ResBlock) and layer in _RESBLOCK_NAMES:
            name = _RESBLOCK_NAMES[layer]
            if layer == "NIN_0":
                out[f"{name}.{'weight' if param == 'W' else 'bias'}"] = (
                    _nin_as_conv(official.pop(key)) if param == "W" else official.pop(key)
                )
                continue
            out[f"{name}.{param}"] = official.pop(key)
        elif isinstance(module, Resample) and layer in ("Conv_0", "Conv2d_0"):
            out[f"conv.{param}"] = official.pop(key)
        elif isinstance(module, nn.Conv2d) and layer == "Conv_0":  # the 1x1 layer of an input-skip combiner
            out[param] = official.pop(key)
        elif layer == "" and isinstance(module, (nn.Linear, nn.Conv2d, nn.GroupNorm, GaussianFourierProjection)):
            out[param] = official.pop(key)
    return out


def _expected_sigmas(model: dict) -> torch.Tensor:
    return torch.exp(torch.linspace(math.log(model["sigma_max"]), math.log(model["sigma_min"]), model["num_scales"]))


def convert_state_dict(
    state_dict: Mapping[str, torch.Tensor], net: ScoreUNet, model_config: Mapping | None = None
) -> dict[str, torch.Tensor]:
    """A score_sde_pytorch NCSN++ / DDPM++ state_dict renamed and reshaped for `net`.

    Every official tensor must be used and every tensor of `net` provided, with matching shapes.

    Raises:
        ValueError: naming the missing, unexpected and mis-shaped keys.
    """
    official = {k.removeprefix("module."): v for k, v in state_dict.items()}
    problems: list[str] = []
    sigmas = official.pop("sigmas", None)
    if sigmas is not None and model_config is not None:
        model = _as_dict(model_config)
        if set(_SIGMA_TABLE_FIELDS) <= model.keys():
            expected = _expected_sigmas(model)
            if sigmas.shape != expected.shape or not torch.allclose(sigmas.float(), expected, rtol=1e-4):
                problems.append("the 'sigmas' buffer does not match config.model.sigma_min / sigma_max / num_scales")
    names = {id(m): name for name, m in net.named_modules()}
    converted: dict[str, torch.Tensor] = {}
    for index, module in enumerate(_official_order(net)):
        prefix = f"all_modules.{index}."
        part = {k[len(prefix) :]: official.pop(k) for k in [k for k in official if k.startswith(prefix)]}
        try:
            renamed = _convert_module(module, part)
        except KeyError as err:
            problems.append(f"missing {prefix}{err.args[0]}")
            continue
        official.update({prefix + k: v for k, v in part.items()})  # left over: unexpected
        converted.update({f"{names[id(module)]}.{k}": v for k, v in renamed.items()})
    ours = net.state_dict()
    missing = [k for k in ours if k not in converted]
    unexpected = sorted(official, key=lambda k: (len(k), k)) + [f"{k} (as converted)" for k in converted if k not in ours]
    shapes = [
        f"{k}: checkpoint {tuple(v.shape)} vs network {tuple(ours[k].shape)}"
        for k, v in converted.items()
        if k in ours and v.shape != ours[k].shape
    ]
    if missing:
        problems.append(
            f"{len(missing)} tensors of the network not in the checkpoint: {', '.join(missing[:8])}"
            + (" ..." if len(missing) > 8 else "")
        )
    if unexpected:
        problems.append(
            f"{len(unexpected)} unexpected checkpoint keys: {', '.join(unexpected[:8])}" + (" ..." if len(unexpected) > 8 else "")
        )
    if shapes:
        problems.append(f"{len(shapes)} shape mismatches: {'; '.join(shapes[:8])}" + (" ..." if len(shapes) > 8 else ""))
    if problems:
        raise ValueError("the checkpoint does not match the configured network: " + " | ".join(problems))
    return converted


def _trainable_keys(state_dict: Mapping[str, torch.Tensor], net: ScoreUNet) -> list[str]:
    """The official keys of trainable parameters, in `parameters()` order (= state_dict order without
    the `sigmas` buffer and the frozen Fourier frequencies)."""
    keys = [k for k in state_dict if k.removeprefix("module.") != "sigmas"]
    if net.time_embed is not None and net.time_embed.fourier is not None:
        keys = [k for k in keys if k.removeprefix("module.") != "all_modules.0.W"]
    return keys


def ema_state_dict(checkpoint: Mapping, net: ScoreUNet) -> dict[str, torch.Tensor]:
    """The official model state_dict with the EMA's `shadow_params` in place of the trainable tensors.

    Raises:
        ValueError: if the checkpoint has no EMA or its length / shapes do not match.
    """
    model_state = checkpoint["model"]
    try:
        shadow = list(checkpoint["ema"]["shadow_params"])
    except (KeyError, TypeError):
        raise ValueError("the checkpoint has no EMA weights ('ema' -> 'shadow_params'); load with ema=False") from None
    keys = _trainable_keys(model_state, net)
    if len(shadow) != len(keys):
        raise ValueError(f"the EMA holds {len(shadow)} tensors but the model has {len(keys)} trainable ones")
    state = dict(model_state)
    for key, tensor in zip(keys, shadow):
        if tensor.shape != model_state[key].shape:
            raise ValueError(f"EMA tensor for {key} has shape {tuple(tensor.shape)}, the model's {tuple(model_state[key].shape)}")
        state[key] = tensor
    return state


def read_checkpoint(path: str | os.PathLike) -> dict:
    """torch.load with weights_only=True (tensors and plain containers only; never arbitrary objects).

    Raises:
        FileNotFoundError: if there is no such file.
        ValueError: for a file that is not a readable checkpoint or holds arbitrary objects.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no checkpoint file at {os.fspath(path)!r}")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise ValueError(
            f"{os.fspath(path)!r} holds objects other than tensors and plain containers; refusing to "
            f"unpickle it ({str(err).splitlines()[0]})"
        ) from None
    except (RuntimeError, EOFError, OSError) as err:
        raise ValueError(f"{os.fspath(path)!r} is not a readable PyTorch checkpoint ({str(err).splitlines()[0]})") from None
    if not isinstance(checkpoint, Mapping) or "model" not in checkpoint:
        raise ValueError(f"{os.fspath(path)!r} is not a score_sde_pytorch checkpoint (expected a dict with a 'model' state_dict)")
    return dict(checkpoint)


def load_score_sde_pytorch_checkpoint(
    path: str | os.PathLike, model_config: Mapping, data_config: Mapping, ema: bool = True
) -> nn.Module:
    """Our network built from the configuration and loaded strictly from an official checkpoint.

    Args:
        path: a score_sde_pytorch checkpoint (e.g. `checkpoint_26.pth` of the published runs), of an
            NCSN++ / DDPM++ (`config.model.name="ncsnpp"`) or DDPM (`"ddpm"`) network, continuous or
            discrete-time.
        model_config, data_config: that run's `config.model` and `config.data` (dicts or ConfigDicts).
        ema: load the EMA weights (what the paper samples with) instead of the raw model weights.

    Returns:
        The network in eval mode, on the CPU, called as `net(x, labels)` with that project's labels.

    Raises:
        FileNotFoundError, ValueError: see `read_checkpoint`, `convert_state_dict`, `ema_state_dict`.
    """
    checkpoint = read_checkpoint(path)
    net = from_score_sde_pytorch_config(model_config, data_config)
    unet = _unet(net)
    state = ema_state_dict(checkpoint, unet) if ema else checkpoint["model"]
    unet.load_state_dict(convert_state_dict(state, unet, model_config), strict=True)
    return net.eval()


class DiscreteTimeScore:
    """score_fn(x, t) of a score_sde_pytorch network trained on a discrete chain (that project's
    `mutils.get_score_fn` with continuous=False):

        VE (SMLD):  label i = round((T - t) / T (N - 1)), the index into the descending noise
                    levels (i = 0 is sigma_max); the network outputs the score (scaled by 1/sigma_i
                    inside it, `IndexedSigmaScaling`).
        VP (DDPM):  label = t (N - 1) / T; the network outputs the noise and
                    score = -out / sigma_floor(label), with sigma_i = sqrt(1 - prod_{j<=i} (1 - beta_j))
                    of the DDPM chain (`VPSDE.discrete_marginals`), not the continuous sigma(t).

    Args:
        net: the network, `net(x, label)` (or `net(x, label, class_labels)`).
        sde: a `VESDE` or `VPSDE` whose N is the chain length the network was trained on.
        kind: "vesde" or "vpsde".
    """

    def __init__(self, net: nn.Module, sde: SDE, kind: str):
        if kind not in DISCRETE_TIME_SDES:
            raise ValueError(f"discrete-time conventions exist for {', '.join(DISCRETE_TIME_SDES)}; got {kind!r}")
        self.net, self.sde, self.kind = net, sde, kind
        self._sigmas = sde.discrete_marginals()[1] if kind == "vpsde" else None

    def label(self, t: torch.Tensor) -> torch.Tensor:
        """The label the network expects at time t (shape (batch,))."""
        steps = self.sde.N - 1
        if self.kind == "vesde":
            return torch.round((self.sde.T - t) / self.sde.T * steps).long()
        return t * steps / self.sde.T

    def __call__(self, x: torch.Tensor, t: torch.Tensor, class_labels: torch.Tensor | None = None) -> torch.Tensor:
        t = self.sde.check_time(t, x)
        if t.ndim == 0:
            t = t.expand(x.shape[0])
        label = self.label(t)
        out = self.net(x, label) if class_labels is None else self.net(x, label, class_labels)
        if self._sigmas is None:
            return out
        sigma = self._sigmas.to(x.device)[label.long().clamp(0, self.sde.N - 1)].to(out.dtype)
        return -out / sigma.reshape(-1, *([1] * (out.ndim - 1)))


def score_fn_for(net: nn.Module, sde: SDE, training_sde: str, continuous: bool = True) -> NetworkScore | DiscreteTimeScore:
    """score_fn(x, t) of a score_sde_pytorch network under `sde`, per that project's conventions.

    Args:
        net: the network (e.g. from `load_score_sde_pytorch_checkpoint`).
        sde: our SDE with the run's parameters (e.g. `VESDE(sigma_min=0.01, sigma_max=50)`; for a
            discrete-time model its N is the run's `config.model.num_scales`).
        training_sde: the run's `config.training.sde`: "vesde", "vpsde" or "subvpsde".
        continuous: the run's `config.training.continuous` (False: `DiscreteTimeScore`'s labels).

    Continuous time: VE networks (label sigma(t)) output the score (divided by sigma inside the
    network when configured with scale_by_sigma); VP and sub-VP networks (label 999 t) output the
    noise, so the score is -output / sigma(t). That project has no discrete-time sub-VP: its
    sub-VP score function always uses the continuous convention, and so does this one.
    """
    if training_sde not in TRAINING_SDES:
        raise ValueError(f"unknown training_sde {training_sde!r}; score_sde_pytorch has {', '.join(TRAINING_SDES)}")
    if not continuous and training_sde in DISCRETE_TIME_SDES:
        return DiscreteTimeScore(net, sde, training_sde)
    if training_sde == "vesde":
        return NetworkScore(net, sde, parameterization="score", time_label="sigma")
    return NetworkScore(net, sde, parameterization="eps", time_label="999t")
