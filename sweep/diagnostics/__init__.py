"""The supporting papers' diagnostics, each a registered probe metric (sweep/probes.py).

Importing this package registers them; each module holds one diagnostic: its math as pure
functions (tested against dense computations on tiny models) and its `ProbeMetric`.
"""
from sweep.diagnostics import hessian  # noqa: F401
