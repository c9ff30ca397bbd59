"""TransformerLM: shapes, causality, the three norm variants, attention math, SP/muP scaling."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sweep.config import ParamConfig, TransformerConfig
from sweep.models import build_model
from sweep.models.param import Scheme
from sweep.models.transformer import CausalSelfAttention, TransformerLM, sinusoidal_positions

VOCAB, CONTEXT = 97, 16


def small_lm(norm="pre_ln", param="sp", width=32, depth=2, heads=4):
    return TransformerLM(VOCAB, depth=depth, width=width, heads=heads, context=CONTEXT, norm=norm,
                         scheme=Scheme(param))


def tokens(seed=1, batch=3, length=CONTEXT):
    return jax.random.randint(jax.random.PRNGKey(seed), (batch, length), 0, VOCAB)


def init(model, x):
    """Eager (not jit) on purpose: the many same-shape variants here then share XLA's per-op
    compile cache, ~4x faster in total on CPU. The RBG key avoids the default partitionable
    threefry, whose random bits XLA:CPU compiles several times slower."""
    return model.init(jax.random.key(0, impl="rbg"), x)


def apply_fn(model, method=None):
    return lambda p, x: model.apply({"params": p}, x, method=method)


@pytest.fixture(scope="module")
def variants():
    """The three norm variants, same seed: {norm: (model, variables)}."""
    x = tokens()
    return {norm: (small_lm(norm), init(small_lm(norm), x)) for norm in ("pre_ln", "post_ln", "pre_ln_no_final")}


def layer_norm(h):
    """Reference LayerNorm at init (scale 1, bias 0), flax's eps 1e-6."""
    mu = h.mean(-1, keepdims=True)
    return (h - mu) / np.sqrt(((h - mu) ** 2).mean(-1, keepdims=True) + 1e-6)


def test_output_shape_short_sequences_and_too_long(variants):
    model, variables = variants["pre_ln"]
    assert apply_fn(model)(variables["params"], tokens()).shape == (3, CONTEXT, VOCAB)
    assert apply_fn(model)(variables["params"], tokens(length=5)).shape == (3, 5, VOCAB)
    with pytest.raises(ValueError, match="exceeds model.context"):
        model.apply({"params": variables["params"]}, tokens(length=CONTEXT + 1))


@pytest.mark.parametrize("norm", ["pre_ln", "post_ln"])
def test_causal_mask(variants, norm):
    """Changing tokens after position t leaves the logits at positions <= t unchanged."""
    model, variables = variants[norm]
    t = 6
    x = tokens()
    x_changed = x.at[:, t + 1:].set((x[:, t + 1:] + 1 + jnp.arange(CONTEXT - t - 1)) % VOCAB)
    f = apply_fn(model)
    a, b = np.asarray(f(variables["params"], x)), np.asarray(f(variables["params"], x_changed))
    np.testing.assert_allclose(a[:, : t + 1], b[:, : t + 1], rtol=1e-5, atol=1e-5)
    assert np.abs(a[:, t + 1:] - b[:, t + 1:]).max() > 1e-2


