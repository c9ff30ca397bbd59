"""Gaussian clusters: a learnable, tiny data set for tests (no files, fully deterministic)."""
from __future__ import annotations

from typing import Any

import numpy as np

from sweep.data.base import Dataset


def load_synthetic(cfg: Any) -> Dataset:
    rng = np.random.default_rng(int(cfg.seed))
    centers = rng.normal(size=(int(cfg.classes), int(cfg.dim))).astype(np.float32)

    def sample(n: int) -> tuple[np.ndarray, np.ndarray]:
        y = (np.arange(n) % int(cfg.classes)).astype(np.int32)
        x = centers[y] + 0.5 * rng.normal(size=(n, int(cfg.dim))).astype(np.float32)
        return x.astype(np.float32), y

    x_train, y_train = sample(int(cfg.n_train))
    x_test, y_test = sample(int(cfg.n_test))
    return Dataset("synthetic", x_train, y_train, x_test, y_test, num_classes=int(cfg.classes))
