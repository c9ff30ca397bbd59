"""Read the files of a data set the same way whether it sits in a .tar.gz, a .zip or a folder.

Official archives are read in place (no extraction to disk): one streaming pass over a
tarball, random access into a zip, plain reads in a folder. Names are POSIX paths relative
to the archive or folder root, e.g. "cifar-10-batches-py/data_batch_1".
"""
from __future__ import annotations

import tarfile
import zipfile
from pathlib import Path
from typing import Callable, Iterator

Select = Callable[[str], bool]


def iter_files(path: Path, select: Select) -> Iterator[tuple[str, bytes]]:
    """(name, content) of every regular file under `path` whose name `select` accepts."""
    if path.is_dir():
        for file in sorted(p for p in path.rglob("*") if p.is_file()):
            name = file.relative_to(path).as_posix()
            if select(name):
                yield name, file.read_bytes()
    elif zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as zf:
            for info in zf.infolist():
                if not info.is_dir() and select(info.filename):
                    yield info.filename, zf.read(info)
    else:
        with tarfile.open(path, "r:*") as tf:
            for member in tf:  # streaming: a .tar.gz is decompressed once, front to back
                if member.isfile() and select(member.name):
                    handle = tf.extractfile(member)
                    assert handle is not None
                    yield member.name.removeprefix("./"), handle.read()


def read_files(path: Path, select: Select) -> dict[str, bytes]:
    """All selected files at once (small archives, or when every member is needed anyway)."""
    return dict(iter_files(path, select))


def list_names(path: Path) -> list[str]:
    """Names of the regular files in a folder or zip (not tarballs: that would decompress it all)."""
    if path.is_dir():
        return sorted(p.relative_to(path).as_posix() for p in path.rglob("*") if p.is_file())
    with zipfile.ZipFile(path) as zf:
        return [i.filename for i in zf.infolist() if not i.is_dir()]


def basename(name: str) -> str:
    return name.rsplit("/", 1)[-1]
