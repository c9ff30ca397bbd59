"""WRN-d-k (Appendix D.2.2): pre-activation WideResNet with LayerNorm instead of BatchNorm.

Layout: a 3x3 stem conv (role `input`, `stem_channels` filters), 3 stages of n = (d-4)/6
pre-activation basic blocks with 16*k*2^s channels (stride 2 at the start of stages s > 0),
then LayerNorm, activation, global mean pool and a dense readout (role `output`).
Every conv has a bias (the authors ran `bias=True`); a 1x1 projection shortcut is used when
the block changes the shape. With this layout WRN-16-4 on 10 classes has exactly the
2,751,146 parameters the authors' logs report (see tests/test_models_wrn.py).

LayerNorm normalizes over the channel axis only, per example and per pixel (flax's default
`nn.LayerNorm()` on NHWC), with per-channel scale and bias. Why C and not (H, W, C): it keeps
the statistics local to a position, like a Transformer's LayerNorm over features, so the
layer does not depend on the image size and never mixes information across pixels; it is
what a default flax LayerNorm in an NHWC network (the authors' setting) does. The parameter
count cannot tell the two apart (both keep per-channel scale and bias), so this is a
judgement call, documented here.
"""
from __future__ import annotations

from typing import Any, Callable

import flax.linen as nn
import jax

from sweep.models.fcn import ACTIVATIONS
from sweep.models.param import ParamConv, ParamDense, ParamLayerNorm, Scheme

NUM_STAGES = 3


def blocks_per_stage(depth: int) -> int:
    """Blocks per stage n of a WRN of depth d = 6n + 4 (Zagoruyko & Komodakis)."""
    if (depth - 4) % 6 != 0 or depth < 10:
        raise ValueError(f"WRN depth {depth} is not 6*n+4 with n >= 1 (10, 16, 22, 28, ...)")
    return (depth - 4) // 6


class PreActBlock(nn.Module):
    """x -> LN -> act -> conv3x3(stride) -> LN -> act -> conv3x3, plus the shortcut.
    The projection shortcut reads the activated input, as in pre-activation ResNets."""

    channels: int
    strides: int
    activation: Callable[[jax.Array], jax.Array]
    scheme: Scheme

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        h = self.activation(ParamLayerNorm(name="ln_1")(x))
        needs_projection = self.strides != 1 or x.shape[-1] != self.channels
        shortcut = (
            ParamConv(self.channels, 1, self.strides, "hidden", self.scheme, name="shortcut")(h)
            if needs_projection else x
        )
        h = ParamConv(self.channels, 3, self.strides, "hidden", self.scheme, name="conv_1")(h)
        h = self.activation(ParamLayerNorm(name="ln_2")(h))
        h = ParamConv(self.channels, 3, 1, "hidden", self.scheme, name="conv_2")(h)
        return h + shortcut


class WideResNet(nn.Module):
    """NHWC float inputs -> class logits."""

    num_outputs: int
    depth: int = 16
    widen: int = 4
    stem_channels: int = 16
    activation: str = "relu"
    scheme: Scheme = Scheme()

    @classmethod
    def from_config(cls, cfg: Any, scheme: Scheme, num_outputs: int) -> "WideResNet":
        blocks_per_stage(cfg.depth)  # fail at build time, not at the first call
        if cfg.activation not in ACTIVATIONS:
            raise ValueError(f"model.activation={cfg.activation!r}; allowed: {', '.join(ACTIVATIONS)}")
        return cls(num_outputs, cfg.depth, cfg.widen, cfg.stem_channels, cfg.activation, scheme)

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        if x.ndim != 4:
            raise ValueError(f"WideResNet expects NHWC images, got an input of shape {x.shape}")
        act = ACTIVATIONS[self.activation]
        h = ParamConv(self.stem_channels, 3, 1, "input", self.scheme, name="stem")(x)
        for stage in range(NUM_STAGES):
            channels = 16 * self.widen * 2**stage
            for block in range(blocks_per_stage(self.depth)):
                strides = 2 if stage > 0 and block == 0 else 1
                h = PreActBlock(channels, strides, act, self.scheme, name=f"stage{stage}_block{block}")(h)
        h = act(ParamLayerNorm(name="ln_final")(h))
        h = h.mean(axis=(1, 2))
        return ParamDense(self.num_outputs, "output", self.scheme, name="readout")(h)
