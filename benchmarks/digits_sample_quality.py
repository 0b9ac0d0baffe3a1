"""How good are generated digits? Figures for a `samples.npz` written by `main.py` on the digits.

    python benchmarks/digits_sample_quality.py runs/demo-unet/samples.npz
    python benchmarks/digits_sample_quality.py runs/demo/samples.npz runs/demo-unet/samples.npz

Samples of any zero-padded size are cropped back to the central 8x8, so models trained on padded
and unpadded digits are compared on the same 64 pixels. Printed for each file:

- the sliced Wasserstein distance to the held-out digits (the split of `main.py`, seed 42, 10%),
  next to the same distance from as many real training digits (the noise floor);
- a classifier's view: a logistic regression trained on the clean training digits (its held-out
  accuracy is printed) labels each sample; the mean top probability and the share of samples it
  labels with probability > 0.9 say how recognisable they are (next to the same figures for the
  real held-out digits), and the class histogram whether all ten digits appear.

These are local figures on 8x8 digits, not an FID.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegression

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout, not an installed copy
from scoresde import data
from scoresde.eval import metrics

SEED, TEST_FRACTION = 42, 0.1


def central_8x8(images: np.ndarray) -> np.ndarray:
    size = images.shape[-1]
    offset = (size - data.DIGITS_SIZE) // 2
    return images[..., offset : offset + data.DIGITS_SIZE, offset : offset + data.DIGITS_SIZE].reshape(len(images), -1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("samples", nargs="+", help="samples.npz files (key 'samples', images in [0, 1])")
    parser.add_argument("--projections", type=int, default=512)
    args = parser.parse_args()
    train, test = data.train_test_split(data.load_dataset("digits"), TEST_FRACTION, seed=SEED)
    x_train, x_test = central_8x8(train.x), central_8x8(test.x)
    classifier = LogisticRegression(max_iter=2000).fit(x_train, train.labels)
    real_top = classifier.predict_proba(x_test).max(axis=1)
    print(
        f"classifier: held-out accuracy {classifier.score(x_test, test.labels):.3f} on {len(x_test)} digits; "
        f"on them, mean top probability {real_top.mean():.3f}, share > 0.9: {(real_top > 0.9).mean():.3f}"
    )
    for path in args.samples:
        samples = central_8x8(np.load(path)["samples"])
        n = min(len(samples), len(x_train))
        rng = np.random.default_rng(SEED)
        floor = metrics.sliced_wasserstein(
            x_train[rng.choice(len(x_train), n, replace=False)], x_test, n_projections=args.projections
        )
        sw = metrics.sliced_wasserstein(samples[:n], x_test, n_projections=args.projections)
        probs = classifier.predict_proba(samples)
        top = probs.max(axis=1)
        histogram = np.bincount(probs.argmax(axis=1), minlength=10)
        print(f"{path}: {len(samples)} samples")
        print(f"  sliced Wasserstein to held-out {sw:.4f} (noise floor {floor:.4f}, n={n})")
        print(f"  classifier: mean top probability {top.mean():.3f}, share > 0.9: {(top > 0.9).mean():.3f}")
        print(f"  classes 0-9: {' '.join(map(str, histogram))}")


if __name__ == "__main__":
    main()
