"""Fixtures and helpers for the AppTest tests of the Streamlit app (tests/test_app_*.py).

Every test gets its own runs folder and an empty bundled-checkpoints folder, and on the way
out every job is stopped and joined and Streamlit's caches are cleared: a training thread
still running when pytest exits aborts the process (rc 134), and `st.cache_resource` is
process-wide, so one test's registry would otherwise leak into the next.
"""

import os
import re
import shutil
import tempfile
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
APP = str(ROOT / "app.py")
SHARED_TEXT = ROOT.parent / "shared" / "data" / "tinyshakespeare.txt"

# tests/conftest.py seeds the corpus cache; without it, seed one here so nothing downloads
if not os.environ.get("CHARRNN_CACHE"):
    _cache = Path(tempfile.mkdtemp(prefix="charrnn-app-test-cache-"))
    os.environ["CHARRNN_CACHE"] = str(_cache)
    if SHARED_TEXT.is_file():
        shutil.copyfile(SHARED_TEXT, _cache / "tinyshakespeare.txt")

# Small, fast knobs for a run started from the Train page (widget key suffix -> value).
TINY = dict(
    hidden_size=16,
    num_layers=1,
    embed_size=8,
    steps=20,
    batch_size=8,
    seq_len=16,
    eval_every=10,
    eval_chars=2000,
    sample_every=10,
    sample_length=30,
    warmup_steps=2,
)


def _shutdown_everything() -> None:
    import streamlit as st

    from ui import state

    try:
        state.registry().shutdown(timeout=30)
    finally:
        st.cache_resource.clear()
        st.cache_data.clear()


@pytest.fixture
def app_env(tmp_path, monkeypatch):
    """A clean process-wide state for one AppTest test; yields the bundled-checkpoints folder."""
    if not (Path(os.environ["CHARRNN_CACHE"]) / "tinyshakespeare.txt").is_file():
        pytest.skip(f"needs {SHARED_TEXT} to seed the corpus cache (no network here)")
    bundled = tmp_path / "bundled"
    bundled.mkdir()
    monkeypatch.setenv("CHARRNN_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setenv("CHARRNN_BUNDLED_DIR", str(bundled))
    import streamlit as st

    st.cache_resource.clear()
    yield bundled
    _shutdown_everything()


def new_app(query_params: dict | None = None):
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(APP, default_timeout=60)
    for key, value in (query_params or {}).items():
        at.query_params[key] = value
    return at.run()


def open_page(at, name: str):
    at.switch_page(f"pages/{name}.py").run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def run_until(at, condition, timeout: float = 90.0, pause: float = 0.3):
    """Rerun the page until condition(at) holds (timed fragments never fire in AppTest)."""
    deadline = time.monotonic() + timeout
    while True:
        at.run()
        assert not at.exception, [e.value for e in at.exception]
        if condition(at):
            return at
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout:.0f} s")
        time.sleep(pause)


def texts(elements) -> list[str]:
    """What the reader sees: Markdown backslash escapes (ui.common.plain) removed."""
    return [re.sub(r"\\(.)", r"\1", str(e.value)) for e in elements]


def charts(at) -> list[dict]:
    """The figure JSON of every plotly chart on the page."""
    import json

    return [json.loads(c.proto.spec) for c in at.get("plotly_chart")]


def train_tiny(at, cell: str = "lstm", **overrides):
    """Fill the Train page with TINY knobs, press Start and wait until the run has ended."""
    open_page(at, "train")
    for key, value in {**TINY, **overrides}.items():
        at.number_input(key=f"train_{key}").set_value(value)
    at.selectbox(key="train_cell").set_value(cell)
    at.run()
    at.button(key="train_start").click().run()
    assert not [t for t in texts(at.error) if "Could not start" in t], texts(at.error)
    return run_until(at, lambda a: a.success or a.warning or a.error)


def save_checkpoint(folder: Path, name: str, cell: str = "lstm", layers: int = 2, hidden=24):
    """An untrained but valid checkpoint with a Shakespeare-ish vocabulary."""
    from charrnn import checkpoint
    from charrnn.config import ModelConfig
    from charrnn.corpus import Vocab
    from charrnn.model import CharRNN

    vocab = Vocab(sorted(set("\n !',.:;?ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz-")))
    config = ModelConfig(
        vocab_size=len(vocab), cell=cell, hidden_size=hidden, num_layers=layers, embed_size=8
    )
    return checkpoint.save(folder / name, CharRNN(config).eval(), vocab)
