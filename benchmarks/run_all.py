"""The speed suite of issue 12: our cohort engine against the per-run workflow, in one run.

    python benchmarks/run_all.py --quick      # CPU size: the 8-run grid + compile + probe checks
    python benchmarks/run_all.py              # also the 48-run, 1,000-step grid
    python benchmarks/run_all.py --only compile probe    # parts: grid8 grid48 compile probe probe_lm
    python benchmarks/run_all.py --quick --lanczos-stop residual gap   # ours once per stopping rule

Every measurement runs in a fresh Python process (its own jax, its own compilation cache), one
after another, so the numbers of one invocation are comparable; ratios are taken inside it.

Workload (issue 12): FCN-4-512 on the embedded digits data, SGD, MSE, batch 128, lr in units of
1/lambda0 (lr x lambda0 = 1, 2, 4, 8) x warmup (1, 64), 300 steps, sharpness every 10 steps on a
512-example measurement batch (the fixed probe batch of the sweep), test evaluation at each probe.

* ours: what `sweep run` executes for a cohort (runner.initial_sharpness once per lambda0 group,
  plan_cohort, CohortTrainer.run), cohorts of at most cohort.max_size members, persistent
  compilation cache pointed at an EMPTY folder (a cold first compile).
* baseline ("per-run workflow"), reimplemented here with the same model, initialization, data
  order, loss, probe batch and float32 precision: one fresh jit per run (no persistent cache), a
  Python step loop with a host sync each step (the loss is read to check for NaN), lambda0
  recomputed for every run (the same Lanczos as ours), and each probe = probe-batch loss/accuracy/
  gradient norm + 20 power-iteration HVPs (warm-started from the previous probe's vector) + test
  evaluation. A run stops at its first NaN/inf loss (ours freezes such a member the same way).
* split of ours: compile (AOT lower + compile of the cohort program, from the engine's timings),
  steps (the same compiled program timed on a chunk with no probe step, times the iterations run),
  probes (the rest of the execution time), lambda0.
* compile: one process trains an SP and a muP cohort of identical shapes; we count traces of the
  cohort program (sweep.engine.PROGRAM_TRACES) and XLA backend compilations (jax.monitoring), then
  a second process repeats it against the now-warm persistent cache.
* probe: HVPs per probe (mean, median, step-0 cold start excluded) from the traces, and the
  compiled probe program's temporary memory (XLA memory analysis) at the 512-example batch.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
COMMON = ["model=fcn", "model.depth=4", "model.width=512", "data=digits", "optimizer=sgd", "loss=mse",
          "batch_size=128", "probe.every=10", "probe.batch_size=512", "probe.precond_sharpness=false",
          "lr_unit=sharpness"]
GRIDS = {
    "grid8": {"lrs": [1, 2, 4, 8], "warmups": [1, 64], "steps": 300},
    "grid48": {"lrs": [1, 2, 4, 8, 16, 32], "warmups": [1, 8, 32, 64, 128, 256, 512, 1000], "steps": 1000},
}


# ----------------------------------------------------------------------------- shared helpers
def _configs(grid: dict, extra: list[str]):
    from omegaconf import OmegaConf

    from sweep.grid import compose

    base = compose(COMMON + [f"steps={grid['steps']}"] + extra)
    cfgs = []
    for lr in grid["lrs"]:
        for w in grid["warmups"]:
            c = OmegaConf.create(OmegaConf.to_container(base, resolve=True))
            c.lr, c.warmup = float(lr), int(w)
            cfgs.append(c)
    return cfgs


def _device() -> str:
    import jax

    d = jax.devices()[0]
    return f"{d.platform}:{getattr(d, 'device_kind', '?')} x{jax.device_count()} (jax {jax.__version__})"


class CompileCounter:
    """XLA backend compilations seen through jax.monitoring (count and seconds)."""

    def __init__(self) -> None:
        import jax

        self.n, self.secs, self.big = 0, 0.0, 0
        self.cache_hits = 0

        def on_duration(event: str, secs: float, **_: object) -> None:
            if event == "/jax/core/compile/backend_compile_duration":
                self.n += 1
                self.secs += secs
                self.big += secs > 1.0

        def on_event(event: str, **_: object) -> None:
            if event == "/jax/compilation_cache/cache_hits":
                self.cache_hits += 1

        jax.monitoring.register_event_duration_secs_listener(on_duration)
        jax.monitoring.register_event_listener(on_event)


# ----------------------------------------------------------------------------- ours
def worker_ours(grid_name: str, extra: list[str]) -> dict:
    import jax
    import numpy as np

    from sweep import engine
    from sweep.engine import CohortTrainer, plan_cohort
    from sweep.runner import dataset_for, initial_sharpness
    from sweep.workload import build_workload

    stop = os.environ.get("SWEEP_BENCH_LANCZOS_STOP", "residual")
    extra = [*extra, f"probe.lanczos_stop={stop}"]  # the probes' rule; lambda0 (cold) keeps residual
    counter = CompileCounter()
    cfgs = _configs(GRIDS[grid_name], extra)
    dataset = dataset_for(cfgs[0])
    t0 = time.perf_counter()
    workload = build_workload(cfgs[0], dataset)
    lam0 = initial_sharpness(workload, cfgs, None)
    t_lam = time.perf_counter() - t0
    max_size = int(cfgs[0].cohort.max_size)
    split = {"compile_s": 0.0, "exec_s": 0.0, "steps_s": 0.0, "iterations": 0}
    hvps, hvps_total, outcomes, trainers = [], 0, [], []
    for lo in range(0, len(cfgs), max_size):
        part = cfgs[lo: lo + max_size]
        lr = np.asarray([float(c.lr) for c in part]) / lam0[lo: lo + max_size]
        lr0 = np.asarray([float(c.lr_init) for c in part]) / lam0[lo: lo + max_size]
        trainer = CohortTrainer(workload, plan_cohort(part, lrs=lr, lr_inits=lr0))
        res = trainer.run()
        trainers.append(trainer)
        comp = float(res.timings.get("compile_s", res.timings["first_chunk_s"]))
        split["compile_s"] += comp
        split["exec_s"] += res.timings["train_s"] - comp
        split["iterations"] += int(res.timings["steps"]) + 1
        for tr in res.traces:
            h = tr["hvps"].to_numpy()
            hvps_total += int(h.sum())
            hvps.extend(h[1:].tolist())
        outcomes += [d is None for d in res.divergence_step]
    total = time.perf_counter() - t0
    # steps alone: the same compiled program on one chunk with no probe step (after the timed run)
    tr = trainers[0]
    fn = tr.chunk_fn()
    none = jax.numpy.zeros(tr.steps + 1, bool)
    args = (tr.w.data, tr.plan.hyper, none, none) + tuple(getattr(tr, "_program_extra_args", lambda: ())())
    carry = tr.initial_state()
    carry, out = fn(carry, jax.numpy.asarray(0), *args)
    jax.block_until_ready(out)
    times = []
    for rep in range(2):
        t1 = time.perf_counter()
        carry, out = fn(carry, jax.numpy.asarray(0), *args)
        jax.block_until_ready(out)
        times.append(time.perf_counter() - t1)
    per_iter_k = min(times) / tr.chunk  # one iteration of a cohort of tr.k members
    split["steps_s"] = sum(per_iter_k * t.k / tr.k for t in trainers) * (GRIDS[grid_name]["steps"] + 1)
    return {"total_s": total, "lambda0_s": t_lam, **split,
            "probe_s": max(split["exec_s"] - split["steps_s"], 0.0),
            "hvps_total": hvps_total, "hvps_per_probe_mean": float(np.mean(hvps)) if hvps else 0.0,
            "hvps_per_probe_median": float(np.median(hvps)) if hvps else 0.0,
            "probes": len(hvps), "converged_or_failed": int(sum(outcomes)), "runs": len(cfgs),
            "cohorts": len(trainers), "program_traces": dict(getattr(engine, "PROGRAM_TRACES", {})),
            "backend_compiles": counter.n, "backend_compile_s": counter.secs, "device": _device(),
            "lanczos_stop": stop}


# ----------------------------------------------------------------------------- baseline
def _baseline_sample(grid: dict, cfgs: list, n: int) -> list:
    """All runs, or n of them along a diagonal of the lr x warmup grid (run i*(W+1) mod the grid:
    every lr once, warmups spread), so that early-diverging runs are sampled in proportion; the
    first n runs would all be the smallest, never-diverging lr and overstate the baseline."""
    if not n or n >= len(cfgs):
        return list(cfgs)
    stride = len(grid["warmups"]) + 1
    return [cfgs[(i * stride) % len(cfgs)] for i in range(n)]


def worker_baseline(grid_name: str, extra: list[str], max_runs: int) -> dict:
    import jax
    import jax.numpy as jnp
    import numpy as np
    from jax.flatten_util import ravel_pytree

    from sweep import curvature, optim
    from sweep.engine import CohortTrainer, plan_cohort
    from sweep.runner import dataset_for
    from sweep.workload import build_workload, eval_batch_size

    counter = CompileCounter()
    grid = GRIDS[grid_name]
    cfgs = _baseline_sample(grid, _configs(grid, extra), max_runs)
    dataset = dataset_for(cfgs[0])
    t0 = time.perf_counter()
    probe_s = steps_s = lam_s = 0.0
    hvps_total, diverged = 0, 0
    for cfg in cfgs:
        w = build_workload(cfg, dataset)  # data to the device, per run (a fresh script would do it)
        d = w.data
        steps, every, bs = int(cfg.steps), int(cfg.probe.every), int(cfg.batch_size)
        n = int(d.x_train.shape[0])
        # the same initialization as the engine (one member), then everything else by hand
        tl = time.perf_counter()
        tr = CohortTrainer(w, plan_cohort([cfg], lrs=[1.0], lr_inits=[0.0]))
        m = jax.tree.map(lambda a: a[0], tr.init_members())
        params, v = m.params, m.eigvec

        def loss_flat_fn(p, x, y):
            flat, unravel = ravel_pytree(p)
            xin = w.prepare(x)
            return (lambda f: w.loss_and_accuracy(unravel(f), xin, y)[0]), flat

        @jax.jit
        def lambda0_fn(p, v0):  # lambda0 for this run: the engine's Lanczos, recomputed per run
            f, flat = loss_flat_fn(p, d.x_probe, d.y_probe)
            return curvature.sharpness(f, flat, v0, max(int(cfg.probe.lanczos_iters), 30),
                                       float(cfg.probe.lanczos_tol)).value

        lam0 = float(lambda0_fn(params, v))
        lam_s += time.perf_counter() - tl
        lr = float(cfg.lr) / lam0
        h = optim.Hyper(*[jnp.asarray(x, jnp.float32) for x in (
            lr, 0.0, float(cfg.warmup), 0.0, 0.9, 0.999, 1e-8, 1.0, 0.1)])
        tx = optim.direction("sgd", h, None)
        opt_state = tx.init(params)

        @jax.jit
        def train_step(p, s, x, y, t):
            (loss, acc), g = jax.value_and_grad(w.loss_and_accuracy, has_aux=True)(p, x, y, True)
            dvec, s = tx.update(g, s, p)
            lr_t = optim.learning_rate(t, h, steps, False)
            return jax.tree.map(lambda a, b: a - lr_t * b, p, dvec), s, loss

        @jax.jit
        def probe_fn(p, v):
            (loss, acc), g = jax.value_and_grad(w.loss_and_accuracy, has_aux=True)(p, d.x_probe, d.y_probe)
            gnorm = jnp.sqrt(sum(jnp.sum(jnp.square(a)) for a in jax.tree.leaves(g)))
            f, flat = loss_flat_fn(p, d.x_probe, d.y_probe)

            def power(_, uv):
                hv = curvature.hvp(f, flat, uv[1])
                return jnp.vdot(uv[1], hv), hv / jnp.linalg.norm(hv)

            lam, v = jax.lax.fori_loop(0, 20, power, (jnp.asarray(0.0, flat.dtype), v / jnp.linalg.norm(v)))
            tl_, ta_ = w.evaluate(p, d.x_test, d.y_test, eval_batch_size(int(d.x_test.shape[0])))
            return loss, acc, gnorm, lam, v, tl_, ta_

        final_fn = jax.jit(lambda p: (w.evaluate(p, d.x_final, d.y_final, eval_batch_size(int(d.x_final.shape[0]))),
                                      w.evaluate(p, d.x_test, d.y_test, eval_batch_size(int(d.x_test.shape[0])))))
        perm = None
        for t in range(steps + 1):
            if t % every == 0 or t == steps:
                tp = time.perf_counter()
                out = probe_fn(params, v)
                v = out[4]
                float(out[3])  # host sync: the probe row is written
                hvps_total += 20
                probe_s += time.perf_counter() - tp
            if t == steps:
                break
            ts = time.perf_counter()
            pos, epoch = t % (n // bs), t // (n // bs)
            if pos == 0:
                perm = jax.random.permutation(jax.random.fold_in(jax.random.PRNGKey(int(cfg.data_seed)), epoch), n)
            idx = perm[pos * bs:(pos + 1) * bs]
            params, opt_state, loss = train_step(params, opt_state, d.x_train[idx], d.y_train[idx],
                                                 jnp.asarray(t + 1, jnp.float32))
            ok = np.isfinite(float(loss))  # host sync every step
            steps_s += time.perf_counter() - ts
            if not ok:
                diverged += 1
                break
        jax.block_until_ready(final_fn(params))
    total = time.perf_counter() - t0
    return {"total_s": total, "runs": len(cfgs), "runs_in_grid": len(_configs(grid, extra)) if max_runs else len(cfgs),
            "lambda0_s": lam_s, "probe_s": probe_s, "steps_s": steps_s, "hvps_total": hvps_total,
            "diverged": diverged, "backend_compiles": counter.n, "backend_compile_s": counter.secs,
            "device": _device()}


# ----------------------------------------------------------------------------- compile
def worker_compile(extra: list[str]) -> dict:
    """An SP and a muP cohort of identical shapes (4 members each, 20 steps) in one process."""
    import numpy as np

    from sweep import engine
    from sweep.engine import CohortTrainer, plan_cohort
    from sweep.runner import dataset_for
    from sweep.workload import build_workload

    counter = CompileCounter()
    out = {"device": _device(), "cohorts": []}
    for param in ("sp", "mup"):
        cfgs = _configs({"lrs": [0.5, 1.0], "warmups": [1, 8], "steps": 20}, [f"param={param}", *extra])
        for c in cfgs:
            c.lr_unit = "absolute"
            c.lr = float(c.lr) * (0.05 if param == "sp" else 5.0)
        w = build_workload(cfgs[0], dataset_for(cfgs[0]))
        before = (counter.n, counter.secs, sum(getattr(engine, "PROGRAM_TRACES", {}).values()))
        t0 = time.perf_counter()
        res = CohortTrainer(w, plan_cohort(cfgs)).run()
        out["cohorts"].append({
            "param": param, "wall_s": time.perf_counter() - t0,
            "compile_s": float(res.timings.get("compile_s", res.timings["first_chunk_s"])),
            "compile_chunk_s": float(res.timings.get("compile_chunk_s", float("nan"))),
            "backend_compiles": counter.n - before[0], "backend_compile_s": counter.secs - before[1],
            "program_traces": sum(getattr(engine, "PROGRAM_TRACES", {}).values()) - before[2],
            "final_sharpness": float(np.nanmean([t["sharpness"].iloc[-1] for t in res.traces]))})
    out["program_traces"] = dict(getattr(engine, "PROGRAM_TRACES", {}))
    out["same_shapes"] = True
    out["backend_compiles"], out["backend_compile_s"], out["cache_hits"] = counter.n, counter.secs, counter.cache_hits
    return out


# ----------------------------------------------------------------------------- probe
def _probe_memory(cfgs: list) -> dict:
    """XLA's memory analysis of the compiled probe program of one member (nothing runs)."""
    import jax
    import jax.numpy as jnp

    from sweep.engine import CohortTrainer, plan_cohort
    from sweep.member_probe import probe_member
    from sweep.runner import dataset_for
    from sweep.workload import build_workload

    w = build_workload(cfgs[0], dataset_for(cfgs[0]))
    tr = CohortTrainer(w, plan_cohort(cfgs))
    m = jax.tree.map(lambda a: a[0], tr.init_members())
    h = jax.tree.map(lambda a: a[0], tr.plan.hyper)
    ctx = tr.ctx.bind(tr.consts)
    nu = jax.tree.map(jnp.zeros_like, m.params) if ctx.do_precond else None
    fn = jax.jit(lambda m, h, d, nu: probe_member(ctx, m, h, d, nu, jnp.asarray(True), jnp.asarray(5)))
    t0 = time.perf_counter()
    compiled = fn.lower(m, h, w.data, nu).compile()
    secs = time.perf_counter() - t0
    mem = compiled.memory_analysis()
    res = {"probe_batch": int(w.data.x_probe.shape[0]), "microbatch": int(ctx.probe_microbatch),
           "compile_s": secs}
    if mem is not None:
        res.update(temp_mb=mem.temp_size_in_bytes / 2**20, argument_mb=mem.argument_size_in_bytes / 2**20)
    return res


