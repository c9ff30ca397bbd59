"""SP and muP in one place (Appendix D.2.1), shared by the FCN, WideResNet and Transformer.

Every weight layer has a *role*: `input` (reads the data), `hidden`, or `output` (the
readout). The role and the layer's fans decide the initial standard deviation, a constant
output multiplier, and (muP + Adam only) a per-layer learning-rate factor:

  SP            W ~ TN(0, s2/fan_in)                           multiplier 1
  muP in/hidden W ~ TN(0, s2/fan_out)                          multiplier sqrt(fan_out/fan_in)
  muP output    W ~ TN(0, s2/fan_in)                           multiplier 1/sqrt(fan_in)

TN is a normal truncated at +-2 std. With `truncation="exact"` (the default, the authors' code:
variance_scaling(..., "truncated_normal")) it is rescaled so its variance is exactly the one written;
with `truncation="jax"` (jax.nn.initializers.truncated_normal) the std written is the *untruncated*
normal's, so the actual variance is 0.774 x the one written. The multiplier scales the layer's
output, bias included: y = multiplier * (x W + b). At initialization muP's input and hidden layers
compute the same function as SP; only the readout is 1/sqrt(fan_in) smaller, which is what makes
muP networks start flat. The init-scale multiplier alpha of Gilmer et al. is NOT applied here: it
may differ between cohort members, so the engine multiplies each member's weights by its own alpha.
Adam learning-rate factors for muP (input
1/sqrt(fan_out), hidden 1/sqrt(fan_in), output 1/fan_in) are stored in the `lr_scale`
variable collection, mirroring the `params` tree, so the optimizer can apply them.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from sweep.models.conv import conv2d_nhwc

ROLES = ("input", "hidden", "output")
# Truncation at +-2 std shrinks the variance by this factor; dividing it out keeps Var = s2/fan.
_TRUNC_STD = 0.87962566103423978


@dataclass(frozen=True)
class LayerScaling:
    init_std: float
    multiplier: float
    adam_lr_factor: float


def layer_scaling(param: str, role: str, fan_in: int, fan_out: int, sigma_w2: float) -> LayerScaling:
    """Initial std, output multiplier and muP-Adam learning-rate factor of one layer."""
    if role not in ROLES:
        raise ValueError(f"layer role {role!r} is not one of {ROLES}")
    if param == "sp":
        return LayerScaling(math.sqrt(sigma_w2 / fan_in), 1.0, 1.0)
    if param != "mup":
        raise ValueError(f"parameterization {param!r} is not one of sp, mup")
    if role == "output":
        return LayerScaling(math.sqrt(sigma_w2 / fan_in), 1.0 / math.sqrt(fan_in), 1.0 / fan_in)
    lr_factor = 1.0 / math.sqrt(fan_out) if role == "input" else 1.0 / math.sqrt(fan_in)
    return LayerScaling(math.sqrt(sigma_w2 / fan_out), math.sqrt(fan_out / fan_in), lr_factor)


def traced_constant(module: nn.Module, name: str, value: float) -> Any:
    """A parameterization constant (muP multiplier, attention scale) as *data* when the caller passes
    the `consts` collection (the engine does: one compiled program then serves SP and muP cohorts of
    identical shapes, the constants being arguments), else the Python float itself. model.init
    records every constant in `consts`; the value returned at init is always the Python float."""
    if module.is_mutable_collection("consts"):
        module.variable("consts", name, lambda: jnp.asarray(value))
        return value
    if module.has_variable("consts", name):
        return module.get_variable("consts", name)
    return value


def scale_by(y: jax.Array, c: Any) -> jax.Array:
    """y * c in y's dtype (a float32 constant meets float64 probes as float64 and vice versa)."""
    return y * (c.astype(y.dtype) if isinstance(c, jax.Array) else c)


TRUNCATIONS = ("jax", "exact")


def truncated_normal_init(std: float, truncation: str = "jax"):
    """N(0, std^2) truncated at +-2 std. "jax": std of the underlying normal (variance 0.774 std^2,
    like jax.nn.initializers.truncated_normal); "exact": rescaled to variance std^2."""
    if truncation not in TRUNCATIONS:
        raise ValueError(f"truncation {truncation!r} is not one of {TRUNCATIONS}")
    scale = std / _TRUNC_STD if truncation == "exact" else std

    def init(key: jax.Array, shape: Sequence[int], dtype: Any = jnp.float32) -> jax.Array:
        return jax.random.truncated_normal(key, -2.0, 2.0, shape, dtype) * scale

    return init


@dataclass(frozen=True)
class Scheme:
    """The parameterization choices a model passes to each of its layers."""

    param: str = "sp"
    sigma_w2: float = 2.0
    sigma_w2_last: float = 1.0
    truncation: str = "exact"

    @classmethod
    def from_config(cls, cfg: Any) -> "Scheme":
        """`param.init_scale` is deliberately NOT part of the scheme: it may differ between the
        members of a cohort, so the engine multiplies each member's weights by its own scale
        (sweep.engine.init_members). Baking it in here applied member 0's scale to everyone."""
        return cls(cfg.name, float(cfg.sigma_w2), float(cfg.sigma_w2_last), str(getattr(cfg, "truncation", "exact")))

    def scaling(self, role: str, fan_in: int, fan_out: int) -> LayerScaling:
        s2 = self.sigma_w2_last if role == "output" else self.sigma_w2
        return layer_scaling(self.param, role, fan_in, fan_out, s2)


