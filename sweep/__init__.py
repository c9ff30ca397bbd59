"""sweep: learning-rate warmup phase diagrams (Hydra grids of vmapped JAX cohorts, on a laptop or SLURM)."""

__version__ = "0.1.0"
