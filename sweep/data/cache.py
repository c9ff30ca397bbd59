"""Prepared arrays cached as .npz, so decoding an archive happens once per machine.

The cache key hashes what the arrays were built from: the source files' absolute paths,
sizes and modification times, the preparation parameters, and a format version. A replaced
archive or a changed parameter therefore builds a new entry instead of silently reusing a
stale one, and the check costs a few stat() calls, never a read of the source.
Entries are written atomically (temp file + os.replace), so concurrent SLURM tasks that
prepare the same data set at once cannot leave a torn file behind.
"""
from __future__ import annotations

import hashlib
import json
import os
import zipfile
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np

from sweep.data.download import default_data_dir

# Bump when a loader changes what it stores, so old entries are not misread.
CACHE_FORMAT = 1


def cache_dir() -> Path:
    """<data dir>/prepared; read at call time so $SWEEP_DATA_DIR can change (tests, clusters)."""
    return default_data_dir() / "prepared"


def cache_key(name: str, sources: Iterable[Path], params: dict[str, Any] | None = None) -> str:
    """Short hash identifying prepared data: name, source identities (path, size, mtime), params."""
    identity: list[Any] = [name, CACHE_FORMAT, params or {}]
    for source in sources:
        stat = Path(source).stat()
        identity.append([str(Path(source).resolve()), stat.st_size, stat.st_mtime_ns])
    digest = hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()
    return f"{name}-{digest[:16]}"


def atomic_write_bytes(path: Path, write: Callable[[Any], None]) -> None:
    """Run write(file_object) into a temp file next to `path`, then rename it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            write(f)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def load_or_build(key: str, build: Callable[[], dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """The cached arrays for `key`, building and storing them on a miss.

    Stored uncompressed: CIFAR-10 (180 MB) then loads in well under a second.
    """
    path = cache_dir() / f"{key}.npz"
    if path.is_file():
        try:
            with np.load(path, allow_pickle=False) as stored:
                return {k: stored[k] for k in stored.files}
        except (OSError, ValueError, EOFError, zipfile.BadZipFile):
            pass  # unreadable (e.g. disk filled mid-write elsewhere): rebuild below
    arrays = build()
    atomic_write_bytes(path, lambda f: np.savez(f, **arrays))
    return arrays
