"""Where data sets live, and fetching official archives with checksum verification.

Every archive is verified against a pinned hash before it is trusted: a truncated or
tampered download fails with the file, the expected and the actual hash, instead of a
confusing unpickling or unzip error later.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from sweep.data.base import DataError

_CHUNK = 1 << 20


@dataclass(frozen=True)
class Source:
    """An official archive: its file name, where to get it, and how to recognise it."""

    filename: str
    url: str
    md5: Optional[str] = None
    sha256: Optional[str] = None
    size: Optional[int] = None  # bytes; checked before hashing (cheap early failure)


def default_data_dir() -> Path:
    """$SWEEP_DATA_DIR, else $XDG_CACHE_HOME/sweep/data, else ~/.cache/sweep/data (read at call time)."""
    if os.environ.get("SWEEP_DATA_DIR"):
        return Path(os.environ["SWEEP_DATA_DIR"]).expanduser()
    cache_home = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(cache_home) / "sweep" / "data"


def resolve_root(root: Optional[str]) -> Path:
    """`data.root` when set, else the default data dir."""
    return Path(root).expanduser() if root else default_data_dir()


def file_digest(path: Path, algorithm: str) -> str:
    """Hex digest of a file, read in chunks (archives are hundreds of MB)."""
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(_CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def verify(path: Path, source: Source) -> None:
    """Raise a one-line DataError when the file is not the pinned archive."""
    hint = f"delete {path} and load again to re-download it, or replace it with the file from {source.url}"
    if source.size is not None:
        actual_size = path.stat().st_size
        if actual_size != source.size:
            raise DataError(
                f"size mismatch for {path}: expected {source.size} bytes, actual {actual_size}; {hint}"
            )
    for algorithm in ("md5", "sha256"):
        expected = getattr(source, algorithm)
        if expected is None:
            continue
        actual = file_digest(path, algorithm)
        if actual != expected.lower():
            raise DataError(
                f"{algorithm} checksum mismatch for {path}: expected {expected}, actual {actual}; {hint}"
            )


def fetch(source: Source, dest_dir: Path, timeout: float = 60.0) -> Path:
    """Download `source` into dest_dir atomically (temp file, verify, rename); return its path.

    Network failures raise OSError (URLError is one); a checksum failure raises DataError and
    leaves nothing behind, so a rerun downloads again.
    """
    from tqdm import tqdm

    final = dest_dir / source.filename
    partial = dest_dir / f".{source.filename}.{os.getpid()}.part"
    try:
        with urllib.request.urlopen(source.url, timeout=timeout) as response:
            dest_dir.mkdir(parents=True, exist_ok=True)  # only once the server answered
            total = int(response.headers.get("Content-Length") or 0) or None
            with open(partial, "wb") as out, tqdm(
                total=total, unit="B", unit_scale=True, desc=source.filename, disable=None
            ) as bar:
                for block in iter(lambda: response.read(_CHUNK), b""):
                    out.write(block)
                    bar.update(len(block))
        verify(partial, source)
        os.replace(partial, final)
    finally:
        if partial.exists():
            partial.unlink()
    return final


def one_line(exc: BaseException) -> str:
    """An exception as a single line, for embedding in a DataError."""
    return " ".join(str(exc).split()) or exc.__class__.__name__


def obtain(source: Source, root: Path, download: bool, what: str, alternatives: str) -> Path:
    """Return the archive in `root`, downloading it there when allowed.

    `alternatives` completes the fix-it hint (e.g. "a folder holding X or its extracted Y/").
    Without the file and without network the DataError is one line with the exact remedy.
    """
    path = root / source.filename
    if path.is_file():
        return path
    remedy = f"download {source.url} into {root}, or set data.root=DIR to {alternatives}"
    if not download:
        raise DataError(f"{what} not found in {root} and data.download=false: {remedy}")
    try:
        return fetch(source, root)
    except (OSError, urllib.error.URLError, shutil.Error) as exc:
        raise DataError(f"{what} not found in {root} and the download failed ({one_line(exc)}): {remedy}") from exc
