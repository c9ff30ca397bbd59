"""Model registry: a config and the data set's shape give a flax Module with the `(x, train)` call."""
from __future__ import annotations

from typing import Any

import flax.linen as nn

from sweep.models.param import Scheme


def build_model(model_cfg: Any, param_cfg: Any, num_outputs: int) -> nn.Module:
    """`num_outputs` is the class count, or the vocabulary size for language models."""
    scheme = Scheme.from_config(param_cfg)
    name = model_cfg.name
    if name == "fcn":
        from sweep.models.fcn import FCN

        return FCN(num_outputs, model_cfg.depth, model_cfg.width, model_cfg.activation,
                   model_cfg.use_bias, scheme)
    if name == "wrn":
        from sweep.models.wrn import WideResNet

        return WideResNet.from_config(model_cfg, scheme, num_outputs)
    if name == "transformer":
        from sweep.models.transformer import TransformerLM

        return TransformerLM.from_config(model_cfg, scheme, num_outputs)
    raise ValueError(f"unknown model '{name}'; allowed: fcn, wrn, transformer")
