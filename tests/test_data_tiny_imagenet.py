"""Tiny-ImageNet loader on a miniature copy of the official zip layout."""
from __future__ import annotations

import dataclasses
import hashlib
import io
import zipfile
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from data_fixtures import data_dir  # noqa: F401  (pytest fixture)
from sweep.data import tiny_imagenet
from sweep.data.base import DataError, load_dataset

# wnids.txt order is not sorted on purpose: class index = position in sorted order.
WNIDS = ["n02", "n00", "n01"]
COLOR = {"n00": (200, 30, 30), "n01": (30, 200, 30), "n02": (30, 30, 200)}


def _jpeg(color: tuple[int, int, int], gray: bool = False) -> bytes:
    img = Image.new("RGB", (64, 64), color)
    if gray:
        img = img.convert("L")
    out = io.BytesIO()
    img.save(out, format="JPEG", quality=95)
    return out.getvalue()


def write_zip(folder: Path) -> tuple[Path, list[str]]:
    """tiny-imagenet-200.zip with 2 train images per class, 4 val images (one grayscale), 1 test image."""
    root = "tiny-imagenet-200/"
    files: dict[str, bytes] = {
        root + "wnids.txt": "\n".join(WNIDS).encode() + b"\n",
        root + "words.txt": b"".join(f"{w}\tthing {w}\n".encode() for w in WNIDS),
        root + "test/images/test_0.JPEG": _jpeg((0, 0, 0)),
    }
    for w in WNIDS:
        files[root + f"train/{w}/{w}_boxes.txt"] = b""
        for i in range(2):
            files[root + f"train/{w}/images/{w}_{i}.JPEG"] = _jpeg(COLOR[w])
    val_wnids = ["n01", "n02", "n00", "n01"]
    annotations = ""
    for i, w in enumerate(val_wnids):
        files[root + f"val/images/val_{i}.JPEG"] = _jpeg(COLOR[w], gray=(i == 3))
        annotations += f"val_{i}.JPEG\t{w}\t0\t0\t63\t63\r\n"
    files[root + "val/val_annotations.txt"] = annotations.encode()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "tiny-imagenet-200.zip"
    with zipfile.ZipFile(path, "w") as zf:
        for name, content in files.items():
            zf.writestr(name, content)
    return path, val_wnids


@pytest.fixture
def pinned_zip(tmp_path, monkeypatch):
    path, val_wnids = write_zip(tmp_path / "raw")
    md5 = hashlib.md5(path.read_bytes()).hexdigest()
    monkeypatch.setattr(tiny_imagenet, "SOURCE", dataclasses.replace(tiny_imagenet.SOURCE, md5=md5))
    return path, val_wnids


def _cfg(root: Path) -> SimpleNamespace:
    return SimpleNamespace(name="tiny_imagenet", root=str(root), download=True, subset=0)


def test_zip_layout_decodes_to_labelled_rgb_arrays(pinned_zip, data_dir):
    path, val_wnids = pinned_zip
    ds = load_dataset(_cfg(path.parent))
    assert ds.x_train.shape == (6, 64, 64, 3) and ds.x_train.dtype == np.uint8
    assert ds.x_test.shape == (4, 64, 64, 3) and ds.num_classes == 3
    sorted_wnids = sorted(WNIDS)
    np.testing.assert_array_equal(ds.y_train, [0, 0, 1, 1, 2, 2])
    np.testing.assert_array_equal(ds.y_test, [sorted_wnids.index(w) for w in val_wnids])
    for x, y in zip(ds.x_train, ds.y_train):  # each image is its class colour (JPEG error is small)
        assert np.abs(x.reshape(-1, 3).mean(0) - COLOR[sorted_wnids[y]]).max() < 4
    gray = ds.x_test[3]  # decoded from a 1-channel JPEG: three equal channels
    assert np.array_equal(gray[..., 0], gray[..., 1]) and np.array_equal(gray[..., 1], gray[..., 2])
    flat = ds.x_train.reshape(-1, 3).astype(np.float64)
    np.testing.assert_allclose(ds.mean, flat.mean(0), rtol=1e-5)


def test_extracted_folder_matches_zip(pinned_zip, tmp_path, data_dir):
    path, _ = pinned_zip
    with zipfile.ZipFile(path) as zf:
        zf.extractall(tmp_path / "extracted")
    from_zip = load_dataset(_cfg(path.parent))
    from_folder = load_dataset(_cfg(tmp_path / "extracted"))
    np.testing.assert_array_equal(from_folder.x_train, from_zip.x_train)
    np.testing.assert_array_equal(from_folder.y_test, from_zip.y_test)


def test_prepared_arrays_are_cached(pinned_zip, data_dir, monkeypatch):
    path, _ = pinned_zip
    first = load_dataset(_cfg(path.parent))
    monkeypatch.setattr(tiny_imagenet, "_prepare", lambda *a: pytest.fail("decoded the zip again"))
    second = load_dataset(_cfg(path.parent))
    np.testing.assert_array_equal(second.x_test, first.x_test)


def test_unpinned_zip_fails_checksum(tmp_path, data_dir):
    write_zip(tmp_path)
    with pytest.raises(DataError, match="md5 checksum mismatch .*expected 90528d7ca1a48142e341f4ef8d21d0de"):
        load_dataset(_cfg(tmp_path))


def test_missing_without_network_names_url_and_setting(tmp_path, data_dir):
    with pytest.raises(DataError) as err:
        load_dataset(_cfg(tmp_path))
    message = str(err.value)
    assert "\n" not in message
    assert f"download http://cs231n.stanford.edu/tiny-imagenet-200.zip into {tmp_path}" in message
    assert "data.root=DIR" in message
