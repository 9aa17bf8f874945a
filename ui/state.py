"""What outlives one script run: the process-wide job registry, this session's owner token, the
chosen corpus and uploaded checkpoints.

A browser refresh starts a new Streamlit session with an empty `st.session_state`, so the
session's identity (an unguessable owner token) is kept in the URL's query parameters: the
refreshed page reads it back and finds its jobs in the registry, which lives in
`st.cache_resource` (one per process, shared by every session, guarded by its own lock).
"""

import os
import re
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field

import streamlit as st
import torch

from charrnn import corpus as corpora
from charrnn.checkpoint import Checkpoint
from charrnn.corpus import Corpus, CorpusError
from charrnn.jobs import new_id, new_owner
from charrnn.limits import LIMITS
from charrnn.registry import JobRegistry

OWNER_PARAM = "owner"
_TOKEN = re.compile(r"[A-Za-z0-9_-]{16,64}")
DEFAULT_CORPUS = "tiny-shakespeare"


def app_threads() -> int:
    """torch intra-op threads for script threads (sampling, traces): few, so the server and the
    training threads keep their cores. CHARRNN_APP_THREADS overrides."""
    raw = os.environ.get("CHARRNN_APP_THREADS", "").strip() or "1"
    try:
        return max(1, int(raw))
    except ValueError:
        raise ValueError(f"CHARRNN_APP_THREADS={raw!r} is not a whole number") from None


def configure_torch() -> None:
    # NOTE: torch's thread count is per OS thread under OpenMP, and every script run is a new
    # thread, so this runs at the top of every run (it is a cheap no-op when already set).
    if torch.get_num_threads() != app_threads():
        torch.set_num_threads(app_threads())


@st.cache_resource(show_spinner=False)
def registry() -> JobRegistry:
    """The one job registry of this process. Jobs outlive reruns, page changes and refreshes.
    Its slots, thread budget, caps and runs folder come from the CHARRNN_* limits."""
    return JobRegistry.from_env()


def owner() -> str:
    """This session's owner token: from session state, else from the URL (a refresh), else new.
    It is written back to the URL on every run, so the address bar always holds it."""
    token = st.session_state.get("owner")
    if token is None:
        from_url = st.query_params.get(OWNER_PARAM, "")
        token = from_url if _TOKEN.fullmatch(from_url) else new_owner()
        st.session_state["owner"] = token
    if st.query_params.get(OWNER_PARAM) != token:
        st.query_params[OWNER_PARAM] = token
    return token


def _release(lease) -> None:
    if lease is not None:
        lease.release()


@st.cache_resource(scope="session", on_release=_release, show_spinner=False)
def _session_lease(token: str):
    """Tell the registry a session of this owner is here; released when the session ends, so
    runs of a closed tab stop after a grace period unless the tab comes back (a refresh)."""
    return registry().attach(token)


def ensure_state() -> None:
    """Initialise every plain (non-widget) session key once. Called by app.py on every run."""
    token = owner()
    _session_lease(token)
    if "workspace_checked" not in st.session_state:  # a new session: a refresh, a new tab
        st.session_state["workspace_checked"] = True
        restore_workspace(token)
    st.session_state["entered_via_app"] = True  # see ui.common._require_entry
    defaults = {
        "corpus": None,  # charrnn.corpus.Corpus chosen on the Data page (Train uses it)
        "corpus_source": DEFAULT_CORPUS,  # how it was chosen, shown on the Data page
        "sample_result": None,  # the last generated sample, kept across reruns
        "runs_upload_results": {},  # uploaded file id -> (accepted, message), handled once
        "train_fold": False,  # fold the Train settings on the next run (a run just started)
        "gates_trace": None,  # (key, trace.Trace) of the Gates page's text, reused across views
    }
    for key, value in defaults.items():
        if key not in st.session_state:
            st.session_state[key] = value


