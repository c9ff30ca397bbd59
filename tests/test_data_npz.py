"""The generic .npz loader, and the class-balanced subset every classification set uses."""
from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from sweep.data.base import DataError, class_balanced_order, load_dataset


def _cfg(path: Path, subset: int = 0, standardize: str = "per_channel") -> SimpleNamespace:
    return SimpleNamespace(name="npz", path=str(path), subset=subset, standardize=standardize)


def _grouped_uint8(tmp_path: Path, per_class: int = 6, classes: int = 4) -> Path:
    """Images grouped by class like the shared CIFAR subset (class i // per_class)."""
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(classes), per_class).astype(np.int64)
    x = rng.integers(0, 256, (len(y), 5, 5, 3), dtype=np.uint8)
    path = tmp_path / "grouped.npz"
    np.savez_compressed(path, x_train=x, y_train=y, x_test=x[:5], y_test=y[:5],
                        label_names=np.array([f"c{i}" for i in range(classes)]))
    return path


def test_uint8_images_stay_uint8_with_train_channel_stats(tmp_path):
    path = _grouped_uint8(tmp_path)
    ds = load_dataset(_cfg(path))
    raw = np.load(path)
    assert ds.x_train.dtype == np.uint8 and ds.is_image and ds.num_classes == 4
    np.testing.assert_array_equal(ds.x_train, raw["x_train"])
    assert ds.y_train.dtype == np.int32
    pixels = raw["x_train"].reshape(-1, 3).astype(np.float64)
    np.testing.assert_allclose(ds.mean, pixels.mean(axis=0), rtol=1e-5)
    np.testing.assert_allclose(ds.std, pixels.std(axis=0), rtol=1e-5)


def test_float_images_are_standardized_with_train_statistics(tmp_path):
    rng = np.random.default_rng(1)
    x_train = rng.normal(3.0, 2.0, (40, 4, 4, 2)).astype(np.float32) * np.array([1.0, 10.0], np.float32)
    x_test = rng.normal(0.0, 1.0, (7, 4, 4, 2)).astype(np.float32)
    np.savez(tmp_path / "f.npz", x_train=x_train, y_train=np.arange(40) % 3, x_test=x_test, y_test=np.arange(7) % 3)
    ds = load_dataset(_cfg(tmp_path / "f.npz"))
    assert ds.x_train.dtype == np.float32 and ds.mean is None
    np.testing.assert_allclose(ds.x_train.reshape(-1, 2).mean(0), 0.0, atol=1e-5)
    np.testing.assert_allclose(ds.x_train.reshape(-1, 2).std(0), 1.0, atol=1e-4)
    mean, std = x_train.reshape(-1, 2).mean(0), x_train.reshape(-1, 2).std(0)
    np.testing.assert_allclose(ds.x_test, (x_test - mean) / std, rtol=1e-4, atol=1e-5)


def test_feature_vectors_are_standardized_per_feature(tmp_path):
    x = np.stack([np.arange(10.0), 100 + 5 * np.arange(10.0)], axis=1)
    np.savez(tmp_path / "v.npz", x_train=x, y_train=np.arange(10) % 2, x_test=x[:3], y_test=np.zeros(3, int))
    ds = load_dataset(_cfg(tmp_path / "v.npz"))
    assert ds.x_train.shape == (10, 2) and not ds.is_image
    expected = (x - x.mean(0)) / x.std(0)
    np.testing.assert_allclose(ds.x_train, expected, rtol=1e-5)


def test_missing_file_names_file_and_keys(tmp_path):
    with pytest.raises(DataError) as err:
        load_dataset(_cfg(tmp_path / "nope.npz"))
    message = str(err.value)
    assert "\n" not in message and str(tmp_path / "nope.npz") in message
    assert "x_train, y_train, x_test, y_test" in message and "data.path=" in message


def test_missing_keys_are_listed(tmp_path):
    np.savez(tmp_path / "half.npz", x_train=np.zeros((2, 3)), y_train=np.zeros(2, int))
    with pytest.raises(DataError, match=r"half.npz lacks x_test, y_test: it must hold"):
        load_dataset(_cfg(tmp_path / "half.npz"))


def test_non_integer_labels_are_rejected(tmp_path):
    np.savez(tmp_path / "bad.npz", x_train=np.zeros((2, 3)), y_train=np.eye(2), x_test=np.zeros((1, 3)),
             y_test=np.zeros(1, int))
    with pytest.raises(DataError, match="y_train .* must be 1-D non-negative integer class labels"):
        load_dataset(_cfg(tmp_path / "bad.npz"))


def test_subset_of_a_class_grouped_file_is_class_balanced(tmp_path):
    ds = load_dataset(_cfg(_grouped_uint8(tmp_path, per_class=6, classes=4), subset=8))
    assert len(ds.x_train) == 8
    np.testing.assert_array_equal(np.bincount(ds.y_train, minlength=4), [2, 2, 2, 2])
    raw = np.load(tmp_path / "grouped.npz")
    # the first examples of each class, in file order
    kept = {tuple(img.ravel()[:6]) for img in ds.x_train}
    expected = {tuple(raw["x_train"][c * 6 + r].ravel()[:6]) for c in range(4) for r in range(2)}
    assert kept == expected


def test_balanced_order_prefixes_with_unequal_classes():
    y = np.array([0] * 7 + [1] * 2 + [2] * 4)
    order = class_balanced_order(y)
    assert sorted(order.tolist()) == list(range(len(y)))
    counts = np.bincount(y[order[:6]], minlength=3)
    np.testing.assert_array_equal(counts, [2, 2, 2])
    counts = np.bincount(y[order[:10]], minlength=3)
    np.testing.assert_array_equal(counts, [4, 2, 4])
    np.testing.assert_array_equal(order, class_balanced_order(y))  # fixed


