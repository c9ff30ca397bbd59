"""How many members of a cohort train at once.

A cohort is one vmapped program: each member keeps its own activations for the backward pass, so
K members of WRN-16-1 at batch 128 need about K x 0.8 GB (XLA's temp buffers: 819 MB for one
member, 3283 MB for four). Sixteen of them (cohort.max_size) peaked at 15.6 GB resident in
Figure 3's WRN panel. When the estimate for all members exceeds the training budget, the cohort
trains in equal consecutive parts, one after another: same runs, same values (members never
interact), more compiles. A single member that does not fit on its own (WRN-16-4 at batch 128
needs ~2.9 GB for its backward pass on a CPU) takes each step's gradient over equal micro-batches
of the minibatch, one after another: the mean of their mean gradients is the minibatch's gradient
(every loss is a per-example mean and no model mixes examples; LayerNorm, not BatchNorm), up to
float summation order. An execution setting: run ids and results do not depend on it.
"""
from __future__ import annotations

import math
from typing import Any, Sequence, TypeVar

import jax

from sweep.curvature import activation_bytes
from sweep.runtime import default_budget, memory_setting_bytes

T = TypeVar("T")

# Default budget, a fraction of the device's memory: on a CPU that is the host's RAM, shared with the
# OS and everything else (1/4); on an accelerator the allocator's own limit, which holds little else
# than the cohort, its probe micro-batches and the data (3/4).
DEFAULT_TRAIN_FRACTION = {"cpu": 0.25}
DEFAULT_TRAIN_FRACTION_ACCELERATOR = 0.75
# ... and on a CPU at most 1 GiB: a laptop runs a browser beside it, and a WRN-16-4 step whose
# backward pass keeps 2.9 GB peaked at 4.5 GB resident whole, 4.2 GB in two micro-batches (2 GiB)
# (issue 19's target: below 4 GB)
DEFAULT_TRAIN_CAP = {"cpu": 2**30}


def train_budget_bytes(cfg: Any) -> int:
    """`memory.train_mib` in bytes; null: the lesser of 1 GiB and 1/4 of the host's memory on a CPU,
    3/4 of an accelerator's; 0: no limit (0 returned)."""
    set_bytes = memory_setting_bytes(cfg, "train_mib")
    if set_bytes is not None:
        return set_bytes
    backend = jax.default_backend()
    return default_budget(DEFAULT_TRAIN_FRACTION.get(backend, DEFAULT_TRAIN_FRACTION_ACCELERATOR),
                          DEFAULT_TRAIN_CAP.get(backend))


def member_train_bytes(workload: Any, batch_size: int) -> int:
    """Estimated bytes one member's training step keeps: the forward's intermediates at this batch
    size (traced on shapes only, nothing computed). They are 1.04-1.10x XLA's temp buffers for the
    train step (WRN-16-1 / WRN-16-4, batch 128, 1 and 4 members: benchmarks/cohort_memory.py), so no
    margin is added."""
    d = workload.data
    x = jax.ShapeDtypeStruct((batch_size, *d.x_train.shape[1:]), d.x_train.dtype)
    y = jax.ShapeDtypeStruct((batch_size, *d.y_train.shape[1:]), d.y_train.dtype)
    params = workload.param_shapes()
    loss = lambda p, xb, yb: workload.loss_and_accuracy(p, xb, yb)[0]  # noqa: E731
    return int(activation_bytes(loss, params, x, y))


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


def train_microbatches(member_bytes: int, budget_bytes: int, batch_size: int) -> int:
    """How many equal micro-batches one member's minibatch is split into so that its backward pass
    fits the budget: 1 when it fits whole (or budget 0), else the smallest divisor of the batch size
    whose micro-batch fits (the batch size itself when none does)."""
    if budget_bytes <= 0 or member_bytes <= budget_bytes or batch_size <= 1:
        return 1
    need = -(-member_bytes // budget_bytes)  # integer ceiling: no float rounding at exact multiples
    return next(m for m in range(min(need, batch_size), batch_size + 1) if batch_size % m == 0)


def fit_to_budget(workload: Any, cfg: Any, members: Sequence[T]) -> tuple[list[list[T]], int]:
    """(parts, micro-batches per training step) for these cohort members under cfg's training
    budget: what the runner trains with, and what benchmarks measure."""
    from sweep.engine import minibatch_size  # the engine imports this module's callers' helpers

    batch = minibatch_size(cfg, int(workload.data.x_train.shape[0]))
    member_bytes, budget = member_train_bytes(workload, batch), train_budget_bytes(cfg)
    return split_to_fit(members, member_bytes, budget), train_microbatches(member_bytes, budget, batch)
