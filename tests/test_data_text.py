"""data=text: any UTF-8 files through WikiText-2's tokenizer and windows (issue 19), offline."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from data_fixtures import data_dir  # noqa: F401  (pytest fixture)
from test_data_wikitext import ARTICLE, _cfg, official_text, write_raw
from sweep.data.base import DataError, load_dataset


def _text_cfg(train, test, context: int = 8, vocab_size: int = 300) -> SimpleNamespace:
    return SimpleNamespace(name="text", train=None if train is None else str(train),
                           test=None if test is None else str(test), vocab_size=vocab_size, context=context, subset=0)


def test_text_files_give_the_wikitext_tokens_and_windows(tmp_path, data_dir):
    """The same bytes as wiki.train.raw / wiki.test.raw under other names give identical windows."""
    folder = write_raw(tmp_path / "wt")
    wikitext = load_dataset(_cfg(folder))
    (tmp_path / "mine").mkdir()
    train, test = tmp_path / "mine" / "corpus.txt", tmp_path / "mine" / "heldout.txt"
    train.write_bytes((folder / "wiki.train.raw").read_bytes())
    test.write_bytes((folder / "wiki.test.raw").read_bytes())
    text = load_dataset(_text_cfg(train, test))
    assert text.task == "lm" and text.name == "text" and text.num_classes == wikitext.num_classes
    for a, b in ((text.x_train, wikitext.x_train), (text.y_train, wikitext.y_train),
                 (text.x_test, wikitext.x_test), (text.y_test, wikitext.y_test)):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(text.y_train[:, :-1], text.x_train[:, 1:])


def test_tokenizer_is_trained_on_the_training_file_only(tmp_path, data_dir):
    train, test = tmp_path / "a.txt", tmp_path / "b.txt"
    train.write_text(official_text(ARTICLE, 12), encoding="utf-8")
    test.write_text(official_text(["zzyzx qqq"], 40), encoding="utf-8")  # words never seen in training
    ds = load_dataset(_text_cfg(train, test))
    assert (ds.x_test == 0).mean() > 0.3  # <unk> (id 0) for the unseen characters


@pytest.mark.parametrize("train,test,message", [
    (None, "b.txt", "data=text needs data.train=FILE"),
    ("a.txt", None, "data=text needs data.test=FILE"),
    ("missing.txt", "b.txt", "data.train="),
])
def test_missing_files_are_one_line_errors(tmp_path, data_dir, train, test, message):
    (tmp_path / "a.txt").write_text(official_text(ARTICLE, 3), encoding="utf-8")
    (tmp_path / "b.txt").write_text(official_text(ARTICLE, 3), encoding="utf-8")
    with pytest.raises(DataError, match=message) as err:
        load_dataset(_text_cfg(None if train is None else tmp_path / train, None if test is None else tmp_path / test))
    assert "\n" not in str(err.value)


def test_non_utf8_text_is_a_data_error(tmp_path, data_dir):
    (tmp_path / "a.txt").write_bytes(b"caf\xe9 au lait\n" * 50)
    (tmp_path / "b.txt").write_text(official_text(ARTICLE, 3), encoding="utf-8")
    with pytest.raises(DataError, match="not UTF-8"):
        load_dataset(_text_cfg(tmp_path / "a.txt", tmp_path / "b.txt"))


def test_text_route_composes_from_the_command_line(compose_cfg, tmp_path):
    cfg = compose_cfg("model=transformer", "data=text", f"data.train={tmp_path}/t.txt", f"data.test={tmp_path}/v.txt")
    assert cfg.data.name == "text" and cfg.data.train.endswith("t.txt") and cfg.data.context == cfg.model.context
