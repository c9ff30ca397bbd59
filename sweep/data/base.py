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


def take_subset(ds: Dataset, subset: int) -> Dataset:
    """Keep the first `subset` training examples (the paper's 5k-subset experiments)."""
    if subset and subset < len(ds.x_train):
        ds.x_train, ds.y_train = ds.x_train[:subset], ds.y_train[:subset]
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
