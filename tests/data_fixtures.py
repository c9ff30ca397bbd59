"""Shared by the data-layer tests: a private data/cache dir and no real network."""
from __future__ import annotations

import urllib.error
import urllib.request
from pathlib import Path

import pytest

_real_urlopen = urllib.request.urlopen


def _offline_urlopen(url, *args, **kwargs):
    """file:// URLs work (local fixtures); anything else fails as it does on an offline machine."""
    target = url if isinstance(url, str) else url.full_url
    if not target.startswith("file://"):
        raise urllib.error.URLError(OSError(-2, "Name or service not known"))
    return _real_urlopen(url, *args, **kwargs)


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """$SWEEP_DATA_DIR in tmp_path (so the cache starts empty) and the network switched off."""
    path = tmp_path / "sweep-data"
    monkeypatch.setenv("SWEEP_DATA_DIR", str(path))
    monkeypatch.setattr(urllib.request, "urlopen", _offline_urlopen)
    return path
