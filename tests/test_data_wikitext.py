"""WikiText-2 raw loader on tiny .raw files written like the official ones."""
from __future__ import annotations

import dataclasses
import hashlib
import zipfile
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from tokenizers import Tokenizer

from data_fixtures import data_dir  # noqa: F401  (pytest fixture)
from sweep.data import cache, wikitext
from sweep.data.base import DataError, load_dataset

ARTICLE = [
    " = Valkyria Chronicles III = ",
    " Senjō no Valkyria 3 : Unrecorded Chronicles is a tactical role @-@ playing video game . ",
    " = = Gameplay = = ",
    " As with previous games , the player controls a squad of soldiers , the Nameless . ",
    " The game 's battle system was carried over , with the player moving units on a map . ",
    " = = = Plot = = = ",
    " The Nameless are a penal military unit in the Gallian army , sent on dangerous missions . ",
]


def official_text(lines: list[str], repeat: int) -> str:
    """The official layout: a blank ' ' line around headings and between paragraphs, LF endings."""
    out = [" "]
    for _ in range(repeat):
        for line in lines:
            out += [line, " "]
    return "\n".join(out) + "\n"


def write_raw(folder: Path, crlf_without_blanks: bool = False, files=("train", "valid", "test")) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for split in files:
        text = official_text(ARTICLE, repeat=12 if split == "train" else 3)
        if crlf_without_blanks:  # like the Hugging Face re-serialisation: CRLF, blank lines gone
            text = "\r\n".join(line for line in text.split("\n") if line.strip()) + "\r\n"
        (folder / f"wiki.{split}.raw").write_bytes(text.encode("utf-8"))
    return folder


def _cfg(root: Path, context: int = 8, vocab_size: int = 300) -> SimpleNamespace:
    return SimpleNamespace(name="wikitext2", root=str(root), download=True, vocab_size=vocab_size,
                           context=context, subset=0)


def _stream(ds) -> np.ndarray:
    """Undo the windowing: each chunk is x plus the last next-token."""
    return np.concatenate([np.concatenate([x, y[-1:]]) for x, y in zip(ds.x_train, ds.y_train)])


def test_windows_are_next_token_pairs_of_the_text(tmp_path, data_dir):
    ds = load_dataset(_cfg(write_raw(tmp_path)))
    assert ds.task == "lm" and ds.x_train.dtype == np.int32 and ds.y_train.dtype == np.int32
    assert ds.x_train.shape[1] == 8 and ds.y_train.shape == ds.x_train.shape and ds.x_test.shape[1] == 8
    np.testing.assert_array_equal(ds.y_train[:, :-1], ds.x_train[:, 1:])
    assert ds.num_classes <= 300 and ds.x_train.max() < ds.num_classes and ds.x_test.max() < ds.num_classes
    tokenizer = Tokenizer.from_file(str(next((data_dir / "prepared").glob("wikitext2-*.tokenizer.json"))))
    assert tokenizer.get_vocab_size() == ds.num_classes
    # decoding the windows gives back the text (whitespace aside), headings included
    stream = _stream(ds)
    eol = tokenizer.token_to_id("<eol>")
    assert (stream == eol).sum() >= 6 * len(ARTICLE)  # one <eol> per non-blank line
    decoded = "".join(tokenizer.decode(stream.tolist()).split())
    original = "".join("".join(line.split()) for _ in range(12) for line in ARTICLE)
    assert original.startswith(decoded) and len(decoded) > 0.9 * len(original)
    assert decoded.startswith("=ValkyriaChroniclesIII=SenjōnoValkyria")


def test_crlf_without_blank_lines_gives_the_same_tokens(tmp_path, data_dir):
    lf = load_dataset(_cfg(write_raw(tmp_path / "lf")))
    crlf = load_dataset(_cfg(write_raw(tmp_path / "crlf", crlf_without_blanks=True)))
    assert b"\r\n" in (tmp_path / "crlf" / "wiki.train.raw").read_bytes()
    np.testing.assert_array_equal(crlf.x_train, lf.x_train)
    np.testing.assert_array_equal(crlf.y_test, lf.y_test)


def test_context_changes_windows_without_retokenizing(tmp_path, data_dir, monkeypatch):
    root = write_raw(tmp_path)
    short = load_dataset(_cfg(root, context=4))
    monkeypatch.setattr(wikitext, "train_tokenizer", lambda *a: pytest.fail("tokenizer trained again"))
    long = load_dataset(_cfg(root, context=16))
    assert long.x_train.shape[1] == 16
    n = len(long.x_train) * 17
    np.testing.assert_array_equal(_stream(long), _stream(short)[:n])


def test_token_windows_are_non_overlapping_chunks():
    x, y = wikitext.token_windows(np.arange(11, dtype=np.int32), context=3)
    np.testing.assert_array_equal(x, [[0, 1, 2], [4, 5, 6]])
    np.testing.assert_array_equal(y, [[1, 2, 3], [5, 6, 7]])


def test_missing_split_files_are_named(tmp_path, data_dir):
    write_raw(tmp_path, files=("valid", "test"))
    with pytest.raises(DataError) as err:
        load_dataset(_cfg(tmp_path))
    message = str(err.value)
    assert "\n" not in message
    assert "missing wiki.train.raw" in message and "found wiki.valid.raw, wiki.test.raw" in message


def test_valid_split_is_optional(tmp_path, data_dir):
    ds = load_dataset(_cfg(write_raw(tmp_path, files=("train", "test"))))
    assert len(ds.x_train) > 0 and len(ds.x_test) > 0


def test_official_zip_is_read_in_place(tmp_path, data_dir, monkeypatch):
    folder = write_raw(tmp_path / "files")
    zip_path = tmp_path / "root" / "wikitext-2-raw-v1.zip"
    zip_path.parent.mkdir()
    with zipfile.ZipFile(zip_path, "w") as zf:
        for f in folder.iterdir():
            zf.write(f, f"wikitext-2-raw/{f.name}")
    with pytest.raises(DataError, match="size mismatch .*expected 4721645 bytes"):
        load_dataset(_cfg(tmp_path / "root"))
    content = zip_path.read_bytes()
    pinned = dataclasses.replace(wikitext.SOURCE, size=len(content), sha256=hashlib.sha256(content).hexdigest())
    monkeypatch.setattr(wikitext, "SOURCE", pinned)
    from_zip = load_dataset(_cfg(tmp_path / "root"))
    from_folder = load_dataset(_cfg(folder))
    np.testing.assert_array_equal(from_zip.x_train, from_folder.x_train)


def test_missing_without_network_is_one_line_with_the_fix(tmp_path, data_dir):
    with pytest.raises(DataError) as err:
        load_dataset(_cfg(tmp_path))
    message = str(err.value)
    assert "\n" not in message and "download failed" in message
    assert f"download {wikitext.SOURCE.url} into {tmp_path}, or set data.root=DIR" in message


def test_cache_entry_depends_on_vocab_size(tmp_path, data_dir):
    root = write_raw(tmp_path)
    load_dataset(_cfg(root, vocab_size=300))
    load_dataset(_cfg(root, vocab_size=200))
    assert len(list(cache.cache_dir().glob("wikitext2-*.npz"))) == 2
