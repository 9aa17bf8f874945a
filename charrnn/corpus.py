"""Text in: built-in corpora, user text, validation, the vocabulary, the split and the batches.

Layout: a corpus becomes a 1-D tensor of token ids (N,). Batches are batch-first (B, T) pairs
of inputs and targets, the targets being the inputs shifted one character to the left.
"""

import hashlib
import logging
import math
import os
import sys
import tempfile
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path

import torch

from .limits import LIMITS

log = logging.getLogger(__name__)

TINY_SHAKESPEARE_URL = (
    "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt"
)
TINY_SHAKESPEARE_SIZE = 1_115_394
TINY_SHAKESPEARE_SHA256 = "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"
PYTHON_SOURCE_CAP = 3_000_000  # characters taken from the standard library
PRESETS = ("tiny-shakespeare", "python-source")
ENCODINGS = ("utf-8", "latin-1")

Progress = Callable[[int, int], None]  # (bytes done, bytes total)


class CorpusError(ValueError):
    """Bad text from a user, or a corpus that cannot be had; the message says what to do."""


# ---------------------------------------------------------------------------------------------
# Vocabulary


class Vocab:
    """The sorted set of characters a model knows, and the mapping to and from ids."""

    def __init__(self, chars):
        self.chars = list(chars)
        self.stoi = {ch: i for i, ch in enumerate(self.chars)}
        if len(self.stoi) != len(self.chars):
            raise ValueError("vocabulary has repeated characters")

    @classmethod
    def from_text(cls, text: str) -> "Vocab":
        return cls(sorted(set(text)))

    def __len__(self) -> int:
        return len(self.chars)

    def __eq__(self, other) -> bool:
        return isinstance(other, Vocab) and self.chars == other.chars

    def unknown(self, text: str) -> list[str]:
        """Characters of `text` this vocabulary lacks, in order of first appearance."""
        return list(dict.fromkeys(ch for ch in text if ch not in self.stoi))

    def encode(self, text: str) -> torch.Tensor:
        """Text -> ids, shape (len(text),). Unknown characters raise a CorpusError naming them."""
        missing = self.unknown(text)
        if missing:
            shown = ", ".join(repr(ch) for ch in missing[:20])
            more = f" and {len(missing) - 20} more" if len(missing) > 20 else ""
            raise CorpusError(
                f"the model does not know these characters: {shown}{more}. "
                "Remove them, or train on a text that has them."
            )
        return torch.tensor([self.stoi[ch] for ch in text], dtype=torch.long)

    def decode(self, ids) -> str:
        return "".join(self.chars[int(i)] for i in ids)


# ---------------------------------------------------------------------------------------------
# Corpus


@dataclass(frozen=True)
class Corpus:
    """A validated text with its name and fingerprint."""

    name: str
    text: str = field(repr=False)

    @cached_property
    def sha256(self) -> str:
        return hashlib.sha256(self.text.encode("utf-8")).hexdigest()

    @cached_property
    def vocab(self) -> Vocab:
        return Vocab.from_text(self.text)

    @cached_property
    def ids(self) -> torch.Tensor:
        """The whole text as token ids, shape (N,), uint8 or int16 to save memory."""
        dtype = torch.uint8 if len(self.vocab) <= 256 else torch.int16
        lookup = self.vocab.stoi
        return torch.tensor([lookup[ch] for ch in self.text], dtype=dtype)

    def char_counts(self) -> list[tuple[str, int]]:
        """(character, count) pairs, most frequent first."""
        return Counter(self.text).most_common()

    def unigram_entropy_bits(self) -> float:
        """Bits per char of a model that ignores context: the line a trained model must beat."""
        n = len(self.text)
        return -sum(c / n * math.log2(c / n) for _, c in self.char_counts())


def check_text(text: str, name: str = "text") -> str:
    """Refuse text no character model should train on; return it unchanged otherwise."""
    if not text:
        raise CorpusError(f"{name} is empty: give a text with at least a few hundred characters.")
    if "\x00" in text:
        where = text.index("\x00")
        raise CorpusError(
            f"{name} looks like binary data (a NUL byte at character {where}), not text: "
            "give a plain-text file."
        )
    size = len(text.encode("utf-8"))
    if size > LIMITS.max_corpus_bytes:
        raise CorpusError(
            f"{name} is {size:,} bytes, over the {LIMITS.max_corpus_bytes:,}-byte limit: "
            "use a shorter excerpt (or raise CHARRNN_MAX_CORPUS_BYTES)."
        )
    distinct = len(set(text))
    if distinct > LIMITS.max_vocab:
        raise CorpusError(
            f"{name} has {distinct:,} distinct characters, over the {LIMITS.max_vocab:,} "
            "that a character model can sensibly learn: use a text in fewer scripts."
        )
    if distinct < 2:
        raise CorpusError(f"{name} uses a single character: there is nothing to predict.")
    return text


