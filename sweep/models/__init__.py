"""Model registry: a config and the data set's shape give a flax Module with the `(x, train)` call.

Like the data loaders' registry (sweep/data/base.py), each name maps to "module:Class"; the class has
`from_config(model_cfg, scheme, num_outputs)`. Modules import lazily, so `sweep --help` and the CLI's
config checks never import flax. A new architecture is one module plus one `register_model` line.
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from sweep.errors import ConfigError

if TYPE_CHECKING:
    import flax.linen as nn

_MODELS: dict[str, str] = {
    "fcn": "sweep.models.fcn:FCN",
    "wrn": "sweep.models.wrn:WideResNet",
    "transformer": "sweep.models.transformer:TransformerLM",
}


def register_model(name: str, target: str) -> None:
    """Make `model.name=<name>` build `target` ("module:Class" with a `from_config` classmethod)."""
    if ":" not in target:
        raise ValueError(f"register_model({name!r}, {target!r}): target must be 'module:Class'")
    _MODELS[name] = target


def model_names() -> list[str]:
    return sorted(_MODELS)


def model_class(name: str) -> type:
    if name not in _MODELS:
        raise ConfigError(f"unknown model '{name}'; allowed: {', '.join(model_names())} (model.name=...)")
    module, cls = _MODELS[name].split(":")
    return getattr(importlib.import_module(module), cls)


def build_model(model_cfg: Any, param_cfg: Any, num_outputs: int) -> "nn.Module":
    """`num_outputs` is the class count, or the vocabulary size for language models."""
    from sweep.models.param import Scheme

    return model_class(model_cfg.name).from_config(model_cfg, Scheme.from_config(param_cfg), num_outputs)
