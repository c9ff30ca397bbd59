"""The fast grid expansion (one Hydra compose per set of group choices, plain-dict cells) gives every
cell exactly the config, run id and swept values that composing the cell through Hydra gives."""
from __future__ import annotations

import pytest

from sweep.config import ConfigError
from sweep.grid import compose, expand, is_sweep, normalize_overrides, split_overrides
from sweep.identity import run_id, to_dict

GRIDS = [
    ["lr=pow2(-2,1)", "warmup=1,16", "param=sp,mup", "seed=0,1"],
    ["experiment=demo"],
    ["experiment=demo", "lr=1,4", "model.width=32"],
    ["model=fcn,wrn", "optimizer=sgd,adam", "lr=0.1", "loss=mse,xent", "steps=7"],
    ["data=synthetic", "data.n_train=64,128", "cluster.setup=[a,b]", "probe.dtype=float32,float64",
     "lr_unit=sharpness", "lr=1,2", "decay=none,cosine", "optimizer.momentum=0,0.9"],
    ["optimizer=gi_adam", "optimizer.b2=0.99,0.999", "param=glob(*)", "param.init_scale=1,2",
     "outcome.blowup=null,10", "cluster=slurm", "cluster.partition=gpu"],
]


def _slow(overrides):
    """Every cell through Hydra, as `sweep run` did before the fast path."""
    overrides = normalize_overrides(overrides)
    base = compose([o for o in overrides if not is_sweep(o)])
    cli = {o.split("=", 1)[0] for o in overrides}
    merged = [f"{k}={v}" for k, v in dict(base.get("grid") or {}).items() if k not in cli] + overrides
    cells = [compose(cell) for cell in split_overrides(merged)]
    for cfg in cells:  # the record's grid block: the sweeps really expanded (sweep.grid.effective_grid)
        cfg.grid = {o.split("=", 1)[0].lstrip("+~"): o.split("=", 1)[1] for o in merged if is_sweep(o)}
    return cells


@pytest.mark.parametrize("grid", GRIDS, ids=[" ".join(g)[:40] for g in GRIDS])
def test_fast_cells_equal_hydra_composition(grid):
    fast = expand(grid)
    slow = _slow(grid)
    slow_ids = list(dict.fromkeys(run_id(c) for c in slow))
    assert [s.run_id for s in fast] == slow_ids
    by_id = {run_id(c): c for c in slow}
    for spec in fast:
        truth = by_id[spec.run_id]
        assert spec.config_dict() == to_dict(truth)
        assert to_dict(spec.cfg) == to_dict(truth)  # the lazily built DictConfig too
        assert run_id(spec.cfg) == spec.run_id
        for key, value in spec.grid.items():
            got = truth
            for part in key.split("."):
                got = got[part]
            assert value == getattr(got, "name", got) if hasattr(got, "value") else value == got


def test_record_grid_block_is_the_expanded_grid_not_the_experiments():
    """A scale or a user that sweeps other values than the experiment's `grid:` block must see those
    values in every record (the quick figures ran T_wrm 1,16,64 and recorded the paper's 1,64,256,1024)."""
    specs = expand(["experiment=fig2_sp", "warmup=1,16", "steps=3"])
    assert sorted(s.grid["warmup"] for s in specs) == [1, 16]
    for spec in specs:
        assert spec.config_dict()["grid"] == {"warmup": "1,16"}
        assert dict(spec.cfg.grid) == {"warmup": "1,16"}
    fixed = expand(["experiment=fig2_sp", "warmup=64", "steps=3"])  # a fixed value is no sweep
    assert [s.config_dict()["grid"] for s in fixed] == [{}]
    kept = expand(["experiment=fig2_sp", "steps=3"])  # the experiment's own grid, as written
    assert {s.config_dict()["grid"]["warmup"] for s in kept} == {"1,64,256,1024"}


@pytest.mark.parametrize("bad, message", [
    (["lr=0.1,abc"], "lr"),
    (["model=wrn", "model.width=8,16"], "unknown config key 'model.width'"),
    (["warmup=1,2.5"], "warmup"),
    (["lr=0.1,-1"], "lr=-1.0: the target learning rate must be > 0"),
])
def test_fast_path_rejects_what_hydra_rejects(bad, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(".", r"\.")):
        expand(bad)


def test_any_sbatch_option_can_be_set_from_the_command_line():
    """cluster.additional_parameters is the user's own block (any sbatch option): a key the preset
    lacks is added, with or without `+`, one it has is replaced; the run id does not change (cluster
    is where a run executes). Before, both spellings failed with "Key 'constraint' is not in struct"."""
    from sweep.dispatch.backends import slurm_parameters

    plain = expand(["cluster=slurm_a100", "steps=3"])
    for spelling in ("cluster.additional_parameters.exclude=node1", "+cluster.additional_parameters.exclude=node1"):
        (run,) = expand(["cluster=slurm_a100", spelling, "cluster.additional_parameters.constraint=h100", "steps=3"])
        assert run.run_id == plain[0].run_id
        assert dict(run.cfg.cluster.additional_parameters) == {"constraint": "h100", "exclude": "node1"}
        assert slurm_parameters(run.cfg.cluster, "j")["additional_parameters"] == {"constraint": "h100",
                                                                                  "exclude": "node1"}
    assert split_overrides(["cluster.additional_parameters.exclude=a,b"]) == [
        ["++cluster.additional_parameters.exclude=a"], ["++cluster.additional_parameters.exclude=b"]]
    with pytest.raises(ConfigError, match="did you mean 'cluster.partition'"):
        expand(["cluster=slurm", "+cluster.partitoin=gpu"])  # a schema key's typo still fails
