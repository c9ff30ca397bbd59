"""Data sets: every loader returns a `Dataset` of host arrays; the engine puts them on the device."""
from sweep.data.base import Dataset, DataError, load_dataset, standardize_per_channel

__all__ = ["Dataset", "DataError", "load_dataset", "standardize_per_channel"]