def test_balanced_order_does_not_repeat_one_class_pattern():
    """Rounds shuffle the class order, so labels are not periodic (0,1,...,9,0,1,...)."""
    y = np.repeat(np.arange(10), 5)
    labels = y[class_balanced_order(y)].reshape(5, 10)
    assert all(sorted(r) == list(range(10)) for r in labels.tolist())
    assert len({tuple(r) for r in labels.tolist()}) > 1


def test_lm_subset_keeps_the_first_windows():
    from sweep.data.base import Dataset, take_subset

    x = np.arange(40, dtype=np.int32).reshape(10, 4)
    ds = take_subset(Dataset("lm", x, x + 1, x[:2], x[:2] + 1, num_classes=50, task="lm"), 3)
    np.testing.assert_array_equal(ds.x_train, x[:3])


def test_per_image_standardization_of_float_inputs(tmp_path):
    """data.standardize=per_image (the authors' convention): every example has mean 0 and std 1 over
    its own features, whatever the per-channel statistics of the set."""
    rng = np.random.default_rng(2)
    x = rng.normal(5.0, 3.0, (12, 4, 4, 3)).astype(np.float32) * rng.uniform(0.5, 4.0, (12, 1, 1, 1))
    np.savez(tmp_path / "p.npz", x_train=x, y_train=np.arange(12) % 3, x_test=x[:3], y_test=np.zeros(3, int))
    ds = load_dataset(_cfg(tmp_path / "p.npz", standardize="per_image"))
    flat = ds.x_train.reshape(12, -1).astype(np.float64)
    np.testing.assert_allclose(flat.mean(1), 0.0, atol=1e-5)
    np.testing.assert_allclose(flat.std(1), 1.0, atol=1e-4)
    raw = x.reshape(12, -1).astype(np.float64)  # per-channel then per-image = per-image of... each
    # image's own affine map per channel; check against the raw image's correlation structure
    assert np.corrcoef(flat[0], raw[0])[0, 1] > 0.9


def test_per_image_standardization_of_uint8_images_on_device():
    """uint8 images stay uint8 on the host; the device-side per-image standardization matches numpy."""
    import jax.numpy as jnp

    from sweep.workload import standardize_images

    rng = np.random.default_rng(3)
    x = rng.integers(0, 256, (5, 6, 6, 3), dtype=np.uint8)
    out = np.asarray(standardize_images(jnp.asarray(x), "per_image", None, None))
    xf = x.reshape(5, -1).astype(np.float64)
    expected = (xf - xf.mean(1, keepdims=True)) / xf.std(1, keepdims=True)
    np.testing.assert_allclose(out.reshape(5, -1), expected, rtol=1e-4, atol=1e-4)
    mean, std = np.array([1.0, 2.0, 3.0], np.float32), np.array([2.0, 4.0, 8.0], np.float32)
    out = np.asarray(standardize_images(jnp.asarray(x), "per_channel", jnp.asarray(mean), jnp.asarray(std)))
    np.testing.assert_allclose(out, (x - mean) / std, rtol=1e-5)


@pytest.mark.parametrize("defect, expected", [
    ("nan", "x_train holds 1 NaN/inf values"),
    ("inf_test", "x_test holds 2 NaN/inf values"),
    ("empty", "is empty"),
])
def test_data_defects_are_one_line_errors(tmp_path, defect, expected):
    """Issue 8, 1e: a NaN pixel used to train and be recorded as "diverged at step 0", forever."""
    x = np.random.default_rng(0).normal(size=(8, 3)).astype(np.float32)
    y = np.arange(8) % 2
    xt = x[:4].copy()
    if defect == "nan":
        x[3, 1] = np.nan
    if defect == "inf_test":
        xt[0, 0], xt[1, 2] = np.inf, -np.inf
    if defect == "empty":
        x, y = x[:0], y[:0]
    np.savez(tmp_path / "d.npz", x_train=x, y_train=y, x_test=xt, y_test=np.zeros(4, int))
    with pytest.raises(DataError, match=expected) as info:
        load_dataset(_cfg(tmp_path / "d.npz"))
    assert "\n" not in str(info.value)


def test_labels_beyond_the_class_count_are_rejected():
    from sweep.data.base import Dataset, check_dataset

    x = np.zeros((4, 2), np.float32)
    ds = Dataset("d", x, np.array([0, 1, 2, 9]), x, np.array([0, 1, 0, 1]), num_classes=3)
    with pytest.raises(DataError, match=r"labels in \[0, 9\], outside \[0, 2\] for 3 classes"):
        check_dataset(ds, "data=d")


def test_nan_data_through_the_cli_records_nothing(tmp_path, capsys):
    from sweep.cli import main

    x = np.random.default_rng(0).normal(size=(32, 4)).astype(np.float32)
    x[5, 0] = np.nan
    np.savez(tmp_path / "n.npz", x_train=x, y_train=np.arange(32) % 2, x_test=x[:8] * 0, y_test=np.zeros(8, int))
    rc = main(["run", "data=npz", f"data.path={tmp_path / 'n.npz'}", "model.width=8", "steps=2",
               f"results_dir={tmp_path / 'res'}", "sweep_name=s"])
    err = capsys.readouterr().err
    last = err.strip().splitlines()[-1]
    assert rc == 2 and last.startswith("error: ") and "NaN/inf" in last and "Traceback" not in err
    assert not list((tmp_path / "res").rglob("record.json"))
