"""WideResNet: shapes, exact parameter count, roles (lr_scale), and muP's readout scaling."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sweep.config import ParamConfig, WRNConfig
from sweep.models import build_model
from sweep.models.param import Scheme
from sweep.models.wrn import WideResNet


def expected_wrn_params(depth: int, widen: int, stem: int, in_channels: int, classes: int) -> int:
    """Count by hand, independently of the module.

    stem 3x3 conv (+bias); per block: LN(C_in) [scale+bias], 3x3 conv C_in->C (+bias), LN(C),
    3x3 conv C->C (+bias), and a 1x1 conv C_in->C (+bias) when C_in != C or the block strides;
    then a final LN(C_last) and a dense readout (+bias).
    """
    n = (depth - 4) // 6
    total = 3 * 3 * in_channels * stem + stem
    c_in = stem
    for stage in range(3):
        c = 16 * widen * 2**stage
        for block in range(n):
            total += 2 * c_in + (9 * c_in * c + c) + 2 * c + (9 * c * c + c)
            if c_in != c or (stage > 0 and block == 0):
                total += c_in * c + c
            c_in = c
    return total + 2 * c_in + c_in * classes + classes


def count_params(model, x) -> int:
    shapes = jax.eval_shape(model.init, jax.random.PRNGKey(0), x)["params"]
    return sum(math.prod(leaf.shape) for leaf in jax.tree_util.tree_leaves(shapes))


def test_wrn_16_4_count_matches_the_authors_logs():
    """The authors' logs (num_params column of their WRN-16-4 CIFAR-10 runs) report 2,751,146;
    we match it exactly. Breakdown: 3x3 block-conv kernels 2,700,288; 1x1 shortcut kernels
    41,984 (16*64 + 64*128 + 128*256); stem kernel 432; conv biases 2,256 (block convs 1,792,
    shortcuts 448, stem 16); LayerNorm scale+bias 3,616 (two per block: 3,104; final: 512);
    readout 2,570. The match needs a bias in every conv, per-channel LayerNorm scale and bias,
    and the final LayerNorm: without conv biases the count is 2,256 short, without the final
    LN 512 short, with non-affine LayerNorms 3,616 short. (Whether the authors' LN reduced over
    C or (H, W, C) cannot be read off the count: both keep per-channel scale and bias.)
    """
    x = jnp.zeros((1, 32, 32, 3), jnp.float32)
    assert expected_wrn_params(16, 4, 16, 3, 10) == 2_751_146
    assert count_params(WideResNet(10, depth=16, widen=4), x) == 2_751_146


@pytest.mark.parametrize("depth,widen,classes", [(10, 1, 7), (22, 2, 100)])
def test_count_formula_other_shapes(depth, widen, classes):
    x = jnp.zeros((1, 16, 16, 3), jnp.float32)
    assert count_params(WideResNet(classes, depth=depth, widen=widen), x) == expected_wrn_params(
        depth, widen, 16, 3, classes
    )


def init_and_apply(model: WideResNet, x: jax.Array):
    """Eager init and apply (not jit): same-shape variants then share XLA's per-op compile
    cache. The init key is an RBG key: XLA:CPU compiles the default (partitionable threefry)
    random bits several times slower; the model code never looks at the key's implementation."""
    variables = model.init(jax.random.key(0, impl="rbg"), x)
    logits, state = model.apply({"params": variables["params"]}, x, train=False, capture_intermediates=True)
    return variables, np.asarray(logits), state["intermediates"]


@pytest.fixture(scope="module")
def wrn_10():
    """WRN-10-k, k in (1, 2), on 8x8 inputs under SP and muP with the same seed:
    {(k, param): (variables, logits, intermediates)}."""
    x = jax.random.normal(jax.random.PRNGKey(2), (6, 8, 8, 3))
    return {
        (k, p): init_and_apply(WideResNet(5, depth=10, widen=k, scheme=Scheme(p)), x)
        for k in (1, 2) for p in ("sp", "mup")
    }


def test_output_shape_and_downsampling(wrn_10):
    _, logits, stages = wrn_10[(2, "sp")]
    assert logits.shape == (6, 5)
    assert np.all(np.isfinite(logits))
    assert stages["stem"]["__call__"][0].shape == (6, 8, 8, 16)
    assert stages["stage0_block0"]["__call__"][0].shape == (6, 8, 8, 32)
    assert stages["stage1_block0"]["__call__"][0].shape == (6, 4, 4, 64)
    assert stages["stage2_block0"]["__call__"][0].shape == (6, 2, 2, 128)


def test_lr_scale_mirrors_params_and_encodes_roles(wrn_10):
    """muP-Adam factors: input 1/sqrt(fan_out), hidden 1/sqrt(fan_in), output 1/fan_in, LN 1;
    conv fans are k*k*C (channels 16 | 16, 32, 64 for the stem | stages of WRN-10-1)."""
    variables = wrn_10[(1, "mup")][0]
    params, lr = variables["params"], variables["lr_scale"]
    assert jax.tree_util.tree_structure(params) == jax.tree_util.tree_structure(lr)
    np.testing.assert_allclose(lr["stem"]["kernel"], 1 / math.sqrt(9 * 16), rtol=1e-6)
    np.testing.assert_allclose(lr["stage1_block0"]["conv_1"]["kernel"], 1 / math.sqrt(9 * 16), rtol=1e-6)
    np.testing.assert_allclose(lr["stage2_block0"]["conv_2"]["kernel"], 1 / math.sqrt(9 * 64), rtol=1e-6)
    np.testing.assert_allclose(lr["stage1_block0"]["shortcut"]["kernel"], 1 / math.sqrt(16), rtol=1e-6)
    np.testing.assert_allclose(lr["readout"]["kernel"], 1 / 64, rtol=1e-6)
    assert float(lr["ln_final"]["scale"]) == 1.0


@pytest.mark.parametrize("widen", [1, 2])
def test_mup_readout_is_sqrt_width_smaller_than_sp(wrn_10, widen):
    """Same seed: muP's hidden layers compute SP's function (to rounding), and the readout is
    multiplied by 1/sqrt(fan_in) = 1/sqrt(64*widen): muP logits shrink with width, SP's do not."""
    sp, mup = wrn_10[(widen, "sp")][1], wrn_10[(widen, "mup")][1]
    readout_fan_in = 64 * widen
    np.testing.assert_allclose(mup * math.sqrt(readout_fan_in), sp, rtol=2e-4, atol=2e-5)
    assert sp.std() / mup.std() == pytest.approx(math.sqrt(readout_fan_in), rel=1e-3)


def test_build_model_from_config_and_bad_depth():
    model = build_model(WRNConfig(depth=10, widen=1), ParamConfig(name="sp"), 10)
    assert isinstance(model, WideResNet) and model.depth == 10 and model.widen == 1
    with pytest.raises(ValueError, match="6\\*n\\+4"):
        build_model(WRNConfig(depth=12), ParamConfig(name="sp"), 10)
    with pytest.raises(ValueError, match="NHWC"):
        model.init(jax.random.PRNGKey(0), jnp.zeros((2, 27)))
