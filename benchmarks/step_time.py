"""Seconds per training step and per sharpness probe of one cohort, measured after compilation.

    python benchmarks/step_time.py [overrides...]      # default: FCN-4-512 on digits, batch 128, SGD
    python benchmarks/step_time.py --members 1 4 16 model=wrn data=npz data.path=...

Prints, per cohort size K: s/step (the whole cohort), s/step/member, and s/probe (vmapped Lanczos
from a cold start and warm-started from the previous probe's eigenvector, with the HVPs used; and
cold with the members probed one by one, probe.members=map).
"""
from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np

from sweep.engine import CohortTrainer, plan_cohort
from sweep.member_probe import probe_member
from sweep.member_step import train_member
from sweep.grid import compose
from sweep.runner import dataset_for
from sweep.workload import build_workload


def _time(fn, *args, repeat: int = 5) -> float:
    jax.block_until_ready(fn(*args))  # compile + warm up
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def measure(overrides: list[str], k: int, repeat: int) -> dict:
    cfgs = [compose(overrides + [f"seed={i}", f"lr={0.01 * (1 + i)}"]) for i in range(k)]
    w = build_workload(cfgs[0], dataset_for(cfgs[0]))
    tr = CohortTrainer(w, plan_cohort(cfgs))
    members = tr.init_members()
    h, d = tr.plan.hyper, w.data
    bs = tr.batch
    x, y = d.x_train[:bs], d.y_train[:bs]

    ctx = tr.ctx.bind(tr.consts)  # the constants as Python values (the engine passes them as data)
    step = jax.jit(jax.vmap(lambda m, hh, x, y, s: train_member(ctx, m, hh, x, y, s), in_axes=(0, 0, None, None, None)))
    s_step = _time(lambda m: step(m, h, x, y, jnp.asarray(0, jnp.int32))[1], members, repeat=repeat)

    probe = jax.jit(jax.vmap(lambda *a: probe_member(ctx, *a), in_axes=(0, 0, None, None, None, None)))
    no_eval, step0 = jnp.asarray(False), jnp.asarray(5, jnp.int32)
    cold = lambda m: probe(m, h, d, None, no_eval, step0)  # noqa: E731
    s_cold = _time(lambda m: cold(m)[0].sharpness, members, repeat=repeat)
    out, vec, _ = cold(members)
    # a realistic warm start: the eigenvector of the previous probe, 10 training steps earlier
    later = members
    for i in range(10):
        later = step(later, h, d.x_train[i * bs % len(d.x_train):][:bs], d.y_train[i * bs % len(d.x_train):][:bs],
                     jnp.asarray(i, jnp.int32))[0]
    warm_members = later._replace(eigvec=vec)
    s_warm = _time(lambda m: cold(m)[0].sharpness, warm_members, repeat=repeat)
    warm_out, _, _ = cold(warm_members)
    # probe.members=map: one member after another (the CPU default)
    mapped = jax.jit(lambda ms: jax.lax.map(lambda a: probe_member(ctx, a[0], a[1], d, None, no_eval, step0),
                                            (ms, h))[0].sharpness)
    s_map = _time(mapped, members, repeat=repeat)
    return {"k": k, "s_step": s_step, "s_cold": s_cold, "hvps_cold": int(np.max(out.hvps)),
            "s_warm": s_warm, "hvps_warm": int(np.max(warm_out.hvps)), "probe_batch": int(d.x_probe.shape[0]),
            "s_map": s_map}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--members", type=int, nargs="+", default=[1])
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("overrides", nargs="*")
    args = ap.parse_args()
    overrides = args.overrides or ["probe.precond_sharpness=false"]
    print(f"device: {jax.devices()[0]}; overrides: {overrides}")
    for k in args.members:
        r = measure(overrides, k, args.repeat)
        print(f"K={k:3d}: {r['s_step'] * 1e3:8.2f} ms/step ({r['s_step'] / k * 1e3:7.2f} ms/step/member); "
              f"probe (batch {r['probe_batch']}): cold {r['s_cold'] * 1e3:8.1f} ms ({r['hvps_cold']} HVPs), "
              f"warm {r['s_warm'] * 1e3:8.1f} ms ({r['hvps_warm']} HVPs); "
              f"cold, members one by one (probe.members=map): {r['s_map'] * 1e3:8.1f} ms")


if __name__ == "__main__":
    main()
