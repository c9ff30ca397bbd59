"""`sweep submit [hydra overrides...]`: queue the unfinished runs of a grid as one job array and
return at once. `cluster=slurm` (conf/cluster/) picks the executor; `cluster.partition=gpu` etc.
override any field. Follow it with `sweep status <sweep dir>`; resubmit the same command to finish
what failed, was cancelled or was preempted."""
from __future__ import annotations

import argparse
import shlex


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("overrides", nargs="*",
                        help="Hydra overrides, e.g. cluster=slurm cluster.partition=gpu lr=pow2(-4,2) warmup=1,64")
    parser.add_argument("--dry-run", action="store_true", help="say what would be submitted, queue nothing")
    from sweep import hydra_compat

    hydra_compat.add_arguments(parser)  # -m/--multirun (no-op), --cfg job|hydra|all, --cell


def command(args: argparse.Namespace) -> int:
    from sweep.hydra_compat import handle

    done = handle(args, "submit")  # hydra.* overrides mapped or refused; --cfg prints configs
    if done is not None:
        return done
    from sweep.dispatch import backends
    from sweep.dispatch.submit import submit

    sub = submit(args.overrides, dry_run=args.dry_run)
    head = (f"sweep '{sub.sweep.name}': {sub.total_runs} runs; {sub.finished} already finished"
            + (f", {sub.active_elsewhere} still in earlier jobs" if sub.active_elsewhere else ""))
    if not sub.submitted:
        print(f"{head}; nothing to submit -> {sub.sweep}")
        print(f"next: sweep status {shlex.quote(str(sub.sweep))}")
        return 0
    what = f"{sub.submitted} runs in {sub.cohorts} cohorts as {sub.tasks} tasks"
    if args.dry_run:
        print(f"{head}; would submit {what} (cluster.executor={sub.executor})")
        return 0
    if backends.get(sub.executor).in_process:
        print(f"{head}; ran {what} in this process -> {sub.sweep}")
        errors = sum(r.get("error", 0) for r in sub.task_results)
    else:
        print(f"{head}; submitted {what}: {sub.executor} job {sub.job_id} -> {sub.sweep}")
        print(f"manifest: {sub.manifest}")
        errors = 0
    print(f"next: sweep status {shlex.quote(str(sub.sweep))}   |   draw the phase diagram: "
          f"sweep plot {shlex.quote(str(sub.sweep))}")
    return 1 if errors else 0
