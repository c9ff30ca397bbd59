"""SP/muP scaling rules (Appendix D.2.1), the truncated-normal init, init_scale, and the
FCN's flat muP initialization."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sweep.models.fcn import FCN
from sweep.models.param import (
    ParamConv,
    ParamDense,
    ParamEmbed,
    ParamLayerNorm,
    Scheme,
    layer_scaling,
    truncated_normal_init,
)

# (param, role, fan_in, fan_out, sigma_w2) -> (init_std, multiplier, adam_lr_factor), by hand.
HAND_COMPUTED = [
    (("sp", "input", 10, 100, 2.0), (math.sqrt(0.2), 1.0, 1.0)),
    (("sp", "hidden", 100, 400, 2.0), (math.sqrt(0.02), 1.0, 1.0)),
    (("sp", "output", 100, 10, 1.0), (0.1, 1.0, 1.0)),
    # muP input: std sqrt(2/100), multiplier sqrt(100/10), Adam factor 1/sqrt(100)
    (("mup", "input", 10, 100, 2.0), (math.sqrt(0.02), math.sqrt(10.0), 0.1)),
    # muP hidden: std sqrt(2/400), multiplier sqrt(400/100) = 2, Adam factor 1/sqrt(100)
    (("mup", "hidden", 100, 400, 2.0), (math.sqrt(0.005), 2.0, 0.1)),
    # muP output: std sqrt(1/100), multiplier 1/sqrt(100), Adam factor 1/100
    (("mup", "output", 100, 10, 1.0), (0.1, 0.1, 0.01)),
]


@pytest.mark.parametrize("args,expected", HAND_COMPUTED)
def test_layer_scaling_by_hand(args, expected):
    sc = layer_scaling(*args)
    assert (sc.init_std, sc.multiplier, sc.adam_lr_factor) == pytest.approx(expected, rel=1e-12)


def test_mup_effective_weight_matches_sp_except_readout():
    """std * multiplier (the effective weight scale) is SP's for input/hidden layers and
    1/sqrt(fan_in) of SP's for the readout."""
    for role, fan_in, fan_out in (("input", 7, 300), ("hidden", 300, 50)):
        sp, mup = layer_scaling("sp", role, fan_in, fan_out, 2.0), layer_scaling("mup", role, fan_in, fan_out, 2.0)
        assert mup.init_std * mup.multiplier == pytest.approx(sp.init_std, rel=1e-12)
    sp, mup = layer_scaling("sp", "output", 300, 10, 1.0), layer_scaling("mup", "output", 300, 10, 1.0)
    assert mup.init_std * mup.multiplier == pytest.approx(sp.init_std / math.sqrt(300), rel=1e-12)


def test_scheme_uses_sigma_w2_last_for_the_readout():
    scheme = Scheme("sp", sigma_w2=2.0, sigma_w2_last=0.5)
    assert scheme.scaling("hidden", 50, 50).init_std == pytest.approx(math.sqrt(2.0 / 50))
    assert scheme.scaling("output", 50, 10).init_std == pytest.approx(math.sqrt(0.5 / 50))


@pytest.mark.parametrize("param,role", [("ntk", "hidden"), ("sp", "embedding")])
def test_layer_scaling_rejects_unknown_names(param, role):
    with pytest.raises(ValueError, match="not one of"):
        layer_scaling(param, role, 4, 4, 2.0)


def test_truncated_normal_variance_and_support():
    std = 0.3
    w = np.asarray(truncated_normal_init(std, "exact")(jax.random.PRNGKey(0), (1000, 1000)))
    assert w.var() == pytest.approx(std**2, rel=0.02)
    # truncated at 2 std of the underlying normal, which is std / 0.8796 here
    assert np.abs(w).max() <= 2 * std / 0.87962566 + 1e-6
    assert np.abs(w).max() > 1.9 * std / 0.87962566
    # "jax": std of the untruncated normal (jax.nn.initializers.truncated_normal), variance 0.774 std^2
    w = np.asarray(truncated_normal_init(std, "jax")(jax.random.PRNGKey(0), (1000, 1000)))
    ref = np.asarray(jax.nn.initializers.truncated_normal(std)(jax.random.PRNGKey(0), (1000, 1000)))
    assert w.var() == pytest.approx(0.87962566**2 * std**2, rel=0.02)
    assert ref.var() == pytest.approx(w.var(), rel=0.02)
    assert np.abs(w).max() <= 2 * std + 1e-6


