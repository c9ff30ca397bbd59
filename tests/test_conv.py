"""The patches convolution (sweep/models/conv.py) is XLA's convolution: values, gradients and
Hessian-vector products agree with `lax.conv_general_dilated`, at the top level and inside a scan
(where XLA:CPU's own backward convolutions are ~30x slower)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from sweep.models import conv


def _xla(x, w, s):
    return lax.conv_general_dilated(x, w, (s, s), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))


@pytest.mark.parametrize("k,s,hw", [(3, 1, 9), (3, 2, 9), (1, 2, 8), (1, 1, 5), (3, 2, 8)])
def test_patches_equal_xla_convolution_values_and_gradients(k, s, hw):
    kx, kw = jax.random.split(jax.random.PRNGKey(k * 10 + s))
    x = jax.random.normal(kx, (3, hw, hw, 4))
    w = jax.random.normal(kw, (k, k, 4, 5))
    np.testing.assert_allclose(conv._conv_as_patches(x, w, s, "SAME"), _xla(x, w, s), rtol=1e-5, atol=1e-5)

    def loss(f):
        return lambda x, w: jnp.sum(jnp.sin(f(x, w, s)))

    want = jax.grad(loss(_xla), argnums=(0, 1))(x, w)
    for patched in (lambda x, w, s: conv._conv_as_patches(x, w, s, "SAME"),
                    lambda x, w, s: conv._conv_patched_derivatives(x, w, s, "SAME")):
        got = jax.grad(loss(patched), argnums=(0, 1))(x, w)
        for g, e in zip(got, want):
            np.testing.assert_allclose(g, e, rtol=1e-4, atol=1e-4)


def test_patches_hvp_inside_scan_equals_xla_hvp():
    """Forward-over-reverse (the engine's HVP) through the checkpointed patches, in a loop body."""
    x = jax.random.normal(jax.random.PRNGKey(0), (2, 6, 6, 3))
    w = jax.random.normal(jax.random.PRNGKey(1), (3, 3, 3, 2)) * 0.3
    v = jax.random.normal(jax.random.PRNGKey(2), w.shape)

    def hvp(f):
        g = jax.grad(lambda w: jnp.sum(jnp.tanh(f(x, w, 2)) ** 2))
        return lambda w: jax.jvp(g, (w,), (v,))[1]

    patches_hvp = hvp(lambda x, w, s: conv._conv_patched_derivatives(x, w, s, "SAME"))
    got = jax.jit(lambda: lax.scan(lambda c, _: (c, patches_hvp(w)), 0.0, jnp.arange(2))[1][1])()
    np.testing.assert_allclose(got, hvp(_xla)(w), rtol=1e-4, atol=1e-5)


def test_implementation_choice(monkeypatch):
    monkeypatch.setenv("SWEEP_CONV", "xla")
    assert conv.implementation() == "xla"
    monkeypatch.setenv("SWEEP_CONV", "auto")
    assert conv.implementation() == ("patches" if jax.default_backend() == "cpu" else "xla")
    monkeypatch.setenv("SWEEP_CONV", "fast")
    with pytest.raises(ValueError, match="SWEEP_CONV='fast'; allowed: auto, xla, patches"):
        conv.implementation()
