"""FCN-d-n (Appendix D.2.2): `depth` dense layers of width n, ReLU, readout to the classes."""
from __future__ import annotations

from typing import Any, Callable

import flax.linen as nn
import jax

from sweep.models.param import ParamDense, Scheme

ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "relu": nn.relu,
    "tanh": nn.tanh,
    "gelu": nn.gelu,
    "linear": lambda x: x,
}


class FCN(nn.Module):
    """depth = number of weight layers (depth 4: input, 2 hidden, readout). Inputs are flattened."""

    num_outputs: int
    depth: int = 4
    width: int = 512
    activation: str = "relu"
    use_bias: bool = True
    scheme: Scheme = Scheme()

    @classmethod
    def from_config(cls, cfg: Any, scheme: Scheme, num_outputs: int) -> "FCN":
        if cfg.activation not in ACTIVATIONS:
            raise ValueError(f"model.activation={cfg.activation!r}; allowed: {', '.join(ACTIVATIONS)}")
        return cls(num_outputs, cfg.depth, cfg.width, cfg.activation, cfg.use_bias, scheme)

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        act = ACTIVATIONS[self.activation]
        h = x.reshape((x.shape[0], -1))
        for i in range(self.depth - 1):
            role = "input" if i == 0 else "hidden"
            h = act(ParamDense(self.width, role, self.scheme, self.use_bias, name=f"dense_{i}")(h))
        return ParamDense(self.num_outputs, "output", self.scheme, self.use_bias, name="readout")(h)
