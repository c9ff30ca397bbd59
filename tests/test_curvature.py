"""Lanczos sharpness against dense eigendecompositions of small Hessians."""
import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from sweep.curvature import preconditioned_sharpness, sharpness
from sweep.models.fcn import FCN
from sweep.models.param import Scheme


def _tiny_problem(param: str = "sp", dtype=jnp.float32):
    model = FCN(3, depth=3, width=8, scheme=Scheme(param))
    x = jax.random.normal(jax.random.PRNGKey(1), (32, 5)).astype(dtype)  # layers compute in x's dtype
    y = jax.nn.one_hot(jnp.arange(32) % 3, 3)
    params = jax.tree.map(lambda p: p.astype(dtype), model.init(jax.random.PRNGKey(0), x)["params"])
    flat, unravel = ravel_pytree(params)  # unravel restores the leaves' dtype: cast before ravelling

    def loss(f):
        return 0.5 * jnp.mean(jnp.sum((model.apply({"params": unravel(f)}, x) - y) ** 2, -1))

    return loss, flat


def test_lanczos_matches_dense_eigvalsh():
    loss, flat = _tiny_problem()
    dense = jnp.linalg.eigvalsh(jax.hessian(loss)(flat))[-1]
    eig = sharpness(loss, flat, jax.random.normal(jax.random.PRNGKey(2), flat.shape), 40, 1e-7)
    assert abs(float(eig.value) - float(dense)) / float(dense) < 1e-4
    # the Ritz vector is an eigenvector: H v = lambda v
    hv = jax.jvp(jax.grad(loss), (flat,), (eig.vector,))[1]
    np.testing.assert_allclose(np.asarray(hv), float(eig.value) * np.asarray(eig.vector), atol=2e-3 * float(dense))


def test_warm_start_needs_fewer_hvps():
    loss, flat = _tiny_problem()
    cold = sharpness(loss, flat, jax.random.normal(jax.random.PRNGKey(2), flat.shape), 40, 1e-6)
    warm = sharpness(loss, flat, cold.vector, 40, 1e-6)
    assert int(warm.matvecs) < int(cold.matvecs)
    assert abs(float(warm.value) - float(cold.value)) / float(cold.value) < 1e-4


def test_preconditioned_sharpness_matches_dense():
    loss, flat = _tiny_problem("mup")
    h = jax.hessian(loss)(flat)
    p = jnp.exp(jax.random.normal(jax.random.PRNGKey(3), flat.shape))
    d = jnp.diag(1.0 / jnp.sqrt(p))
    dense = jnp.linalg.eigvalsh(d @ h @ d)[-1]
    # same eigenvalues as P^-1 H (a similar matrix)
    dense_pinv_h = np.max(np.linalg.eigvals(np.diag(1.0 / np.asarray(p)) @ np.asarray(h)).real)
    np.testing.assert_allclose(float(dense), dense_pinv_h, rtol=1e-4)
    eig = preconditioned_sharpness(loss, flat, p, jax.random.normal(jax.random.PRNGKey(2), flat.shape), 60, 1e-7)
    assert abs(float(eig.value) - float(dense)) / float(dense) < 1e-4


def test_vmapped_lanczos_and_frozen_member():
    loss, flat = _tiny_problem()
    dense = float(jnp.linalg.eigvalsh(jax.hessian(loss)(flat))[-1])
    v0 = jax.random.normal(jax.random.PRNGKey(4), (3,) + flat.shape)
    done = jnp.array([False, True, False])
    out = jax.vmap(lambda v, d: sharpness(loss, flat, v, 40, 1e-7, d))(v0, done)
    assert int(out.matvecs[1]) == 0  # a frozen member costs no HVPs of its own
    for i in (0, 2):
        assert abs(float(out.value[i]) - dense) / dense < 1e-4


def test_float64_lanczos():
    jax.config.update("jax_enable_x64", True)
    try:
        loss, flat = _tiny_problem(dtype=jnp.float64)
        flat64 = flat.astype(jnp.float64)
        dense = jnp.linalg.eigvalsh(jax.hessian(lambda f: loss(f).astype(jnp.float64))(flat64))[-1]
        eig = sharpness(lambda f: loss(f).astype(jnp.float64), flat64,
                        jax.random.normal(jax.random.PRNGKey(2), flat.shape, jnp.float64), 60, 1e-10)
        assert eig.value.dtype == jnp.float64
        assert abs(float(eig.value) - float(dense)) / float(dense) < 1e-8
    finally:
        jax.config.update("jax_enable_x64", False)