def run_labels(jobs) -> dict[str, str]:
    """Job id -> the name shown for it everywhere (tables, legends, pickers). Runs with the
    same settings share a name, so a repeated name gets the run's start time (HH:MM:SS), and
    a #n when even that repeats. `jobs`: the owner's jobs or their snapshots (.id, .name,
    .created); pass all of them, so every page labels a run the same way."""
    jobs = sorted(jobs, key=lambda j: j.created)
    count: dict[str, int] = {}
    for j in jobs:
        count[j.name] = count.get(j.name, 0) + 1
    labels = {
        j.id: (
            f"{j.name} · {time.strftime('%H:%M:%S', time.localtime(j.created))}"
            if count[j.name] > 1
            else j.name
        )
        for j in jobs
    }
    seen: dict[str, int] = {}
    repeated = {v for v in labels.values() if list(labels.values()).count(v) > 1}
    for j in jobs:
        if labels[j.id] in repeated:
            seen[labels[j.id]] = n = seen.get(labels[j.id], 0) + 1
            labels[j.id] += f" #{n}"
    return labels


def owner_run_labels() -> dict[str, str]:
    """run_labels of all of this session's runs."""
    return run_labels(registry().owned(owner()))


# --- corpora ----------------------------------------------------------------------------------


@st.cache_resource(show_spinner="Reading the corpus...", max_entries=4)
def _preset(name: str) -> Corpus:
    return corpora.load_corpus(name)


def load_preset(name: str) -> Corpus:
    """A built-in corpus, shared by every session. Tiny Shakespeare is downloaded on first use
    with a progress bar; a failed download raises a CorpusError that says what to do."""
    if name == "tiny-shakespeare" and not (corpora.cache_dir() / "tinyshakespeare.txt").is_file():
        bar = st.progress(0.0, text="Downloading tiny Shakespeare (1.1 MB, once)...")

        def progress(done: int, total: int) -> None:
            bar.progress(min(1.0, done / total), text=f"Downloading: {done:,} of {total:,} bytes")

        try:
            corpora.tiny_shakespeare_path(progress)
        finally:
            bar.empty()
    return _preset(name)


@st.cache_data(max_entries=16, show_spinner=False)
def corpus_summary(sha256: str, _corpus: Corpus) -> tuple[float, list[tuple[str, int]]]:
    """Unigram entropy (bits per char) and character counts, computed once per text (about
    0.1 s for tiny Shakespeare, too much for every rerun). Keyed by the text's sha256."""
    return _corpus.unigram_entropy_bits(), _corpus.char_counts()


def current_corpus() -> Corpus | None:
    """The session's corpus; tiny Shakespeare until the Data page chooses another. On failure
    an error is shown and None returned."""
    if st.session_state.get("corpus") is None:
        try:
            st.session_state["corpus"] = load_preset(DEFAULT_CORPUS)
            st.session_state["corpus_source"] = DEFAULT_CORPUS
        except CorpusError as e:
            from ui.common import plain  # ui.common imports this module

            st.error(plain(f"Could not load tiny Shakespeare: {e}"))
            st.info("Pick the offline Python-source corpus, or upload a text, on the Data page.")
            st.page_link("pages/data.py", label="Go to Data", icon=":material/description:")
            return None
    return st.session_state["corpus"]


# --- uploaded checkpoints ---------------------------------------------------------------------


class UploadStore:
    """Checkpoints uploaded on the Runs page, kept in memory per owner: never written to disk
    or shown to another session. Bounded: a few per owner, and the least recently used owners
    are forgotten first."""

    def __init__(self, per_owner: int = 3, max_owners: int = 32):
        self.per_owner, self.max_owners = per_owner, max_owners
        self._lock = threading.Lock()
        self._items: OrderedDict[str, OrderedDict[str, tuple[str, Checkpoint]]] = OrderedDict()

    def add(self, owner: str, name: str, ckpt: Checkpoint) -> str:
        key = new_id()[:10]
        with self._lock:
            items = self._items.setdefault(owner, OrderedDict())
            self._items.move_to_end(owner)
            items[key] = (name, ckpt)
            while len(items) > self.per_owner:
                items.popitem(last=False)
            while len(self._items) > self.max_owners:
                self._items.popitem(last=False)
        return key

    def list(self, owner: str) -> list[tuple[str, str, Checkpoint]]:
        with self._lock:
            items = self._items.get(owner, {})
            return [(key, name, ckpt) for key, (name, ckpt) in items.items()]

    def get(self, owner: str, key: str) -> tuple[str, Checkpoint] | None:
        with self._lock:
            return self._items.get(owner, {}).get(key)

    def remove(self, owner: str, key: str) -> None:
        with self._lock:
            self._items.get(owner, {}).pop(key, None)


@st.cache_resource(show_spinner=False)
def uploads() -> UploadStore:
    return UploadStore()