LM = ["model=transformer", "model.depth=4", "model.width=128", "data=wikitext2", "loss=xent", "optimizer=adam",
      "lr_unit=absolute", "probe.batch_size=512", "steps=10"]


def worker_probe(extra: list[str], budgets: list[int], lm_root: str) -> dict:
    """Probe-program memory at the 512-example batch, whole and micro-batched (memory.budget_mib);
    with lm_root also LM-4-128 (WikiText-2 under lm_root, 512 sequences of 64 tokens, Adam)."""
    from omegaconf import open_dict

    from sweep.grid import compose

    out = {"device": _device(), "fcn": [], "lm": []}
    if lm_root and not Path(lm_root, "wiki.train.raw").exists():
        # memory of a compiled program does not depend on the text: with only some of the three
        # WikiText-2 files at hand (the offline copy has the test split), stand one in for all
        have = [f for f in ("wiki.train.raw", "wiki.valid.raw", "wiki.test.raw") if Path(lm_root, f).exists()]
        if not have:
            raise SystemExit(f"no WikiText-2 raw file in {lm_root}")
        root = Path(tempfile.mkdtemp(prefix="wikitext-"))
        for f in ("wiki.train.raw", "wiki.valid.raw", "wiki.test.raw"):
            (root / f).symlink_to(Path(lm_root, have[0]).resolve())
        lm_root, out["lm_text"] = str(root), f"{have[0]} as every split"
    for budget in budgets:
        cfgs = _configs({"lrs": [1], "warmups": [1], "steps": 10}, extra)
        with open_dict(cfgs[0]):
            cfgs[0].lr_unit, cfgs[0].memory.budget_mib = "absolute", budget / 2**20  # 0: whole batch
        out["fcn"].append({"budget": budget, **_probe_memory(cfgs)})
        if lm_root:
            cfg = compose(LM + [f"data.root={lm_root}", f"memory.budget_mib={budget / 2**20}", *extra])
            out["lm"].append({"budget": budget, **_probe_memory([cfg])})
    return out


