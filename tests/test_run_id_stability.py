"""Run ids survive upgrades (issue 9.11): a sweep written by an older main is still finished, and a
key added with a behaviour-preserving default keeps every id, while a value that changes results
changes it."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

from omegaconf import OmegaConf

from sweep import config as schema
from sweep import identity, store
from sweep.grid import expand

FIXTURES = Path(__file__).parent / "fixtures"
V1_OVERRIDES = ["model.width=8", "steps=3", "lr=0.5,1", "lr_unit=sharpness", "param=sp,mup",
                "optimizer=sgd,adam", "sweep_name=v1"]


def _flat_keys(d: dict, prefix: str = "") -> set[str]:
    out = set()
    for k, v in d.items():
        out |= _flat_keys(v, f"{prefix}{k}.") if isinstance(v, dict) and v else {prefix + k}
    return out


def _schema_keys() -> set[str]:
    """Every identity key of every group option of today's schema."""
    keys: set[str] = set()
    for group, options in (("model", schema.MODEL_OPTIONS), ("param", schema.PARAM_OPTIONS),
                           ("optimizer", schema.OPTIMIZER_OPTIONS), ("data", schema.DATA_OPTIONS)):
        for node in options.values():
            base = OmegaConf.structured(schema.Config)
            base.model, base.param = OmegaConf.structured(schema.FCNConfig), OmegaConf.structured(schema.ParamConfig)
            base.optimizer, base.data = OmegaConf.structured(schema.SGDConfig), OmegaConf.structured(schema.DigitsConfig)
            base.cluster = OmegaConf.structured(schema.ClusterConfig)
            base[group] = OmegaConf.structured(node)
            d = OmegaConf.to_container(base, resolve=True, enum_to_str=True, throw_on_missing=False)
            keys |= _flat_keys(identity.identity_dict(d))
    return keys


def test_old_sweep_is_still_finished(tmp_path):
    sweep = tmp_path / "v1"
    shutil.copytree(FIXTURES / "sweep_ids_v1", sweep)
    stored = {p.name for p in (sweep / "runs").iterdir()}
    runs = expand(V1_OVERRIDES + [f"results_dir={tmp_path}"])
    assert {r.run_id for r in runs} == stored
    assert all(store.is_finished(sweep, r.run_id) for r in runs)  # legacy records: no sizes stored


def test_every_new_key_is_registered():
    """A key added to the schema without an ADDED_KEYS entry would rename every finished run."""
    frozen = set(json.loads((FIXTURES / "identity_keys_v1.json").read_text()))
    new = _schema_keys() - frozen
    unregistered = sorted(k for k in new if k not in identity.ADDED_KEYS
                          and not any(k.startswith(p + ".") for p in identity.ADDED_KEYS))
    assert not unregistered, (f"new config keys {unregistered}: add them to identity.ADDED_KEYS with the "
                              f"value that reproduces the old behaviour")


def test_added_key_at_neutral_value_keeps_the_id(monkeypatch):
    cfg = expand(["model.width=8", "steps=3"])[0].cfg
    before = identity.run_id(cfg)
    d = identity.to_dict(cfg)
    d["probe"]["microbatch_bytes"] = 0  # a hypothetical new key whose 0 means "as before"
    monkeypatch.setitem(identity.ADDED_KEYS, "probe.microbatch_bytes", 0)
    assert identity.run_id(d) == before
    d["probe"]["microbatch_bytes"] = 1 << 20  # a value that may change results: a new id
    assert identity.run_id(d) != before
    # a changed value of an existing key always changes the id
    d2 = identity.to_dict(cfg)
    d2["lr"] = float(d2["lr"]) * 2
    assert identity.run_id(d2) != before
