"""CIFAR loaders on tiny tarballs built in the official python-batch format."""
from __future__ import annotations

import dataclasses
import hashlib
import io
import os
import pickle
import struct
import tarfile
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from data_fixtures import data_dir  # noqa: F401  (pytest fixture)
from sweep.data import archive, cifar
from sweep.data.base import DataError, load_dataset


class _Py2Pickler(pickle._Pickler):
    """Writes bytes as Python 2 `str` opcodes, as the original (Python 2) CIFAR pickles do."""

    dispatch = pickle._Pickler.dispatch.copy()

    def _save_py2_str(self, obj: bytes) -> None:
        if len(obj) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(obj)]) + obj)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(obj)) + obj)
        self.memoize(obj)

    dispatch[bytes] = _save_py2_str


def _pickle_batch(batch: dict, str_keys: bool) -> bytes:
    if str_keys:  # a re-pickled copy (Python 3, str keys)
        return pickle.dumps({k.decode(): v for k, v in batch.items()})
    buffer = io.BytesIO()
    _Py2Pickler(buffer, protocol=2).dump(batch)
    # numpy 1.x / Python 2 wrote the old module path; keep the file faithful to that.
    return buffer.getvalue().replace(b"numpy._core.multiarray", b"numpy.core.multiarray")


def _rows(images: np.ndarray) -> np.ndarray:
    """The documented CIFAR row layout: 1024 red, then 1024 green, then 1024 blue, each row-major."""
    return np.stack([np.concatenate([img[:, :, c].ravel() for c in range(3)]) for img in images])


def _batch(rng: np.random.Generator, n: int, label_keys: dict[str, int]) -> tuple[dict, np.ndarray, dict]:
    images = rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
    labels = {k: rng.integers(0, high, n).tolist() for k, high in label_keys.items()}
    batch = {b"batch_label": b"training batch", b"data": _rows(images),
             b"filenames": [f"img_{i}.png".encode() for i in range(n)]}
    batch.update({k.encode(): v for k, v in labels.items()})
    return batch, images, labels


def write_tarball(folder: Path, name: str = "cifar10", str_keys: bool = False, seed: int = 0) -> dict:
    """An official-layout tarball in `folder`; returns the expected arrays."""
    layout = cifar.LAYOUTS[name]
    label_keys = {"labels": 10} if name == "cifar10" else {"fine_labels": 100, "coarse_labels": 20}
    rng = np.random.default_rng(seed)
    members, expected = {}, {}
    for split, files, n in (("train", layout.train_files, 4), ("test", layout.test_files, 3)):
        xs, ys = [], []
        for f in files:
            batch, images, labels = _batch(rng, n, label_keys)
            members[f"{layout.folder}/{f}"] = _pickle_batch(batch, str_keys)
            xs.append(images)
            ys.append(labels[layout.label_key])
        expected[f"x_{split}"], expected[f"y_{split}"] = np.concatenate(xs), np.concatenate(ys)
    members[f"{layout.folder}/batches.meta"] = _pickle_batch({b"label_names": [b"a"] * 10}, str_keys)
    members[f"{layout.folder}/readme.html"] = b"<html></html>"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / layout.source.filename
    with tarfile.open(path, "w:gz") as tf:
        for member, content in members.items():
            info = tarfile.TarInfo(member)
            info.size = len(content)
            tf.addfile(info, io.BytesIO(content))
    expected["md5"] = hashlib.md5(path.read_bytes()).hexdigest()
    return expected


def _pin_md5(monkeypatch: pytest.MonkeyPatch, name: str, md5: str, url: str | None = None) -> None:
    layout = cifar.LAYOUTS[name]
    source = dataclasses.replace(layout.source, md5=md5, url=url or layout.source.url)
    monkeypatch.setitem(cifar.LAYOUTS, name, dataclasses.replace(layout, source=source))


def _cfg(name: str = "cifar10", root: Path | None = None, download: bool = True) -> SimpleNamespace:
    return SimpleNamespace(name=name, root=str(root) if root else None, download=download, subset=0)


@pytest.mark.parametrize("str_keys", [False, True], ids=["bytes-keys", "str-keys"])
def test_cifar10_tarball_gives_official_pixels_and_labels(tmp_path, data_dir, monkeypatch, str_keys):
    expected = write_tarball(tmp_path / "raw", str_keys=str_keys)
    _pin_md5(monkeypatch, "cifar10", expected["md5"])
    ds = load_dataset(_cfg(root=tmp_path / "raw"))
    assert ds.x_train.dtype == np.uint8 and ds.x_train.shape == (20, 32, 32, 3)
    np.testing.assert_array_equal(ds.x_train, expected["x_train"])
    np.testing.assert_array_equal(ds.y_train, expected["y_train"])
    np.testing.assert_array_equal(ds.x_test, expected["x_test"])
    np.testing.assert_array_equal(ds.y_test, expected["y_test"])
    assert ds.num_classes == 10 and ds.is_image
    flat = expected["x_train"].reshape(-1, 3).astype(np.float64)
    np.testing.assert_allclose(ds.mean, flat.mean(axis=0), rtol=1e-5)
    np.testing.assert_allclose(ds.std, flat.std(axis=0), rtol=1e-5)


