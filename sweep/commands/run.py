"""`sweep run [hydra overrides...]`: run one config or a whole grid locally, cohort by cohort."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

from tqdm import tqdm


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. lr=0.1,0.2 warmup=1,64 param=sp,mup")
    parser.add_argument("--dry-run", action="store_true", help="list the runs and cohorts, train nothing")
    from sweep import hydra_compat

    hydra_compat.add_arguments(parser)  # -m/--multirun (no-op), --cfg job|hydra|all, --cell


def _print_record(rec: dict) -> None:
    s, c = rec["summary"], rec["config"]
    best = s.get("best_test_acc")
    lam = s.get("lambda0")
    print(f"  {rec['run_id']}  {rec['outcome']:9s}  lr={s['lr']:.4g}  warmup={c['warmup']}  "
          f"param={c['param']['name']}  lambda0={lam if lam is None else f'{lam:.4g}'}  "
          f"final_train_loss={s['final_train_loss']:.4g}  best_test_acc={best if best is None else f'{best:.3f}'}")


def run_locally(runs: Sequence, sweep: Path, force: bool, claims=None) -> int:
    """Train every unfinished run, cohort by cohort, in this process (execute.execute_cohort, the
    path array tasks take too). Returns the number of runs that ended in an error record (the rest of
    the grid still runs). Runs that another live process is training (its claim) are left to it and
    listed in `claims.busy`."""
    from sweep.claims import Claims
    from sweep.execute import execute_cohort
    from sweep.grid import Cohort, make_cohorts
    from sweep.runner import pending_runs

    claims = claims if claims is not None else Claims(sweep)
    todo = [c for c in make_cohorts(runs) if pending_runs(c, sweep, force)]
    failures = 0
    for i, cohort in enumerate(todo):
        members = [r for r in pending_runs(cohort, sweep, force) if r.run_id not in claims.busy]
        if not members:  # finished meanwhile by another process
            continue
        bar = tqdm(total=int(members[0].cfg.steps) + 1, unit="step", dynamic_ncols=True, file=sys.stderr,
                   desc=f"cohort {i + 1}/{len(todo)} ({len(members)} runs)")

        def progress(done: int, total: int, bar=bar) -> None:
            if bar.total != total:  # a cohort too big for memory.train_mib trains in parts
                bar.total = total
            bar.update(done - bar.n)

        try:
            result = execute_cohort(Cohort(cohort.key, members), sweep, force=force, claims=claims,
                                    progress=progress)
        finally:
            bar.close()
        failures += result.errors
        if result.message:
            print(result.message, file=sys.stderr)
        for rec in result.records:
            _print_record(rec)
    return failures


def run_grid(runs: Sequence, sweep: Path, force: bool) -> int:
    """run_locally, then "until divergence": grow each lr line until it diverges or fails (+ margin).
    Returns the number of runs that ended in an error record."""
    from sweep import store
    from sweep.claims import Claims
    from sweep.grid import until_divergence

    failures, rounds = 0, 0

    def train(batch: list) -> None:
        nonlocal failures, rounds
        if rounds:
            print(f"extending the lr axis: {_runs(len(batch))} more")
        rounds += 1
        failures += run_locally(batch, sweep, force, claims)

    with Claims(sweep) as claims:
        until_divergence(runs, sweep, train)
    busy = {rid: who for rid, who in claims.busy.items() if not store.is_finished(sweep, rid)}
    if busy:
        owners = sorted(set(busy.values()))
        print(f"{_runs(len(busy))} left to another process that is training them ({'; '.join(owners[:3])}"
              f"{'; ...' if len(owners) > 3 else ''}); `sweep status {sweep}` shows them, and a re-run "
              f"after it ends picks up anything it left", file=sys.stderr)
    return failures


def _runs(n: int) -> str:
    return f"{n} run" if n == 1 else f"{n} runs"


def _fmt(value) -> str:
    return f"{value:.6g}" if isinstance(value, float) else str(value)


def _axes_summary(runs: Sequence) -> str:
    """`lr (14 values: 0.0625 .. 512), param.name (sp, mup)`: what the grid sweeps."""
    parts = []
    for key in runs[0].grid:
        values = list(dict.fromkeys(r.grid.get(key) for r in runs))
        if len(values) <= 4:
            parts.append(f"{key} ({', '.join(_fmt(v) for v in values)})")
        else:
            try:
                lo, hi = min(values), max(values)
                span = f"{_fmt(lo)} .. {_fmt(hi)}"
            except TypeError:
                span = f"{_fmt(values[0])} .. {_fmt(values[-1])}"
            parts.append(f"{key} ({len(values)} values: {span})")
    return ", ".join(parts)


def print_plan(runs: Sequence, list_cohorts: bool) -> tuple[Path, bool]:
    """Say what a grid amounts to (runs, cohorts, already finished); with `list_cohorts`, every run
    with its swept values, the way Hydra lists a multirun (`#0 : lr=0.1 warmup=8`), by cohort.
    On a terminal, big grids are cut after MAX_LISTED runs (pipe the output to see all).
    Returns the sweep folder and the `force` flag."""
    from sweep import store
    from sweep.grid import make_cohorts

    cfg0 = runs[0].cfg
    sweep = store.sweep_dir(cfg0.results_dir, cfg0.sweep_name)
    force = bool(cfg0.force)
    cohorts = make_cohorts(runs)
    done = set() if force else {r.run_id for r in runs if store.is_finished(sweep, r.run_id)}
    n_todo = len(runs) - len(done)
    print(f"sweep '{cfg0.sweep_name}': {_runs(len(runs))} in {len(cohorts)} cohort{'s' if len(cohorts) != 1 else ''}; "
          f"{len(done)} already finished, {n_todo} to run -> {sweep}")
    if not list_cohorts:
        return sweep, force
    if runs[0].grid:
        print(f"  swept: {_axes_summary(runs)}")
    limit = MAX_LISTED if sys.stdout.isatty() else None
    index = 0
    for c in cohorts:
        print(f"  cohort {c.key} ({_runs(len(c.runs))}):")
        for r in c.runs:
            if limit is not None and index >= limit:
                print(f"  ... and {len(runs) - index} more (pipe the output, e.g. | less, to list every run)")
                return sweep, force
            values = " ".join(f"{k}={_fmt(v)}" for k, v in r.grid.items())
            state = "  [finished]" if r.run_id in done else ""
            print(f"    #{index} {r.run_id} : {values}{state}")
            index += 1
    return sweep, force


MAX_LISTED = 60


def command(args: argparse.Namespace) -> int:
    from sweep.hydra_compat import handle

    done = handle(args, "run")  # hydra.* overrides mapped or refused; --cfg prints configs
    if done is not None:
        return done
    from sweep.grid import expand

    from sweep import store

    runs = expand(args.overrides)
    sweep, force = print_plan(runs, args.dry_run)
    if args.dry_run:
        return 0
    store.check_writable(sweep)
    from sweep.dispatch.status import record_local_command

    record_local_command(sweep, args.overrides)
    failures = run_grid(runs, sweep, force)
    print(f"results: {sweep}/runs/<run_id>/record.json and trace.parquet")
    print(f"next: sweep status {sweep}   |   draw the phase diagram: sweep plot {sweep}")
    return 1 if failures else 0
