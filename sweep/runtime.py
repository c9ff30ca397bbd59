"""Process-wide JAX settings: a persistent compilation cache.

A cohort program (vmapped training step + Lanczos probes) takes seconds to compile on a CPU;
every cohort of the same shapes in a sweep, every SLURM task of an array and every re-run
reuses the compiled executable from disk instead. SWEEP_JAX_CACHE=off disables it.
"""
from __future__ import annotations

import os
from pathlib import Path

_configured = False


def configure_jax() -> None:
    global _configured
    if _configured:
        return
    _configured = True
    import jax

    where = os.environ.get("SWEEP_JAX_CACHE", str(Path.home() / ".cache" / "sweep" / "jax"))
    if where.lower() in ("off", "0", "none", ""):
        return
    Path(where).mkdir(parents=True, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", where)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
