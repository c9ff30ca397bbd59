"""Hessian trace by Hutchinson's estimator: tr(H) ~ (1/n) sum_i z_i^T H z_i, z_i Rademacher.

Switch: `probe.hessian_trace=N` (N > 0 probe vectors; 0 = off). The N vectors are drawn from a
fixed key, so every step and every member uses the same ones: the estimate's noise is frozen along
a trajectory (differences between steps are real) and a run's trace never depends on its cohort.
Cost: N Hessian-vector products per probe, on the measurement batch.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Callable

from sweep.columns import Column
from sweep.probes import ProbeInputs, ProbeMetric, register


if TYPE_CHECKING:
    import jax


def rademacher(key: jax.Array, n: int, dim: int, dtype) -> jax.Array:
    """(n, dim) independent +-1 entries."""
    import jax

    return jax.random.rademacher(key, (n, dim), dtype=dtype)


def hutchinson_trace(hvp: Callable[[jax.Array], jax.Array], vectors: jax.Array) -> jax.Array:
    """(1/n) sum_i v_i^T H v_i over the rows of `vectors`, one HVP at a time (memory of one)."""
    import jax
    import jax.numpy as jnp

    def body(total, v):
        return total + jnp.vdot(v, hvp(v)), None

    total, _ = jax.lax.scan(body, jnp.zeros((), vectors.dtype), vectors)
    return total / vectors.shape[0]


def _compute(inputs: ProbeInputs) -> dict[str, jax.Array]:
    import jax

    n = int(inputs.probe.hessian_trace)
    key = jax.random.fold_in(inputs.key, 0x7AACE)
    vectors = rademacher(key, n, inputs.flat.shape[0], inputs.flat.dtype)
    return {"hessian_trace": hutchinson_trace(inputs.make_hvp(), vectors)}


HESSIAN_TRACE = register(ProbeMetric(
    name="hessian_trace",
    columns=(Column("hessian_trace", "trace", "Hessian trace tr(H)", "Hutchinson estimate", None,
                    log_scale=True, summaries=("max", "final")),),
    enabled=lambda probe: int(probe.get("hessian_trace", 0) or 0) > 0,
    compute=_compute,
))
