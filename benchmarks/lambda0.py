"""Initial sharpness lambda0 of FCN-4-512 (MSE) in SP and muP, on digits and optionally an .npz.

    python benchmarks/lambda0.py [--npz PATH] [--subset 5000] [--probe 5000] [--seeds 0 1 2] [overrides...]

Extra overrides switch conventions, e.g. `mse_reduction=mean param.truncation=jax
data.standardize=per_channel` (the defaults before issue 8).

The paper (Appendix D.5) reports lambda0 ~ 50 (SP) and ~ 0.05 (muP) for FCN-4-512 on a 5k subset
of CIFAR-10 with MSE.
"""
from __future__ import annotations

import argparse
import time

import numpy as np

from sweep.engine import CohortTrainer, plan_cohort
from sweep.grid import compose
from sweep.runner import dataset_for
from sweep.workload import build_workload


def lambda0(overrides: list[str], seeds: list[int]) -> tuple[np.ndarray, float]:
    cfgs = [compose(overrides + [f"seed={s}"]) for s in seeds]
    w = build_workload(cfgs[0], dataset_for(cfgs[0]))
    t0 = time.perf_counter()
    values = CohortTrainer(w, plan_cohort(cfgs)).initial_sharpness()
    return values, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--npz", default=None)
    ap.add_argument("--subset", type=int, default=5000)
    ap.add_argument("--probe", type=int, default=2048, help="measurement batch size")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--no-digits", action="store_true")
    ap.add_argument("overrides", nargs="*", help="extra config overrides, e.g. mse_reduction=mean param.truncation=jax")
    args = ap.parse_args()
    datasets = [] if args.no_digits else [("digits", ["data=digits"])]
    if args.npz:
        datasets.append((args.npz, ["data=npz", f"data.path={args.npz}", f"data.subset={args.subset}"]))
    for name, data in datasets:
        for param in ("sp", "mup"):
            ov = data + [f"param={param}", "loss=mse", "model.depth=4", "model.width=512",
                         f"probe.batch_size={args.probe}", "probe.lanczos_iters=40", "probe.lanczos_tol=1e-7",
                         *args.overrides]
            vals, secs = lambda0(ov, args.seeds)
            print(f"{name:40s} {param:4s} lambda0 = {np.mean(vals):.4g} +- {np.std(vals):.2g} "
                  f"(seeds {args.seeds}: {', '.join(f'{v:.4g}' for v in vals)}; {secs:.1f} s incl. compile)")


if __name__ == "__main__":
    main()
