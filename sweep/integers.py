"""Whole numbers from measured or decimal floats that do not flip on rounding noise.

Why: `ceil(16 * (1 - 0.37500001))` is 10 and `ceil(16 * (1 - 0.375))` is 10, but one float32 ulp the
other way gives 11: a T_reach, a T_save or the length of a pow2 grid would then change between two
runs of the same experiment. A value within `tol` of a whole number is that number; only values
clearly between two whole numbers are rounded up (ceil) or down (floor).
"""
from __future__ import annotations

import math

import numpy as np

FLOAT32_EPS = float(np.finfo(np.float32).eps)  # one ulp at 1.0 of the engine's default float


def snap(x: float, tol: float) -> float:
    """`x` itself, or the nearest whole number when `x` is within `tol` of it."""
    nearest = round(x)
    return float(nearest) if abs(x - nearest) <= tol else x


def ceil_tolerant(x: float, tol: float) -> int:
    """ceil(x), where a value within `tol` of a whole number counts as that number."""
    return int(math.ceil(snap(x, tol)))


def floor_tolerant(x: float, tol: float) -> int:
    """floor(x), where a value within `tol` of a whole number counts as that number."""
    return int(math.floor(snap(x, tol)))
