"""The one shape every data set takes, and the registry that builds it from a config."""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Callable, Optional

import numpy as np

from sweep.errors import DataError  # noqa: F401  (raised here; importable from here as before)


@dataclass
class Dataset:
    """Train and test arrays on the host.

    Classification: x is (N, ...) uint8 or float32 images/vectors, y is (N,) int32 labels.
    Language modelling: x is (N, T) int32 tokens, y is (N, T) int32 next tokens.
    When x is uint8, `mean`/`std` (per channel, 0-255 scale) are applied on the device inside
    the training step so images stay uint8 in device memory.
    """

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int
    task: str = "classification"  # classification | lm
    mean: Optional[np.ndarray] = None
    std: Optional[np.ndarray] = None

    @property
    def is_image(self) -> bool:
        return self.task == "classification" and self.x_train.ndim == 4

    @property
    def chance_accuracy(self) -> float:
        return 1.0 / self.num_classes


def standardize_per_channel(x_train: np.ndarray, x_test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Zero mean, unit variance per channel (last axis), with train statistics for both splits."""
    axes = tuple(range(x_train.ndim - 1))
    mean = x_train.astype(np.float64).mean(axis=axes)
    std = x_train.astype(np.float64).std(axis=axes) + 1e-8
    return (
        ((x_train - mean) / std).astype(np.float32),
        ((x_test - mean) / std).astype(np.float32),
    )


def channel_stats(x: np.ndarray, chunk: int = 4096) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel (last axis) mean and std in float64, accumulated over chunks of examples.

    Why chunks: a float64 copy of Tiny-ImageNet's uint8 train set would need ~10 GB.
    Returned as float32 on the scale of `x` (0-255 for uint8 images).
    """
    channels = x.shape[-1]
    total = np.zeros(channels)
    total_sq = np.zeros(channels)
    count = 0
    for start in range(0, len(x), chunk):
        block = x[start : start + chunk].reshape(-1, channels).astype(np.float64)
        total += block.sum(axis=0)
        total_sq += np.square(block).sum(axis=0)
        count += len(block)
    mean = total / max(count, 1)
    var = np.maximum(total_sq / max(count, 1) - mean**2, 0.0)
    return mean.astype(np.float32), np.sqrt(var).astype(np.float32)


def class_balanced_order(y: np.ndarray, seed: int = 0) -> np.ndarray:
    """A fixed permutation whose every prefix is as class-balanced as possible.

    Round r holds the r-th example of every class (in file order), the classes of a round
    in a seeded random order. Why: files grouped by class (like the shared CIFAR subset)
    would otherwise give a one-class "first N", and a plain shuffle is only balanced on
    average; this also keeps the subset of an official split to its first examples per class.
    """
    y = np.asarray(y)
    by_class = np.argsort(y, kind="stable")
    sorted_y = y[by_class]
    class_start = np.searchsorted(sorted_y, sorted_y, side="left")
    rank = np.empty(len(y), dtype=np.int64)
    rank[by_class] = np.arange(len(y)) - class_start
    tiebreak = np.random.default_rng(seed).random(len(y))
    return np.lexsort((tiebreak, rank))


def take_subset(ds: Dataset, subset: int) -> Dataset:
    """Keep `subset` training examples (the paper's 5k-subset experiments).

    Classification: the first `subset` of `class_balanced_order` (equal counts per class when
    `subset` is a multiple of the class count). Language modelling: the first `subset` windows.
    """
    if subset and subset < len(ds.x_train):
        if ds.task == "classification":
            keep = class_balanced_order(ds.y_train)[:subset]
        else:
            keep = np.arange(subset)
        ds.x_train, ds.y_train = ds.x_train[keep], ds.y_train[keep]
    return ds


# name -> "module:function"; the function takes the data config and returns a Dataset.
_LOADERS: dict[str, str] = {
    "digits": "sweep.data.digits:load_digits",
    "synthetic": "sweep.data.synthetic:load_synthetic",
    "npz": "sweep.data.npz:load_npz",
    "cifar10": "sweep.data.cifar:load_cifar",
    "cifar100": "sweep.data.cifar:load_cifar",
    "tiny_imagenet": "sweep.data.tiny_imagenet:load_tiny_imagenet",
    "wikitext2": "sweep.data.wikitext:load_wikitext2",
    "text": "sweep.data.text:load_text",
}


def _loader(name: str) -> Callable[[Any], Dataset]:
    if name not in _LOADERS:
        raise DataError(f"unknown data set '{name}'; allowed: {', '.join(sorted(_LOADERS))}")
    module, func = _LOADERS[name].split(":")
    return getattr(importlib.import_module(module), func)


def standardize_per_example(x: np.ndarray) -> np.ndarray:
    """Each example minus its own mean over all its features, over its own std (float32)."""
    axes = tuple(range(1, x.ndim))
    x64 = x.astype(np.float64)
    mu = x64.mean(axis=axes, keepdims=True)
    sigma = np.maximum(x64.std(axis=axes, keepdims=True), 1e-6)
    return ((x64 - mu) / sigma).astype(np.float32)


def check_finite(x: np.ndarray, what: str, source: str) -> None:
    """Raise a one-line DataError when a float array holds NaN/inf (call on the raw arrays, before
    any standardization spreads one bad value over a whole channel)."""
    if np.issubdtype(x.dtype, np.floating):
        bad = int(np.size(x) - np.count_nonzero(np.isfinite(x)))
        if bad:
            raise DataError(f"{source}: {what} holds {bad} NaN/inf values; clean or drop those examples")


def check_features(x: np.ndarray, what: str, source: str) -> None:
    """Raise a one-line DataError when the examples of `x` hold no values (shape (N, 0), (N, H, W, 0)):
    standardizing them divides by zero and a model of fan-in 0 fails in training (ZeroDivisionError,
    recorded as the run's error) instead of at load time."""
    if x.ndim < 2 or int(np.prod(x.shape[1:])) == 0:
        raise DataError(f"{source}: {what} has shape {x.shape}, its examples have no features; each example "
                        f"needs at least one value, e.g. shape (N, D) with D >= 1 or (N, H, W, C) images")


def check_dataset(ds: Dataset, source: str) -> None:
    """Data defects would otherwise train and be recorded as a (permanent) outcome, e.g. one NaN
    pixel as "diverged at step 0". Fail in one line before any compute instead."""
    for split, x, y in (("train", ds.x_train, ds.y_train), ("test", ds.x_test, ds.y_test)):
        if len(x) == 0:
            raise DataError(f"{source}: x_{split} is empty; the data set needs training and test examples")
        if len(x) != len(y):
            raise DataError(f"{source}: x_{split} has {len(x)} examples but y_{split} has {len(y)}")
        check_features(x, f"x_{split}", source)
        check_finite(x, f"x_{split}", source)
        if not np.issubdtype(y.dtype, np.integer):
            raise DataError(f"{source}: y_{split} must hold integer labels, got dtype {y.dtype}")
        limit = ds.num_classes if ds.task == "classification" else None
        if y.size and (y.min() < 0 or (limit is not None and y.max() >= limit)):
            raise DataError(f"{source}: y_{split} has labels in [{y.min()}, {y.max()}], outside "
                            f"[0, {(limit or 0) - 1}] for {limit} classes")


def load_dataset(data_cfg: Any) -> Dataset:
    """Build the data set a config names, check it, apply `data.subset` and, for float inputs, the
    per-example standardization (uint8 images are standardized on the device, sweep.workload)."""
    ds = _loader(data_cfg.name)(data_cfg)
    check_dataset(ds, f"data={data_cfg.name}")
    ds = take_subset(ds, int(getattr(data_cfg, "subset", 0) or 0))
    mode = str(getattr(data_cfg, "standardize", "per_image"))
    if mode == "per_image" and ds.task == "classification" and np.issubdtype(ds.x_train.dtype, np.floating):
        ds.x_train, ds.x_test = standardize_per_example(ds.x_train), standardize_per_example(ds.x_test)
    return ds
