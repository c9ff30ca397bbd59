"""Test-wide settings: CPU, one XLA thread pool, and helpers to compose configs."""
import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")

import pytest  # noqa: E402
import submitit  # noqa: E402,F401  at collection, in every worker: its import runs logging.dictConfig,
# which closes absl's handler holding pytest's capture stream if it first happens inside a test

from sweep.runtime import configure_jax  # noqa: E402

configure_jax()


@pytest.fixture
def compose_cfg():
    """Compose a validated config from overrides (the same path `sweep run` takes)."""
    from sweep.grid import compose

    return lambda *overrides: compose(list(overrides))
