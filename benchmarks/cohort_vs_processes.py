"""Wall time of a 16-run FCN grid on digits: one `sweep run` (cohorts) vs 16 separate `sweep run`
processes, one per run (how the authors' scripts work), measured in one session.

    python benchmarks/cohort_vs_processes.py [--steps 200] [--width 512] [extra overrides...]

The separate processes run with the persistent compilation cache off (each compiles its own
program, like a fresh script per run); the cohort run also starts with an empty cache.
"""
from __future__ import annotations

import argparse
import itertools
import os
import subprocess
import sys
import tempfile
import time

LRS = ["0.01", "0.02", "0.04", "0.08"]
WARMUPS = ["1", "16", "64", "256"]


def run(cmd: list[str], env: dict) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--width", type=int, default=512)
    ap.add_argument("overrides", nargs="*")
    args = ap.parse_args()
    common = [f"steps={args.steps}", f"model.width={args.width}", "probe.every=50", *args.overrides]
    sweep = [sys.executable, "-m", "sweep.cli", "run"]
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "SWEEP_JAX_CACHE": os.path.join(tmp, "jaxcache")}
        t_cohort = run(sweep + common + [f"lr={','.join(LRS)}", f"warmup={','.join(WARMUPS)}",
                                         f"results_dir={tmp}/a", "cohort.max_size=16"], env)
        env_off = {**os.environ, "SWEEP_JAX_CACHE": "off"}
        t_sep = sum(run(sweep + common + [f"lr={lr}", f"warmup={w}", f"results_dir={tmp}/b"], env_off)
                    for lr, w in itertools.product(LRS, WARMUPS))
    print(f"16-run grid ({' '.join(common)}): one cohort {t_cohort:.1f} s; "
          f"16 separate processes {t_sep:.1f} s; ratio {t_sep / t_cohort:.1f}x")


if __name__ == "__main__":
    main()
