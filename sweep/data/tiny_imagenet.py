"""Tiny-ImageNet-200 from the official cs231n zip: 200 classes, 64x64 RGB JPEGs.

Layout: wnids.txt (the 200 class ids), train/<wnid>/images/*.JPEG (500 per class),
val/images/*.JPEG with labels in val/val_annotations.txt. The official test split has no
labels, so val serves as the test split. Class index = position of the wnid in sorted
order (the torchvision ImageFolder convention). A few JPEGs are grayscale: every image is
converted to RGB. Decoding 110k JPEGs takes a minute or two, once: the arrays are cached.
"""
from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np

from sweep.data import archive, cache
from sweep.data.base import Dataset, DataError, channel_stats
from sweep.data.download import Source, obtain, resolve_root, verify

SOURCE = Source(
    "tiny-imagenet-200.zip",
    "http://cs231n.stanford.edu/tiny-imagenet-200.zip",
    md5="90528d7ca1a48142e341f4ef8d21d0de",
)
FOLDER = "tiny-imagenet-200"
IMAGE_SHAPE = (64, 64, 3)


def _locate(root: Path, download: bool) -> Path:
    if (root / SOURCE.filename).is_file():
        return root / SOURCE.filename
    for folder in (root / FOLDER, root):
        if (folder / "wnids.txt").is_file():
            return folder
    return obtain(
        SOURCE, root, download, what="Tiny-ImageNet-200",
        alternatives=f"a folder holding {SOURCE.filename} or its extracted {FOLDER}/",
    )


def _decode(content: bytes, where: str) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(content)) as img:
            pixels = np.asarray(img.convert("RGB"), dtype=np.uint8)
    except (UnidentifiedImageError, OSError) as exc:
        raise DataError(f"{where} is not a readable image ({exc})") from exc
    if pixels.shape != IMAGE_SHAPE:
        raise DataError(f"{where} has shape {pixels.shape}; Tiny-ImageNet images are {IMAGE_SHAPE}")
    return pixels


def _index(location: Path, names: list[str]) -> tuple[str, dict[str, str], list[str]]:
    """(prefix inside the archive, {val image name: wnid}, sorted wnids)."""
    anchors = sorted((n for n in names if archive.basename(n) == "wnids.txt"), key=len)
    if not anchors:
        raise DataError(f"{location} has no wnids.txt; is it the official {SOURCE.filename} or its {FOLDER}/ folder?")
    prefix = anchors[0][: -len("wnids.txt")]
    texts = archive.read_files(location, lambda n: n in (anchors[0], f"{prefix}val/val_annotations.txt"))
    if f"{prefix}val/val_annotations.txt" not in texts:
        raise DataError(f"{location} lacks {prefix}val/val_annotations.txt (the labels of the val split)")
    wnids = sorted(texts[anchors[0]].decode().split())
    val_labels = {}
    for line in texts[f"{prefix}val/val_annotations.txt"].decode().splitlines():
        fields = line.split("\t")
        if len(fields) >= 2:
            val_labels[fields[0]] = fields[1]
    return prefix, val_labels, wnids


def _prepare(location: Path) -> dict[str, np.ndarray]:
    from tqdm import tqdm

    if location.is_file():
        verify(location, SOURCE)
    names = archive.list_names(location)
    prefix, val_labels, wnids = _index(location, names)
    class_of = {w: i for i, w in enumerate(wnids)}
    train_names = sorted(
        n for n in names
        if n.startswith(f"{prefix}train/") and n.endswith(".JPEG") and n.split("/")[-2] == "images"
    )
    val_names = sorted(n for n in names if n.startswith(f"{prefix}val/images/") and n.endswith(".JPEG"))
    unknown = {n.split("/")[-3] for n in train_names} - class_of.keys()
    unlabeled = [n for n in val_names if archive.basename(n) not in val_labels]
    if unknown or unlabeled or not train_names or not val_names:
        raise DataError(
            f"{location} is not a complete Tiny-ImageNet-200 layout: {len(train_names)} train and "
            f"{len(val_names)} val images, train classes not in wnids.txt: {sorted(unknown)[:3]}, "
            f"val images without annotation: {unlabeled[:3]}"
        )
    slot = {n: i for i, n in enumerate(train_names)} | {n: i for i, n in enumerate(val_names)}
    x_train = np.empty((len(train_names), *IMAGE_SHAPE), np.uint8)
    x_test = np.empty((len(val_names), *IMAGE_SHAPE), np.uint8)
    y_train = np.array([class_of[n.split("/")[-3]] for n in train_names], np.int32)
    y_test = np.array([class_of[val_labels[archive.basename(n)]] for n in val_names], np.int32)
    wanted = set(slot)
    files = archive.iter_files(location, lambda n: n in wanted)
    for name, content in tqdm(files, total=len(wanted), desc="decoding Tiny-ImageNet", disable=None):
        target = x_train if name.startswith(f"{prefix}train/") else x_test
        target[slot[name]] = _decode(content, f"{location}:{name}")
    mean, std = channel_stats(x_train)
    return dict(
        x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test, mean=mean, std=std,
        num_classes=np.array(len(wnids)),
    )


def load_tiny_imagenet(cfg: Any) -> Dataset:
    location = _locate(resolve_root(getattr(cfg, "root", None)), bool(getattr(cfg, "download", True)))
    if location.is_file():
        sources = [location]
    else:  # stat()-ing 110k images per load would be slow; the index files stand for the folder
        sources = [p for p in (location / "wnids.txt", location / "val" / "val_annotations.txt") if p.exists()]
    a = cache.load_or_build(cache.cache_key("tiny_imagenet", sources), lambda: _prepare(location))
    return Dataset(
        "tiny_imagenet", a["x_train"], a["y_train"], a["x_test"], a["y_test"],
        num_classes=int(a["num_classes"]), mean=a["mean"], std=a["std"],
    )
