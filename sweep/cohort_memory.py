"""How many members of a cohort train at once.

A cohort is one vmapped program: each member keeps its own activations for the backward pass, so
K members of WRN-16-1 at batch 128 need about K x 0.8 GB (XLA's temp buffers: 819 MB for one
member, 3283 MB for four). Sixteen of them (cohort.max_size) peaked at 15.6 GB resident in
Figure 3's WRN panel. When the estimate for all members exceeds the training budget, the cohort
trains in equal consecutive parts, one after another: same runs, same values (members never
interact), more compiles. An execution setting: run ids and results do not depend on it.
"""
from __future__ import annotations

import math
from typing import Any, Sequence, TypeVar

import jax

from sweep.curvature import activation_bytes
from sweep.runtime import device_memory_bytes

T = TypeVar("T")

# Default budget, a fraction of the device's memory: on a CPU that is the host's RAM, shared with the
# OS and everything else (1/4); on an accelerator the allocator's own limit, which holds little else
# than the cohort, its probe micro-batches and the data (3/4).
DEFAULT_TRAIN_FRACTION = {"cpu": 0.25}
DEFAULT_TRAIN_FRACTION_ACCELERATOR = 0.75
# The forward's intermediates (sub-jaxprs included) are 1.04-1.10x XLA's temp buffers for the train
# step (WRN-16-1 / WRN-16-4, batch 128, 1 and 4 members: benchmarks/cohort_memory.py): no margin needed
ACTIVATION_OVERHEAD = 1.0


def train_budget_bytes(cfg: Any) -> int:
    """`memory.train_mib` in bytes; null: 1/4 of the host's memory on a CPU, 3/4 of an accelerator's;
    0: no limit (0 returned)."""
    memory = cfg.get("memory", None) if hasattr(cfg, "get") else None
    mib = memory.get("train_mib", None) if memory is not None else None
    if mib is not None:
        return max(int(float(mib) * 2**20), 0)
    fraction = DEFAULT_TRAIN_FRACTION.get(jax.default_backend(), DEFAULT_TRAIN_FRACTION_ACCELERATOR)
    return int(device_memory_bytes() * fraction)


def member_train_bytes(workload: Any, batch_size: int) -> int:
    """Estimated bytes one member's training step keeps: the forward's intermediates at this batch
    size (traced on shapes only, nothing computed) x ACTIVATION_OVERHEAD."""
    d = workload.data
    x = jax.ShapeDtypeStruct((batch_size, *d.x_train.shape[1:]), d.x_train.dtype)
    y = jax.ShapeDtypeStruct((batch_size, *d.y_train.shape[1:]), d.y_train.dtype)
    params = jax.eval_shape(lambda: workload.model.init(jax.random.PRNGKey(0), workload.prepare(d.x_train[:1]))["params"])
    loss = lambda p, xb, yb: workload.loss_and_accuracy(p, xb, yb)[0]  # noqa: E731
    return int(activation_bytes(loss, params, x, y) * ACTIVATION_OVERHEAD)


def split_to_fit(members: Sequence[T], member_bytes: int, budget_bytes: int) -> list[list[T]]:
    """Equal consecutive parts (order kept) whose estimated memory fits the budget; one member per
    part at least. budget 0: one part."""
    members = list(members)
    if budget_bytes <= 0 or member_bytes <= 0 or not members:
        return [members]
    per_part = max(1, budget_bytes // member_bytes)
    n_parts = math.ceil(len(members) / per_part)
    size = math.ceil(len(members) / n_parts)
    return [members[i:i + size] for i in range(0, len(members), size)]
