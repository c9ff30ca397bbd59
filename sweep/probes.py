"""Registered probe metrics: extra measurements taken at probe steps, as an open dict.

Why: the engine should not know each diagnostic. A metric is a `ProbeMetric`: a switch read from
the `probe` config, the `Column`s it fills (sweep/columns.py) and a pure function of one member's
`ProbeInputs` returning {column: scalar}. The engine calls every enabled metric inside the compiled
probe (behind the probe-step `lax.cond`, on the fixed measurement batch), stores the values in the
trace and NaN at unprobed steps; aggregate, plot and export pick the columns up from the registry.

Adding a metric touches two files: the module that computes and registers it, and the `probe`
config (its switch). The sharpness and preconditioned sharpness stay in the engine because they carry
a warm-start vector from probe to probe; every stateless diagnostic goes through here.

Registering is cheap and jax-free (aggregate and plot load the registry for labels): a metric module
imports jax inside its functions, not at import time (tests/test_probe_registry.py checks this).

A metric must give the same value for a member whatever cohort it trains in: use `inputs.key` (the
same at every step and for every member) for randomness, never the member's position.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Optional

from sweep import columns
from sweep.columns import Column


@dataclass(frozen=True)
class ProbeInputs:
    """What a metric sees for one member at one probe step (inside jit; no cohort axis).

    params: the member's parameter pytree; flat / unravel: the same, ravelled in the probe dtype.
    loss_of_flat: the mean loss on the measurement batch as a function of flat parameters.
    make_hvp(): a Hessian-vector product of that loss at `flat` (sharing the probe's linearization
      when there is one); call it once and reuse the function.
    x, y: the measurement batch (images prepared in the probe dtype, or integer tokens).
    loss_and_accuracy(params, x, y) -> (mean loss, accuracy); apply(params, x) -> model outputs.
    microbatch: examples per micro-batch that keep intermediate values within probe.microbatch_bytes
      (= the batch size when unbounded).
    key: a PRNG key that is the same for every member and every step (fixed random probes).
    probe: the `probe` config (static Python values only).
    """

    params: Any
    flat: jax.Array
    unravel: Callable[[jax.Array], Any]
    loss_of_flat: Callable[[jax.Array], jax.Array]
    make_hvp: Callable[[], Callable[[jax.Array], jax.Array]]
    x: jax.Array
    y: jax.Array
    loss_and_accuracy: Callable[..., tuple]
    apply: Callable[..., jax.Array]
    microbatch: int
    key: jax.Array
    probe: Any
    task: str
    num_classes: int


@dataclass(frozen=True)
class ProbeMetric:
    name: str
    columns: tuple[Column, ...]
    enabled: Callable[[Any], bool]  # probe config -> on?
    compute: Callable[[ProbeInputs], dict[str, jax.Array]]


_METRICS: dict[str, ProbeMetric] = {}


def register(metric: ProbeMetric) -> ProbeMetric:
    """Register a metric and its columns (idempotent for the same metric object's fields)."""
    for col in metric.columns:
        if col.kind != "trace":
            raise ValueError(f"probe metric {metric.name}: column {col.name} must be a trace column")
        columns.register(col)
    _METRICS[metric.name] = metric
    return metric


def _load_builtin() -> None:
    """Import the modules that register the shipped diagnostics (cheap: no jax at import)."""
    import importlib

    for module in BUILTIN_MODULES:
        importlib.import_module(module)


def load_all() -> None:
    """Register every shipped metric's columns (for readers of records: aggregate, plot, export)."""
    _load_builtin()


BUILTIN_MODULES: tuple[str, ...] = ("sweep.diagnostics",)


def enabled_metrics(probe_cfg: Any) -> list[ProbeMetric]:
    """The metrics switched on by this probe config, in registration order."""
    _load_builtin()
    return [m for m in _METRICS.values() if m.enabled(probe_cfg)]


def enabled_columns(probe_cfg: Any) -> list[str]:
    return [c.name for m in enabled_metrics(probe_cfg) for c in m.columns]


def compute_all(metrics: list[ProbeMetric], inputs: ProbeInputs) -> dict[str, jax.Array]:
    """Every enabled metric's values as float32 scalars (int32 for integer columns)."""
    import jax.numpy as jnp

    out: dict[str, Any] = {}
    for metric in metrics:
        values = metric.compute(inputs)
        missing = {c.name for c in metric.columns} - set(values)
        if missing:
            raise ValueError(f"probe metric {metric.name} did not return {sorted(missing)}")
        for col in metric.columns:
            out[col.name] = jnp.asarray(values[col.name]).astype(jnp.int32 if col.integer else jnp.float32)
    return out


def placeholders(metrics: list[ProbeMetric], shape: tuple = ()) -> dict[str, jax.Array]:
    """The values of unprobed steps (NaN; 0 for counts)."""
    import jax.numpy as jnp

    out = {}
    for metric in metrics:
        for col in metric.columns:
            out[col.name] = (jnp.zeros(shape, jnp.int32) if col.integer
                             else jnp.full(shape, jnp.nan, jnp.float32))
    return out


def get(name: str) -> Optional[ProbeMetric]:
    _load_builtin()
    return _METRICS.get(name)
