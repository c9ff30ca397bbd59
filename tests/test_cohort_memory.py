"""Cohorts that do not fit memory.train_mib train in parts: the estimate, the split, and the
records (identical to one whole cohort)."""
import jax
import jax.numpy as jnp
import pytest
from omegaconf import OmegaConf

from sweep.cohort_memory import member_train_bytes, split_to_fit, train_budget_bytes, train_microbatches
from sweep.config import ConfigError


def test_split_keeps_order_and_makes_equal_parts():
    members = list(range(16))
    parts = split_to_fit(members, member_bytes=800, budget_bytes=7 * 800)
    assert parts == [list(range(0, 6)), list(range(6, 12)), list(range(12, 16))]
    assert split_to_fit(members, 800, 16 * 800) == [members]
    assert split_to_fit(members, 800, 0) == [members]  # 0: no limit
    assert split_to_fit(members, 800, 100) == [[m] for m in members]  # at least one member a part


def test_activation_bytes_counts_every_intermediate_against_hand_count():
    from sweep.curvature import activation_bytes

    def f(x):  # two (64, 32) float32 intermediates and a scalar
        return (jnp.sin(x) * 2.0).sum()

    x = jax.ShapeDtypeStruct((64, 32), jnp.float32)
    assert activation_bytes(f, x) == 2 * 64 * 32 * 4 + 4
    assert activation_bytes(jax.jit(f), x) >= activation_bytes(f, x)  # the pjit's inner values are counted too


def test_member_bytes_grow_with_the_batch(compose_cfg):
    from sweep.data.base import load_dataset
    from sweep.workload import build_workload

    cfg = compose_cfg("data=synthetic", "model=fcn", "model.width=32", "model.depth=2")
    w = build_workload(cfg, load_dataset(cfg.data))
    small, big = member_train_bytes(w, 8), member_train_bytes(w, 64)
    assert 0 < small < big
    # a width-32 FCN at batch 64 keeps a few (64, 32) activations: far below a MiB, above one of them
    assert 64 * 32 * 4 < big < 2**20


def test_training_microbatches_divide_the_batch_and_fit_the_budget():
    assert train_microbatches(100, 0, 128) == 1  # no limit
    assert train_microbatches(100, 100, 128) == 1  # fits whole
    assert train_microbatches(290, 100, 128) == 4  # 3 does not divide 128
    assert train_microbatches(290, 100, 96) == 3
    assert train_microbatches(10**9, 1, 128) == 128  # nothing fits: one example at a time
    assert train_microbatches(10**9, 1, 1) == 1


def test_budget_key():
    assert train_budget_bytes(OmegaConf.create({"memory": {"train_mib": 3}})) == 3 * 2**20
    assert train_budget_bytes(OmegaConf.create({"memory": {"train_mib": 0}})) == 0
    assert train_budget_bytes(OmegaConf.create({"memory": {"train_mib": None}})) > 2**28


def test_negative_budget_is_a_config_error(compose_cfg):
    with pytest.raises(ConfigError, match="memory.train_mib"):
        compose_cfg("memory.train_mib=-1")


TINY = ["data=synthetic", "data.n_train=128", "data.n_test=64", "model.width=16", "model.depth=2",
        "steps=12", "probe.every=4", "probe.batch_size=64", "batch_size=32", "probe.lanczos_iters=20",
        "optimizer=sgd"]


def test_cohort_in_parts_gives_the_records_of_one_cohort(compose_cfg, tmp_path):
    """memory.train_mib too small for two members: each member trains alone, one after another,
    with the progress of the whole cohort moving forward; records equal the one-cohort records."""
    import pandas as pd

    from sweep.grid import Cohort, RunSpec
    from sweep.identity import cohort_key, run_id
    from sweep.runner import run_cohort

    lrs = ["0.05", "0.2", "500.0", "1e-7"]

    def cohort(extra):
        cfgs = [compose_cfg(*TINY, f"lr={lr}", *extra) for lr in lrs]
        assert len({cohort_key(c) for c in cfgs}) == 1
        return Cohort(cohort_key(cfgs[0]), [RunSpec(run_id(c), c, {}) for c in cfgs])

    whole, parts = cohort(["memory.train_mib=0"]), cohort(["memory.train_mib=1e-6"])
    assert [r.run_id for r in whole.runs] == [r.run_id for r in parts.runs]  # not part of run ids
    seen = []
    rec_whole = run_cohort(whole, tmp_path / "whole")
    rec_parts = run_cohort(parts, tmp_path / "parts", progress=lambda done, total: seen.append((done, total)))
    assert [r["timings"]["cohort_size"] for r in rec_whole] == [4] * 4
    assert [r["timings"]["cohort_size"] for r in rec_parts] == [1] * 4
    # one member alone does not fit 1e-6 MiB either: each step's gradient is the mean over 32
    # one-example micro-batches, and the traces still equal the whole-batch ones below
    assert [r["timings"]["train_microbatches"] for r in rec_parts] == [32] * 4
    assert [r["timings"]["train_microbatches"] for r in rec_whole] == [1] * 4
    assert {t for _, t in seen} == {4 * 13} and [d for d, _ in seen] == sorted(d for d, _ in seen)
    assert seen[-1][0] == 4 * 13
    assert {r["outcome"] for r in rec_parts} == {"converged", "diverged", "failed"}
    for a, b in zip(rec_whole, rec_parts):
        assert (a["run_id"], a["outcome"]) == (b["run_id"], b["outcome"])
        ta = pd.read_parquet(tmp_path / "whole" / "runs" / a["run_id"] / "trace.parquet")
        tb = pd.read_parquet(tmp_path / "parts" / "runs" / b["run_id"] / "trace.parquet")
        pd.testing.assert_frame_equal(ta, tb, rtol=2e-4, atol=1e-6)


def test_parts_checkpoint_in_their_own_directories(compose_cfg, tmp_path):
    """With a checkpointer, each part saves under the directory of its own member list (what a
    requeued task that trains just that part looks for), and clears it when its records are written."""
    from sweep.checkpoint import Checkpointer, cohort_checkpoint_dir
    from sweep.grid import Cohort, RunSpec
    from sweep.identity import cohort_key, run_id
    from sweep.runner import run_cohort

    cfgs = [compose_cfg(*TINY, f"lr={lr}", "memory.train_mib=1e-6") for lr in ("0.05", "0.1")]
    cohort = Cohort(cohort_key(cfgs[0]), [RunSpec(run_id(c), c, {}) for c in cfgs])
    ckpt = Checkpointer(tmp_path / "unused", every_chunks=1)
    dirs = []
    save = ckpt.save

    def spy(*args, **kwargs):
        dirs.append(ckpt.directory)
        return save(*args, **kwargs)

    ckpt.save = spy
    run_cohort(cohort, tmp_path / "sweep", checkpointer=ckpt)
    expected = [cohort_checkpoint_dir(tmp_path / "sweep", cohort.key, [r.run_id]) for r in cohort.runs]
    assert list(dict.fromkeys(dirs)) == expected
    assert not any(d.exists() and any(d.iterdir()) for d in expected)