def test_dense_and_conv_kernel_variance_is_sigma_w2_over_fan_in():
    dense = ParamDense(512, "hidden", Scheme("sp", sigma_w2=2.0, truncation="exact"))
    k = dense.init(jax.random.PRNGKey(1), jnp.zeros((1, 1024)))["params"]["kernel"]
    assert float(jnp.var(k)) == pytest.approx(2.0 / 1024, rel=0.02)
    conv = ParamConv(256, 3, 1, "hidden", Scheme("sp", sigma_w2=2.0, truncation="exact"))
    k = conv.init(jax.random.PRNGKey(2), jnp.zeros((1, 4, 4, 64)))["params"]["kernel"]
    assert k.shape == (3, 3, 64, 256)
    assert float(jnp.var(k)) == pytest.approx(2.0 / (9 * 64), rel=0.02)  # fan_in = k*k*C_in


def test_init_scale_is_not_part_of_the_model():
    """init_scale may differ inside a cohort, so the model never bakes it in; the engine scales each
    member's weights (tests/test_cohort_invariance.py checks the records end to end)."""
    assert "init_scale" not in Scheme.__dataclass_fields__


@pytest.mark.parametrize("layer", ["dense", "conv"])
def test_mup_multiplier_scales_the_bias_too(layer):
    """Appendix D.2.1 / the authors' code: muP multiplies the layer's output, bias included:
    y = multiplier * (x W + b)."""
    scheme = Scheme("mup")
    if layer == "dense":
        mod, x = ParamDense(7, "output", scheme), jax.random.normal(jax.random.PRNGKey(0), (3, 64))
        fan_in = 64
    else:
        mod, x = ParamConv(7, 3, 1, "output", scheme), jax.random.normal(jax.random.PRNGKey(0), (2, 4, 4, 8))
        fan_in = 9 * 8
    params = mod.init(jax.random.PRNGKey(1), x)["params"]
    bias = jnp.arange(7, dtype=jnp.float32) + 1.0
    with_bias = mod.apply({"params": {**params, "bias": bias}}, x)
    without = mod.apply({"params": params}, x)  # zero bias
    np.testing.assert_allclose(with_bias - without, np.broadcast_to(bias / math.sqrt(fan_in), with_bias.shape),
                               rtol=1e-5, atol=1e-6)


def fcn_output_std(param: str, width: int, seed: int, x: jax.Array) -> float:
    model = FCN(64, depth=4, width=width, scheme=Scheme(param))
    return float(model.apply(model.init(jax.random.PRNGKey(seed), x), x).std())


def test_fcn_mup_initial_output_is_sqrt_width_smaller():
    """Same seed: muP's hidden layers compute SP's function, so SP/muP = sqrt(width) up to
    rounding. Across widths (statistical, mean of 3 seeds; single seeds scatter ~20%): SP's
    output std stays O(1) while muP's falls like 1/sqrt(width)."""
    x = jax.random.normal(jax.random.PRNGKey(9), (256, 20))
    for width in (128, 1024):
        ratio = fcn_output_std("sp", width, 0, x) / fcn_output_std("mup", width, 0, x)
        assert ratio == pytest.approx(math.sqrt(width), rel=1e-4)
    mean_std = {
        (p, w): np.mean([fcn_output_std(p, w, seed, x) for seed in (1, 2, 3)])
        for p in ("sp", "mup") for w in (128, 1024)
    }
    assert 0.5 < mean_std[("sp", 128)] < 2.0 and 0.5 < mean_std[("sp", 1024)] < 2.0
    shrink = mean_std[("mup", 1024)] / mean_std[("mup", 128)]
    assert shrink * math.sqrt(1024 / 128) == pytest.approx(1.0, abs=0.25)


def test_embed_is_a_lookup_with_unit_variance_and_mup_multiplier():
    tokens = jnp.array([[3, 0, 3]])
    for param in ("sp", "mup"):
        emb = ParamEmbed(200, 256, Scheme(param, truncation="exact"))
        variables = emb.init(jax.random.PRNGKey(0), tokens)
        table = np.asarray(variables["params"]["embedding"])
        out = np.asarray(emb.apply({"params": variables["params"]}, tokens))
        mult = 1.0 if param == "sp" else math.sqrt(256)
        np.testing.assert_allclose(out[0, 0], table[3] * mult, rtol=1e-6)
        np.testing.assert_allclose(out[0, 0], out[0, 2])
        assert (table * mult).var() == pytest.approx(1.0, rel=0.03)  # effective coordinates O(1)
        assert float(variables["lr_scale"]["embedding"]) == pytest.approx(1.0 if param == "sp" else 1 / 16)


def test_layer_norm_records_unit_lr_scale():
    variables = ParamLayerNorm().init(jax.random.PRNGKey(0), jnp.ones((2, 5)))
    assert jax.tree_util.tree_structure(variables["params"]) == jax.tree_util.tree_structure(variables["lr_scale"])
    assert float(variables["lr_scale"]["scale"]) == 1.0 and float(variables["lr_scale"]["bias"]) == 1.0
