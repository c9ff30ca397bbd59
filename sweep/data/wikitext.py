"""WikiText-2 (raw) for next-token prediction, BPE-tokenized as in the paper (Appendix D).

A BPE tokenizer (HF `tokenizers`, Whitespace pre-tokenizer, vocabulary `data.vocab_size`)
is trained on wiki.train.raw only. Text handling: CRLF and LF line endings are equivalent;
blank lines are dropped and every other line (headings such as " = Robert Boulter = "
included, '=' becoming ordinary punctuation tokens) ends with an "<eol>" token, so the
official files and re-serialized copies without blank lines give the same token stream.
Windows: the token stream is cut into non-overlapping chunks of context+1 tokens; x is a
chunk's first `context` tokens, y the next token at each position. The test split is
wiki.test.raw; wiki.valid.raw is not used (yet), so it is not required.
The tokenizer JSON and the token streams are cached; windows are cut at load (cheap).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from sweep.data import archive, cache
from sweep.data.base import Dataset, DataError
from sweep.data.download import Source, obtain, resolve_root, verify

# Size and sha256 of the official archive as published by third parties (Hugging Face's
# dataset_infos for this URL, and several projects pinning the same file); NOT verified
# here against a download, as this code was written without network access.
SOURCE = Source(
    "wikitext-2-raw-v1.zip",
    "https://s3.amazonaws.com/research.metamind.io/wikitext/wikitext-2-raw-v1.zip",
    sha256="ef7edb566e3e2b2d31b29c1fdb0c89a4cc683597484c3dc2517919c615435a11",
    size=4721645,
)
FOLDER = "wikitext-2-raw"
TRAIN, VALID, TEST = "wiki.train.raw", "wiki.valid.raw", "wiki.test.raw"
REQUIRED = (TRAIN, TEST)
SPECIALS = ("<unk>", "<eol>")


def _locate(root: Path, download: bool) -> Path:
    """A folder with the .raw files (checked for completeness) or the official zip."""
    for folder in (root, root / FOLDER):
        present = [f for f in (TRAIN, VALID, TEST) if (folder / f).is_file()]
        if present:
            missing = [f for f in REQUIRED if f not in present]
            if missing:
                raise DataError(
                    f"WikiText-2 raw in {folder} is incomplete: missing {', '.join(missing)} "
                    f"(found {', '.join(present)}); put the missing file(s) there, or download "
                    f"{SOURCE.url} and unzip it into {root}"
                )
            return folder
    if (root / SOURCE.filename).is_file():
        return root / SOURCE.filename
    return obtain(
        SOURCE, root, download, what="WikiText-2 raw",
        alternatives=f"a folder holding {TRAIN} and {TEST} (or {SOURCE.filename})",
    )


def text_lines(raw: bytes) -> list[str]:
    """Non-blank lines, stripped; CRLF, LF and lone CR all end a line."""
    text = raw.decode("utf-8").replace("\r\n", "\n").replace("\r", "\n")
    return [line.strip() for line in text.split("\n") if line.strip()]


def train_tokenizer(lines: list[str], vocab_size: int) -> Any:
    """BPE with a Whitespace pre-tokenizer, trained on `lines` (deterministic)."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE(unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=list(SPECIALS), show_progress=False)
    tokenizer.train_from_iterator(lines, trainer=trainer)
    return tokenizer


def encode_lines(tokenizer: Any, lines: list[str]) -> np.ndarray:
    """One int32 stream: each line's tokens followed by <eol>."""
    eol = tokenizer.token_to_id("<eol>")
    ids: list[int] = []
    for encoding in tokenizer.encode_batch(lines):
        ids.extend(encoding.ids)
        ids.append(eol)
    return np.asarray(ids, dtype=np.int32)


def token_windows(ids: np.ndarray, context: int) -> tuple[np.ndarray, np.ndarray]:
    """Non-overlapping (context+1)-token chunks -> inputs (N, context) and next tokens (N, context)."""
    n = len(ids) // (context + 1)
    chunks = ids[: n * (context + 1)].reshape(n, context + 1)
    return chunks[:, :-1].copy(), chunks[:, 1:].copy()


def tokenizer_path(key: str) -> Path:
    return cache.cache_dir() / f"{key}.tokenizer.json"


def tokenize_splits(train_raw: bytes, test_raw: bytes, vocab_size: int, key: str, where: str) -> dict[str, np.ndarray]:
    """BPE trained on the training text only; both splits as token streams (cached by the caller)."""
    train_lines, test_lines = text_lines(train_raw), text_lines(test_raw)
    if not train_lines:
        raise DataError(f"{where}: the training text holds no text")
    tokenizer = train_tokenizer(train_lines, vocab_size)
    cache.atomic_write_bytes(tokenizer_path(key), lambda f: f.write(tokenizer.to_str().encode()))
    return dict(
        train_ids=encode_lines(tokenizer, train_lines),
        test_ids=encode_lines(tokenizer, test_lines),
        vocab_size=np.array(tokenizer.get_vocab_size()),
    )


def lm_dataset(name: str, arrays: dict[str, np.ndarray], context: int, where: str) -> Dataset:
    """Next-token windows of both token streams, as a language-model data set."""
    x_train, y_train = token_windows(arrays["train_ids"], context)
    x_test, y_test = token_windows(arrays["test_ids"], context)
    if len(x_train) == 0 or len(x_test) == 0:
        raise DataError(
            f"{where} yields {len(arrays['train_ids'])} train and {len(arrays['test_ids'])} test tokens: "
            f"too few for one window of data.context+1={context + 1}"
        )
    return Dataset(name, x_train, y_train, x_test, y_test, num_classes=int(arrays["vocab_size"]), task="lm")


def check_sizes(vocab_size: int, context: int) -> None:
    if vocab_size < len(SPECIALS) + 1 or context < 1:
        raise DataError(f"data.vocab_size={vocab_size} and data.context={context}: need vocab_size >= 3, context >= 1")


def _prepare(location: Path, vocab_size: int, key: str) -> dict[str, np.ndarray]:
    if location.is_file():
        verify(location, SOURCE)
    raw = {archive.basename(n): b for n, b in archive.iter_files(location, lambda n: archive.basename(n) in REQUIRED)}
    missing = [f for f in REQUIRED if f not in raw]
    if missing:
        raise DataError(f"{location} lacks {', '.join(missing)}; it must hold {', '.join(REQUIRED)}")
    if not text_lines(raw[TRAIN]):
        raise DataError(f"{location}: {TRAIN} holds no text")
    return tokenize_splits(raw[TRAIN], raw[TEST], vocab_size, key, str(location))


def load_wikitext2(cfg: Any) -> Dataset:
    vocab_size, context = int(getattr(cfg, "vocab_size", 4096)), int(getattr(cfg, "context", 64))
    check_sizes(vocab_size, context)
    location = _locate(resolve_root(getattr(cfg, "root", None)), bool(getattr(cfg, "download", True)))
    sources = [location] if location.is_file() else [location / f for f in REQUIRED]
    key = cache.cache_key("wikitext2", sources, {"vocab_size": vocab_size})
    a = cache.load_or_build(key, lambda: _prepare(location, vocab_size, key))
    return lm_dataset("wikitext2", a, context, f"WikiText-2 in {location}")
