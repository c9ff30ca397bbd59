"""LM-d-n (Appendix D.2.2): GPT-2 style causal decoder with sinusoidal positions and GELU.

Choices (the paper states only some of them):
- Weights: every matmul (q, k, v, attention output, MLP, readout) goes through ParamDense, so
  SP draws TN(0, sigma_w2/fan_in) as the paper says, with the Scheme's sigma_w2 for the blocks
  and sigma_w2_last for the readout (defaults 2.0 / 1.0: the paper's global defaults; it names
  no other value for its GELU Transformers). Under muP the same Scheme gives the Table-9 rules.
- Embedding: ParamEmbed, coordinates ~ TN(0, 1), not scaled by a fan_in (the paper, after
  Dinan et al. 2023); muP treats it as an `input` layer with fan_in 1 (see param.py). The
  readout is a separate matrix (no weight tying): tying would force the readout to share the
  embedding's init and muP scaling, which the paper's "sigma_w2/fan_in for all layers but the
  embedding" excludes. With vocab 4096 LM-4-128 then has ~1.85M parameters ("~2M", D.1.2).
- Positions: fixed sinusoidal table (Vaswani et al.), added to the token embedding.
- Attention logits: q.k / sqrt(d_head) under SP; q.k / d_head under muP (Yang et al. 2021's
  muP rule: after training q and k are correlated, so q.k grows like d_head, not sqrt(d_head)).
  This makes a muP model's initial attention flatter than SP's, beyond the readout scaling.
- norm: `pre_ln` (LN before attention/MLP, final LN before the readout), `post_ln` (LN after
  each residual addition, as in Vaswani et al.; no final LN), `pre_ln_no_final` (pre_ln
  without the final LN: the residual stream grows with depth and feeds the readout directly,
  the paper's sharp-initialization case).
- No dropout; biases everywhere (GPT-2), initialized to zero.
"""
from __future__ import annotations

import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from sweep.models.param import ParamDense, ParamEmbed, ParamLayerNorm, Scheme, scale_by, traced_constant

NORMS = ("pre_ln", "post_ln", "pre_ln_no_final")


def sinusoidal_positions(context: int, width: int) -> np.ndarray:
    """(context, width) table: sin on even, cos on odd coordinates, wavelengths up to 10^4 * 2pi."""
    pos = np.arange(context)[:, None]
    freq = np.exp(-math.log(10000.0) * np.arange(0, width, 2) / width)
    table = np.zeros((context, width), np.float32)
    table[:, 0::2] = np.sin(pos * freq)
    table[:, 1::2] = np.cos(pos * freq)[:, : width // 2]
    return table


class CausalSelfAttention(nn.Module):
    width: int
    heads: int
    scheme: Scheme

    @nn.compact
    def __call__(self, x_BxTxD: jax.Array) -> jax.Array:
        B, T, _ = x_BxTxD.shape
        d_head = self.width // self.heads

        def project(name: str) -> jax.Array:
            y = ParamDense(self.width, "hidden", self.scheme, name=name)(x_BxTxD)
            return y.reshape(B, T, self.heads, d_head)

        q, k, v = project("query"), project("key"), project("value")
        scale = traced_constant(self, "attn_scale", 1.0 / d_head if self.scheme.param == "mup" else 1.0 / math.sqrt(d_head))
        logits_BxHxTxT = scale_by(jnp.einsum("bqhd,bkhd->bhqk", q, k), scale)
        causal_TxT = jnp.tril(jnp.ones((T, T), dtype=bool))
        logits_BxHxTxT = jnp.where(causal_TxT, logits_BxHxTxT, jnp.finfo(logits_BxHxTxT.dtype).min)
        weights = jax.nn.softmax(logits_BxHxTxT, axis=-1)
        out = jnp.einsum("bhqk,bkhd->bqhd", weights, v).reshape(B, T, self.width)
        return ParamDense(self.width, "hidden", self.scheme, name="out")(out)


class MLP(nn.Module):
    width: int
    ratio: int
    scheme: Scheme

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        h = nn.gelu(ParamDense(self.ratio * self.width, "hidden", self.scheme, name="fc_in")(x))
        return ParamDense(self.width, "hidden", self.scheme, name="fc_out")(h)


class Block(nn.Module):
    width: int
    heads: int
    mlp_ratio: int
    pre_ln: bool
    scheme: Scheme

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        attn = CausalSelfAttention(self.width, self.heads, self.scheme, name="attn")
        mlp = MLP(self.width, self.mlp_ratio, self.scheme, name="mlp")
        ln_1, ln_2 = ParamLayerNorm(name="ln_1"), ParamLayerNorm(name="ln_2")
        if self.pre_ln:
            x = x + attn(ln_1(x))
            return x + mlp(ln_2(x))
        x = ln_1(x + attn(x))
        return ln_2(x + mlp(x))


class TransformerLM(nn.Module):
    """int tokens (B, T) with T <= context -> next-token logits (B, T, vocab)."""

    vocab: int
    depth: int = 4
    width: int = 128
    heads: int = 4
    context: int = 64
    norm: str = "pre_ln"
    mlp_ratio: int = 4
    scheme: Scheme = Scheme()

    @classmethod
    def from_config(cls, cfg: Any, scheme: Scheme, num_outputs: int) -> "TransformerLM":
        if cfg.norm not in NORMS:
            raise ValueError(f"model.norm={cfg.norm!r}; allowed: {', '.join(NORMS)}")
        if cfg.width % cfg.heads != 0:
            raise ValueError(f"model.width={cfg.width} is not divisible by model.heads={cfg.heads}")
        return cls(num_outputs, cfg.depth, cfg.width, cfg.heads, cfg.context, cfg.norm, cfg.mlp_ratio, scheme)

    def setup(self) -> None:
        self.embed = ParamEmbed(self.vocab, self.width, self.scheme)
        self.blocks = [
            Block(self.width, self.heads, self.mlp_ratio, self.norm != "post_ln", self.scheme)
            for _ in range(self.depth)
        ]
        if self.norm == "pre_ln":
            self.ln_final = ParamLayerNorm()
        self.readout = ParamDense(self.vocab, "output", self.scheme)

    def residual_stream(self, tokens_BxT: jax.Array) -> jax.Array:
        """Hidden states after the last block, before any final LayerNorm."""
        if tokens_BxT.ndim != 2:
            raise ValueError(f"TransformerLM expects int tokens of shape (B, T), got {tokens_BxT.shape}")
        T = tokens_BxT.shape[1]
        if T > self.context:
            raise ValueError(f"sequence length {T} exceeds model.context={self.context}")
        h = self.embed(tokens_BxT) + jnp.asarray(sinusoidal_positions(self.context, self.width)[:T])
        for block in self.blocks:
            h = block(h)
        return h

    def __call__(self, tokens_BxT: jax.Array, train: bool = False) -> jax.Array:
        h = self.residual_stream(tokens_BxT)
        if self.norm == "pre_ln":
            h = self.ln_final(h)
        return self.readout(h)
