"""Integers derived from floats do not flip on one ulp (issue 20): T_reach / T_save of Sec. 6.1 at
exact integer boundaries, and the length of a pow2 grid whose step does not divide exactly in binary."""
from __future__ import annotations

import math

import numpy as np
import pytest

from sweep.eta_c import warmup_savings
from sweep.grid import expand
from sweep.integers import ceil_tolerant, floor_tolerant


def _ulps(x: float, n: int) -> float:
    """`x` moved by n float32 ulps (the precision eta_c is measured in)."""
    v = np.float32(x)
    for _ in range(abs(n)):
        v = np.nextafter(v, np.float32(np.inf if n > 0 else -np.inf))
    return float(v)


@pytest.mark.parametrize("t_wrm, ratio, t_reach", [
    (16, 0.375, 10),     # the fig5 cell: 16 x 0.625 = 10 exactly
    (64, 0.375, 40),
    (256, 0.375, 160),
    (1024, 0.5, 512),
    (8, 0.875, 1),
])
@pytest.mark.parametrize("ulps", [-3, -1, 0, 1, 3])
def test_t_reach_at_an_exact_integer_boundary_does_not_flip(t_wrm, ratio, t_reach, ulps):
    eta_trgt = 0.1
    eta_c = _ulps(ratio, ulps) * eta_trgt
    s = warmup_savings(eta_c, eta_trgt, t_wrm, forward_passes=6)
    assert s.t_reach == t_reach  # hand-computed: T_wrm (1 - eta_c/eta_trgt) is a whole number
    assert s.t_save == t_wrm - t_reach - 3


@pytest.mark.parametrize("t_wrm, ratio", [(16, 0.37), (16, 0.38), (64, 0.3751), (256, 0.3749)])
def test_t_reach_between_integers_is_the_ceiling(t_wrm, ratio):
    s = warmup_savings(ratio * 0.1, 0.1, t_wrm, forward_passes=0)
    assert s.t_reach == math.ceil(t_wrm * (1 - ratio))


def test_ceil_and_floor_snap_only_within_the_tolerance():
    assert ceil_tolerant(9.99999984, tol=1e-6) == 10 and ceil_tolerant(10.00000016, tol=1e-6) == 10
    assert ceil_tolerant(10.001, tol=1e-6) == 11 and ceil_tolerant(9.999, tol=1e-6) == 10
    assert floor_tolerant(2.9999999999999996, tol=1e-9) == 3 and floor_tolerant(2.5, tol=1e-9) == 2


@pytest.mark.parametrize("sweep, exponents", [
    ("pow2(0,0.9,0.3)", [0, 0.3, 0.6, 0.9]),      # 0.9 / 0.3 = 2.9999999999999996 in binary
    ("pow2(0,1,0.1)", [i / 10 for i in range(11)]),
    ("pow2(0,1,0.6)", [0, 0.6]),                  # stop is not on the grid: never past it
    ("pow2(3,-3,-1.5)", [3, 1.5, 0, -1.5, -3]),
])
def test_pow2_grid_ends_at_the_last_exponent_not_past_stop(sweep, exponents):
    lrs = sorted(float(s.get("lr")) for s in expand(["model.width=8", "model.depth=2", f"lr={sweep}"]))
    assert lrs == pytest.approx(sorted(2.0 ** e for e in exponents))
