"""What a WRN or LM run costs inside the engine, against the bare training step (issue 19).

For each model, in a fresh process each (so peak memory is the model's own):
- bare: benchmarks/model_step_time.py's jitted value_and_grad + SGD step at the top level;
- engine: the cohort program `sweep run` executes (lax.scan chunk with lax.cond probes), one member,
  probes off in the timed chunk: compile seconds of the chunk program and seconds per step;
- probe: one probe step with sharpness on the 512-example measurement batch (micro-batched to the
  default memory budget): seconds per HVP;
- peak resident memory of the process (ru_maxrss).
Prints the ratio engine step / bare step (target: within 3x) measured in this one invocation.

    python benchmarks/engine_step_time.py [--models wrn16_1 wrn16_4 lm4_128] [--steps 4]

Data: random images (32x32x3, 10 classes, 2,048 train / 1,000 test) and random tokens (vocabulary
4,096, context 64), so no data set is needed; neither changes the compute of a step.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

MODELS = {
    "wrn16_1": ("WRN-16-1, batch 128", ["model=wrn", "model.widen=1", "batch_size=128"]),
    "wrn16_4": ("WRN-16-4, batch 128", ["model=wrn", "model.widen=4", "batch_size=128"]),
    "lm4_128": ("LM-4-128, batch 64, context 64, vocab 4096",
                ["model=transformer", "model.depth=4", "model.width=128", "batch_size=64", "loss=xent"]),
}


def _dataset(name: str):
    import numpy as np

    from sweep.data.base import Dataset

    rng = np.random.default_rng(0)
    if name.startswith("lm"):
        x = rng.integers(0, 4096, (2048 + 256, 65)).astype(np.int32)
        return Dataset("random tokens", x[:2048, :-1], x[:2048, 1:], x[2048:, :-1], x[2048:, 1:], 4096, task="lm")
    x = rng.integers(0, 256, (3048, 32, 32, 3)).astype(np.uint8)
    y = rng.integers(0, 10, 3048).astype(np.int32)
    ds = Dataset("random images", x[:2048], y[:2048], x[2048:], y[2048:], 10)
    ds.mean, ds.std = np.full(3, 127.5, np.float32), np.full(3, 73.9, np.float32)
    return ds


def measure(name: str, steps: int) -> dict:
    """One model, in this process: bare step, engine compile + step, probe per HVP, peak memory."""
    import jax
    import jax.numpy as jnp

    sys.path.insert(0, os.path.dirname(__file__))
    from model_step_time import make_step, timed_steps

    from sweep.cohort_memory import fit_to_budget
    from sweep.engine import CohortTrainer, plan_cohort
    from sweep.grid import compose
    from sweep.workload import build_workload

    _, overrides = MODELS[name]
    data = ["data=npz", "data.path=unused.npz"]
    cfg = compose([*overrides, *data, "lr=0.01", f"steps={4 * steps + 8}", "probe.every=1000",
                   "probe.precond_sharpness=false"])
    w = build_workload(cfg, _dataset(name))
    # bare step, same model and batch
    x, y = w.prepare(w.data.x_train[: int(cfg.batch_size)]), w.data.y_train[: int(cfg.batch_size)]
    params = w.model.init(jax.random.PRNGKey(0), x)["params"]
    _, times, _ = timed_steps(make_step(w.model), params, x, y, steps)
    bare_s = statistics.median(times)
    # engine: the cohort program
    _, microbatches = fit_to_budget(w, cfg, [cfg])  # as `sweep run` trains it (memory.train_mib)
    tr = CohortTrainer(w, plan_cohort([cfg]), chunk=steps, train_microbatches=microbatches)
    carry = tr.initial_state()
    chunk = tr.chunk_fn()
    off = jnp.zeros(tr.steps + 1, bool)
    t0 = time.perf_counter()
    carry, out = chunk(carry, jnp.asarray(1), w.data, tr.plan.hyper, off, off)
    jax.block_until_ready(out)
    first_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    carry, out = chunk(carry, jnp.asarray(1 + steps), w.data, tr.plan.hyper, off, off)
    jax.block_until_ready(out)
    engine_s = (time.perf_counter() - t0) / steps
    # one probe (sharpness): its extra time over a plain chunk, per HVP
    at = 1 + 2 * steps
    t0 = time.perf_counter()
    carry, out = chunk(carry, jnp.asarray(at), w.data, tr.plan.hyper, off.at[at].set(True), off)
    jax.block_until_ready(out)
    probe_s = time.perf_counter() - t0 - engine_s * steps
    hvps = int(out["hvps"][0][0])
    return {"model": MODELS[name][0], "bare_step_s": bare_s, "engine_step_s": engine_s,
            "ratio": engine_s / bare_s, "chunk_compile_s": tr.compile_s.get("chunk", float("nan")),
            "first_chunk_s": first_s, "probe_microbatch": tr.ctx.probe_microbatch, "train_microbatches": microbatches,
            "probe_batch": int(w.data.x_probe.shape[0]), "hvps": hvps,
            "probe_s_per_hvp": probe_s / max(hvps, 1),
            "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure(args.one, args.steps)), flush=True)
        return
    import jax

    print(f"jax {jax.__version__} on {jax.devices()[0].device_kind}, {os.cpu_count()} CPUs, "
          f"SWEEP_CONV={os.environ.get('SWEEP_CONV', 'auto')}, load average {os.getloadavg()[0]:.2f}", flush=True)
    print("| model | bare step | engine step (train micro-batches) | ratio | chunk compile | "
          "probe (batch / micro-batch) | s per HVP | peak RSS |")
    print("|---|---|---|---|---|---|---|---|")
    for name in args.models:
        out = subprocess.run([sys.executable, __file__, "--one", name, "--steps", str(args.steps)],
                             capture_output=True, text=True)
        if out.returncode != 0:
            print(f"| {MODELS[name][0]} | failed: {out.stderr.strip().splitlines()[-1:]} |", flush=True)
            continue
        r = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"| {r['model']} | {r['bare_step_s']:.3f} s | {r['engine_step_s']:.3f} s ({r['train_microbatches']}) | **{r['ratio']:.2f}x** | "
              f"{r['chunk_compile_s']:.1f} s | {r['probe_batch']} / {r['probe_microbatch']} | "
              f"{r['probe_s_per_hvp']:.2f} s ({r['hvps']} HVPs) | {r['peak_rss_gb']:.2f} GB |", flush=True)


if __name__ == "__main__":
    main()
