"""How well `sweep.cohort_memory`'s estimate of a member's training memory matches XLA's, and how
many members train at once by default: for WRN-16-1 / WRN-16-4 at batch 128 (32x32x3, 10 classes),
XLA's temp buffers for a vmapped train step of K members (compile only, nothing runs) against the
estimate (the forward's intermediates, traced on shapes).

    python benchmarks/cohort_memory.py [--widen 1 4] [--members 1 4]
"""
from __future__ import annotations

import argparse
import time
from types import SimpleNamespace

import jax
import jax.numpy as jnp
import optax

from sweep.cohort_memory import member_train_bytes, split_to_fit, train_budget_bytes
from sweep.config import ParamConfig, WRNConfig
from sweep.models import build_model

MIB = 2**20


def xla_temp_bytes(model, params, x, y, members: int) -> int:
    """XLA's temp allocation for one SGD step of `members` vmapped copies of the model."""
    def loss_fn(p, xb, yb):
        return optax.softmax_cross_entropy_with_integer_labels(model.apply({"params": p}, xb, train=False), yb).mean()

    def step(p, xb, yb):
        loss, g = jax.value_and_grad(loss_fn)(p, xb, yb)
        return jax.tree_util.tree_map(lambda a, b: a - 0.01 * b, p, g), loss

    stacked = jax.tree_util.tree_map(lambda a: jnp.stack([a] * members), params)
    compiled = jax.jit(jax.vmap(step, in_axes=(0, None, None))).lower(stacked, x, y).compile()
    return int(compiled.memory_analysis().temp_size_in_bytes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--widen", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--members", type=int, nargs="+", default=[1, 4])
    args = parser.parse_args()
    x = jnp.zeros((128, 32, 32, 3), jnp.float32)
    y = jnp.zeros((128,), jnp.int32)
    budget = train_budget_bytes(SimpleNamespace(get=lambda *_: None))
    print(f"default training budget on {jax.default_backend()}: {budget / MIB:.0f} MiB")
    for widen in args.widen:
        model = build_model(WRNConfig(widen=widen), ParamConfig(name="sp"), 10)
        params = model.init(jax.random.PRNGKey(0), x[:1])["params"]
        workload = SimpleNamespace(
            data=SimpleNamespace(x_train=x, y_train=y), model=model, prepare=lambda xb: xb,
            loss_and_accuracy=lambda p, xb, yb, m=model: (
                optax.softmax_cross_entropy_with_integer_labels(m.apply({"params": p}, xb, train=False), yb).mean(), 0.0))
        estimate = member_train_bytes(workload, 128)
        per_part = len(split_to_fit(list(range(16)), estimate, budget)[0])
        print(f"WRN-16-{widen}, batch 128: estimate {estimate / MIB:.0f} MiB per member; "
              f"16 members train {per_part} at a time by default", flush=True)
        for k in args.members:
            t0 = time.perf_counter()
            temp = xla_temp_bytes(model, params, x, y, k)
            print(f"  K={k}: XLA temp {temp / MIB:.0f} MiB = {temp / k / MIB:.0f} MiB per member, "
                  f"estimate / XLA = {estimate * k / temp:.2f}  (compile {time.perf_counter() - t0:.1f} s)", flush=True)


if __name__ == "__main__":
    main()
