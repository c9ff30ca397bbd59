"""From runs to stored records: load data, resolve lr units, train a cohort, classify, write.

Used by `sweep run` (in-process), by SLURM tasks and by the stock @hydra.main entry point alike,
so every path produces identical records.
"""
from __future__ import annotations

import sys
import time
import traceback
from contextlib import nullcontext
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from sweep import columns, store
from sweep.claims import Claims
from sweep.data.base import Dataset, load_dataset
from sweep.engine import CohortResult, CohortTrainer
from sweep.resolve import initial_sharpness, resolve_plan  # noqa: F401 - initial_sharpness re-exported
from sweep.grid import Cohort, RunSpec
from sweep.identity import lambda0_key, to_dict
from sweep.plan import max_learning_rates
from sweep.runtime import configure_jax
from sweep.termination import raise_if_terminated
from sweep.workload import Workload, build_workload

_DATA_CACHE: dict[str, Dataset] = {}


def dataset_for(cfg: Any) -> Dataset:
    """Load a data set once per process (a task often trains several cohorts on the same data)."""
    key = repr(sorted(to_dict(cfg.data).items()))
    if key not in _DATA_CACHE:
        _DATA_CACHE.clear()
        _DATA_CACHE[key] = load_dataset(cfg.data)
    return _DATA_CACHE[key]


def ensure_float64(cfgs: Sequence[Any]) -> None:
    """float64 probes need jax's x64 mode, which must be on before arrays are made."""
    if any(c.probe.dtype == "float64" for c in cfgs):
        jax.config.update("jax_enable_x64", True)


# ----------------------------------------------------------------------------- outcomes
def classify(cfg: Any, divergence_step: Optional[int], final_train_acc: float, final_train_loss: float,
             initial_loss: float, num_classes: int, task: str) -> str:
    """diverged (loss NaN/inf or blow-up) > failed (no real learning) > converged.
    Classification fails when final train accuracy < fail_acc_factor x chance; a language model
    fails when its final train loss is not below (1 - lm_min_improvement) x its initial loss."""
    if divergence_step is not None or not np.isfinite(final_train_loss):
        return "diverged"
    if task == "lm":
        if final_train_loss > (1.0 - float(cfg.outcome.lm_min_improvement)) * initial_loss:
            return "failed"
        return "converged"
    if final_train_acc < float(cfg.outcome.fail_acc_factor) / num_classes:
        return "failed"
    return "converged"


def _nanmax(s: pd.Series) -> Optional[float]:
    s = s.dropna()
    return float(s.max()) if len(s) else None


def _nanmin(s: pd.Series) -> Optional[float]:
    s = s.dropna()
    return float(s.min()) if len(s) else None


def summarize(cfg: Any, trace: pd.DataFrame, final: dict[str, float], divergence_step: Optional[int],
              lr_abs: float, lr_init_abs: float, lambda0: Optional[float], dataset: Dataset,
              steps_run: int) -> tuple[str, dict]:
    initial_loss = float(trace["probe_loss"].iloc[0]) if len(trace) else float("nan")
    lam0 = lambda0 if lambda0 is not None else (float(trace["sharpness"].iloc[0]) if len(trace) else None)
    outcome = classify(cfg, divergence_step, final["final_train_acc"], final["final_train_loss"],
                       initial_loss, dataset.num_classes, dataset.task)
    test_acc = pd.concat([trace["test_acc"], pd.Series([final["final_test_acc"]])])
    test_loss = pd.concat([trace["test_loss"], pd.Series([final["final_test_loss"]])])
    summary = {
        "lr": lr_abs,
        "lr_init": lr_init_abs,
        "lambda0": lam0,
        "lr_units_of_lambda0": (lr_abs * lam0) if lam0 else None,
        "divergence_step": divergence_step,
        "initial_loss": initial_loss,
        **{k: float(v) for k, v in final.items()},
        "best_test_acc": _nanmax(test_acc),
        "best_test_loss": _nanmin(test_loss),
        **columns.reduce_trace(trace),  # max_sharpness, final_sharpness, ... (sweep/columns.py)
        "steps_run": steps_run,
        "total_hvps": int(trace["hvps"].sum()),
        "eta_c": None,
        "t_reach": None,
        "t_save": None,
        "catapults": None,  # warmup_mode=catapult (sweep/catapult.py); t_reach is then its T_reach
        "catapult_searches": None,
        "catapult_forward_passes": None,
    }
    if dataset.task == "lm":
        summary["final_test_perplexity"] = float(np.exp(min(final["final_test_loss"], 50.0)))
    return outcome, summary


