"""The one shape every data set takes, and the registry that builds it from a config."""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Callable, Optional

import numpy as np


class DataError(RuntimeError):
    """A data set is missing or malformed; the message says how to provide it (one line)."""


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
}


def _loader(name: str) -> Callable[[Any], Dataset]:
    if name not in _LOADERS:
        raise DataError(f"unknown data set '{name}'; allowed: {', '.join(sorted(_LOADERS))}")
    module, func = _LOADERS[name].split(":")
    return getattr(importlib.import_module(module), func)


def load_dataset(data_cfg: Any) -> Dataset:
    """Build the data set a config names, then apply `data.subset`."""
    ds = _loader(data_cfg.name)(data_cfg)
    return take_subset(ds, int(getattr(data_cfg, "subset", 0) or 0))