def decode_bytes(data: bytes, name: str = "file", encoding: str = "utf-8") -> str:
    """Bytes -> text. UTF-8 by default (a leading byte-order mark is dropped); latin-1 only when
    asked, since it accepts any bytes and would hide a wrong guess."""
    if encoding not in ENCODINGS:
        raise CorpusError(f"encoding must be one of {', '.join(ENCODINGS)}; got {encoding!r}")
    if data[:2] in (b"\xff\xfe", b"\xfe\xff"):
        raise CorpusError(
            f"{name} is UTF-16 text (it starts with a UTF-16 byte-order mark): save it as UTF-8 "
            "and try again."
        )
    if b"\x00" in data:
        raise CorpusError(
            f"{name} looks like binary data (a NUL byte at byte {data.index(0):,}), not text: "
            "give a plain-text file."
        )
    if encoding == "latin-1":
        return data.decode("latin-1")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise CorpusError(
            f"{name} is not valid UTF-8 (byte {e.start:,}, line {line}: "
            f"{data[e.start : e.start + 1]!r}). Save it as UTF-8, or choose the latin-1 encoding "
            "if it is a Western European legacy file."
        ) from None


def corpus_from_text(text: str, name: str = "pasted text") -> Corpus:
    return Corpus(name=name, text=check_text(text, name))


def corpus_from_bytes(data: bytes, name: str = "upload", encoding: str = "utf-8") -> Corpus:
    if len(data) > LIMITS.max_corpus_bytes:
        raise CorpusError(
            f"{name} is {len(data):,} bytes, over the {LIMITS.max_corpus_bytes:,}-byte limit: "
            "use a shorter excerpt."
        )
    return corpus_from_text(decode_bytes(data, name, encoding), name)


def corpus_from_file(path, encoding: str = "utf-8") -> Corpus:
    path = Path(path)
    if not path.is_file():
        raise CorpusError(
            f"no such file: {path}. Give a path to a text file or a built-in name "
            f"({', '.join(PRESETS)})."
        )
    if path.stat().st_size > LIMITS.max_corpus_bytes:
        raise CorpusError(
            f"{path} is {path.stat().st_size:,} bytes, over the "
            f"{LIMITS.max_corpus_bytes:,}-byte limit: use a shorter excerpt."
        )
    return corpus_from_bytes(path.read_bytes(), path.name, encoding)


def load_corpus(source: str, progress: Progress | None = None, encoding="utf-8") -> Corpus:
    """A built-in corpus by name, else a path to a text file."""
    if source == "tiny-shakespeare":
        return replace(corpus_from_file(tiny_shakespeare_path(progress)), name=source)
    if source == "python-source":
        return corpus_from_text(python_source_text(), source)
    return corpus_from_file(source, encoding)


# ---------------------------------------------------------------------------------------------
# Built-in corpora