# ----------------------------------------------------------------------------- records
def _base_record(spec: RunSpec, sweep_name: str) -> dict:
    return {"run_id": spec.run_id, "sweep_name": sweep_name, "config": to_dict(spec.cfg), "grid": spec.grid}


def error_record(spec: RunSpec, sweep_name: str, exc: BaseException) -> dict:
    """An exception becomes an `error` record (retried on re-run), with its traceback."""
    rec = _base_record(spec, sweep_name)
    from sweep.claims import submitit_log

    rec.update(status="error", outcome="error", summary={}, error={
        "type": exc.__class__.__name__, "message": str(exc)[:2000], "log": submitit_log(),
        "traceback": "".join(traceback.format_exception(exc))[-20000:]})
    rec.update(store.provenance())
    return rec


def pending_runs(cohort: Cohort, sweep: Path, force: bool) -> list[RunSpec]:
    return [r for r in cohort.runs if force or not store.is_finished(sweep, r.run_id)]


def claim_pending(cohort: Cohort, sweep: Path, force: bool, claims: Claims) -> list[RunSpec]:
    """The cohort's runs this process trains now: unfinished and claimed by it. Finished-ness is
    checked again after the claim (another process may have just written the record); leftovers of
    dead writers are cleaned and corrupt files moved aside before the run is trained again."""
    todo = []
    for spec in pending_runs(cohort, sweep, force):
        if not claims.claim(spec.run_id):
            continue
        # force: finished runs train again, except those another process trained since we started
        if claims.trained_since(sweep, spec.run_id) if force else store.is_finished(sweep, spec.run_id):
            claims.release([spec.run_id])
            continue
        aside = store.prepare_rerun(sweep, spec.run_id)
        if aside is not None:
            print(f"run {spec.run_id}: its record or trace was corrupt; moved to {aside}, training it again",
                  file=sys.stderr)
        todo.append(spec)
    return todo


def write_error_records(runs: Sequence[RunSpec], sweep: Path, exc: BaseException) -> int:
    """Error records for `runs` (retried by the next run or submit); returns how many were written
    (0 when the results folder itself is broken: say so, never claim otherwise)."""
    written = 0
    for spec in runs:
        try:
            store.write_run(sweep, spec.run_id, error_record(spec, sweep.name, exc), None)
            written += 1
        except OSError:
            pass
    return written


def run_cohort(cohort: Cohort, sweep: Path, *, force: bool = False,
               progress: Optional[Callable[[int, int], None]] = None,
               checkpointer: Any = None, claims: Optional[Claims] = None) -> list[dict]:
    """Train the unfinished runs of a cohort that this process can claim, and write their records.
    Returns the records (runs held by another live process are skipped: `claims.busy`).

    Finished runs (terminal record, intact trace) are skipped unless `force`. Any exception turns
    every trained member into an `error` record (so a resubmit retries it) and is re-raised, with
    `error_records_written` set on it, for the caller to report.
    """
    with (Claims(sweep) if claims is None else nullcontext(claims)) as held:
        runs = claim_pending(cohort, sweep, force, held)
        if not runs:
            return []
        ids, started = [r.run_id for r in runs], time.time()

        def report(done: int, total: int) -> None:  # after every chunk
            raise_if_terminated()
            held.report(ids, done, total, started)
            if progress:
                progress(done, total)

        try:
            return _train_and_record(runs, sweep, report, checkpointer, cohort.key)
        finally:
            held.release(ids)


