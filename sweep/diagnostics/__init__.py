"""The supporting papers' diagnostics, each a registered probe metric (sweep/probes.py).

Importing this package registers them; each module holds one diagnostic: its math as pure
functions (tested against dense computations on tiny models) and its `ProbeMetric`. Every module
in this folder is imported (discovered, not listed), so a new diagnostic is its module plus its
switch in the `probe` config: two files.
"""
from __future__ import annotations

import importlib
import pkgutil

# Registration order = trace column order; these first (the order records were written in before
# discovery), then any other module by name.
FIRST = ("hessian", "grad_cov", "ntk")


def _modules() -> list[str]:
    names = [m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_")]
    return sorted(names, key=lambda n: (FIRST.index(n) if n in FIRST else len(FIRST), n))


for _name in _modules():
    importlib.import_module(f"{__name__}.{_name}")
