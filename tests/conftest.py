"""Shared test setup: a corpus cache seeded from ../shared/data (no test touches the network),
one torch thread (the suite shares two cores with whatever else runs), and no thread left
running at exit."""

import os
import shutil
import tempfile
from pathlib import Path

import pytest

import charrnn  # noqa: F401  (before torch: it sets how OpenMP threads wait)

ROOT = Path(__file__).resolve().parent.parent
SHARED_TEXT = ROOT.parent / "shared" / "data" / "tinyshakespeare.txt"

# The cache must be set before charrnn reads it; a session-wide temp folder keeps the user's
# own cache untouched.
_CACHE = Path(tempfile.mkdtemp(prefix="charrnn-test-cache-"))
os.environ["CHARRNN_CACHE"] = str(_CACHE)
if SHARED_TEXT.is_file():
    shutil.copyfile(SHARED_TEXT, _CACHE / "tinyshakespeare.txt")


def _one_torch_thread():
    import torch

    torch.set_num_threads(1)


_one_torch_thread()


def pytest_sessionfinish(session, exitstatus):
    shutil.rmtree(_CACHE, ignore_errors=True)


@pytest.fixture(scope="session")
def shakespeare():
    """The real tiny Shakespeare corpus; skipped (failed under CI) when the seed is missing."""
    if not (_CACHE / "tinyshakespeare.txt").is_file():
        if os.environ.get("CI"):
            pytest.fail(f"CI needs {SHARED_TEXT} to seed the corpus cache")
        pytest.skip(f"needs {SHARED_TEXT} (tiny Shakespeare) to seed the corpus cache")
    from charrnn.corpus import load_corpus

    return load_corpus("tiny-shakespeare")


@pytest.fixture
def tiny_text():
    """A short varied text: enough for seq_len 16 with a 10% split."""
    base = "The quick brown fox jumps over the lazy dog. Пёс спит. 狐狸跳\tok\r\n🙂 "
    return base * 12
