"""Parameter norm ||theta||_2 of the whole network.

Why: warmup and the parameterization act through the size of the weights (SP readouts grow with
lr, muP keeps them O(1)); the norm next to the sharpness separates "sharpness fell because the
weights grew" from a change of direction. Switch: `probe.param_norm=true`. Cost: one reduction.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from sweep.columns import Column
from sweep.probes import ProbeInputs, ProbeMetric, register

if TYPE_CHECKING:
    import jax


def _compute(inputs: ProbeInputs) -> dict[str, jax.Array]:
    import jax.numpy as jnp

    return {"param_norm": jnp.linalg.norm(inputs.flat)}


PARAM_NORM = register(ProbeMetric(
    name="param_norm",
    columns=(Column("param_norm", "trace", "parameter norm ||theta||", None, None,
                    summaries=("max", "final")),),
    enabled=lambda probe: bool(probe.get("param_norm", False)),
    compute=_compute,
))