# ----------------------------------------------------------------------------- driver
def _spawn(args: list[str], env: dict) -> dict:
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
        out = f.name
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", *args, "--json-out", out]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout[-3000:] + proc.stderr[-6000:])
        raise SystemExit(f"worker {args} failed ({proc.returncode})")
    res = json.loads(Path(out).read_text())
    os.unlink(out)
    res["process_s"] = time.perf_counter() - t0
    return res


def _row(name: str, ours: dict, base: dict) -> str:
    ratio = base["total_s"] / ours["total_s"]
    return (f"{name:8s} | {ours['runs']:4d} | {ours['total_s']:8.1f} | {base['total_s']:9.1f}"
            f"{'*' if base.get('extrapolated') else ' '} | {ratio:6.2f}x | {ours['compile_s']:7.1f} | "
            f"{ours['probe_s']:7.1f} | {ours['steps_s']:7.1f} | {ours['lambda0_s']:6.1f} | "
            f"{ours['hvps_per_probe_mean']:5.2f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="CPU size: skip the 48-run grid")
    ap.add_argument("--only", nargs="+", choices=["grid8", "grid48", "compile", "probe", "probe_lm"], default=None)
    ap.add_argument("--microbatch-mib", type=float, nargs="*", default=[16.0],
                    help="probe part: also compile the probe with memory.budget_mib = these MiB")
    ap.add_argument("--lm-root", default="/work/shared/data/wikitext-2-raw",
                    help="probe_lm part: folder with WikiText-2 raw (LM-4-128 probe memory)")
    ap.add_argument("--baseline-runs", type=int, default=0,
                    help="time N runs of the baseline (a diagonal of the lr x warmup grid) and scale to the "
                         "grid (marked *)")
    ap.add_argument("--lanczos-stop", nargs="+", choices=["residual", "gap"], default=["residual"],
                    help="grid parts: time ours once per Lanczos stopping rule (probe.lanczos_stop; residual is "
                         "the default); the first one is the table's main row")
    ap.add_argument("--worker", nargs="+", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--json-out", default=None, help=argparse.SUPPRESS)
    ap.add_argument("overrides", nargs="*", help="extra config overrides for every part")
    args = ap.parse_args()

    if args.worker:
        kind = args.worker[0]
        if kind == "ours":
            res = worker_ours(args.worker[1], args.overrides)
        elif kind == "baseline":
            res = worker_baseline(args.worker[1], args.overrides, int(args.worker[2]))
        elif kind == "compile":
            res = worker_compile(args.overrides)
        else:
            res = worker_probe(args.overrides, [int(b) for b in args.worker[1].split(",")], args.worker[2])
        Path(args.json_out).write_text(json.dumps(res))
        return

    parts = args.only or (["grid8", "compile", "probe"] + ([] if args.quick else ["grid48"]))
    tmp = tempfile.mkdtemp(prefix="sweep-bench-")
    env_cold = {**os.environ, "SWEEP_JAX_CACHE": os.path.join(tmp, "cache")}
    env_off = {**os.environ, "SWEEP_JAX_CACHE": "off"}
    results: dict = {}
    t_all = time.perf_counter()
    for grid in [p for p in parts if p.startswith("grid")]:
        cache = {**os.environ, "SWEEP_JAX_CACHE": os.path.join(tmp, f"cache-{grid}")}
        by_stop = {}
        for stop in args.lanczos_stop:
            env = {**os.environ, "SWEEP_JAX_CACHE": os.path.join(tmp, f"cache-{grid}-{stop}"),
                   "SWEEP_BENCH_LANCZOS_STOP": stop}
            by_stop[stop] = _spawn(["ours", grid, *args.overrides], env)
            print(f"[{grid}] ours (lanczos stop={stop}) {by_stop[stop]['total_s']:.1f} s", flush=True)
        ours = by_stop[args.lanczos_stop[0]]
        base = _spawn(["baseline", grid, str(args.baseline_runs), *args.overrides], env_off)
        if base["runs"] < base["runs_in_grid"]:
            scale = base["runs_in_grid"] / base["runs"]
            base = {**base, "total_s": base["total_s"] * scale, "extrapolated": True}
        print(f"[{grid}] baseline {base['total_s']:.1f} s", flush=True)
        results[grid] = {"ours": ours, "baseline": base, "ours_by_stop": by_stop}
    if "compile" in parts:
        cold = _spawn(["compile", *args.overrides], env_cold)
        warm = _spawn(["compile", *args.overrides], env_cold)
        results["compile"] = {"cold": cold, "warm": warm}
    if "probe" in parts or "probe_lm" in parts:
        budgets = ",".join(str(b) for b in (0, *args.microbatch_mib)) if args.microbatch_mib else "0"
        budgets = ",".join(str(int(float(b) * 2**20)) for b in budgets.split(","))
        results["probe"] = _spawn(["probe", budgets, args.lm_root if "probe_lm" in parts else "",
                                   *args.overrides], env_cold)

    import jax

    dev = next((r.get("device") for r in [*(v.get("ours", {}) for v in results.values() if isinstance(v, dict)),
                                          results.get("probe", {})] if r.get("device")), None)
    print()
    print(f"device: {dev or _device()}   (this process: {jax.devices()[0].platform}); overrides: {args.overrides}")
    print(f"workload: FCN-4-512, digits, SGD, MSE, batch 128, probe every 10 steps on 512 examples, "
          f"lr x lambda0 x warmup grid; total benchmark wall {time.perf_counter() - t_all:.0f} s")
    if any(k.startswith("grid") for k in results):
        print()
        print("grid     | runs |  ours s | baseline s |  ratio | compile |  probes |   steps | lambda0 | HVP/probe")
        print("-" * 101)
        for grid in ("grid8", "grid48"):
            if grid in results:
                for stop, o in results[grid]["ours_by_stop"].items():
                    label = grid if len(results[grid]["ours_by_stop"]) == 1 else f"{grid}:{stop[:3]}"
                    print(_row(label, o, results[grid]["baseline"]))
        for grid in ("grid8", "grid48"):
            if grid in results:
                o, b = results[grid]["ours"], results[grid]["baseline"]
                for stop, so in results[grid]["ours_by_stop"].items():
                    print(f"  {grid} ours, lanczos stop={stop}: {so['hvps_per_probe_mean']:.2f} HVPs per warm probe "
                          f"(median {so['hvps_per_probe_median']:.0f}), {so['hvps_total']} HVPs, probes "
                          f"{so['probe_s']:.1f} s = {100 * so['probe_s'] / so['total_s']:.0f}% of {so['total_s']:.1f} s")
                print(f"  {grid}: ours {o['cohorts']} cohort(s), {o['probes']} warm probes, median "
                      f"{o['hvps_per_probe_median']:.0f} HVPs, {o['hvps_total']} HVPs in all, probes "
                      f"{100 * o['probe_s'] / o['total_s']:.0f}% of ours; {o['backend_compiles']} XLA compiles "
                      f"({o['backend_compile_s']:.1f} s), cohort-program traces {o['program_traces']}; "
                      f"baseline: {b['runs']} runs timed, compile+lambda0 {b['lambda0_s']:.1f} s, probes "
                      f"{b['probe_s']:.1f} s ({b['hvps_total']} HVPs), steps {b['steps_s']:.1f} s, "
                      f"{b['backend_compiles']} XLA compiles")
        if any(results[g]["baseline"].get("extrapolated") for g in results if g.startswith("grid")):
            print("  * baseline timed on --baseline-runs runs and scaled to the grid's run count")
    if "compile" in results:
        print()
        print("compile (SP and muP cohorts of identical shapes, 4 members, 20 steps, one process each):")
        for label in ("cold", "warm"):
            r = results["compile"][label]
            cs = "; ".join(f"{c['param']}: compile {c['compile_s']:.2f} s (cohort program "
                           f"{c['compile_chunk_s']:.2f} s), "
                           f"{c['program_traces']} program trace(s), {c['backend_compiles']} XLA compiles "
                           f"({c['backend_compile_s']:.2f} s)" for c in r["cohorts"])
            print(f"  {label:4s} cache: {cs}; persistent-cache hits {r['cache_hits']}; "
                  f"traces per program {r['program_traces']}")
    if "probe" in results:
        print()
        print("probe program memory (one member, XLA memory analysis of the compiled program; budget = "
              "memory.budget_mib, 0 = whole batch):")
        for model in ("fcn", "lm"):
            for r in results["probe"][model]:
                mem = (f"temp {r['temp_mb']:8.1f} MiB" if "temp_mb" in r else "memory analysis unavailable")
                print(f"  {'FCN-4-512' if model == 'fcn' else 'LM-4-128':9s} batch {r['probe_batch']:4d}, budget "
                      f"{r['budget'] / 2**20:6.1f} MiB -> micro-batch {r['microbatch']:4d}: {mem} "
                      f"(compile {r['compile_s']:.1f} s)")
    Path(tmp, "results.json").write_text(json.dumps(results, indent=1))
    print(f"\nraw numbers: {Path(tmp, 'results.json')}")


if __name__ == "__main__":
    main()
