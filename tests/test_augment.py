"""Device augmentation checked against numpy: flips, padded crops, and mixup weights."""
from __future__ import annotations

import functools

import jax
import numpy as np
import pytest

from sweep.config import AugmentConfig
from sweep.data.augment import augment_batch, normalize_images

B, H, W, C = 32, 6, 5, 3


def _distinct_images(batch: int = B) -> np.ndarray:
    """Every pixel value distinct and > 0, so zero padding and every shift are recognisable."""
    one = (np.arange(H * W * C).reshape(H, W, C) + 1).astype(np.uint8)
    return np.repeat(one[None], batch, axis=0)


def _run(cfg: AugmentConfig, x, y, num_classes: int, seed: int = 0):
    fn = jax.jit(functools.partial(augment_batch, cfg=cfg, num_classes=num_classes))
    out_x, out_y = fn(jax.random.PRNGKey(seed), x, y)
    return np.asarray(out_x), np.asarray(out_y)


def test_flip_gives_the_image_or_its_mirror_and_keeps_labels():
    x = _distinct_images()
    y = np.arange(B) % 7
    out_x, out_y = _run(AugmentConfig(flip=True), x, y, num_classes=7)
    assert out_x.shape == x.shape and out_x.dtype == np.float32
    mirrored = np.flip(x[0], axis=1)  # NHWC: axis 1 of one image is W
    flipped = [np.array_equal(o, mirrored) for o in out_x]
    kept = [np.array_equal(o, x[0]) for o in out_x]
    assert all(f or k for f, k in zip(flipped, kept))
    assert 0 < sum(flipped) < B, "flip should hit some images and not others"
    np.testing.assert_array_equal(out_y, np.eye(7)[y])


def test_crop_equals_a_window_of_the_zero_padded_image():
    pad = 2
    x = _distinct_images()
    y = np.arange(B) % 4
    out_x, out_y = _run(AugmentConfig(crop=pad), x, y, num_classes=4)
    assert out_x.shape == x.shape
    padded = np.pad(x[0], ((pad, pad), (pad, pad), (0, 0)))
    windows = {(dy, dx): padded[dy : dy + H, dx : dx + W] for dy in range(2 * pad + 1) for dx in range(2 * pad + 1)}
    offsets = []
    for out in out_x:
        matches = [o for o, win in windows.items() if np.array_equal(out, win)]
        assert len(matches) == 1, "a crop must be exactly one shifted window of the padded image"
        offsets.append(matches[0])
    assert len(set(offsets)) > 3, "offsets should vary across the batch"
    assert (pad, pad) in windows and any(o != (pad, pad) for o in offsets)
    np.testing.assert_array_equal(out_y, np.eye(4)[y])


def test_mixup_mixes_labels_with_the_image_weights_under_vmap():
    """Image i is constant v_i and has label i, so a mixed label must predict the mixed pixel.

    Run vmap-ed over keys (as the engine's cohorts do); one compile keeps the test fast.
    """
    values = np.linspace(0.0, 200.0, B).astype(np.float32)
    x = np.broadcast_to(values[:, None, None, None], (B, H, W, C)).copy()
    y = np.arange(B)
    fn = functools.partial(augment_batch, cfg=AugmentConfig(mixup=0.4), num_classes=B)
    keys = jax.random.split(jax.random.PRNGKey(3), 3)
    all_x, all_y = map(np.asarray, jax.jit(jax.vmap(fn, in_axes=(0, None, None)))(keys, x, y))
    assert all_x.shape == (3, B, H, W, C) and all_y.shape == (3, B, B)
    assert not np.allclose(all_y[0], all_y[1]), "different keys should mix differently"
    for out_x, out_y in zip(all_x, all_y):
        np.testing.assert_allclose(out_y.sum(axis=1), 1.0, atol=1e-6)
        assert (out_y >= 0).all()
        predicted = np.broadcast_to((out_y @ values)[:, None, None, None], x.shape)
        np.testing.assert_allclose(out_x, predicted, rtol=1e-5, atol=1e-4)
        weights = np.sort(out_y, axis=1)[:, -2:]
        mixed = weights[:, 0] > 1e-6
        assert mixed.any(), "mixup left every label one-hot"
        lam = weights[mixed, 1]
        np.testing.assert_allclose(lam, lam[0], rtol=1e-5)  # one weight per batch (Zhang et al.)


def test_flip_then_crop_are_vmappable_over_keys():
    cfg = AugmentConfig(flip=True, crop=1)
    x = _distinct_images(8)
    y = np.arange(8) % 3
    fn = functools.partial(augment_batch, cfg=cfg, num_classes=3)
    keys = jax.random.split(jax.random.PRNGKey(0), 4)
    out_x, out_y = jax.jit(jax.vmap(fn, in_axes=(0, None, None)))(keys, x, y)
    assert out_x.shape == (4, 8, H, W, C) and out_y.shape == (4, 8, 3)
    assert not np.allclose(out_x[0], out_x[1])  # different keys, different augmentations
    np.testing.assert_array_equal(np.asarray(out_y), np.broadcast_to(np.eye(3)[y], (4, 8, 3)))


def test_disabled_augmentation_is_identity_with_one_hot_labels():
    x = _distinct_images(4)
    soft = np.full((4, 5), 0.2, np.float32)
    out_x, out_y = _run(AugmentConfig(), x, soft, num_classes=5)
    np.testing.assert_array_equal(out_x, x.astype(np.float32))
    np.testing.assert_array_equal(out_y, soft)


def test_normalize_images_matches_numpy():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (3, 4, 4, 3), dtype=np.uint8)
    mean, std = np.array([120.0, 110.0, 100.0]), np.array([60.0, 0.0, 70.0])
    out = np.asarray(normalize_images(x, mean, std))
    assert out.dtype == np.float32
    expected = (x - mean) / np.array([60.0, 1.0, 70.0])  # a constant channel is only centred
    np.testing.assert_allclose(out, expected, rtol=1e-6, atol=1e-5)


@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
def test_crop_pads_with_zeros_in_the_input_scale(dtype):
    x = np.full((16, H, W, C), 9, dtype)
    out_x, _ = _run(AugmentConfig(crop=3), x, np.zeros(16, int), num_classes=2)
    assert set(np.unique(out_x)) <= {0.0, 9.0} and (out_x == 0).any()
