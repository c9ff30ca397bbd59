"""The embedded default: scikit-learn's bundled 8x8 handwritten digits (1797 real images)."""
from __future__ import annotations

from typing import Any

import numpy as np

from sweep.data.base import Dataset, standardize_per_channel


def load_digits(cfg: Any) -> Dataset:
    """Fixed, stratified split (seed 0) so every run and every machine sees the same sets.

    Pixels are standardized with one global mean/std (the 8x8 images have one channel).
    """
    from sklearn.datasets import load_digits as sk_load_digits
    from sklearn.model_selection import train_test_split

    bunch = sk_load_digits()
    x = bunch.images.astype(np.float32)[..., None]  # (N, 8, 8, 1), values 0..16
    y = bunch.target.astype(np.int32)
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=float(getattr(cfg, "test_fraction", 0.2)), random_state=0, stratify=y
    )
    x_train, x_test = standardize_per_channel(x_train, x_test)
    return Dataset("digits", x_train, y_train, x_test, y_test, num_classes=10)
