"""Hydra Sweeper plugin `sweep_grid` of the `sweep` package (see sweep_grid_sweeper.py)."""
