"""`sweep run [hydra overrides...]`: run one config or a whole grid locally, cohort by cohort."""
from __future__ import annotations

import argparse
import sys

from tqdm import tqdm


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. lr=0.1,0.2 warmup=1,64 param=sp,mup")
    parser.add_argument("--dry-run", action="store_true", help="list the runs and cohorts, train nothing")


def command(args: argparse.Namespace) -> int:
    from sweep import store
    from sweep.grid import expand, make_cohorts
    from sweep.runner import pending_runs, run_cohort

    runs = expand(args.overrides)
    cfg0 = runs[0].cfg
    sweep = store.sweep_dir(cfg0.results_dir, cfg0.sweep_name)
    cohorts = make_cohorts(runs)
    force = bool(cfg0.force)
    todo = [c for c in cohorts if pending_runs(c, sweep, force)]
    n_todo = sum(len(pending_runs(c, sweep, force)) for c in todo)
    print(f"sweep '{cfg0.sweep_name}': {len(runs)} runs in {len(cohorts)} cohorts; "
          f"{len(runs) - n_todo} already finished, {n_todo} to run -> {sweep}")
    if args.dry_run:
        for c in cohorts:
            print(f"  cohort {c.key}: {len(c.runs)} runs: " + " ".join(r.run_id for r in c.runs))
        return 0
    failures = 0
    for i, cohort in enumerate(todo):
        members = pending_runs(cohort, sweep, force)
        bar = tqdm(total=int(members[0].cfg.steps) + 1, unit="step", dynamic_ncols=True,
                   desc=f"cohort {i + 1}/{len(todo)} ({len(members)} runs)", file=sys.stderr)

        def progress(done: int, total: int, bar=bar) -> None:
            bar.update(done - bar.n)

        try:
            records = run_cohort(cohort, sweep, force=force, progress=progress)
        except Exception as exc:  # noqa: BLE001 - error records are written; keep going
            bar.close()
            failures += len(members)
            print(f"cohort {cohort.key} failed: {exc.__class__.__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
                  f" (error records written; a re-run retries them)", file=sys.stderr)
            continue
        bar.close()
        for rec in records:
            s = rec["summary"]
            print(f"  {rec['run_id']}  {rec['outcome']:9s}  lr={s['lr']:.4g}  "
                  f"warmup={rec['config']['warmup']}  param={rec['config']['param']['name']}  "
                  f"lambda0={s['lambda0']:.4g}  final_train_loss={s['final_train_loss']:.4g}  "
                  f"best_test_acc={s['best_test_acc'] if s['best_test_acc'] is not None else float('nan'):.3f}")
    print(f"results: {sweep}/runs/<run_id>/record.json and trace.parquet")
    print(f"next: sweep status {sweep}   |   sweep plot {sweep}")
    return 1 if failures else 0
