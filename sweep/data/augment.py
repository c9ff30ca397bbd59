"""Data augmentation on the device, in the paper's order: flip, crop, mixup (Appendix D.1.1).

`augment_batch` is a pure JAX function with fixed output shapes, so it can live inside the
jit-compiled, vmap-ed training step. `cfg` and `num_classes` are static: bind them with
functools.partial before jax.jit. The key is split the same way whatever is enabled, so
turning mixup on does not change which images are flipped or how they are cropped.

Works on raw uint8 or on normalized float batches; the output images are float32 either way.
The engine normalizes first (Workload.prepare), so crop padding is 0 in normalized units,
i.e. the training-set mean pixel. Augmenting the raw uint8 batch instead pads with black;
then normalize explicitly with `normalize_images` afterwards (a normalizer keyed on the uint8
dtype would skip the float32 output). Mixup is the same either way: normalization is affine.
Probe (measurement) batches are never augmented: the engine calls this on training
minibatches only, so sharpness is always measured on the same fixed inputs.
"""
from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp


def random_flip(key: jax.Array, x: jax.Array) -> jax.Array:
    """Mirror each NHWC image left-right (the W axis) with probability 1/2."""
    flip = jax.random.bernoulli(key, 0.5, (x.shape[0],))
    return jnp.where(flip[:, None, None, None], x[:, :, ::-1, :], x)


def random_crop(key: jax.Array, x: jax.Array, pad: int) -> jax.Array:
    """Zero-pad H and W by `pad` pixels, then cut each image's HxW window at a random offset."""
    n, h, w, c = x.shape
    padded = jnp.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    offsets = jax.random.randint(key, (n, 2), 0, 2 * pad + 1)

    def crop_one(image: jax.Array, offset: jax.Array) -> jax.Array:
        return jax.lax.dynamic_slice(image, (offset[0], offset[1], 0), (h, w, c))

    return jax.vmap(crop_one)(padded, offsets)


def mixup(key: jax.Array, x: jax.Array, y: jax.Array, alpha: float) -> tuple[jax.Array, jax.Array]:
    """Zhang et al. (2018): one weight lam ~ Beta(alpha, alpha) per batch, partner = a permutation.

    Images and soft labels are mixed with the same lam: x = lam x + (1-lam) x[perm].
    """
    key_lam, key_perm = jax.random.split(key)
    lam = jax.random.beta(key_lam, alpha, alpha)
    perm = jax.random.permutation(key_perm, x.shape[0])
    return lam * x + (1 - lam) * x[perm], lam * y + (1 - lam) * y[perm]


def augment_batch(
    key: jax.Array, x: jax.Array, y: jax.Array, cfg: Any, num_classes: int
) -> tuple[jax.Array, jax.Array]:
    """Augment one NHWC batch per `cfg` (AugmentConfig: flip, crop, mixup).

    y: int labels (B,) or one-hot / soft labels (B, num_classes).
    Returns float32 images (on the input's scale) and float32 soft labels (B, num_classes).
    """
    key_flip, key_crop, key_mix = jax.random.split(key, 3)
    if y.ndim == 1:
        y = jax.nn.one_hot(y, num_classes, dtype=jnp.float32)
    y = y.astype(jnp.float32)
    if cfg.flip:
        x = random_flip(key_flip, x)
    if int(cfg.crop) > 0:
        x = random_crop(key_crop, x, int(cfg.crop))
    x = x.astype(jnp.float32)
    if float(cfg.mixup) > 0:
        x, y = mixup(key_mix, x, y, float(cfg.mixup))
    return x, y


def normalize_images(x: jax.Array, mean: Any, std: Any) -> jax.Array:
    """(x - mean) / std per channel (last axis), in float32; a constant channel (std 0) is only centred."""
    mean = jnp.asarray(mean, jnp.float32)
    std = jnp.asarray(std, jnp.float32)
    return (x.astype(jnp.float32) - mean) / jnp.where(std > 0, std, 1.0)
