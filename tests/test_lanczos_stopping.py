"""Issue 12: the Lanczos stopping rule (sweep.curvature.lanczos_top, stop="gap") against dense
eigenvalues of a small model's Hessian, next to the rule it replaced (stop="residual").

The gap rule stops when min(r, gap_safety * r^2 / (theta - theta2)) <= tol * theta (r the Ritz
residual, theta2 the second Ritz value, from the third HVP on); the residual rule when r <= tol *
theta. Both are checked at the configured tolerance (probe.lanczos_tol = 1e-3) on cold starts,
warm starts along a training trajectory, and poor warm starts (the second eigenvector, mixtures
of it with the top one, random vectors). Outcome: the gap rule is as accurate as tol on cold and
trajectory warm starts with fewer HVPs, but from poor warm starts (u_2 + a little u_1 + noise) it
stops on lambda_2 where the residual rule finds lambda_1, so the default (the engine's rule) stays
"residual" and "gap" is opt-in.
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

from sweep.curvature import lanczos_top, lanczos_unless_done, linearized_hvp
from sweep.models.fcn import FCN
from sweep.models.param import Scheme

TOL = 1e-3  # probe.lanczos_tol's default
ITERS = 20  # probe.lanczos_iters's default


def _problem(width: int = 16, classes: int = 10, n: int = 64):
    model = FCN(classes, depth=3, width=width, scheme=Scheme("sp"))
    x = jax.random.normal(jax.random.PRNGKey(1), (n, 8))
    y = jax.nn.one_hot(jnp.arange(n) % classes, classes)
    params = model.init(jax.random.PRNGKey(0), x)["params"]
    flat, unravel = ravel_pytree(params)

    def loss(f):
        return 0.5 * jnp.mean((model.apply({"params": unravel(f)}, x) - y) ** 2)

    return loss, flat


@pytest.fixture(scope="module")
def problem():
    return _problem()


def _dense(loss, flat):
    evals, evecs = jnp.linalg.eigh(jax.hessian(loss)(flat))
    return np.asarray(evals), np.asarray(evecs)


def _both(loss, flat, v0):
    out = {}
    for stop in ("residual", "gap"):
        fn = jax.jit(lambda f, v, stop=stop: lanczos_top(linearized_hvp(loss, f), v, ITERS, TOL, stop=stop))
        out[stop] = fn(flat, v0)
    return out


def _rel(value, lam):
    return abs(float(value) - lam) / abs(lam)


def test_cold_random_starts_match_dense(problem):
    loss, flat = problem
    evals, _ = _dense(loss, flat)
    lam = float(evals[-1])
    for seed in range(5):
        out = _both(loss, flat, jax.random.normal(jax.random.PRNGKey(100 + seed), flat.shape))
        for stop, eig in out.items():
            assert _rel(eig.value, lam) <= TOL, (seed, stop, float(eig.value), lam)
        assert int(out["gap"].matvecs) <= int(out["residual"].matvecs)


def test_warm_starts_along_a_training_trajectory_match_dense():
    """Full-batch GD at 1.9 / lambda_0 (the top eigenvector moves between probes), a probe every
    4 steps, each rule warm-started from its own previous Ritz vector, as the engine does."""
    loss, flat = _problem()
    grad = jax.jit(jax.grad(loss))
    lam0 = float(_dense(loss, flat)[0][-1])
    lr = 1.9 / lam0
    fns = {stop: jax.jit(lambda f, v, stop=stop: lanczos_top(linearized_hvp(loss, f), v, ITERS, TOL, stop=stop))
           for stop in ("residual", "gap")}
    vec = {stop: jax.random.normal(jax.random.PRNGKey(5), flat.shape) for stop in fns}
    hvps = {stop: [] for stop in fns}
    errors = {stop: [] for stop in fns}
    f = flat
    for step in range(61):
        if step % 4 == 0:
            lam = float(_dense(loss, f)[0][-1])
            for stop, fn in fns.items():
                eig = fn(f, vec[stop])
                vec[stop] = eig.vector
                hvps[stop].append(int(eig.matvecs))
                errors[stop].append(_rel(eig.value, lam))
        f = f - lr * grad(f)
    for stop in fns:
        assert max(errors[stop]) <= TOL, (stop, errors[stop])
    warm = {stop: hvps[stop][1:] for stop in fns}
    assert all(g <= r for g, r in zip(warm["gap"], warm["residual"]))
    assert sum(warm["gap"]) < sum(warm["residual"])  # and it does save HVPs


def test_second_eigenvector_start_stops_where_the_residual_rule_does(problem):
    """An exact eigenvector of lambda_2 spans an invariant subspace: no Krylov method sees lambda_1
    from it; both rules stop after one HVP on lambda_2 (the gap rule is no looser)."""
    loss, flat = problem
    evals, evecs = _dense(loss, flat)
    out = _both(loss, flat, jnp.asarray(evecs[:, -2]))
    assert int(out["gap"].matvecs) == int(out["residual"].matvecs)
    assert float(out["gap"].value) == pytest.approx(float(out["residual"].value), rel=1e-6)


POOR = [(eps, noise) for noise in (0.0, 0.02, 0.1, 0.3) for eps in (1e-4, 1e-3, 1e-2, 0.03, 0.1, 0.3, 1.0)]


def _poor_starts(loss, flat):
    """v0 = u_2 + eps u_1 + noise * (a random unit vector): the warm start after the top two
    eigenvalues crossed. Returns lambda_1 and, per start, each rule's (relative error, HVPs)."""
    evals, evecs = _dense(loss, flat)
    lam = float(evals[-1])
    u1, u2 = jnp.asarray(evecs[:, -1]), jnp.asarray(evecs[:, -2])
    r = jax.random.normal(jax.random.PRNGKey(11), flat.shape)
    r = r / jnp.linalg.norm(r)
    fns = {stop: jax.jit(lambda f, v, stop=stop: lanczos_top(linearized_hvp(loss, f), v, ITERS, TOL, stop=stop))
           for stop in ("residual", "gap")}
    default = jax.jit(lambda f, v: lanczos_top(linearized_hvp(loss, f), v, ITERS, TOL))
    rows = []
    for eps, noise in POOR:
        v0 = u2 + eps * u1 + noise * r
        out = {stop: fn(flat, v0) for stop, fn in fns.items()}
        out["default"] = default(flat, v0)
        rows.append({k: (_rel(e.value, lam), int(e.matvecs)) for k, e in out.items()})
    return lam, rows


