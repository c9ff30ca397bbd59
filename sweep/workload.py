"""A workload = model + data on the device + loss + metrics: everything a cohort shares.

Arrays live here as device arrays and are passed to jitted functions as arguments (closing over
large arrays makes XLA constant-fold them: seconds of compile, DESIGN.md).
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from sweep.data.base import Dataset
from sweep.models import build_model

PROBE_SEED = 12345  # the measurement batch is the same for every run of every sweep


def mse_loss(logits: jax.Array, targets: jax.Array, reduction: str = "half_mean") -> jax.Array:
    """Squared error against one-hot y. The normalization sets the sharpness scale, so it is a
    config choice (`mse_reduction`):
      half_mean  L = 1/(2 B C) sum_i ||f(x_i) - y_i||^2   (the authors' code: 0.5 x jnp.mean)
      mean       L = 1/(B C)   sum_i ||f(x_i) - y_i||^2   (2 x every lambda of half_mean)
      half_sum   L = 1/(2 B)   sum_i ||f(x_i) - y_i||^2   (C x every lambda of half_mean)
    """
    sq = jnp.square(logits - targets)
    if reduction == "half_mean":
        return 0.5 * jnp.mean(sq)
    if reduction == "mean":
        return jnp.mean(sq)
    if reduction == "half_sum":
        return 0.5 * jnp.mean(jnp.sum(sq, axis=-1))
    raise ValueError(f"mse_reduction={reduction!r}: allowed half_mean, mean, half_sum")


def xent_loss(logits: jax.Array, targets: jax.Array) -> jax.Array:
    """Softmax cross-entropy with one-hot or soft (mixup) targets, averaged over examples/tokens."""
    return jnp.mean(-jnp.sum(targets * jax.nn.log_softmax(logits), axis=-1))


def standardize_images(x: jax.Array, mode: str, mean: Optional[jax.Array], std: Optional[jax.Array]) -> jax.Array:
    """uint8 images -> float32. per_image: each image minus its own mean over pixels and channels,
    over its own std (the authors' code); per_channel: the training set's channel mean and std."""
    xf = x.astype(jnp.float32)
    if mode == "per_image":
        axes = tuple(range(1, x.ndim))
        mu = jnp.mean(xf, axis=axes, keepdims=True)
        sigma = jnp.std(xf, axis=axes, keepdims=True)
        return (xf - mu) / jnp.maximum(sigma, 1e-6)
    return (xf - mean) / std


@dataclass
class DeviceData:
    """Device arrays of one data set (a pytree, so it can be a jit argument)."""

    x_train: jax.Array
    y_train: jax.Array
    x_test: jax.Array
    y_test: jax.Array
    x_probe: jax.Array
    y_probe: jax.Array
    x_final: jax.Array  # training examples for the final train loss/accuracy
    y_final: jax.Array


jax.tree_util.register_dataclass(
    DeviceData,
    data_fields=["x_train", "y_train", "x_test", "y_test", "x_probe", "y_probe", "x_final", "y_final"],
    meta_fields=[],
)


@dataclass
class Workload:
    model: nn.Module
    dataset: Dataset
    loss_name: str
    data: DeviceData
    mean: Optional[jax.Array]
    std: Optional[jax.Array]
    mse_reduction: str = "half_mean"
    standardize: str = "per_image"
    # The model's parameterization constants (muP multipliers, attention scale: the `consts`
    # collection of model.init) as arrays; the engine sets them to traced arguments of its programs
    # (`with_consts`), so SP and muP cohorts of identical shapes share one compiled program.
    # None: the model uses its Python constants (same values).
    consts: Optional[Any] = None

    def with_consts(self, consts: Optional[Any]) -> "Workload":
        return replace(self, consts=consts)

    @property
    def num_classes(self) -> int:
        return self.dataset.num_classes

    def param_shapes(self) -> Any:
        """The model's parameters as shapes and dtypes only (traced, nothing computed): what cost
        and memory estimates lower their programs with."""
        x0 = self.prepare(self.data.x_train[:1])
        return jax.eval_shape(lambda: self.model.init(jax.random.PRNGKey(0), x0)["params"])

    def prepare(self, x: jax.Array) -> jax.Array:
        """uint8 images -> standardized float32, inside the step (images stay uint8 on device).
        Float inputs were standardized on the host when loaded (sweep.data.base.load_dataset)."""
        if x.dtype == jnp.uint8:
            return standardize_images(x, self.standardize, self.mean, self.std)
        return x

    def targets(self, y: jax.Array) -> jax.Array:
        """Integer labels -> one-hot float; soft labels (mixup) pass through."""
        if jnp.issubdtype(y.dtype, jnp.integer):
            return jax.nn.one_hot(y, self.num_classes, dtype=jnp.float32)
        return y

    def apply(self, params: Any, x: jax.Array, train: bool = False) -> jax.Array:
        variables = {"params": params} if self.consts is None else {"params": params, "consts": self.consts}
        return self.model.apply(variables, self.prepare(x), train=train)

    def loss_and_accuracy(self, params: Any, x: jax.Array, y: jax.Array, train: bool = False):
        logits = self.apply(params, x, train)
        hard = jnp.issubdtype(y.dtype, jnp.integer)
        if hard and self.loss_name == "xent":  # no (B, T, vocab) one-hot for language models
            loss = jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, y))
        else:
            loss = self._loss(logits, self.targets(y).astype(logits.dtype))
        label = y if hard else jnp.argmax(y, -1)
        acc = jnp.mean((jnp.argmax(logits, -1) == label).astype(jnp.float32))
        return loss, acc

    def _loss(self, logits: jax.Array, targets: jax.Array) -> jax.Array:
        if self.loss_name == "mse":
            return mse_loss(logits, targets, self.mse_reduction)
        return xent_loss(logits, targets)

    def evaluate(self, params: Any, x: jax.Array, y: jax.Array, batch: int) -> tuple[jax.Array, jax.Array]:
        """Mean loss and accuracy over (x, y) in fixed-size chunks (lax.map keeps memory flat).
        len(x) must be a multiple of `batch` (the loader pads by trimming; see `_trim`)."""
        xb = x.reshape((-1, batch) + x.shape[1:])
        yb = y.reshape((-1, batch) + y.shape[1:])
        losses, accs = jax.lax.map(lambda xy: self.loss_and_accuracy(params, xy[0], xy[1]), (xb, yb))
        return jnp.mean(losses), jnp.mean(accs)


def eval_batch_size(n: int, limit: int = 1000) -> int:
    """Chunk size for evaluation: the largest divisor of n up to `limit` (no example dropped),
    unless that is tiny, then `limit` (and the remainder of at most limit-1 examples is dropped)."""
    if n <= limit:
        return max(n, 1)
    best = max(d for d in range(1, limit + 1) if n % d == 0)
    return best if best >= limit // 4 else limit


def _trim(x: np.ndarray, y: np.ndarray, batch: int) -> tuple[np.ndarray, np.ndarray]:
    n = (len(x) // batch) * batch
    return x[:n], y[:n]


def build_workload(cfg: Any, dataset: Dataset) -> Workload:
    """Model from the config, arrays on the device, the fixed probe batch drawn once."""
    model = build_model(cfg.model, cfg.param, dataset.num_classes)
    rng = np.random.default_rng(PROBE_SEED)
    order = rng.permutation(len(dataset.x_train))
    n_probe = min(int(cfg.probe.batch_size), len(order))
    probe_idx = np.sort(order[:n_probe])
    n_final = min(int(cfg.probe.final_train_examples) or len(order), len(order))
    final_idx = np.sort(order[:n_final])
    eb = eval_batch_size(len(dataset.x_test))
    x_test, y_test = _trim(dataset.x_test, dataset.y_test, eb)
    fb = eval_batch_size(n_final)
    x_final, y_final = _trim(dataset.x_train[final_idx], dataset.y_train[final_idx], fb)
    data = DeviceData(
        x_train=jnp.asarray(dataset.x_train),
        y_train=jnp.asarray(dataset.y_train),
        x_test=jnp.asarray(x_test),
        y_test=jnp.asarray(y_test),
        x_probe=jnp.asarray(dataset.x_train[probe_idx]),
        y_probe=jnp.asarray(dataset.y_train[probe_idx]),
        x_final=jnp.asarray(x_final),
        y_final=jnp.asarray(y_final),
    )
    mean = None if dataset.mean is None else jnp.asarray(dataset.mean, jnp.float32)
    std = None if dataset.std is None else jnp.asarray(dataset.std, jnp.float32)
    return Workload(model, dataset, str(cfg.loss.value if hasattr(cfg.loss, "value") else cfg.loss),
                    data, mean, std, str(cfg.get("mse_reduction", "half_mean")),
                    str(cfg.data.get("standardize", "per_image")))
