"""The supporting papers' diagnostics, each a registered probe metric (sweep/probes.py).

Importing this package registers them; each module holds one diagnostic: its math as pure
functions (tested against dense computations on tiny models) and its `ProbeMetric`.
"""
# registration order = trace column order
from sweep.diagnostics import hessian  # noqa: F401,I001
from sweep.diagnostics import grad_cov  # noqa: F401
from sweep.diagnostics import ntk  # noqa: F401
