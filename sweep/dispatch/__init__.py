"""Submitting a grid as one job array and following it: the SLURM side of `sweep submit/status`.

  manifest.py  what a submission contains (array index -> cohorts -> run configs), on disk
  task.py      the function a task runs on a node (checkpointable: preemption -> requeue -> resume)
  executors.py local, submitit_local and slurm executors built from the `cluster` config group
  jobs.py      SLURM reachability and job states (sacct), one line per problem
  submit.py    grid -> pending runs -> tasks -> manifest -> job array, returning at once
  status.py    records + job states -> counts by state
The engine knows nothing about SLURM; this package knows nothing about training beyond
`runner.run_cohort`.
"""