def _train_and_record(runs: list[RunSpec], sweep: Path, progress: Optional[Callable[[int, int], None]],
                      checkpointer: Any, cohort_key: str = "") -> list[dict]:
    """Train the runs (in equal parts, one after another, when all of them at once would not fit
    the training memory budget: sweep/cohort_memory.py) and write their records."""
    from sweep.checkpoint import cohort_checkpoint_dir
    from sweep.cohort_memory import fit_to_budget

    cfgs = [r.cfg for r in runs]
    t0 = time.perf_counter()
    # A missing or defective data set is the user's to fix (DataError, one line): it is raised
    # before any record is written, so it never shows up as a run's result.
    dataset = dataset_for(cfgs[0])
    try:
        configure_jax()
        ensure_float64(cfgs)
        workload = build_workload(cfgs[0], dataset)
        parts, microbatches = fit_to_budget(workload, cfgs[0], runs)
    except Exception as exc:  # noqa: BLE001 - recorded, then re-raised
        exc.error_records_written = write_error_records(runs, sweep, exc)  # type: ignore[attr-defined]
        raise
    t_data = time.perf_counter() - t0
    records: list[dict] = []
    for i, part in enumerate(parts):
        part_progress = None
        if progress:
            def part_progress(done: int, total: int, i: int = i) -> None:
                progress(i * total + done, len(parts) * total)
        if checkpointer and len(parts) > 1:  # one directory per part: a requeue resumes the part it was in
            checkpointer.retarget(cohort_checkpoint_dir(sweep, cohort_key, [r.run_id for r in part]))
        try:
            records += _train_part(part, workload, dataset, sweep, part_progress, checkpointer, t_data,
                                   microbatches)
        except Exception as exc:  # noqa: BLE001 - recorded, then re-raised
            rest = [r for p in parts[i:] for r in p]
            exc.error_records_written = write_error_records(rest, sweep, exc)  # type: ignore[attr-defined]
            raise
    return records


def _train_part(runs: list[RunSpec], workload: Workload, dataset: Dataset, sweep: Path,
                progress: Optional[Callable[[int, int], None]], checkpointer: Any, t_data: float,
                train_microbatches: int = 1) -> list[dict]:
    sweep_name = sweep.name
    plan = resolve_plan(workload, [r.cfg for r in runs], sweep)
    trainer = CohortTrainer(workload, plan, train_microbatches=train_microbatches)
    cb = (lambda done: progress(done, trainer.steps + 1)) if progress else None
    restored = (checkpointer.restore(trainer.layout_fingerprint(), trainer.initial_state)
                if checkpointer else None)
    kwargs = dict(restored) if restored else {}
    result: CohortResult = trainer.run(progress=cb, on_chunk=checkpointer.save if checkpointer else None,
                                       **kwargs)
    prov = store.provenance()
    max_lrs = max_learning_rates(plan, result.steps_run)  # warmup > steps never reaches the target lr
    records = []
    for m, spec in enumerate(runs):
        final = {k: float(v[m]) for k, v in result.final.items()}
        outcome, summary = summarize(
            spec.cfg, result.traces[m], final, result.divergence_step[m], float(plan.lr[m]),
            float(plan.lr_init[m]), None if plan.lambda0 is None else float(plan.lambda0[m]), dataset,
            result.steps_run[m])
        summary.update(plan.member_fields[m], max_lr=max_lrs[m])
        if result.catapult is not None:
            summary.update(result.catapult[m])
        rec = _base_record(spec, sweep_name)
        rec.update(status="done", outcome=outcome, summary=summary, error=None,
                   timings={**result.timings, "data_s": t_data, "cohort_size": len(runs),
                            "train_microbatches": trainer.batch // trainer.train_microbatch}, **prov)
        store.write_run(sweep, spec.run_id, rec, result.traces[m])
        records.append(rec)
    if checkpointer:
        checkpointer.clear()
    return records
