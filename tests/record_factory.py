"""Synthetic run records in the engine's documented format (docs/agents-common.md), for the
aggregation and plotting tests. The toy dynamics are chosen to look like a real warmup sweep:
a divergence boundary that moves to larger lr with longer warmup, failures just below it, and
catapults (loss spike + sharpness drop) whenever the sharpness crosses 2/lr_t."""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

LAMBDA0 = {"sp": 50.0, "mup": 0.05}
# log2(lr * lambda0) above which a run diverges, at warmup 1; grows by `slope` per doubling of warmup
BOUNDARY = {"sp": (3.0, 0.35), "mup": (5.0, 0.2)}


def write_run(sweep_dir: Path, run_id: str, *, lr: float, warmup: int, param: str = "sp",
              outcome: str = "converged", metrics: dict[str, Any] | None = None,
              trace: pd.DataFrame | None = None, optimizer: str = "sgd", seed: int = 0,
              lambda0: float | None = None, extra_grid: dict[str, Any] | None = None,
              lr_unit: str = "absolute", augment: dict[str, Any] | None = None,
              momentum: float = 0.0) -> Path:
    """Write runs/<run_id>/record.json (+ trace.parquet when given); `lr` is absolute."""
    lambda0 = LAMBDA0[param] if lambda0 is None else lambda0
    run_dir = sweep_dir / "runs" / run_id
    run_dir.mkdir(parents=True, exist_ok=True)
    opt = {"name": optimizer, "clip_norm": None}
    opt.update({"momentum": momentum} if optimizer == "sgd" else {"b1": 0.9, "b2": 0.999, "eps": 1e-8})
    summary = {
        "lr": lr, "lr_units_of_lambda0": lr * lambda0, "lambda0": lambda0, "divergence_step": None,
        "final_train_loss": 0.1, "final_train_acc": 0.9, "final_test_loss": 0.2, "final_test_acc": 0.85,
        "best_test_acc": 0.86, "best_test_loss": 0.19, "max_sharpness": lambda0, "final_sharpness": 1.0,
        "initial_loss": 1.0, "steps_run": 100, "eta_c": None, "t_reach": None, "t_save": None,
    }
    summary.update(metrics or {})
    record = {
        "run_id": run_id, "sweep_name": sweep_dir.name, "status": "error" if outcome == "error" else "done",
        "outcome": outcome,
        "config": {"lr": lr * lambda0 if lr_unit == "sharpness" else lr, "warmup": warmup, "lr_unit": lr_unit, "loss": "mse", "batch_size": 0,
                   "seed": seed, "steps": 100, "lr_init": 0.0, "decay": "none",
                   "model": {"name": "fcn", "depth": 4, "width": 512}, "param": {"name": param},
                   "optimizer": opt, "data": {"name": "digits", **({"augment": augment} if augment else {})}},
        "grid": {"lr": lr * lambda0 if lr_unit == "sharpness" else lr, "warmup": warmup, "param.name": param, **(extra_grid or {})},
        "summary": summary, "versions": {}, "git_commit": "0" * 40, "device": "cpu", "timings": {},
        "error": {"type": "RuntimeError", "message": "boom", "traceback": ""} if outcome == "error" else None,
    }
    (run_dir / "record.json").write_text(json.dumps(record))
    if trace is not None:
        trace.to_parquet(run_dir / "trace.parquet", index=False)
    return run_dir


def toy_trace(lr: float, warmup: int, lambda0: float, steps: int = 200, diverge_at: int | None = None,
              momentum: float = 0.0) -> pd.DataFrame:
    """Linear warmup to `lr`; sharpness decays naturally and catapults down when above 2/lr_t."""
    rows = []
    loss, sharp = 1.0, lambda0
    c = 2.0 + 2.0 * momentum
    for step in range(steps + 1):
        lr_t = lr * min(1.0, (step + 1) / warmup)
        if diverge_at is not None and step > diverge_at:
            break
        if diverge_at is not None and step == diverge_at:
            loss = 1e6
        elif sharp > c / lr_t:  # catapult: loss spikes, sharpness drops below the threshold
            loss *= 4.0
            sharp = 0.5 * c / lr_t
        else:
            loss = max(loss * 0.97, 1e-3)
            sharp = sharp * (0.995 if step < 50 else 1.001)
        rows.append({"step": step, "lr": lr_t, "train_loss": loss, "train_acc": 1 - loss / (1 + loss),
                     "probe_loss": loss, "probe_acc": 1 - loss / (1 + loss), "grad_norm": math.sqrt(loss),
                     "sharpness": sharp, "precond_sharpness": float("nan"), "threshold": c / lr_t,
                     "hvps": 20, "test_loss": float("nan"), "test_acc": float("nan")})
    return pd.DataFrame(rows)


def realistic_sweep(sweep_dir: Path, lr_exponents=range(0, 8), warmup_exponents=(0, 2, 4, 6, 8, 10),
                    params=("sp", "mup"), with_traces: bool = True, eta_c: bool = False,
                    steps: int = 200, lr_unit: str = "sharpness") -> pd.DataFrame:
    """Write a phase-diagram sweep (lr = 2^x / lambda0); return the truth table it was built from."""
    truth = []
    for param in params:
        lam = LAMBDA0[param]
        base, slope = BOUNDARY[param]
        for x in lr_exponents:
            for k in warmup_exponents:
                lr, warmup = 2.0 ** x / lam, 2 ** k
                margin = base + slope * k - x
                outcome = "converged" if margin >= 1 else ("failed" if margin >= 0 else "diverged")
                if (param, x, k) == (params[0], 1, warmup_exponents[min(1, len(warmup_exponents) - 1)]):
                    outcome = "error"
                acc = 0.6 + 0.3 * (1 - math.exp(-0.6 * (x + 1))) - 0.01 * k if outcome == "converged" else 0.1
                metrics = {"best_test_acc": acc, "final_test_loss": 1.2 - acc,
                           "divergence_step": 5 if outcome == "diverged" else None,
                           "max_sharpness": lam * (1 + 0.1 * x)}
                if eta_c:
                    ec = 2.0 ** (base - 1) / lam
                    reach = 1 if lr <= ec else round(warmup * (1 - ec / lr))
                    metrics.update(eta_c=ec, t_reach=max(1, reach), t_save=warmup * min(1.0, ec / lr) - 5)
                if outcome in ("diverged", "error"):
                    metrics.update({"t_reach": None, "t_save": None})
                run_id = f"{param}-x{x}-k{k}"
                trace = None
                if with_traces and outcome != "error":
                    trace = toy_trace(lr, warmup, lam, steps=steps,
                                      diverge_at=min(warmup, steps) // 2 + 3 if outcome == "diverged" else None)
                write_run(sweep_dir, run_id, lr=lr, warmup=warmup, param=param, outcome=outcome,
                          metrics=metrics, trace=trace, lr_unit=lr_unit)
                truth.append({"run_id": run_id, "param": param, "x": x, "warmup": warmup,
                              "outcome": outcome, "best_test_acc": acc})
    return pd.DataFrame(truth)


def lr_grid(param: str, exponents) -> np.ndarray:
    return np.array([2.0 ** x / LAMBDA0[param] for x in exponents])
