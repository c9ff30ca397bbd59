"""Any .npz with x_train, y_train, x_test, y_test: the escape hatch for a user's own data.

uint8 images (NHWC, or NHW for one channel) stay uint8 and carry per-channel train mean/std
(0-255 scale) so the engine normalizes on the device. Anything else (float images, 2-D
feature vectors, integer vectors) is standardized per channel / per feature on the host.
Files grouped by class need no shuffling here: `data.subset` takes a class-balanced subset
(see base.class_balanced_order).
"""
from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from sweep.data.base import (Dataset, DataError, channel_stats, check_features, check_finite,
                             standardize_per_channel)

REQUIRED_KEYS = ("x_train", "y_train", "x_test", "y_test")


def _read(path: Path) -> dict[str, np.ndarray]:
    needs = f"an .npz with arrays {', '.join(REQUIRED_KEYS)}"
    if not path.is_file():
        raise DataError(f"npz data file {path} not found: set data.path=FILE, {needs}")
    try:
        with np.load(path, allow_pickle=False) as stored:
            missing = [k for k in REQUIRED_KEYS if k not in stored.files]
            if missing:
                raise DataError(f"npz data file {path} lacks {', '.join(missing)}: it must hold {needs}")
            return {k: stored[k] for k in REQUIRED_KEYS}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise DataError(f"npz data file {path} is unreadable ({' '.join(str(exc).split())}): it must be {needs}") from exc


def _labels(y: np.ndarray, key: str, path: Path) -> np.ndarray:
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer) or (y.size and y.min() < 0):
        raise DataError(
            f"{key} in {path} must be 1-D non-negative integer class labels, got shape {y.shape} dtype {y.dtype}"
        )
    return y.astype(np.int32)


def load_npz(cfg: Any) -> Dataset:
    path = Path(str(cfg.path)).expanduser()
    a = _read(path)
    y_train, y_test = _labels(a["y_train"], "y_train", path), _labels(a["y_test"], "y_test", path)
    x_train, x_test = a["x_train"], a["x_test"]
    check_finite(x_train, "x_train", f"data=npz {path}")
    check_finite(x_test, "x_test", f"data=npz {path}")
    for key, x, y in (("train", x_train, y_train), ("test", x_test, y_test)):
        if len(x) != len(y):
            raise DataError(f"{path}: x_{key} has {len(x)} examples but y_{key} has {len(y)}")
    if x_train.shape[1:] != x_test.shape[1:] or x_train.ndim < 2:
        raise DataError(
            f"{path}: x_train {x_train.shape} and x_test {x_test.shape} must be (N, ...) with the same example shape"
        )
    check_features(x_train, "x_train", f"data=npz {path}")  # before the statistics divide by zero
    if x_train.dtype == np.uint8 and x_train.ndim in (3, 4) and x_test.dtype == np.uint8:
        if x_train.ndim == 3:  # (N, H, W) grayscale
            x_train, x_test = x_train[..., None], x_test[..., None]
        mean, std = channel_stats(x_train)
        ds = Dataset(path.stem, x_train, y_train, x_test, y_test, num_classes=0, mean=mean, std=std)
    else:
        x_train, x_test = standardize_per_channel(x_train.astype(np.float32), x_test.astype(np.float32))
        ds = Dataset(path.stem, x_train, y_train, x_test, y_test, num_classes=0)
    ds.num_classes = int(max(y_train.max(initial=0), y_test.max(initial=0))) + 1
    return ds
