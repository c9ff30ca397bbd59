"""Divergence is NaN/inf (the paper's rule); a spike that comes back is never "diverged" (issue 8, 1d)."""
from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pandas as pd
from omegaconf import OmegaConf

from sweep.cli import main
from sweep.engine import divergence_check


def _walk(losses, **outcome):
    """Feed a loss sequence through the per-update check; return the update index where it diverged."""
    cfg = OmegaConf.create({"blowup": None, "blowup_patience": 100, **outcome})
    over, loss0 = jnp.asarray(0, jnp.int32), jnp.asarray(losses[0], jnp.float32)
    for t, loss in enumerate(losses):
        over, bad = divergence_check(jnp.asarray(loss, jnp.float32), loss0, over, cfg)
        if bool(bad):
            return t
    return None


def test_only_nan_or_inf_diverges_by_default():
    assert _walk([1.0, 1e6, 1e24, 2.0, 0.5]) is None  # a spike of 1e24 that comes back
    assert _walk([1.0, 1e6, float("inf")]) == 2
    assert _walk([1.0, 0.5, float("nan")]) == 2


def test_blowup_early_stop_needs_the_blowup_to_stay():
    spike = [1.0, 5e3, 5e3, 2.0, 5e3, 5e3, 5e3, 1.0]
    assert _walk(spike, blowup=1e3, blowup_patience=3) == 6  # the third consecutive update above 1e3 x
    assert _walk(spike[:4], blowup=1e3, blowup_patience=3) is None  # two above, then back: not diverged
    assert _walk([1.0, float("nan")], blowup=1e3, blowup_patience=3) == 1  # NaN stays immediate


def test_adam_spike_that_recovers_is_failed_not_diverged(tmp_path, capsys):
    """Adam at lr=1 on the synthetic set: the training loss jumps by > 1e3 x its initial value and
    comes back (Section 5.2: Adam fails, it does not diverge); the record says failed, with no
    divergence step, and the trace keeps every step."""
    rc = main(["run", "data=synthetic", "model.width=32", "model.depth=3", "optimizer=adam", "lr=1.0",
               "steps=60", "probe.every=1", "probe.sharpness=false", "probe.precond_sharpness=false",
               "batch_size=32", f"results_dir={tmp_path}", "sweep_name=a"])
    assert rc == 0
    (run,) = list((tmp_path / "a" / "runs").iterdir())
    import json

    rec = json.loads((run / "record.json").read_text())
    trace = pd.read_parquet(run / "trace.parquet")
    first = float(trace["train_loss"].iloc[0])
    assert float(trace["train_loss"].max()) > 1e3 * first  # the spike happened
    assert np.isfinite(trace["train_loss"].iloc[:-1]).all()
    assert rec["outcome"] == "failed" and rec["summary"]["divergence_step"] is None
    assert rec["summary"]["steps_run"] == 60 and trace["step"].max() == 60
