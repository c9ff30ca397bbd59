"""A cohort interrupted mid-way and resumed from its checkpoint must give the very same traces,
bit for bit, as one that was never interrupted (the truth here is the uninterrupted run)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import submitit  # noqa: F401  first, at collection: its import runs logging.dictConfig, which closes
# every existing handler, e.g. absl's (via orbax) that holds pytest's capture stream

from sweep.checkpoint import Checkpointer, arrays_to_rows, rows_to_arrays

TINY = ["data=synthetic", "data.n_train=64", "data.n_test=32", "model.width=8", "model.depth=2",
        "batch_size=16", "probe.every=3", "probe.batch_size=32", "probe.lanczos_iters=4"]


class Preempted(BaseException):
    """Stands in for submitit's SystemExit after a requeue: not an Exception, so no error record."""


def _trainer(compose_cfg, overrides: list[str], lrs: list[float], chunk: int):
    from sweep.data.base import load_dataset
    from sweep.engine import CohortTrainer, plan_cohort
    from sweep.workload import build_workload

    cfgs = [compose_cfg(*overrides, f"lr={lr}", f"warmup={w}") for lr, w in zip(lrs, (1, 4, 2))]
    workload = build_workload(cfgs[0], load_dataset(cfgs[0].data))
    return CohortTrainer(workload, plan_cohort(cfgs), chunk=chunk)


def test_resumed_cohort_matches_uninterrupted(compose_cfg, tmp_path):
    overrides = TINY + ["steps=40", "optimizer.momentum=0.9"]
    lrs = [0.05, 400.0, 0.2]  # the middle member diverges: its frozen state must survive too
    trainer = _trainer(compose_cfg, overrides, lrs, chunk=8)
    truth = trainer.run()

    def stop(*_):
        raise Preempted

    ckpt = Checkpointer(tmp_path / "ck", every_s=1e9, every_chunks=2, after_requested_save=stop)
    assert ckpt.restore(trainer.layout_fingerprint(), trainer.initial_state) is None  # nothing saved yet

    def on_chunk(carry, next_start, rows):
        if ckpt.save(carry, next_start, rows):
            ckpt.request()  # the next save is the "preemption": save again, then stop

    with pytest.raises(Preempted):
        trainer.run(on_chunk=on_chunk)
    assert ckpt.saves == 2

    resumed_trainer = _trainer(compose_cfg, overrides, lrs, chunk=8)  # a fresh process, in effect
    told = []  # a task logs the resume when it happens (a log read after the records missed it once)
    state = Checkpointer(tmp_path / "ck", on_restore=told.append).restore(resumed_trainer.layout_fingerprint(),
                                                                          resumed_trainer.initial_state)
    assert state is not None and state["start"] == 24  # 3 chunks of 8 iterations were done
    assert told == [24]
    assert [s for s, _ in state["rows"]] == [0, 3, 6, 9, 12, 15, 18, 21]
    resumed = resumed_trainer.run(**state)

    assert resumed.divergence_step == truth.divergence_step
    assert truth.divergence_step[1] is not None and truth.divergence_step[0] is None
    for a, b in zip(resumed.traces, truth.traces):
        pd.testing.assert_frame_equal(a, b, check_exact=True)
    for key in truth.final:
        np.testing.assert_array_equal(resumed.final[key], truth.final[key])


def test_checkpoint_of_another_cohort_is_not_reused(compose_cfg, tmp_path):
    overrides = TINY + ["steps=20"]
    a = _trainer(compose_cfg, overrides, [0.1, 0.2], chunk=8)
    ckpt = Checkpointer(tmp_path / "ck", every_s=0)
    ckpt.restore(a.layout_fingerprint(), a.initial_state)
    ckpt.save(a.initial_state(), 8, [(0, {"loss": np.ones(2, np.float32)})])
    assert ckpt.exists()
    b = _trainer(compose_cfg, overrides, [0.1, 0.3], chunk=8)  # one member's lr differs
    told = []
    assert Checkpointer(tmp_path / "ck", on_restore=told.append).restore(b.layout_fingerprint(), b.initial_state) is None
    assert told == []
    assert not ckpt.exists()  # a stale checkpoint is removed, not kept forever


def test_save_only_when_due_or_requested(tmp_path):
    calls = []
    ckpt = Checkpointer(tmp_path / "ck", every_s=1e9, after_requested_save=lambda: calls.append(1))
    rows = [(0, {"loss": np.ones(2, np.float32)})]
    import jax.numpy as jnp

    carry = {"w": jnp.ones(3)}
    assert ckpt.save(carry, 8, rows) is False and not ckpt.exists()
    ckpt.request()
    assert ckpt.save(carry, 16, rows) is True and ckpt.exists() and calls == [1]
    ckpt.clear()
    assert not ckpt.exists()


def test_rows_round_trip_keeps_values_and_dtypes():
    rows = [(0, {"a": np.array([1.5, np.nan], np.float32), "hvps": np.array([3, 4], np.int32)}),
            (5, {"a": np.array([2.5, 7.0], np.float32), "hvps": np.array([0, 1], np.int32)})]
    back = arrays_to_rows(rows_to_arrays(rows))
    assert [s for s, _ in back] == [0, 5]
    for (_, v1), (_, v2) in zip(rows, back):
        for k in v1:
            assert v1[k].dtype == v2[k].dtype
            np.testing.assert_array_equal(v1[k], v2[k])


def test_run_cohort_resumes_from_checkpoint(compose_cfg, tmp_path):
    """Through the runner, as a SLURM task uses it: interrupted run_cohort writes no record;
    the next call resumes and writes the same trace as an uninterrupted sweep. Adam: its state
    (step count, moments) must round-trip too."""
    from sweep.grid import expand, make_cohorts
    from sweep.runner import run_cohort
    from sweep.store import read_record, run_dir

    overrides = TINY + ["steps=70", "optimizer=adam", "lr=0.001,0.01", "probe.every=10"]
    (cohort,) = make_cohorts(expand(overrides))

    truth_dir = tmp_path / "truth"
    run_cohort(cohort, truth_dir)

    def stop():
        raise Preempted

    sweep = tmp_path / "resumed"
    ckpt = Checkpointer(sweep / "ck", every_s=1e9, after_requested_save=stop)
    ckpt.request()  # preemption signalled during the first chunk
    with pytest.raises(Preempted):
        run_cohort(cohort, sweep, checkpointer=ckpt)
    assert all(read_record(sweep, r.run_id) is None for r in cohort.runs)
    again = Checkpointer(sweep / "ck", every_s=1e9)
    records = run_cohort(cohort, sweep, checkpointer=again)
    assert len(records) == 2 and not again.exists()  # cleared once records are written
    for r in cohort.runs:
        a = pd.read_parquet(run_dir(sweep, r.run_id) / "trace.parquet")
        b = pd.read_parquet(run_dir(truth_dir, r.run_id) / "trace.parquet")
        pd.testing.assert_frame_equal(a, b, check_exact=True)
        assert read_record(sweep, r.run_id)["summary"]["final_train_loss"] == \
            read_record(truth_dir, r.run_id)["summary"]["final_train_loss"]
