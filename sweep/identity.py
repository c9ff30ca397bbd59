"""Stable identities: run ids, cohort keys and initial-sharpness groups, all hashes of config content.

A run id hashes the fully resolved config minus where/how it executes (paths, cluster, cohort
size), so the same cell of the same study has the same id on every machine and in every sweep
directory, and a re-run finds its finished record.

Ids survive upgrades: a config key added after the id scheme was frozen (the schema of
tests/fixtures/identity_keys_v1.json) is registered in ADDED_KEYS with the value that reproduces
what the code did before the key existed. A run whose value equals it hashes as if the key did not
exist, so finished sweeps stay finished; any other value (a user's choice, or a later default that
changes results) changes the id, as it must. tests/test_run_id_stability.py fails when a key is
added without an entry, and checks a sweep written before this scheme (tests/fixtures/sweep_ids_v1).
"""
from __future__ import annotations

import copy
import hashlib
import json
from typing import Any

from omegaconf import DictConfig, OmegaConf

from sweep.config import EXECUTION_KEYS, added_keys
from sweep.optimizers import HYPER_DEFAULTS

# Scalars a cohort may vary across its members (dotted keys). Everything else is shared.
MEMBER_KEYS = (
    "lr",
    "lr_init",
    "warmup",
    "seed",
    "decay_rho",
    "decay_min_factor",
    "param.init_scale",
    *(f"optimizer.{key}" for key in HYPER_DEFAULTS),  # every optimizer scalar (sweep/optimizers.py)
)
# Keys added to the schema after the id freeze -> the value that reproduces the old behaviour.
# Add an entry with every new key that can change what a run computes; put keys that cannot
# (where or how a run executes) in config.EXECUTION_KEYS instead.
# Schema fields declared with config.added(default) are collected here too (the diagnostics' switches).
ADDED_KEYS: dict[str, Any] = {
    "probe.microbatch_bytes": 0,  # issue 12: micro-batched probes (same values up to float summation order)
    "data.train": None,  # issue 19: data=text's files (only that new loader has them)
    "data.test": None,
    **added_keys(),
}
_ABSENT = object()

# What the initial sharpness depends on (lambda0 cache key).
LAMBDA0_KEYS = ("model", "param", "data", "loss", "probe", "seed")


def in_lambda0_units(lr_unit: Any) -> bool:
    """Whether an `lr_unit` value (enum, its name, or a stored string) means lr x 1/lambda0."""
    return str(getattr(lr_unit, "value", lr_unit)) in ("sharpness", "LrUnit.sharpness")


def to_dict(cfg: Any) -> dict:
    """A fresh plain dict of a config (DictConfig or dict): callers may change it freely."""
    if isinstance(cfg, DictConfig):
        return OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)  # type: ignore[return-value]
    return copy.deepcopy(dict(cfg))


def content_hash(obj: Any, length: int = 16) -> str:
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def drop_key(d: dict, dotted: str) -> None:
    head, _, rest = dotted.partition(".")
    if rest:
        if isinstance(d.get(head), dict):
            drop_key(d[head], rest)
    else:
        d.pop(head, None)


def identity_dict(cfg: Any) -> dict:
    """The config content that defines what a run computes."""
    d = to_dict(cfg)
    d.pop("defaults", None)
    for key in EXECUTION_KEYS:
        d.pop(key, None)
    for key, neutral in ADDED_KEYS.items():
        if get_dotted(d, key, _ABSENT) == neutral:
            drop_key(d, key)
    return d


def run_id(cfg: Any) -> str:
    return content_hash(identity_dict(cfg))


def cohort_key(cfg: Any) -> str:
    d = identity_dict(cfg)
    for key in MEMBER_KEYS:
        drop_key(d, key)
    return content_hash(d)


# A phase diagram's axes, and the seed its cells average over: runs that differ only in these may
# share a heatmap (a cell, or a row of cells); runs that differ in anything else may not.
AXIS_KEYS = ("lr", "lr_unit", "warmup", "seed")


def setting_key(cfg: Any) -> str:
    """What the runs of one phase diagram share: the run's identity minus the axes and the seed.
    Why: ad-hoc runs of different widths or lengths all land in results/default, and averaged into
    one cell they draw a phase diagram of no experiment."""
    d = identity_dict(cfg)
    for key in AXIS_KEYS:
        drop_key(d, key)
    return content_hash(d, length=8)


def lambda0_key(cfg: Any) -> str:
    d = identity_dict(cfg)
    keys = LAMBDA0_KEYS
    if get_dotted(d, "probe.lambda0_batches", 0):  # measured on training batches: which ones matters
        keys = (*keys, "batch_size", "data_seed")
    return content_hash({k: d.get(k) for k in keys})


def get_dotted(d: dict, dotted: str, default: Any = None) -> Any:
    for part in dotted.split("."):
        if not isinstance(d, dict) or part not in d:
            return default
        d = d[part]
    return d
