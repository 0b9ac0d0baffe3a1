"""A small classifier trained on the bundled data, used as the feature space of local sample metrics.

Fréchet distance and KID need features in which distances mean something. The standard Inception
network must be downloaded, so offline we train a small classifier on the same labelled data the
generative model saw, deterministically (fixed seed, fixed schedule, CPU), and use its penultimate
layer. Metrics computed in this space are *local*: comparable between samplers and runs on the same
data and classifier (identified by the SHA-256 of its weights), never with literature FIDs.

The classifier is cached next to the benchmark with the hash of its training data, so it is trained
once and reused while the data stay the same.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import torch
from absl import logging
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from scoresde import files


class FeatureClassifier(nn.Module):
    """flatten -> 256 -> SiLU -> `feature_dim` -> SiLU (the features) -> classes."""

    def __init__(self, input_dim: int, n_classes: int, feature_dim: int = 128):
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(input_dim, 256), nn.SiLU(), nn.Linear(256, feature_dim), nn.SiLU())
        self.head = nn.Linear(feature_dim, n_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


def data_hash(x: np.ndarray | torch.Tensor, labels: np.ndarray | torch.Tensor) -> str:
    """SHA-256 of the training images and labels (float32 / int64 bytes)."""
    digest = hashlib.sha256()
    digest.update(np.ascontiguousarray(torch.as_tensor(x).cpu().numpy(), dtype=np.float32).tobytes())
    digest.update(np.ascontiguousarray(torch.as_tensor(labels).cpu().numpy(), dtype=np.int64).tobytes())
    return digest.hexdigest()


def weights_hash(model: nn.Module) -> str:
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def train_classifier(
    x: torch.Tensor, labels: torch.Tensor, *, seed: int = 0, epochs: int = 40, batch_size: int = 128, lr: float = 1e-3
) -> FeatureClassifier:
    """Adam on cross-entropy with a seeded shuffle: the same data and seed give the same weights."""
    if len(x) != len(labels) or len(x) < 2:
        raise ValueError(f"need at least 2 labelled examples with one label each, got {len(x)} and {len(labels)}")
    x = torch.as_tensor(x, dtype=torch.float32).cpu()
    labels = torch.as_tensor(labels, dtype=torch.long).cpu()
    generator = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = FeatureClassifier(x[0].numel(), int(labels.max()) + 1)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    for _ in range(epochs):
        order = torch.randperm(len(x), generator=generator)
        for start in range(0, len(x), batch_size):
            batch = order[start : start + batch_size]
            loss = nn.functional.cross_entropy(model(x[batch]), labels[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return model.eval()


def accuracy(model: FeatureClassifier, x: torch.Tensor, labels: torch.Tensor) -> float:
    with torch.no_grad():
        return (
            (model(torch.as_tensor(x, dtype=torch.float32).cpu()).argmax(1) == torch.as_tensor(labels).cpu())
            .float()
            .mean()
            .item()
        )


def load_or_train(cache_dir: str | Path, x_train, y_train, x_test, y_test, *, seed: int = 0) -> tuple[FeatureClassifier, dict]:
    """The cached classifier for this training data (trained and cached when absent or stale).

    Returns:
        (model, info) with info = {"data_sha256", "weights_sha256", "test_accuracy", "n_train", "n_test"}.
    """
    cache_dir = Path(cache_dir)
    weights, meta = cache_dir / "classifier.safetensors", cache_dir / "classifier.json"
    wanted = data_hash(x_train, y_train)
    if weights.exists() and meta.exists():
        try:
            info = files.read_json(meta)
            if isinstance(info, dict) and info.get("data_sha256") == wanted:
                model = FeatureClassifier(torch.as_tensor(x_train)[0].numel(), int(torch.as_tensor(y_train).max()) + 1)
                model.load_state_dict(load_file(weights))
                if weights_hash(model) == info["weights_sha256"]:
                    return model.eval(), info
                logging.warning("the cached feature classifier in %s does not match its recorded hash: retraining it", cache_dir)
        except (ValueError, OSError, SafetensorError, RuntimeError, KeyError) as err:  # a cache: damaged -> rebuilt
            logging.warning("the cached feature classifier in %s is unreadable (%s): retraining it", cache_dir, err)
    model = train_classifier(x_train, y_train, seed=seed)
    info = {
        "data_sha256": wanted,
        "weights_sha256": weights_hash(model),
        "test_accuracy": accuracy(model, x_test, y_test),
        "n_train": len(x_train),
        "n_test": len(x_test),
        "seed": seed,
    }
    cache_dir.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, weights)
    files.write_atomic(meta, json.dumps(info, indent=1))
    return model, info


def features(model: FeatureClassifier, x: torch.Tensor, batch_size: int = 1000) -> np.ndarray:
    """Penultimate-layer features, float64 numpy, shape (n, feature_dim)."""
    x = torch.as_tensor(x, dtype=torch.float32).cpu()
    with torch.no_grad():
        return np.concatenate([model.features(x[i : i + batch_size]).double().numpy() for i in range(0, len(x), batch_size)])
