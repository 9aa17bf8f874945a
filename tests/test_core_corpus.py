"""Corpus: built-in texts, user text validation, vocabulary, split and batch samplers."""

import hashlib
from dataclasses import replace

import pytest
import requests
import torch

import charrnn.corpus as corpus_mod
from charrnn.corpus import (
    TINY_SHAKESPEARE_SHA256,
    CorpusError,
    RandomChunks,
    Streams,
    Vocab,
    corpus_from_bytes,
    corpus_from_text,
    load_corpus,
    min_chars,
    python_source_text,
    split_ids,
)


def test_tiny_shakespeare_from_seeded_cache(shakespeare):
    assert len(shakespeare.text) == 1_115_394
    assert len(shakespeare.vocab) == 65
    assert hashlib.sha256(shakespeare.text.encode()).hexdigest() == TINY_SHAKESPEARE_SHA256
    # the line to beat: a context-free model scores about 4.78 bits per char here
    assert shakespeare.unigram_entropy_bits() == pytest.approx(4.78, abs=0.01)


def test_vocab_handles_any_unicode(tiny_text):
    corpus = corpus_from_text(tiny_text)
    for ch in "П狐🙂\t\r\n":
        assert ch in corpus.vocab.stoi
    assert corpus.vocab.chars == sorted(set(tiny_text))
    assert corpus.vocab.decode(corpus.vocab.encode(tiny_text)) == tiny_text
    assert corpus.vocab.decode(corpus.ids) == tiny_text


def test_unknown_characters_are_named():
    vocab = Vocab.from_text("abc")
    with pytest.raises(CorpusError, match=r"'x', 'é'"):
        vocab.encode("abxé")


@pytest.mark.parametrize(
    "data, message",
    [
        (b"", "empty"),
        (b"caf\xe9 au lait\nmore", r"not valid UTF-8 \(byte 3, line 1.*latin-1"),
        (b"hello\x00world", "binary data"),
        (b"aaaaaaa", "single character"),
    ],
)
def test_bad_bytes_get_clear_errors(data, message):
    with pytest.raises(CorpusError, match=message):
        corpus_from_bytes(data, "upload.txt")


def test_latin1_is_an_explicit_choice():
    corpus = corpus_from_bytes(b"caf\xe9 au lait", "old.txt", encoding="latin-1")
    assert corpus.text == "café au lait"


def test_utf8_byte_order_mark_is_dropped():
    assert corpus_from_bytes(b"\xef\xbb\xbfhello", "bom.txt").text == "hello"


def test_vocabulary_and_size_caps(monkeypatch):
    many = "".join(chr(0x4E00 + i) for i in range(1001))
    with pytest.raises(CorpusError, match="1,001 distinct characters, over the 1,000"):
        corpus_from_text(many)
    monkeypatch.setattr(corpus_mod, "LIMITS", replace(corpus_mod.LIMITS, max_corpus_bytes=100))
    with pytest.raises(CorpusError, match="over the 100-byte limit"):
        corpus_from_text("ab" * 60)


def test_too_short_for_one_chunk_says_the_minimum():
    ids = corpus_from_text("abcdefghij" * 10).ids
    need = min_chars(128, 0.1)
    with pytest.raises(CorpusError, match=f"needs at least {need:,}"):
        split_ids(ids, 0.1, 128)


def test_missing_file_and_preset_names():
    with pytest.raises(CorpusError, match="no such file.*tiny-shakespeare, python-source"):
        load_corpus("/nonexistent/words.txt")


def test_python_source_is_deterministic_and_capped():
    a, b = python_source_text(200_000), python_source_text(200_000)
    assert a == b and len(a) == 200_000
    assert a.startswith("# file: ")
    corpus = load_corpus("python-source")
    assert 1_000_000 < len(corpus.text) <= corpus_mod.PYTHON_SOURCE_CAP


class FakeResponse:
    def __init__(self, body: bytes):
        self.body = body

    def raise_for_status(self):
        pass

    def iter_content(self, chunk_size):
        for i in range(0, len(self.body), chunk_size):
            yield self.body[i : i + chunk_size]

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def _empty_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("CHARRNN_CACHE", str(tmp_path))
    return tmp_path


def test_download_failure_names_url_and_path_and_leaves_nothing(monkeypatch, tmp_path):
    cache = _empty_cache(monkeypatch, tmp_path)

    def offline(*a, **k):
        raise requests.ConnectionError("no network")

    monkeypatch.setattr(requests, "get", offline)
    with pytest.raises(CorpusError) as err:
        load_corpus("tiny-shakespeare")
    assert corpus_mod.TINY_SHAKESPEARE_URL in str(err.value)
    assert str(cache / "tinyshakespeare.txt") in str(err.value)
    assert list(cache.iterdir()) == []


def test_mismatching_download_leaves_nothing(monkeypatch, tmp_path):
    cache = _empty_cache(monkeypatch, tmp_path)
    monkeypatch.setattr(requests, "get", lambda *a, **k: FakeResponse(b"not shakespeare" * 100))
    with pytest.raises(CorpusError, match="not the expected file"):
        load_corpus("tiny-shakespeare")
    assert list(cache.iterdir()) == []


def test_download_streams_with_progress(monkeypatch, tmp_path, shakespeare):
    cache = _empty_cache(monkeypatch, tmp_path)
    body = shakespeare.text.encode()
    monkeypatch.setattr(requests, "get", lambda *a, **k: FakeResponse(body))
    seen = []
    corpus = load_corpus("tiny-shakespeare", progress=lambda done, total: seen.append(done))
    assert corpus.sha256 == TINY_SHAKESPEARE_SHA256
    assert seen[-1] == len(body) and len(seen) > 10
    assert [p.name for p in cache.iterdir()] == ["tinyshakespeare.txt"]


def test_split_is_contiguous():
    ids = torch.arange(1000)
    train, val = split_ids(ids, 0.1, 16)
    assert len(val) == 100 and torch.equal(torch.cat([train, val]), ids)


def test_random_chunks_targets_are_shifted_inputs():
    ids = torch.arange(500)
    x, y = RandomChunks(ids, 8, 32, torch.Generator().manual_seed(0))()
    assert x.shape == y.shape == (8, 32)
    assert torch.equal(y, x + 1)  # ids are positions, so the next char is position + 1


def test_streams_continue_across_batches_and_wrap():
    ids = torch.arange(101)
    s = Streams(ids, batch_size=4, seq_len=10)
    x1, y1 = s()
    assert s.reset
    x2, _ = s()
    assert not s.reset
    assert torch.equal(x2[:, 0], x1[:, -1] + 1)  # each row picks up where it stopped
    assert torch.equal(x1[:, 0], torch.tensor([0, 25, 50, 75]))
    assert torch.equal(y1, x1 + 1)
    x3, _ = s()  # 25 characters per stream: a third chunk of 10 does not fit, so it wraps
    assert s.reset and torch.equal(x3, x1)


def test_utf16_is_named_as_such():
    with pytest.raises(CorpusError, match="UTF-16 text"):
        corpus_from_bytes("hello".encode("utf-16"), "notes.txt")
