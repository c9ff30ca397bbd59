"""Any text corpus for next-token prediction: `data=text data.train=FILE data.test=FILE`.

The same route as WikiText-2 (sweep/data/wikitext.py): a BPE tokenizer (HF `tokenizers`, Whitespace
pre-tokenizer, `data.vocab_size`) trained on the training file only, blank lines dropped, every line
ending with an "<eol>" token, non-overlapping windows of `data.context` + 1 tokens. So a user's own
files, or WikiText-2's valid/test files standing in for a missing train split, give LM figures offline.
Files are UTF-8 text (any line endings); they are tokenized once and cached by path, size and mtime.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from sweep.data import cache
from sweep.data.base import Dataset, DataError
from sweep.data.wikitext import check_sizes, lm_dataset, tokenize_splits


def _text_file(value: Any, key: str) -> Path:
    if value in (None, ""):
        raise DataError(f"data=text needs data.{key}=FILE (a UTF-8 text file), e.g. data.train=train.txt data.test=test.txt")
    path = Path(str(value)).expanduser()
    if not path.is_file():
        raise DataError(f"data.{key}={value}: no such file; give the path of a UTF-8 text file")
    return path


def load_text(cfg: Any) -> Dataset:
    vocab_size, context = int(getattr(cfg, "vocab_size", 4096)), int(getattr(cfg, "context", 64))
    check_sizes(vocab_size, context)
    train, test = _text_file(getattr(cfg, "train", None), "train"), _text_file(getattr(cfg, "test", None), "test")
    key = cache.cache_key("text", [train, test], {"vocab_size": vocab_size})

    def prepare() -> dict:
        try:
            train_raw, test_raw = train.read_bytes(), test.read_bytes()
            train_raw.decode("utf-8"), test_raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise DataError(f"data=text: {train} or {test} is not UTF-8 text ({exc.reason}); convert it to UTF-8") from None
        return tokenize_splits(train_raw, test_raw, vocab_size, key, str(train))

    return lm_dataset("text", cache.load_or_build(key, prepare), context, f"data=text ({train.name}, {test.name})")