def test_cifar100_uses_fine_labels(tmp_path, data_dir, monkeypatch):
    expected = write_tarball(tmp_path, name="cifar100")
    _pin_md5(monkeypatch, "cifar100", expected["md5"])
    ds = load_dataset(_cfg("cifar100", root=tmp_path))
    assert ds.num_classes == 100
    np.testing.assert_array_equal(ds.y_train, expected["y_train"])
    np.testing.assert_array_equal(ds.x_test, expected["x_test"])


def test_extracted_folder_loads_like_the_tarball(tmp_path, data_dir):
    expected = write_tarball(tmp_path / "tar")
    with tarfile.open(tmp_path / "tar" / "cifar-10-python.tar.gz") as tf:
        tf.extractall(tmp_path / "extracted", filter="data")
    ds = load_dataset(_cfg(root=tmp_path / "extracted"))  # a folder is not checksummed
    np.testing.assert_array_equal(ds.x_train, expected["x_train"])
    # data.root may also name the extracted folder itself
    ds2 = load_dataset(_cfg(root=tmp_path / "extracted" / "cifar-10-batches-py"))
    np.testing.assert_array_equal(ds2.y_test, expected["y_test"])


def test_second_load_uses_the_cache_not_the_tarball(tmp_path, data_dir, monkeypatch):
    expected = write_tarball(tmp_path)
    _pin_md5(monkeypatch, "cifar10", expected["md5"])
    reads = []
    real_iter_files = archive.iter_files
    monkeypatch.setattr(archive, "iter_files", lambda *a, **k: (reads.append(a[0]), real_iter_files(*a, **k))[1])
    first = load_dataset(_cfg(root=tmp_path))
    second = load_dataset(_cfg(root=tmp_path))
    assert len(reads) == 1, "the tarball was read again although a prepared copy was cached"
    assert list((data_dir / "prepared").glob("cifar10-*.npz"))
    np.testing.assert_array_equal(second.x_train, first.x_train)
    np.testing.assert_array_equal(second.mean, first.mean)
    # a replaced archive (new mtime) is prepared again rather than served stale
    stat = (tmp_path / "cifar-10-python.tar.gz").stat()
    os.utime(tmp_path / "cifar-10-python.tar.gz", ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    load_dataset(_cfg(root=tmp_path))
    assert len(reads) == 2


def test_checksum_mismatch_on_download_names_file_and_both_hashes(tmp_path, data_dir, monkeypatch):
    served = write_tarball(tmp_path / "server")
    official_md5 = cifar.LAYOUTS["cifar10"].source.md5
    url = (tmp_path / "server" / "cifar-10-python.tar.gz").as_uri()
    _pin_md5(monkeypatch, "cifar10", official_md5, url=url)
    with pytest.raises(DataError) as err:
        load_dataset(_cfg())  # default root: $SWEEP_DATA_DIR, empty -> download from the file:// URL
    message = str(err.value)
    assert "\n" not in message
    assert "md5 checksum mismatch" in message and "cifar-10-python.tar.gz" in message
    assert f"expected {official_md5}" in message and f"actual {served['md5']}" in message
    assert not list(data_dir.glob("*cifar*")), "a file that failed verification was left behind"


def test_download_with_matching_checksum_is_used(tmp_path, data_dir, monkeypatch):
    served = write_tarball(tmp_path / "server")
    _pin_md5(monkeypatch, "cifar10", served["md5"], url=(tmp_path / "server" / "cifar-10-python.tar.gz").as_uri())
    ds = load_dataset(_cfg())
    assert (data_dir / "cifar-10-python.tar.gz").is_file()
    np.testing.assert_array_equal(ds.x_test, served["x_test"])


def test_corrupt_local_tarball_is_rejected_by_checksum(tmp_path, data_dir):
    write_tarball(tmp_path)  # real md5 pinned: the fixture cannot match it
    with pytest.raises(DataError, match="md5 checksum mismatch .*expected c58f30108f718f92721af3b95e74349a"):
        load_dataset(_cfg(root=tmp_path))


def test_missing_data_without_network_is_one_line_with_the_fix(tmp_path, data_dir):
    with pytest.raises(DataError) as err:
        load_dataset(_cfg(root=tmp_path / "empty"))
    message = str(err.value)
    assert "\n" not in message
    assert "CIFAR-10 not found" in message and "download failed" in message
    assert f"download https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz into {tmp_path / 'empty'}" in message
    assert "data.root=DIR" in message
    assert not (tmp_path / "empty").exists(), "a failed download should not create the data folder"


def test_download_disabled_says_so(tmp_path, data_dir):
    with pytest.raises(DataError, match="data.download=false: download https://www.cs.toronto.edu/~kriz/cifar-100"):
        load_dataset(_cfg("cifar100", root=tmp_path, download=False))


def test_batch_without_labels_is_a_clear_error(tmp_path, data_dir):
    raw = _pickle_batch({b"data": np.zeros((2, 3072), np.uint8)}, str_keys=False)
    with pytest.raises(DataError, match="no 'labels' entry"):
        cifar.parse_batch(raw, "labels", "data_batch_1")


def test_pickle_with_foreign_objects_is_refused():
    raw = pickle.dumps({"data": os.getcwd, "labels": []})
    with pytest.raises(DataError, match="not a readable CIFAR python batch"):
        cifar.parse_batch(raw, "labels", "evil_batch")
