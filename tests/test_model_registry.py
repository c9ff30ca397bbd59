"""The model registry: names map to classes with from_config; unknown names are one-line user errors;
a new architecture is one module plus one register_model line."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import pytest
from omegaconf import OmegaConf

from sweep import models
from sweep.errors import ConfigError, UserError, format_user_error

def _param_cfg():
    from sweep.config import ParamConfig

    return OmegaConf.structured(ParamConfig)


def test_fcn_from_registry_matches_direct_construction() -> None:
    from sweep.models.fcn import FCN
    from sweep.models.param import Scheme

    cfg = OmegaConf.create({"name": "fcn", "depth": 3, "width": 8, "activation": "relu", "use_bias": True})
    built = models.build_model(cfg, _param_cfg(), 10)
    direct = FCN(10, 3, 8, "relu", True, Scheme.from_config(_param_cfg()))
    x = jnp.ones((2, 5))
    p1 = built.init(jax.random.PRNGKey(0), x)
    p2 = direct.init(jax.random.PRNGKey(0), x)
    assert jax.tree.all(jax.tree.map(lambda a, b: bool(jnp.array_equal(a, b)), p1, p2))
    assert built == direct


def test_unknown_model_is_one_line_user_error() -> None:
    with pytest.raises(ConfigError) as exc:
        models.model_class("resnet9000")
    assert isinstance(exc.value, UserError)
    msg = format_user_error(exc.value)
    assert msg == str(exc.value) and "fcn" in msg and "transformer" in msg and "model.name" in msg


def test_registered_model_builds(tmp_path, monkeypatch) -> None:
    (tmp_path / "my_arch.py").write_text(
        "import flax.linen as nn\n"
        "class Linear(nn.Module):\n"
        "    num_outputs: int\n"
        "    @classmethod\n"
        "    def from_config(cls, cfg, scheme, num_outputs):\n"
        "        return cls(num_outputs)\n"
        "    @nn.compact\n"
        "    def __call__(self, x, train=False):\n"
        "        return nn.Dense(self.num_outputs)(x.reshape((x.shape[0], -1)))\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(models, "_MODELS", dict(models._MODELS))  # undone after the test
    models.register_model("linear", "my_arch:Linear")
    assert "linear" in models.model_names()
    net = models.build_model(OmegaConf.create({"name": "linear"}), _param_cfg(), 3)
    out = net.apply(net.init(jax.random.PRNGKey(0), jnp.ones((1, 4))), jnp.ones((2, 4)))
    assert out.shape == (2, 3)
    with pytest.raises(ValueError, match="module:Class"):
        models.register_model("bad", "no_colon")
