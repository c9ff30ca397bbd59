"""Chunks sized from the step's cost (issue 19): small models keep 64 iterations per compiled chunk;
slow ones (WRN-16-4: seconds per step on a CPU) get short chunks, so progress and checkpoints move.
The values a run records do not depend on the chunk length."""
import numpy as np

from sweep import engine
from sweep.engine import CohortTrainer, plan_cohort
from sweep.runner import dataset_for
from sweep.workload import build_workload

SMALL = ["data=synthetic", "model.width=16", "model.depth=3", "steps=12", "probe.every=4",
         "probe.batch_size=32", "batch_size=16"]


def _trainer(cfg, chunk=None):
    return CohortTrainer(build_workload(cfg, dataset_for(cfg)), plan_cohort([cfg]), chunk=chunk)


def test_small_model_keeps_long_chunks_slow_steps_get_short_ones(compose_cfg, monkeypatch):
    cfg = compose_cfg(*SMALL, "steps=200")
    assert _trainer(cfg).chunk == engine.MAX_CHUNK
    # the same cohort on a (pretend) device 1e6 x slower: every step costs more than CHUNK_SECONDS
    monkeypatch.setitem(engine.CHUNK_FLOPS_PER_S, "cpu", 1e3)
    assert _trainer(cfg).chunk == 1
    monkeypatch.setitem(engine.CHUNK_FLOPS_PER_S, "cpu", 2e10)
    assert _trainer(cfg, chunk=7).chunk == 7  # an explicit chunk is kept


def test_wrn16_4_gets_a_short_chunk_on_cpu(compose_cfg):
    from sweep.data.base import Dataset

    cfg = compose_cfg("model=wrn", "model.widen=4", "data=synthetic", "batch_size=128")
    rng = np.random.default_rng(0)
    images = Dataset("images", rng.normal(size=(256, 32, 32, 3)).astype(np.float32), rng.integers(0, 10, 256),
                     rng.normal(size=(64, 32, 32, 3)).astype(np.float32), rng.integers(0, 10, 64), 10)
    chunk = CohortTrainer(build_workload(cfg, images), plan_cohort([cfg])).chunk
    assert 1 <= chunk <= 4, chunk


def test_records_do_not_depend_on_the_chunk_length(compose_cfg):
    cfg = compose_cfg(*SMALL)
    a, b = _trainer(cfg, chunk=5).run(), _trainer(cfg, chunk=13).run()
    for col in ("train_loss", "sharpness", "probe_loss"):
        np.testing.assert_allclose(a.traces[0][col].to_numpy(), b.traces[0][col].to_numpy(), rtol=1e-5, err_msg=col)
