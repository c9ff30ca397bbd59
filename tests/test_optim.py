"""Optimizers and schedules against optax's own Adam and hand computations."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from sweep import optim, optimizers


def _hyper(**kw):
    base = dict(lr=0.1, lr_init=0.0, warmup=1.0, momentum=0.0, b1=0.9, b2=0.999, eps=1e-8,
                decay_rho=1.0, decay_min_factor=0.1)
    base.update(kw)
    return optim.Hyper(**{k: jnp.asarray(v, jnp.float32) for k, v in base.items()})


def _grads(seed, shape=(5,)):
    return {"w": jax.random.normal(jax.random.PRNGKey(seed), shape)}


def _run(tx, lr_of_t, steps=6):
    params = {"w": jnp.ones((5,))}
    state = tx.init(params)
    out = []
    for t in range(1, steps + 1):
        d, state = tx.update(_grads(t), state, params)
        params = jax.tree.map(lambda p, u: p - lr_of_t(t) * u, params, d)
        out.append(params["w"])
    return np.stack(out)


def test_adam_matches_optax_adam_step_for_step():
    h = _hyper(lr=0.01)
    ours = _run(optim.direction("adam", h, None), lambda t: 0.01)
    tx = optax.adam(0.01, b1=0.9, b2=0.999, eps=1e-8)
    params, state, ref = {"w": jnp.ones((5,))}, None, []
    state = tx.init(params)
    for t in range(1, 7):
        u, state = tx.update(_grads(t), state, params)
        params = optax.apply_updates(params, u)
        ref.append(params["w"])
    np.testing.assert_allclose(ours, np.stack(ref), rtol=1e-6, atol=1e-7)


def test_sgd_momentum_is_the_papers_form():
    beta, lr = 0.9, 0.05
    ours = _run(optim.direction("sgd", _hyper(momentum=beta), None), lambda t: lr)
    w, m, ref = np.ones(5), np.zeros(5), []
    for t in range(1, 7):
        g = np.asarray(_grads(t)["w"])
        m = g + beta * m  # m_t = g_t + beta m_{t-1}
        w = w - lr * m
        ref.append(w.copy())
    np.testing.assert_allclose(ours, np.stack(ref), rtol=1e-5)


def test_gi_adam_first_update_by_hand():
    b1, b2, eps = 0.9, 0.999, 1e-8
    tx = optim.direction("gi_adam", _hyper(b1=b1, b2=b2, eps=eps), None)
    params = {"w": jnp.ones((5,))}
    g = np.asarray(_grads(1)["w"], np.float64)
    d, state = tx.update(_grads(1), tx.init(params), params)
    # v0 = g^2, m1 = (1-b1) g, v1 = b2 v0 + (1-b2) g^2 = g^2; bias-corrected
    m_hat = (1 - b1) * g / (1 - b1)
    v_hat = g**2 / (1 - b2)
    np.testing.assert_allclose(np.asarray(d["w"]), m_hat / (np.sqrt(v_hat) + eps), rtol=1e-5)
    # = sqrt(1 - b2) * sign(g): Adam's first step shrunk by the automatic warmup factor
    np.testing.assert_allclose(np.asarray(d["w"]), np.sqrt(1 - b2) * np.sign(g), rtol=1e-4)
    # the second update is plain Adam from that state
    d2, _ = tx.update(_grads(2), state, params)
    g2 = np.asarray(_grads(2)["w"], np.float64)
    m2 = b1 * (1 - b1) * g + (1 - b1) * g2
    v2 = b2 * g**2 + (1 - b2) * g2**2
    np.testing.assert_allclose(np.asarray(d2["w"]), (m2 / (1 - b1**2)) / (np.sqrt(v2 / (1 - b2**2)) + eps), rtol=1e-4)


def test_clip_by_global_norm():
    tx = optim.direction("sgd", _hyper(), clip_norm=0.5)
    g = _grads(3)
    d, _ = tx.update(g, tx.init({"w": jnp.ones(5)}))
    assert abs(float(jnp.linalg.norm(d["w"])) - 0.5) < 1e-5


@pytest.mark.parametrize("lr_init", [0.0, 0.02])
def test_linear_warmup_eq7(lr_init):
    lr, T = 0.1, 4
    h = _hyper(lr=lr, lr_init=lr_init, warmup=T)
    got = [float(optim.learning_rate(t, h, 100, cosine=False)) for t in range(1, 8)]
    want = [lr_init + (lr - lr_init) * min(t, T) / T for t in range(1, 8)]
    np.testing.assert_allclose(got, want, rtol=1e-6)
    assert got[0] > 0  # counting from t = 1: the first update is not wasted at lr_init = 0


def test_warmup_one_is_constant():
    h = _hyper(lr=0.3, warmup=1)
    got = [float(optim.learning_rate(t, h, 50, cosine=False)) for t in range(1, 50)]
    np.testing.assert_allclose(got, 0.3, rtol=1e-7)


def test_cosine_decay_eq8():
    lr, T, total, rho = 0.2, 10, 110, 2.0
    h = _hyper(lr=lr, warmup=T, decay_rho=rho, decay_min_factor=0.1)
    lr_min = lr / 10
    for t in (11, 35, 60, 100, 110):
        tc = t - T
        want = lr_min + (lr - lr_min) * (0.5 * (1 + np.cos(np.pi * tc / (total - T)))) ** rho
        np.testing.assert_allclose(float(optim.learning_rate(t, h, total, cosine=True)), want, rtol=1e-5)
    assert abs(float(optim.learning_rate(total, h, total, cosine=True)) - lr_min) < 1e-7
    # rho = 0 keeps lr_trgt (the paper's remark)
    h0 = _hyper(lr=lr, warmup=T, decay_rho=0.0)
    assert abs(float(optim.learning_rate(60, h0, total, cosine=True)) - lr) < 1e-7


def test_thresholds():
    h = _hyper(momentum=0.9, b1=0.9)
    assert float(optimizers.get("sgd").threshold(jnp.asarray(0.1), _hyper())) == pytest.approx(20.0)
    assert float(optimizers.get("sgd").threshold(jnp.asarray(0.1), h)) == pytest.approx(38.0)
    assert float(optimizers.get("adam").threshold(jnp.asarray(0.1), h)) == pytest.approx(380.0, rel=1e-5)