# --- the owner's workspace: what a refresh would otherwise forget -----------------------------


@dataclass
class Workspace:
    """One owner's choices that outlive a session: the corpus (name and text) and the Train
    page's widget values (key -> value)."""

    corpus: Corpus | None = None
    corpus_source: str = DEFAULT_CORPUS
    train: dict = field(default_factory=dict)
    touched: float = 0.0  # time.monotonic() of the last save or restore

    def text_cost(self) -> int:
        """Characters this entry holds on its own (a built-in corpus is shared, so free)."""
        if self.corpus is None or self.corpus_source in corpora.PRESETS:
            return 0
        return len(self.corpus.text)


class WorkspaceStore:
    """Workspaces by owner token, in memory, process-wide. Only the owner's own token finds
    its entry. Bounded: at most `max_owners` entries and `max_chars` characters of corpus text
    in all (least recently used first out), and an entry untouched for `ttl_s` is dropped, as
    runs are. Each text is already within the corpus size limit (it was accepted as one)."""

    def __init__(self, ttl_s: float, max_owners: int = 256, max_chars: int | None = None):
        self.ttl_s, self.max_owners = ttl_s, max_owners
        self.max_chars = 4 * LIMITS.max_corpus_bytes if max_chars is None else max_chars
        self._lock = threading.Lock()
        self._items: OrderedDict[str, Workspace] = OrderedDict()

    def _expire(self, now: float) -> None:
        for key in [k for k, w in self._items.items() if now - w.touched > self.ttl_s]:
            del self._items[key]

    def _entry(self, owner: str, now: float) -> Workspace:
        self._expire(now)
        ws = self._items.setdefault(owner, Workspace())
        ws.touched = now
        self._items.move_to_end(owner)
        return ws

    def _shrink(self) -> None:
        total = sum(w.text_cost() for w in self._items.values())
        while self._items and (len(self._items) > self.max_owners or total > self.max_chars):
            _, dropped = self._items.popitem(last=False)
            total -= dropped.text_cost()

    def save_corpus(self, owner: str, corpus: Corpus, source: str) -> None:
        with self._lock:
            ws = self._entry(owner, time.monotonic())
            ws.corpus, ws.corpus_source = corpus, source
            self._shrink()

    def save_train(self, owner: str, values: dict) -> None:
        with self._lock:
            self._entry(owner, time.monotonic()).train = dict(values)
            self._shrink()

    def get(self, owner: str) -> Workspace | None:
        """A copy of the owner's workspace (None when there is none, or it expired)."""
        with self._lock:
            now = time.monotonic()
            self._expire(now)
            ws = self._items.get(owner)
            if ws is None:
                return None
            ws.touched = now
            self._items.move_to_end(owner)
            return Workspace(ws.corpus, ws.corpus_source, dict(ws.train), now)


@st.cache_resource(show_spinner=False)
def workspaces() -> WorkspaceStore:
    """The process-wide workspaces; entries last as long as finished runs do."""
    return WorkspaceStore(ttl_s=LIMITS.run_ttl_s)


def remember_corpus(corpus: Corpus, source: str) -> None:
    """The session chose a corpus (Data page): keep it for this owner's next session."""
    workspaces().save_corpus(owner(), corpus, source)


def remember_train(values: dict) -> None:
    """The Train page's widget values (widget key -> value), kept for the next session."""
    workspaces().save_train(owner(), values)


def restore_workspace(token: str) -> bool:
    """Put the owner's kept corpus and Train settings into a new session's state, together
    with the Data page's source picker that matches the corpus. False when there is none."""
    ws = workspaces().get(token)
    if ws is None:
        return False
    if ws.corpus is not None:
        st.session_state["corpus"] = ws.corpus
        st.session_state["corpus_source"] = ws.corpus_source
        if ws.corpus_source in corpora.PRESETS:
            st.session_state["data_how"] = "Built-in"
            st.session_state["data_preset"] = ws.corpus_source
        elif ws.corpus_source == "pasted text":
            st.session_state["data_how"] = "Paste text"
            st.session_state["data_paste"] = ws.corpus.text
        else:  # an upload: the file itself is not kept, the text is
            st.session_state["data_how"] = "Upload a .txt"
    for key, value in ws.train.items():
        if key.startswith("train_"):
            st.session_state[key] = value
    return True
