"""2-D convolution that stays fast inside compiled loops on a CPU.

Why not `lax.conv_general_dilated` everywhere: XLA:CPU canonicalizes the convolutions of a jit's top
level into Eigen's fast kernels, but not those inside a `while` or `cond` body (jax-ml/jax#12868,
still open in jax 0.10.2). The backward convolutions of a training step (kernel gradient
`f01b_i01o->01bf`, input gradient `b01f_01oi->b01f`) then run as naive loops. The engine runs every
step inside `lax.scan` and `lax.cond`, so a WRN-16-1 step took 13.8 s there against 0.46 s at the top
level (batch 128, 2-core CPU; benchmarks/model_step_time.py --scan). As patches (k*k shifted strided
slices) times a matrix, a convolution and all of its derivatives (gradients, HVPs) are slices, pads
and dots, which XLA runs at full speed in any loop: 0.48 s per step inside a scan. The forward pass
itself stays XLA's convolution (canonical, fast anywhere); only its derivatives (custom_jvp) go
through the patches, so gradients and forward-over-reverse HVPs both take the fast path.

The patches are recomputed in the backward pass (`jax.checkpoint`) instead of being kept: they are
k*k times the input's size, and keeping them would make a WRN-16-4 step hold ~2.5 GB.

`SWEEP_CONV=xla|patches` forces one implementation (default `auto`: patches on CPU, XLA's
convolution on GPU/TPU, where cuDNN's kernels are fast inside loops). Both compute the same
convolution; they differ only in float summation order (tests/test_conv.py).
"""
from __future__ import annotations

import os
from functools import partial

import jax
import jax.numpy as jnp
from jax import lax

IMPLEMENTATIONS = ("auto", "xla", "patches")


def implementation() -> str:
    """`xla` or `patches`, from SWEEP_CONV and the default backend."""
    choice = os.environ.get("SWEEP_CONV", "auto").strip().lower() or "auto"
    if choice not in IMPLEMENTATIONS:
        raise ValueError(f"SWEEP_CONV={choice!r}; allowed: {', '.join(IMPLEMENTATIONS)}")
    if choice == "auto":
        return "patches" if jax.default_backend() == "cpu" else "xla"
    return choice


def conv2d_nhwc(x: jax.Array, kernel: jax.Array, strides: int, padding: str = "SAME") -> jax.Array:
    """NHWC input, HWIO kernel -> NHWC output (no dilation, no groups)."""
    if implementation() == "xla":
        return _xla_conv(x, kernel, strides, padding)
    return _conv_patched_derivatives(x, kernel, strides, padding)


def _xla_conv(x: jax.Array, kernel: jax.Array, strides: int, padding: str) -> jax.Array:
    return lax.conv_general_dilated(x, kernel, (strides, strides), padding,
                                    dimension_numbers=("NHWC", "HWIO", "NHWC"))


@partial(jax.custom_jvp, nondiff_argnums=(2, 3))
def _conv_patched_derivatives(x: jax.Array, kernel: jax.Array, strides: int, padding: str) -> jax.Array:
    """XLA's forward convolution (fast in loops too: it is the canonical NHWC/HWIO form; evaluations
    of 1000 examples are 4x faster than as patches), with derivatives taken through the patches."""
    return _xla_conv(x, kernel, strides, padding)


@_conv_patched_derivatives.defjvp
def _conv_jvp(strides: int, padding: str, primals: tuple, tangents: tuple) -> tuple:
    x, kernel = primals
    dx, dkernel = tangents
    y = _conv_patched_derivatives(x, kernel, strides, padding)
    dy = _conv_as_patches(dx, kernel, strides, padding) + _conv_as_patches(x, dkernel, strides, padding)
    return y, dy


@partial(jax.checkpoint, static_argnums=(2, 3))
def _conv_as_patches(x: jax.Array, kernel: jax.Array, strides: int, padding: str) -> jax.Array:
    kh, kw, c_in, c_out = kernel.shape
    (lo_h, hi_h), (lo_w, hi_w) = lax.padtype_to_pads(x.shape[1:3], (kh, kw), (strides, strides), padding)
    xp = jnp.pad(x, ((0, 0), (lo_h, hi_h), (lo_w, hi_w), (0, 0)))
    out_h = (xp.shape[1] - kh) // strides + 1
    out_w = (xp.shape[2] - kw) // strides + 1
    # patch channel order (i, j, c) matches the HWIO kernel reshaped to (kh * kw * c_in, c_out)
    shifted = [lax.slice(xp, (0, i, j, 0),
                         (xp.shape[0], i + (out_h - 1) * strides + 1, j + (out_w - 1) * strides + 1, c_in),
                         (1, strides, strides, 1))
               for i in range(kh) for j in range(kw)]
    patches = shifted[0] if len(shifted) == 1 else jnp.concatenate(shifted, axis=-1)
    return jnp.dot(patches, kernel.reshape(kh * kw * c_in, c_out))