class _ScaledLayer(nn.Module):
    """Shared bookkeeping: create the kernel, the zero bias and the lr_scale entries."""

    def make_kernel(self, scheme: Scheme, role: str, shape: tuple, fan_in: int, fan_out: int):
        sc = scheme.scaling(role, fan_in, fan_out)
        kernel = self.param("kernel", truncated_normal_init(sc.init_std, scheme.truncation), shape)
        self._record_lr_scale("kernel", sc)
        return kernel, sc

    def _record_lr_scale(self, name: str, sc: LayerScaling) -> None:
        # Only written at init (model.init returns it); apply() needs just `params`.
        if self.is_mutable_collection("lr_scale"):
            self.variable("lr_scale", name, lambda: jnp.asarray(sc.adam_lr_factor, jnp.float32))

    def make_bias(self, sc: LayerScaling, features: int):
        self._record_lr_scale("bias", sc)
        return self.param("bias", nn.initializers.zeros, (features,))


class ParamDense(_ScaledLayer):
    """Dense layer under SP or muP: y = multiplier * (x @ W + b). The multiplier scales the layer's
    *output*, bias included (Appendix D.2.1; the authors multiply after a Dense layer with bias).
    A bias added after the multiplier is not rescaled by muP's 1/sqrt(fan_in) readout factor and adds
    a constant kernel of ~2/C to the Hessian (muP lambda0 0.28 instead of ~0.10 at mean-MSE)."""

    features: int
    role: str = "hidden"
    scheme: Scheme = Scheme()
    use_bias: bool = True

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        fan_in = x.shape[-1]
        kernel, sc = self.make_kernel(self.scheme, self.role, (fan_in, self.features), fan_in, self.features)
        y = x @ kernel.astype(x.dtype)
        if self.use_bias:
            y = y + self.make_bias(sc, self.features).astype(x.dtype)
        return scale_by(y, traced_constant(self, "multiplier", sc.multiplier))


class ParamConv(_ScaledLayer):
    """NHWC convolution under SP or muP. fan_in = k*k*C_in, fan_out = k*k*C_out (jax convention);
    the authors' code used H*W*C_in for fan_in, which we do not repeat."""

    features: int
    kernel_size: int = 3
    strides: int = 1
    role: str = "hidden"
    scheme: Scheme = Scheme()
    use_bias: bool = True

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        k, c_in = self.kernel_size, x.shape[-1]
        fan_in, fan_out = k * k * c_in, k * k * self.features
        kernel, sc = self.make_kernel(self.scheme, self.role, (k, k, c_in, self.features), fan_in, fan_out)
        y = conv2d_nhwc(x, kernel.astype(x.dtype), self.strides)  # fast inside loops on CPU too
        if self.use_bias:
            y = y + self.make_bias(sc, self.features).astype(x.dtype)
        return scale_by(y, traced_constant(self, "multiplier", sc.multiplier))


class ParamLayerNorm(nn.LayerNorm):
    """flax LayerNorm that also writes `lr_scale` entries (1.0) for its scale and bias, so the
    lr_scale tree mirrors the params tree of models with normalization layers. Gains and
    biases are width-independent vectors: muP gives them an O(1) Adam learning rate."""

    @nn.compact
    def __call__(self, x: jax.Array, *args: Any, **kwargs: Any) -> jax.Array:
        if self.is_mutable_collection("lr_scale"):
            for name, used in (("scale", self.use_scale), ("bias", self.use_bias)):
                if used:
                    self.variable("lr_scale", name, lambda: jnp.asarray(1.0, jnp.float32))
        return super().__call__(x, *args, **kwargs)


class ParamEmbed(_ScaledLayer):
    """Token embedding: a lookup, i.e. a matmul with a one-hot input, so its effective fan_in
    is 1, not the vocabulary size (Dinan et al. 2023: embeddings involve no matrix
    multiplication). With role `input` and fan_in=1, SP draws W ~ TN(0, sigma2) and muP draws
    TN(0, sigma2/width) with multiplier sqrt(width): the same initial function, and muP's
    Adam factor 1/sqrt(width) gives the embedding vectors an O(1) update. `sigma2` is the
    per-coordinate variance (1.0: O(1) coordinates, like sinusoidal positions), independent
    of the Scheme's sigma_w2, which is a gain for layers followed by a nonlinearity."""

    num_embeddings: int
    features: int
    scheme: Scheme = Scheme()
    sigma2: float = 1.0

    @nn.compact
    def __call__(self, tokens: jax.Array) -> jax.Array:
        sc = layer_scaling(self.scheme.param, "input", 1, self.features, self.sigma2)
        table = self.param("embedding", truncated_normal_init(sc.init_std, self.scheme.truncation),
                           (self.num_embeddings, self.features))
        self._record_lr_scale("embedding", sc)
        return scale_by(jnp.take(table, tokens, axis=0), traced_constant(self, "multiplier", sc.multiplier))
