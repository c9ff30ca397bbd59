"""Submitting a grid as one job array and following it: the SLURM side of `sweep submit/status`.

  manifest.py  what a submission contains (array index -> cohorts -> run configs), on disk
  task.py      the function a task runs on a node (checkpointable: preemption -> requeue -> resume)
  backends.py  one object per cluster.executor (local, submitit_local, slurm): executor, reachability,
               job states, this process's job
  jobs.py      SLURM reachability and job states (sacct), one line per problem
  submit.py    grid -> pending runs -> tasks -> manifest -> job array, returning at once
  status.py    records + job states -> counts by state
The engine knows nothing about SLURM; this package knows nothing about training beyond
`runner.run_cohort`.
"""