def test_pre_ln_and_no_final_differ_only_by_the_final_norm(variants):
    (pre, v_pre), (nof, v_nof) = variants["pre_ln"], variants["pre_ln_no_final"]
    p_pre, p_nof = v_pre["params"], v_nof["params"]
    assert set(p_pre) - set(p_nof) == {"ln_final"} and set(p_nof) <= set(p_pre)
    for a, b in zip(jax.tree_util.tree_leaves({k: p_pre[k] for k in p_nof}), jax.tree_util.tree_leaves(p_nof)):
        np.testing.assert_array_equal(a, b)
    x = tokens()
    h = np.asarray(apply_fn(nof, TransformerLM.residual_stream)(p_nof, x))
    w, b = np.asarray(p_nof["readout"]["kernel"]), np.asarray(p_nof["readout"]["bias"])
    np.testing.assert_allclose(apply_fn(nof)(p_nof, x), h @ w + b, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(apply_fn(pre)(p_pre, x), layer_norm(h) @ w + b, rtol=1e-4, atol=1e-4)


def test_post_ln_normalizes_the_residual_stream_and_differs(variants):
    (post, v_post), (pre, v_pre) = variants["post_ln"], variants["pre_ln"]
    assert "ln_final" not in v_post["params"]
    x = tokens()
    h_post = np.asarray(apply_fn(post, TransformerLM.residual_stream)(v_post["params"], x))
    np.testing.assert_allclose(h_post.mean(-1), 0.0, atol=1e-4)
    np.testing.assert_allclose(h_post.std(-1), 1.0, atol=1e-3)
    h_pre = np.asarray(apply_fn(pre, TransformerLM.residual_stream)(v_pre["params"], x))
    assert np.abs(h_pre.std(-1) - 1.0).max() > 0.1  # pre-LN stream is not normalized
    # Same weights (post_ln's tree is pre_ln's minus ln_final), different function.
    same_weights = {k: v for k, v in v_pre["params"].items() if k != "ln_final"}
    diff = apply_fn(post)(same_weights, x) - apply_fn(pre)(v_pre["params"], x)
    assert float(jnp.abs(diff).max()) > 1e-2


def reference_attention(p, x, heads, scale):
    """Causal multi-head attention from the raw kernels, written with numpy loops."""
    B, T, D = x.shape
    dh = D // heads
    q, k, v = (x @ np.asarray(p[n]["kernel"]) + np.asarray(p[n]["bias"]) for n in ("query", "key", "value"))
    out = np.zeros_like(q)
    for h in range(heads):
        sl = slice(h * dh, (h + 1) * dh)
        for t in range(T):
            s = np.einsum("bd,bsd->bs", q[:, t, sl], k[:, : t + 1, sl]) * scale
            w = np.exp(s - s.max(-1, keepdims=True))
            w /= w.sum(-1, keepdims=True)
            out[:, t, sl] = np.einsum("bs,bsd->bd", w, v[:, : t + 1, sl])
    return out @ np.asarray(p["out"]["kernel"]) + np.asarray(p["out"]["bias"])


@pytest.mark.parametrize("param,scale", [("sp", 1 / math.sqrt(8)), ("mup", 1 / 8)])
def test_attention_matches_reference_with_sp_and_mup_logit_scale(param, scale):
    """SP scales q.k by 1/sqrt(d_head), muP by 1/d_head (d_head = 32/4 = 8). All four
    projections are 32 -> 32, so muP's multiplier sqrt(fan_out/fan_in) is 1 and the raw
    kernels are the effective weights in both parameterizations."""
    attn = CausalSelfAttention(32, 4, Scheme(param))
    x = np.asarray(jax.random.normal(jax.random.PRNGKey(3), (2, 7, 32)))
    params = init(attn, x)["params"]
    got = apply_fn(attn)(params, x)
    np.testing.assert_allclose(got, reference_attention(params, x, 4, scale), rtol=1e-4, atol=1e-5)


def test_lr_scale_mirrors_params_and_roles():
    model = small_lm(param="mup", width=32)
    variables = init(model, tokens())
    params, lr = variables["params"], variables["lr_scale"]
    assert jax.tree_util.tree_structure(params) == jax.tree_util.tree_structure(lr)
    np.testing.assert_allclose(lr["embed"]["embedding"], 1 / math.sqrt(32), rtol=1e-6)  # input, fan_out 32
    np.testing.assert_allclose(lr["blocks_0"]["attn"]["query"]["kernel"], 1 / math.sqrt(32), rtol=1e-6)
    np.testing.assert_allclose(lr["blocks_1"]["mlp"]["fc_out"]["kernel"], 1 / math.sqrt(128), rtol=1e-6)
    np.testing.assert_allclose(lr["readout"]["kernel"], 1 / 32, rtol=1e-6)
    assert float(lr["blocks_0"]["ln_1"]["scale"]) == 1.0


def test_sp_init_variances():
    """Embedding coordinates ~ variance 1 (not scaled by a fan); matmuls sigma_w2/fan_in
    (2/width for blocks, 1/width for the readout)."""
    model = TransformerLM(512, depth=1, width=128, heads=4, context=8, scheme=Scheme("sp", truncation="exact"))
    p = init(model, jnp.zeros((1, 8), jnp.int32))["params"]
    assert float(jnp.var(p["embed"]["embedding"])) == pytest.approx(1.0, rel=0.03)
    assert float(jnp.var(p["blocks_0"]["mlp"]["fc_in"]["kernel"])) == pytest.approx(2 / 128, rel=0.03)
    assert float(jnp.var(p["readout"]["kernel"])) == pytest.approx(1 / 128, rel=0.03)


@pytest.mark.parametrize("norm", ["pre_ln", "post_ln", "pre_ln_no_final"])
def test_mup_logits_shrink_like_inverse_sqrt_width(norm):
    """SP logits stay O(1) with width; muP's are 1/sqrt(width) of SP's (the readout
    multiplier), up to the different attention scale: the SP/muP std ratio divided by
    sqrt(width) is ~1 at widths 32 and 128 (measured 0.99-1.05 at 64 and 256)."""
    x = tokens(batch=4)
    for width in (32, 128):
        std = {p: float(apply_fn(m := small_lm(norm, p, width=width))(init(m, x)["params"], x).std())
               for p in ("sp", "mup")}
        assert std["sp"] / std["mup"] / math.sqrt(width) == pytest.approx(1.0, abs=0.1)


def test_sinusoidal_positions():
    table = sinusoidal_positions(10, 6)
    np.testing.assert_allclose(table[0], [0, 1, 0, 1, 0, 1], atol=1e-7)
    np.testing.assert_allclose(table[3, 0], math.sin(3), rtol=1e-6)
    np.testing.assert_allclose(table[3, 3], math.cos(3 * 10000 ** (-2 / 6)), rtol=1e-6)


def test_build_model_from_config_and_bad_norm():
    model = build_model(TransformerConfig(depth=1, width=16, heads=2, context=8), ParamConfig(name="mup"), 50)
    assert isinstance(model, TransformerLM) and model.vocab == 50 and model.scheme.param == "mup"
    with pytest.raises(ValueError, match="model.norm"):
        build_model(TransformerConfig(norm="sandwich"), ParamConfig(name="sp"), 50)
    with pytest.raises(ValueError, match="divisible"):
        build_model(TransformerConfig(width=30, heads=4), ParamConfig(name="sp"), 50)
