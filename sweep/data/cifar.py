"""CIFAR-10 / CIFAR-100 from the official "python version" tarballs (Krizhevsky, 2009).

Each batch is a pickled dict: b'data' (N, 3072) uint8 rows laid out as 3x32x32 channel-first,
b'labels' (CIFAR-10) or b'fine_labels' (CIFAR-100). The originals were pickled by Python 2,
so keys come back as bytes; re-pickled copies have str keys. Both are accepted.
Prepared arrays (uint8 NHWC, int32 labels, train mean/std) are cached, so only the first load
reads the tarball.
"""
from __future__ import annotations

import io
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sweep.data import archive, cache
from sweep.data.base import Dataset, DataError, channel_stats
from sweep.data.download import Source, obtain, resolve_root, verify


@dataclass(frozen=True)
class CifarLayout:
    title: str
    source: Source
    folder: str  # the folder the tarball extracts to
    train_files: tuple[str, ...]
    test_files: tuple[str, ...]
    label_key: str
    num_classes: int


LAYOUTS: dict[str, CifarLayout] = {
    "cifar10": CifarLayout(
        title="CIFAR-10",
        source=Source(
            "cifar-10-python.tar.gz",
            "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
            md5="c58f30108f718f92721af3b95e74349a",
        ),
        folder="cifar-10-batches-py",
        train_files=tuple(f"data_batch_{i}" for i in range(1, 6)),
        test_files=("test_batch",),
        label_key="labels",
        num_classes=10,
    ),
    "cifar100": CifarLayout(
        title="CIFAR-100",
        source=Source(
            "cifar-100-python.tar.gz",
            "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
            md5="eb9058c3a382ffc7106e4002c42a8d85",
        ),
        folder="cifar-100-python",
        train_files=("train",),
        test_files=("test",),
        label_key="fine_labels",
        num_classes=100,
    ),
}


class _BatchUnpickler(pickle.Unpickler):
    """Only the numpy pieces a CIFAR batch needs: a pickle can otherwise run arbitrary code."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("_codecs", "encode"),  # how Python 3 writes bytes at pickle protocol 2
    }

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"unexpected object {module}.{name} in a CIFAR batch")
        return super().find_class(module, name)


def _field(batch: dict, key: str, where: str) -> Any:
    for candidate in (key.encode(), key):
        if candidate in batch:
            return batch[candidate]
    found = ", ".join(sorted(k.decode() if isinstance(k, bytes) else str(k) for k in batch))
    raise DataError(f"{where} has no '{key}' entry (found: {found}); is it an official CIFAR python batch?")


def parse_batch(raw: bytes, label_key: str, where: str) -> tuple[np.ndarray, np.ndarray]:
    """One pickled batch -> (N, 32, 32, 3) uint8 images and (N,) int32 labels."""
    try:
        batch = _BatchUnpickler(io.BytesIO(raw), encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError) as exc:
        raise DataError(f"{where} is not a readable CIFAR python batch ({exc})") from exc
    data = np.asarray(_field(batch, "data", where), dtype=np.uint8)
    labels = np.asarray(_field(batch, label_key, where), dtype=np.int32)
    if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or len(data) != len(labels):
        raise DataError(f"{where}: data has shape {data.shape} for {len(labels)} labels; expected (N, 3072)")
    return data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1).copy(), labels


def _locate(layout: CifarLayout, root: Path, download: bool) -> Path:
    """The tarball (preferred: it is checksummed) or the extracted folder, or root itself."""
    if (root / layout.source.filename).is_file():
        return root / layout.source.filename
    for folder in (root / layout.folder, root):
        if all((folder / f).is_file() for f in layout.train_files + layout.test_files):
            return folder
    return obtain(
        layout.source,
        root,
        download,
        what=layout.title,
        alternatives=f"a folder holding {layout.source.filename} or its extracted {layout.folder}/",
    )


def _prepare(layout: CifarLayout, location: Path) -> dict[str, np.ndarray]:
    if location.is_file():
        verify(location, layout.source)
    wanted = set(layout.train_files + layout.test_files)
    raw = {archive.basename(n): b for n, b in archive.iter_files(location, lambda n: archive.basename(n) in wanted)}
    missing = sorted(wanted - raw.keys())
    if missing:
        raise DataError(f"{location} lacks the CIFAR batch file(s) {', '.join(missing)}")

    def split(files: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
        parts = [parse_batch(raw[f], layout.label_key, f"{location}:{f}") for f in files]
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])

    x_train, y_train = split(layout.train_files)
    x_test, y_test = split(layout.test_files)
    mean, std = channel_stats(x_train)
    return dict(x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test, mean=mean, std=std)


def load_cifar(cfg: Any) -> Dataset:
    name = str(cfg.name)
    if name not in LAYOUTS:
        raise DataError(f"unknown CIFAR variant '{name}'; allowed: {', '.join(LAYOUTS)}")
    layout = LAYOUTS[name]
    location = _locate(layout, resolve_root(getattr(cfg, "root", None)), bool(getattr(cfg, "download", True)))
    sources = [location] if location.is_file() else [location / f for f in layout.train_files + layout.test_files]
    a = cache.load_or_build(cache.cache_key(name, sources), lambda: _prepare(layout, location))
    return Dataset(
        name, a["x_train"], a["y_train"], a["x_test"], a["y_test"],
        num_classes=layout.num_classes, mean=a["mean"], std=a["std"],
    )