def cache_dir() -> Path:
    """CHARRNN_CACHE if set, else the user's cache folder (XDG on Linux)."""
    if os.environ.get("CHARRNN_CACHE"):
        return Path(os.environ["CHARRNN_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "charrnn"


def _file_ok(path: Path) -> bool:
    if not path.is_file() or path.stat().st_size != TINY_SHAKESPEARE_SIZE:
        return False
    return hashlib.sha256(path.read_bytes()).hexdigest() == TINY_SHAKESPEARE_SHA256


def tiny_shakespeare_path(progress: Progress | None = None) -> Path:
    """The cached tiny Shakespeare file, downloading and verifying it on first use."""
    path = cache_dir() / "tinyshakespeare.txt"
    if _file_ok(path):
        return path
    if path.exists():
        log.warning("cached %s does not match its sha256; downloading again", path)
    download(TINY_SHAKESPEARE_URL, path, TINY_SHAKESPEARE_SIZE, TINY_SHAKESPEARE_SHA256, progress)
    return path


def download(url: str, path: Path, size: int, sha256: str, progress: Progress | None) -> None:
    """Stream `url` into a temp file beside `path`, check size and hash, then rename into place.
    Any failure leaves nothing at `path` and raises a CorpusError that says where to put the
    file by hand."""
    import requests  # here, so importing the package stays quick

    manual = f"Download {url} yourself and save it as {path}."
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    try:
        digest, done = hashlib.sha256(), 0
        with os.fdopen(fd, "wb") as out:
            with requests.get(url, stream=True, timeout=(5, 30)) as r:
                r.raise_for_status()
                for chunk in r.iter_content(chunk_size=1 << 16):
                    out.write(chunk)
                    digest.update(chunk)
                    done += len(chunk)
                    if done > size:
                        break
                    if progress:
                        progress(done, size)
        if done != size or digest.hexdigest() != sha256:
            raise CorpusError(
                f"the download from {url} is not the expected file ({done:,} bytes, "
                f"expected {size:,} with sha256 {sha256[:12]}...). {manual}"
            )
        os.replace(tmp, path)
    except requests.RequestException as e:
        raise CorpusError(f"could not download {url} ({type(e).__name__}). {manual}") from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def python_source_text(cap: int = PYTHON_SOURCE_CAP) -> str:
    """The running interpreter's own standard library .py files, in sorted path order, up to
    `cap` characters: real text that is always there, with no network."""
    root = Path(os.__file__).parent
    parts, total = [], 0
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root)
        if rel.parts[0] in ("site-packages", "test", "idlelib") or "tests" in rel.parts:
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        text = text.replace("\r\n", "\n").replace("\x00", "")
        parts.append(f"# file: {rel.as_posix()}\n{text}\n")
        total += len(parts[-1])
        if total >= cap:
            break
    if not parts:
        raise CorpusError(f"no standard library sources found under {root} ({sys.version})")
    return "".join(parts)[:cap]


# ---------------------------------------------------------------------------------------------
# Split and batches


def min_chars(seq_len: int, val_fraction: float) -> int:
    """The shortest text that gives both splits at least one (seq_len + 1)-character chunk."""
    return math.ceil((seq_len + 1) / min(val_fraction, 1 - val_fraction)) + 1


def split_ids(ids: torch.Tensor, val_fraction: float, seq_len: int):
    """Contiguous split: the first (1 - val_fraction) for training, the tail for validation."""
    need = min_chars(seq_len, val_fraction)
    if len(ids) < need:
        raise CorpusError(
            f"the text has {len(ids):,} characters; with chunks of {seq_len} and "
            f"{val_fraction:.0%} held out for validation it needs at least {need:,}. "
            "Use a longer text or a shorter sequence length."
        )
    n_val = int(len(ids) * val_fraction)
    return ids[: len(ids) - n_val], ids[len(ids) - n_val :]


class RandomChunks:
    """Batches of chunks drawn at random offsets, as in the course notebook.

    Each call gives x, y of shape (B, T) with y[:, t] == x[:, t + 1] in the text.
    """

    carries_state = False

    def __init__(self, ids: torch.Tensor, batch_size: int, seq_len: int, generator):
        self.ids, self.B, self.T, self.gen = ids, batch_size, seq_len, generator

    def __call__(self):
        starts = torch.randint(len(self.ids) - self.T, (self.B,), generator=self.gen)
        offsets = starts[:, None] + torch.arange(self.T + 1)  # (B, T+1)
        chunk = self.ids[offsets].long()
        return chunk[:, :-1], chunk[:, 1:]


class Streams:
    """B contiguous streams read side by side, so the hidden state can carry across batches
    (truncated backprop through time, as in karpathy/char-rnn).

        text:    a b c d e f g h i j k l m n o p ...
        stream 0 reads [a b c d] then [e f g h] ...   <- batch row 0 over time
        stream 1 reads [i j k l] then [m n o p] ...   <- batch row 1 over time

    `reset` is True after a call that (re)starts at the beginning: drop the carried state.
    """

    carries_state = True

    def __init__(self, ids: torch.Tensor, batch_size: int, seq_len: int, generator=None):
        per_stream = (len(ids) - 1) // batch_size
        if per_stream < seq_len:
            raise CorpusError(
                f"the training text is too short for {batch_size} streams of {seq_len} "
                "characters: lower the batch size or sequence length."
            )
        self.T, self.pos, self.reset = seq_len, 0, False
        usable = per_stream * batch_size
        self.x_rows = ids[:usable].view(batch_size, per_stream)
        self.y_rows = ids[1 : usable + 1].view(batch_size, per_stream)

    def __call__(self):
        if self.pos + self.T > self.x_rows.shape[1]:
            self.pos = 0
        self.reset = self.pos == 0
        x = self.x_rows[:, self.pos : self.pos + self.T].long()
        y = self.y_rows[:, self.pos : self.pos + self.T].long()
        self.pos += self.T
        return x, y


def make_sampler(kind: str, ids, batch_size: int, seq_len: int, generator):
    return {"random": RandomChunks, "stream": Streams}[kind](ids, batch_size, seq_len, generator)
