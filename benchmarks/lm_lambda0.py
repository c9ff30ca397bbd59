"""Initial sharpness of the LM-4-128 Transformer (SP, cross-entropy) by norm variant on WikiText-2.

    python benchmarks/lm_lambda0.py --root DIR [--probe 128] [--seeds 0 1 2]

DIR holds wiki.train.raw and wiki.test.raw (WikiText-2 raw). The paper (Section 5, Figure 4 and
Appendix E.5) reports lambda0 ~ 5 for Pre-LN and ~100x larger without the final LayerNorm.
"""
from __future__ import annotations

import argparse
import time

import numpy as np

from sweep.engine import CohortTrainer, plan_cohort
from sweep.grid import compose
from sweep.runner import dataset_for
from sweep.workload import build_workload


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--root", required=True)
    ap.add_argument("--probe", type=int, default=128)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = ap.parse_args()
    for norm in ("pre_ln", "post_ln", "pre_ln_no_final"):
        ov = ["model=transformer", f"model.norm={norm}", "data=wikitext2", f"data.root={args.root}",
              "loss=xent", "optimizer=adam", f"probe.batch_size={args.probe}", "probe.lanczos_iters=30",
              "probe.lanczos_tol=1e-6"]
        cfgs = [compose(ov + [f"seed={s}"]) for s in args.seeds]
        w = build_workload(cfgs[0], dataset_for(cfgs[0]))
        t0 = time.perf_counter()
        vals = CohortTrainer(w, plan_cohort(cfgs)).initial_sharpness()
        print(f"{norm:16s} lambda0 = {np.mean(vals):.4g} +- {np.std(vals):.2g} "
              f"(seeds {args.seeds}: {', '.join(f'{v:.4g}' for v in vals)}; {time.perf_counter() - t0:.1f} s)")


if __name__ == "__main__":
    main()
