"""Per-example building blocks shared by the diagnostics: per-example losses and outputs as
functions of the flat parameters, and micro-batch sizes that bound per-example memory.

Per-example gradients or Jacobian rows are P numbers each, so a micro-batch of c examples holds
c x P of them; `per_example_chunk` picks c from a byte budget (probe.microbatch_bytes when set, else
PER_EXAMPLE_BYTES) and never above the probe's own activation-based micro-batch (inputs.microbatch).
No jax at import (sweep/probes.py).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:
    import jax

# default byte budget of one micro-batch's per-example vectors when probe.microbatch_bytes is 0
PER_EXAMPLE_BYTES = 256 * 2**20


def largest_divisor(n: int, limit: int) -> int:
    """The largest divisor of n that is <= limit (at least 1): equal micro-batches."""
    limit = max(1, min(int(limit), n))
    return max(d for d in range(1, limit + 1) if n % d == 0)


def budget_bytes(probe: Any) -> int:
    b = int(probe.get("microbatch_bytes", 0) or 0) if hasattr(probe, "get") else 0
    return b if b > 0 else PER_EXAMPLE_BYTES


def per_example_chunk(n: int, dim: int, itemsize: int, probe: Any, microbatch: int, copies: int = 2) -> int:
    """Examples per micro-batch when each example holds `copies` vectors of `dim` numbers."""
    fit = max(1, budget_bytes(probe) // max(1, copies * dim * itemsize))
    return largest_divisor(n, min(fit, max(1, microbatch)))


def example_losses(loss_and_accuracy: Callable, unravel: Callable, dtype: Any) -> Callable:
    """(flat, x, y) -> (n,) per-example losses: loss_and_accuracy on x[i:i+1], y[i:i+1] (a token
    sequence's mean over its tokens for language models), so their mean is the batch's mean loss."""
    import jax

    def losses(flat: jax.Array, x: jax.Array, y: jax.Array) -> jax.Array:
        params = unravel(flat)
        one = lambda xi, yi: loss_and_accuracy(params, xi[None], yi[None])[0].astype(dtype)  # noqa: E731
        return jax.vmap(one)(x, y)

    return losses


def chunks(x: jax.Array, size: int) -> jax.Array:
    """(n, ...) -> (n // size, size, ...)."""
    return x.reshape((x.shape[0] // size, size) + x.shape[1:])
