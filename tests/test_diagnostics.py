"""The registered diagnostics (sweep/diagnostics/) against independent dense computations on a tiny
model: a 2-layer FCN of width 8 on data=synthetic (P = 172 parameters), whose Hessian, per-example
gradients and output Jacobian are small enough to build explicitly with jax.hessian / jax.jacrev."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest
from jax.flatten_util import ravel_pytree

from sweep import curvature
from sweep.diagnostics import grad_cov, hessian, ntk, per_example
from sweep.engine import CohortTrainer, plan_cohort
from sweep.runner import dataset_for
from sweep.workload import build_workload

from data_fixtures import data_dir  # noqa: F401  (fixture: private data dir, network off)

TINY = ["data=synthetic", "model.width=8", "model.depth=2", "probe.batch_size=16"]
ENGINE_KEY = 20240917  # the fixed key the engine hands every metric (sweep/member_probe.py METRIC_KEY)


class Tiny:
    """A tiny model at its initialization: flat parameters, the measurement batch, dense objects."""

    def __init__(self, cfg, seed: int = 1):
        self.w = build_workload(cfg, dataset_for(cfg))
        params = self.w.model.init(jax.random.PRNGKey(seed), self.w.prepare(self.w.data.x_train[:2]))["params"]
        self.flat, self.unravel = ravel_pytree(params)
        self.x = self.w.prepare(self.w.data.x_probe).astype(jnp.float32)
        self.y = self.w.data.y_probe

    def loss(self, f, x=None, y=None):
        return self.w.loss_and_accuracy(self.unravel(f), self.x if x is None else x, self.y if y is None else y)[0]

    def dense_hessian(self):
        return np.asarray(jax.jit(jax.hessian(self.loss))(self.flat), np.float64)

    def dense_per_example_grads(self, n):
        """(n, P) by jax.jacrev of the stacked per-example losses (a Python loop over examples)."""
        def losses(f):
            return jnp.stack([self.loss(f, self.x[i:i + 1], self.y[i:i + 1]) for i in range(n)])

        return np.asarray(jax.jit(jax.jacrev(losses))(self.flat), np.float64)

    def dense_jacobian(self, n):
        """(n * m, P): d outputs / d params of the first n examples, all outputs flattened."""
        return np.asarray(jax.jit(jax.jacrev(lambda f: self.w.apply(self.unravel(f), self.x[:n]).reshape(-1)))(self.flat),
                          np.float64)


@pytest.fixture
def tiny(compose_cfg):
    return Tiny(compose_cfg(*TINY))


def dense_grad_cov(g: np.ndarray) -> tuple[float, float, np.ndarray]:
    """(lambda_1, trace, K) of K = (1/N) sum_i (g_i - g)(g_i - g)^T (Jastrzebski et al. Sec. 3)."""
    d = g - g.mean(0, keepdims=True)
    k = d.T @ d / len(g)
    return float(np.linalg.eigvalsh(k)[-1]), float(np.trace(k)), k


# ----------------------------------------------------------------------------- Hessian trace
def test_hutchinson_equals_dense_quadratic_forms(tiny):
    """Same fixed Rademacher vectors: the HVP-based estimate is mean_i v_i^T H v_i with dense H."""
    h = tiny.dense_hessian()
    vecs = hessian.rademacher(jax.random.PRNGKey(3), 8, tiny.flat.shape[0], jnp.float32)
    est = float(hessian.hutchinson_trace(lambda v: curvature.hvp(tiny.loss, tiny.flat, v), vecs))
    v = np.asarray(vecs, np.float64)
    dense = float(np.mean(np.einsum("ip,pq,iq->i", v, h, v)))
    assert est == pytest.approx(dense, rel=1e-4, abs=1e-6 * np.abs(h).sum())


def test_hutchinson_converges_to_dense_trace(tiny):
    """With many vectors the estimate is within 4 standard deviations of jnp.trace(H), the standard
    deviation of the mean of n Rademacher quadratic forms being sqrt(2 sum_{i != j} H_ij^2 / n)."""
    h = tiny.dense_hessian()
    n = 20000
    vecs = hessian.rademacher(jax.random.PRNGKey(4), n, h.shape[0], jnp.float32)
    hj = jnp.asarray(h, jnp.float32)
    est = float(hessian.hutchinson_trace(lambda v: hj @ v, vecs))
    off = h - np.diag(np.diag(h))
    sd = np.sqrt(2 * np.sum(off ** 2) / n)
    assert abs(est - np.trace(h)) <= 4 * sd + 1e-5 * abs(np.trace(h))
    assert sd < 0.05 * abs(np.trace(h))  # the check is not vacuous


# ----------------------------------------------------------------------------- gradient covariance
@pytest.mark.parametrize("chunk,pe_chunk", [(12, 12), (4, 3), (1, 1)])
def test_grad_cov_equals_dense_eigvalsh(tiny, chunk, pe_chunk):
    """lambda_1^K and Tr(K) from per-example-loss jvp/vjp Lanczos and micro-batched per-example norms
    equal eigvalsh / trace of K built from explicit per-example gradients (jax.jacrev), whole and
    micro-batched."""
    n = 12
    top, trace, _ = dense_grad_cov(tiny.dense_per_example_grads(n))
    losses = per_example.example_losses(tiny.w.loss_and_accuracy, tiny.unravel, jnp.float32)
    v0 = jax.random.normal(jax.random.PRNGKey(0), (n,))
    res = grad_cov.grad_cov(losses, tiny.flat, tiny.x[:n], tiny.y[:n], chunk=chunk, pe_chunk=pe_chunk,
                            iters=n, tol=1e-7, v0=v0)
    assert float(res.top) == pytest.approx(top, rel=1e-4)
    assert float(res.trace) == pytest.approx(trace, rel=1e-4)
    assert float(res.top) <= float(res.trace) * (1 + 1e-5)


def test_grad_cov_gram_route_and_centering(tiny):
    """The N x N centred Gram matrix (1/N) C J J^T C has K's non-zero spectrum (App. C's route),
    and K is centred: a covariance, not the second moment (1/N) sum g_i g_i^T."""
    g = tiny.dense_per_example_grads(10)
    top, trace, k = dense_grad_cov(g)
    c = np.eye(10) - 1.0 / 10
    gram = c @ g @ g.T @ c / 10
    np.testing.assert_allclose(np.linalg.eigvalsh(gram)[-9:], np.linalg.eigvalsh(k)[-9:], rtol=1e-6, atol=1e-10)
    second_moment = g.T @ g / 10
    assert np.trace(second_moment) - trace == pytest.approx(np.sum(g.mean(0) ** 2), rel=1e-8)


# ----------------------------------------------------------------------------- NTK trace
@pytest.mark.parametrize("pe_chunk", [10, 5, 1])
def test_ntk_trace_equals_dense_jacobian(tiny, pe_chunk):
    """(1/(n m)) sum_i ||J_i||_F^2 = tr(J J^T) / (n m) of the dense (n m) x P output Jacobian."""
    n = 10
    jac = tiny.dense_jacobian(n)
    dense = np.trace(jac @ jac.T) / jac.shape[0]
    outputs = ntk.flat_outputs(tiny.w.apply, tiny.unravel)
    est = float(ntk.ntk_trace(outputs, tiny.flat, tiny.x[:n], pe_chunk=pe_chunk))
    assert est == pytest.approx(dense, rel=1e-5)


def test_ntk_trace_output_hutchinson(tiny):
    """Above EXACT_OUTPUTS (language models) the per-example norms use Rademacher output vectors:
    with the same vectors it is mean_v ||J_i^T v||^2 of the dense Jacobian, and it is unbiased."""
    n, m = 10, tiny.w.num_classes
    jac = tiny.dense_jacobian(n).reshape(n, m, -1)
    dirs = jax.random.rademacher(jax.random.PRNGKey(5), (6, m), dtype=jnp.float32)
    outputs = ntk.flat_outputs(tiny.w.apply, tiny.unravel)
    est = float(ntk.ntk_trace(outputs, tiny.flat, tiny.x[:n], pe_chunk=5, directions=dirs))
    d = np.asarray(dirs, np.float64)
    dense = np.mean(np.sum(np.einsum("sm,imp->isp", d, jac) ** 2, -1), -1).sum() / (n * m)
    assert est == pytest.approx(dense, rel=1e-5)
    many = jax.random.rademacher(jax.random.PRNGKey(6), (4000, m), dtype=jnp.float32)
    est_many = float(ntk.ntk_trace(outputs, tiny.flat, tiny.x[:n], pe_chunk=10, directions=many))
    assert est_many == pytest.approx(np.sum(jac ** 2) / (n * m), rel=0.05)


def test_ntk_trace_is_gauss_newton_trace_of_half_mean_mse(tiny):
    """For the default loss (half_mean MSE, the paper's Eq. 1) tr(Theta-hat) is the trace of the
    Gauss-Newton part of the Hessian, J^T (I / (n C)) J: the quantity the S-EOS criterion uses."""
    n = tiny.x.shape[0]
    jac = tiny.dense_jacobian(n)
    gn = jac.T @ jac / jac.shape[0]
    outputs = ntk.flat_outputs(tiny.w.apply, tiny.unravel)
    est = float(ntk.ntk_trace(outputs, tiny.flat, tiny.x, pe_chunk=n))
    assert est == pytest.approx(np.trace(gn), rel=1e-5)
    # and the Hessian differs from it only by the residual term (small at initialization here)
    assert np.trace(tiny.dense_hessian()) == pytest.approx(np.trace(gn), rel=0.5)


# ----------------------------------------------------------------------------- through the engine
ALL_ON = [*TINY, "steps=12", "probe.every=4", "batch_size=32", "probe.lanczos_iters=16",
          "probe.lanczos_tol=1e-7", "probe.hessian_trace=6", "probe.grad_cov=12", "probe.ntk_trace=16",
          "probe.param_norm=true"]
DIAG = ["hessian_trace", "grad_cov_top", "grad_cov_trace", "ntk_trace", "param_norm"]


def _train(cfgs):
    ds = dataset_for(cfgs[0])
    return CohortTrainer(build_workload(cfgs[0], ds), plan_cohort(cfgs), chunk=8).run()


def _initial_params(cfgs, m):
    trainer = CohortTrainer(build_workload(cfgs[0], dataset_for(cfgs[0])), plan_cohort(cfgs), chunk=8)
    members = trainer.init_members()
    return jax.tree.map(lambda a: a[m], members.params)


@pytest.mark.parametrize("members", ["map", "vmap"])
def test_engine_all_switches(compose_cfg, members):
    """A 2-member cohort with every diagnostic on: the columns are in the trace, finite at probe
    steps and NaN elsewhere, equal the dense values at step 0, and a member's values are the same
    alone as in the cohort (to the last float32 bit or so when members are probed one by one: XLA
    compiles a one-member map loop differently from a two-member one, seen as a 1-ulp difference of
    the Hessian trace on an AMD EPYC CPU; to float32 reassociation when the probe is vmapped)."""
    extra = (*ALL_ON, f"probe.members={members}")
    cfgs = [compose_cfg(*extra, "lr=0.05"), compose_cfg(*extra, "lr=0.2", "seed=3")]
    res = _train(cfgs)
    for m, cfg in enumerate(cfgs):
        tr = res.traces[m]
        assert set(DIAG) <= set(tr.columns)
        probed = tr["probe_loss"].notna()
        assert probed.sum() >= 3
        assert np.isfinite(tr.loc[probed, DIAG].to_numpy()).all()
        assert tr.loc[~probed, DIAG].isna().all().all()

        # step 0: the dense values at the member's initial parameters
        t = Tiny(cfg)
        t.flat, t.unravel = ravel_pytree(_initial_params(cfgs, m))
        row = tr.set_index("step").loc[0]
        h = t.dense_hessian()
        vecs = np.asarray(hessian.rademacher(jax.random.fold_in(jax.random.PRNGKey(ENGINE_KEY), 0x7AACE), 6,
                                             h.shape[0], jnp.float32), np.float64)
        assert row["hessian_trace"] == pytest.approx(np.mean(np.einsum("ip,pq,iq->i", vecs, h, vecs)), rel=1e-4)
        top, trace, _ = dense_grad_cov(t.dense_per_example_grads(12))
        assert row["grad_cov_top"] == pytest.approx(top, rel=1e-4)
        assert row["grad_cov_trace"] == pytest.approx(trace, rel=1e-4)
        jac = t.dense_jacobian(16)
        assert row["ntk_trace"] == pytest.approx(np.trace(jac @ jac.T) / jac.shape[0], rel=1e-4)
        assert row["param_norm"] == pytest.approx(float(np.linalg.norm(np.asarray(t.flat, np.float64))), rel=1e-5)

        alone = _train([cfg]).traces[0]
        exact = {"rtol": 1e-6, "atol": 0.0} if members == "map" else {"rtol": 1e-4, "atol": 1e-7}
        pd.testing.assert_frame_equal(tr[["step", *DIAG]], alone[["step", *DIAG]], **exact)


@pytest.mark.slow
def test_engine_language_model(compose_cfg, tmp_path, data_dir):  # noqa: F811
    """Integer token sequences: per-example losses are a sequence's token mean, and the NTK trace
    (tokens x vocabulary outputs per example) takes the output-Hutchinson route; step 0 equals
    the dense values with the engine's fixed vectors."""
    root = tmp_path / "wt"
    root.mkdir()
    text = " = Heading = \n\n" + "the quick brown fox jumps over the lazy dog . " * 60 + "\n"
    for split in ("train", "valid", "test"):
        (root / f"wiki.{split}.raw").write_text(text)
    cfg = compose_cfg("model=transformer", "model.depth=1", "model.width=16", "model.heads=2", "model.context=8",
                      "data=wikitext2", f"data.root={root}", "data.vocab_size=64", "data.context=8", "loss=xent",
                      "batch_size=4", "steps=4", "probe.every=2", "probe.batch_size=8", "probe.lanczos_iters=8",
                      "probe.lanczos_tol=1e-7", "lr=0.01", "probe.sharpness=false", "probe.grad_cov=6",
                      "probe.ntk_trace=2")
    tr = _train([cfg]).traces[0]
    assert list(tr.step) == [0, 2, 4] and np.isfinite(tr[["grad_cov_top", "grad_cov_trace", "ntk_trace"]]).all().all()
    t = Tiny(cfg)
    t.x = t.w.data.x_probe  # tokens stay integers
    t.flat, t.unravel = ravel_pytree(_initial_params([cfg], 0))
    row = tr.set_index("step").loc[0]
    top, trace, _ = dense_grad_cov(t.dense_per_example_grads(6))
    assert row["grad_cov_top"] == pytest.approx(top, rel=1e-4)
    assert row["grad_cov_trace"] == pytest.approx(trace, rel=1e-4)
    jac = t.dense_jacobian(2)
    m = jac.shape[0] // 2
    assert m == 8 * t.w.num_classes > ntk.EXACT_OUTPUTS
    dirs = np.asarray(jax.random.rademacher(jax.random.fold_in(jax.random.PRNGKey(ENGINE_KEY), 0x47C),
                                            (ntk.NTK_OUTPUT_VECTORS, m), dtype=jnp.float32), np.float64)
    dense = np.mean(np.sum(np.einsum("sm,imp->isp", dirs, jac.reshape(2, m, -1)) ** 2, -1), -1).sum() / (2 * m)
    assert row["ntk_trace"] == pytest.approx(dense, rel=1e-4)
    assert row["ntk_trace"] == pytest.approx(np.sum(jac ** 2) / jac.shape[0], rel=0.5)  # near the exact trace
