"""Stable identities: run ids, cohort keys and initial-sharpness groups, all hashes of config content.

A run id hashes the fully resolved config minus where/how it executes (paths, cluster, cohort
size), so the same cell of the same study has the same id on every machine and in every sweep
directory, and a re-run finds its finished record.
"""
from __future__ import annotations

import hashlib
import json
from typing import Any

from omegaconf import DictConfig, OmegaConf

from sweep.config import EXECUTION_KEYS

# Scalars a cohort may vary across its members (dotted keys). Everything else is shared.
MEMBER_KEYS = (
    "lr",
    "lr_init",
    "warmup",
    "seed",
    "decay_rho",
    "decay_min_factor",
    "param.init_scale",
    "optimizer.momentum",
    "optimizer.b1",
    "optimizer.b2",
    "optimizer.eps",
)
# What the initial sharpness depends on (lambda0 cache key).
LAMBDA0_KEYS = ("model", "param", "data", "loss", "probe", "seed")


def to_dict(cfg: Any) -> dict:
    if isinstance(cfg, DictConfig):
        return OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)  # type: ignore[return-value]
    return dict(cfg)


def _hash(obj: Any, length: int = 16) -> str:
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def _drop(d: dict, dotted: str) -> None:
    head, _, rest = dotted.partition(".")
    if rest:
        if isinstance(d.get(head), dict):
            _drop(d[head], rest)
    else:
        d.pop(head, None)


def identity_dict(cfg: Any) -> dict:
    """The config content that defines what a run computes."""
    d = to_dict(cfg)
    d.pop("defaults", None)
    for key in EXECUTION_KEYS:
        d.pop(key, None)
    return d


def run_id(cfg: Any) -> str:
    return _hash(identity_dict(cfg))


def cohort_key(cfg: Any) -> str:
    d = identity_dict(cfg)
    for key in MEMBER_KEYS:
        _drop(d, key)
    return _hash(d)


def lambda0_key(cfg: Any) -> str:
    d = identity_dict(cfg)
    return _hash({k: d.get(k) for k in LAMBDA0_KEYS})


def get_dotted(d: dict, dotted: str, default: Any = None) -> Any:
    for part in dotted.split("."):
        if not isinstance(d, dict) or part not in d:
            return default
        d = d[part]
    return d
