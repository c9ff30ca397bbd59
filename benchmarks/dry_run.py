"""How long `sweep run ... --dry-run` takes for big grids, end to end (process start, imports,
expansion, run ids, cohorts), against issue 10's targets: 1,000 cells < 5 s, 10,000 cells < 30 s.

    python benchmarks/dry_run.py            # both sizes, best of 2
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time

GRIDS = {  # cells: overrides (lr axis of 2^x with a fine step, times warmups, times parameterizations)
    1000: ["lr=pow2(-10,10,0.1)", "warmup=1,2,4,8,16"],  # 201 x 5 = 1,005 cells
    10000: ["lr=pow2(-10,10,0.02)", "warmup=1,2,4,8,16", "param=sp,mup"],  # 1,001 x 5 x 2 = 10,010 cells
}
TARGET_S = {1000: 5.0, 10000: 30.0}


def time_dry_run(overrides: list[str], repeats: int) -> tuple[float, str]:
    best, head = float("inf"), ""
    with tempfile.TemporaryDirectory() as cwd:
        for _ in range(repeats):
            t0 = time.perf_counter()
            res = subprocess.run([sys.executable, "-m", "sweep.cli", "run", *overrides, "--dry-run"],
                                 cwd=cwd, capture_output=True, text=True, check=True)
            best = min(best, time.perf_counter() - t0)
            head = res.stdout.splitlines()[0]
    return best, head


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    print(f"{'cells':>6}  {'dry run (s)':>11}  {'target (s)':>10}  {'ratio':>6}  plan")
    for cells, overrides in GRIDS.items():
        seconds, head = time_dry_run(overrides, args.repeats)
        print(f"{cells:>6}  {seconds:11.2f}  {TARGET_S[cells]:10.0f}  {seconds / TARGET_S[cells]:6.2f}  {head}")


if __name__ == "__main__":
    main()
