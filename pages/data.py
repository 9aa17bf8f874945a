"""Data: choose the text the model learns from, and see what is in it."""

from ui import startup  # noqa: F401  (first: a bad CHARRNN_* setting stops here)

# isort: split
import math

import streamlit as st

from charrnn import corpus as corpora
from charrnn.corpus import Corpus, CorpusError
from charrnn.figures import char_frequency_figure
from charrnn.limits import LIMITS
from ui import common, state

PRESET_LABELS = {
    "tiny-shakespeare": "Tiny Shakespeare (1.1 MB of plays; downloaded once)",
    "python-source": "Python source (this interpreter's standard library; always offline)",
}

common.header(
    "Data",
    "A character model only ever sees a stream of characters, so its vocabulary is simply the "
    "set of characters in the text. Pick a text here; the Train page uses it. The unigram "
    "entropy below is the score of a model that ignores context: the line a trained model "
    "must beat.",
)


def choose() -> bool:
    """The source picker; stores a valid corpus in session_state['corpus']. False (with the
    reason shown) when the chosen text cannot be used."""
    how = st.radio(
        "Source",
        ["Built-in", "Upload a .txt", "Paste text"],
        horizontal=True,
        key="data_how",
        persist_state="session",
    )
    try:
        if how == "Built-in":
            name = st.selectbox(
                "Corpus",
                corpora.PRESETS,
                format_func=PRESET_LABELS.get,
                key="data_preset",
                persist_state="session",
            )
            use(state.load_preset(name), name)
        elif how == "Upload a .txt":
            upload = st.file_uploader(
                f"A plain-text file (up to {LIMITS.max_upload_mb} MB)",
                type=["txt"],
                key="data_upload",
                max_upload_size=LIMITS.max_upload_mb,
            )
            encoding = st.selectbox(
                "Encoding", corpora.ENCODINGS, key="data_encoding", persist_state="session"
            )
            if upload is not None:
                data = upload.getvalue()
                use(corpora.corpus_from_bytes(data, upload.name, encoding), f"upload:{upload.name}")
        else:
            text = st.text_area(
                "Text",
                height=200,
                key="data_paste",
                placeholder="Paste a few thousand characters or more...",
                persist_state="session",
            )
            if st.button("Use this text", key="data_use_paste"):
                use(corpora.corpus_from_text(text, "pasted text"), "pasted text")
    except CorpusError as e:
        st.error(common.plain(e))
        if how == "Built-in":
            st.info("The Python-source corpus needs no network; or upload or paste a text.")
        return False
    return True


def use(corpus: Corpus, source: str) -> None:
    if st.session_state.get("corpus") is not corpus:
        st.session_state["corpus"], st.session_state["corpus_source"] = corpus, source
        state.remember_corpus(corpus, source)  # a refresh finds it again (same owner link)


def describe(corpus: Corpus) -> None:
    text, (bits, counts) = corpus.text, state.corpus_summary(corpus.sha256, corpus)
    st.subheader(f"In use: {common.plain(corpus.name)}")
    c1, c2, c3, c4 = st.columns(4)
    c1.metric("Characters", f"{len(text):,}")
    c2.metric("Vocabulary", f"{len(corpus.vocab)}")
    c3.metric("Unigram entropy", f"{bits:.3f} bits/char", help="-Σ p(c) log2 p(c)")
    c4.metric("Lines", f"{text.count(chr(10)) + 1:,}")
    st.caption(
        f"A model that knows only how often each character occurs scores {bits:.3f} bits per "
        f"character; guessing uniformly among {len(corpus.vocab)} characters would score "
        f"{math.log2(len(corpus.vocab)):.3f}. Training is about going below "
        "the first number by using context."
    )
    st.plotly_chart(char_frequency_figure(counts), key="data_freq_chart", width="stretch")
    st.markdown("**Preview** (the first 1,000 characters)")
    st.code(text[:1000], language=None, wrap_lines=True, height=260)


def body() -> None:
    if not choose() and st.session_state.get("corpus") is None:
        return
    corpus = state.current_corpus()
    if corpus is None:
        return
    st.divider()
    describe(corpus)
    common.show_code(corpora.check_text, Corpus.unigram_entropy_bits)


body()
