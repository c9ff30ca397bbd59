"""Seconds per training step (forward + backward of softmax cross-entropy, jit) of the paper's
default models: WRN-16-4 at batch 128 on 32x32x3, LM-4-128 at batch 64, context 64, vocab 4096.

The step is jax.value_and_grad of the mean cross-entropy plus a plain SGD update, so it
measures what one optimizer step costs without the engine. Reports compile time and the
median of the timed steps after warm-up.

    python benchmarks/model_step_time.py [--steps 7] [--models wrn transformer]
"""
from __future__ import annotations

import argparse
import os
import statistics
import time

import jax
import optax

from sweep.config import ParamConfig, TransformerConfig, WRNConfig
from sweep.models import build_model


def make_step(model):
    def loss_fn(params, x, y):
        logits = model.apply({"params": params}, x, train=False)
        return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

    @jax.jit
    def step(params, x, y):
        loss, grads = jax.value_and_grad(loss_fn)(params, x, y)
        return jax.tree_util.tree_map(lambda p, g: p - 0.01 * g, params, grads), loss

    return step


def timed_steps(step, params, x, y, steps: int):
    """(compile + first step seconds, the timed steps' seconds, last loss) after one warm-up step."""
    t0 = time.perf_counter()
    params, loss = step(params, x, y)  # compile + first step
    loss.block_until_ready()
    compile_s = time.perf_counter() - t0
    params, loss = step(params, x, y)  # warm-up
    loss.block_until_ready()
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        params, loss = step(params, x, y)
        loss.block_until_ready()
        times.append(time.perf_counter() - t0)
    return compile_s, times, loss


def time_model(name: str, model, x, y, steps: int) -> None:
    params = model.init(jax.random.key(0, impl="rbg"), x)["params"]
    n_params = sum(leaf.size for leaf in jax.tree_util.tree_leaves(params))
    compile_s, times, loss = timed_steps(make_step(model), params, x, y, steps)
    print(f"{name}: {n_params:,} params, compile+first step {compile_s:.1f} s, "
          f"median step {statistics.median(times):.3f} s (min {min(times):.3f}, max {max(times):.3f}, "
          f"n={steps}), loss {float(loss):.3f}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=7)
    parser.add_argument("--models", nargs="+", default=["wrn", "transformer"], choices=["wrn", "transformer"])
    args = parser.parse_args()
    print(f"jax {jax.__version__} on {jax.devices()[0].device_kind}, {os.cpu_count()} CPUs visible, "
          f"load average {os.getloadavg()[0]:.2f}", flush=True)
    key_x, key_y = jax.random.split(jax.random.PRNGKey(0))
    sp = ParamConfig(name="sp")
    if "wrn" in args.models:
        x = jax.random.normal(key_x, (128, 32, 32, 3))
        y = jax.random.randint(key_y, (128,), 0, 10)
        time_model("WRN-16-4 batch 128, 32x32x3", build_model(WRNConfig(), sp, 10), x, y, args.steps)
    if "transformer" in args.models:
        x = jax.random.randint(key_x, (64, 64), 0, 4096)
        y = jax.random.randint(key_y, (64, 64), 0, 4096)
        time_model("LM-4-128 batch 64, context 64, vocab 4096", build_model(TransformerConfig(), sp, 4096),
                   x, y, args.steps)
    print(f"load average after {os.getloadavg()[0]:.2f}", flush=True)


if __name__ == "__main__":
    main()