@pytest.fixture(scope="module")
def poor(problem):
    return _poor_starts(*problem)


def test_default_rule_is_the_residual_rule_on_poor_warm_starts(poor):
    """The engine's rule (the default) is unchanged: it finds lambda_1 wherever the residual rule
    does, with the same HVPs, and it finds it from most of these starts."""
    _, rows = poor
    for (eps, noise), row in zip(POOR, rows):
        assert row["default"] == row["residual"], (eps, noise, row)
    assert sum(row["residual"][0] <= TOL for row in rows) >= len(rows) // 2


def test_gap_rule_is_looser_than_the_residual_rule_on_poor_warm_starts(poor):
    """Why stop="gap" is opt-in: from u_2 + eps u_1 + noise, the Ritz gap (theta - theta2, theta2
    a bulk value) overestimates lambda_1 - lambda_2 and the gap rule stops on lambda_2 where the
    residual rule goes on to lambda_1. It never needs more HVPs, and it is never right where the
    residual rule is wrong (same iterates)."""
    _, rows = poor
    looser = [(eps, noise) for (eps, noise), row in zip(POOR, rows)
              if row["residual"][0] <= TOL < row["gap"][0]]
    for (eps, noise), row in zip(POOR, rows):
        assert row["gap"][1] <= row["residual"][1]
        assert not (row["gap"][0] <= TOL < row["residual"][0]), (eps, noise, row)
    assert (1e-4, 0.1) in looser  # u_1 almost absent, some noise: stops on lambda_2 after 3 HVPs
    assert len(looser) < len(rows) // 2


def test_lanczos_unless_done_passes_the_rule_and_skips_frozen(problem):
    loss, flat = problem
    lam = float(_dense(loss, flat)[0][-1])
    v0 = jax.random.normal(jax.random.PRNGKey(3), flat.shape)
    make = lambda: linearized_hvp(loss, flat)  # noqa: E731
    for stop in ("residual", "gap"):
        run = jax.jit(lambda v, d, stop=stop: lanczos_unless_done(make, v, ITERS, TOL, d, stop=stop))
        eig = run(v0, jnp.asarray(False))
        assert _rel(eig.value, lam) <= TOL
        assert int(run(v0, jnp.asarray(True)).matvecs) == 0
    with pytest.raises(ValueError):
        lanczos_top(lambda v: v, v0, ITERS, TOL, stop="nope")


def test_probe_lanczos_stop_switch_reaches_the_engine(compose_cfg):
    """probe.lanczos_stop=gap changes the probes' stopping rule (never more HVPs than the residual
    rule, same sharpness to tol) and a bad value is a one-line config error."""
    from sweep.config import ConfigError, validate
    from sweep.engine import CohortTrainer, plan_cohort
    from sweep.runner import dataset_for
    from sweep.workload import build_workload

    base = ["data=synthetic", "data.n_train=128", "data.n_test=64", "model.width=16", "model.depth=3",
            "steps=30", "probe.every=2", "probe.batch_size=64", "batch_size=32", "probe.lanczos_iters=20",
            "lr=0.05"]
    traces = {}
    for stop in ("residual", "gap"):
        cfg = compose_cfg(*base, f"probe.lanczos_stop={stop}")
        trainer = CohortTrainer(build_workload(cfg, dataset_for(cfg)), plan_cohort([cfg]), chunk=8)
        traces[stop] = trainer.run().traces[0].dropna(subset=["sharpness"])
    res, gap = traces["residual"], traces["gap"]
    assert list(res["step"]) == list(gap["step"])
    warm_res, warm_gap = res["hvps"].iloc[1:].to_numpy(), gap["hvps"].iloc[1:].to_numpy()
    assert (warm_gap <= warm_res).all() and warm_gap.sum() < warm_res.sum()
    np.testing.assert_allclose(gap["sharpness"], res["sharpness"], rtol=2e-3)
    with pytest.raises(ConfigError, match="probe.lanczos_stop=nope"):
        validate(compose_cfg(*base, "probe.lanczos_stop=nope"))
