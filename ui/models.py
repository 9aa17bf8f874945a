"""Choosing a model to sample from or to look inside: the bundled checkpoints (shared,
read-only), this session's runs (live weights while one trains) and its uploads."""

import os
from dataclasses import dataclass, field
from pathlib import Path

import streamlit as st

from charrnn import checkpoint
from charrnn.checkpoint import Checkpoint, CheckpointError
from charrnn.corpus import Vocab
from charrnn.jobs import ACTIVE
from charrnn.model import CharRNN
from ui import common, state

ROOT = Path(__file__).resolve().parent.parent


def bundled_dir() -> Path:
    """The folder of bundled pretrained checkpoints (CHARRNN_BUNDLED_DIR overrides)."""
    return Path(os.environ.get("CHARRNN_BUNDLED_DIR") or ROOT / "checkpoints")


@dataclass
class Source:
    key: str  # "bundled:<file name>", "run:<job id>" or "upload:<upload key>"
    label: str


@dataclass
class Loaded:
    """A model ready for inference, with what the pages show about it."""

    model: CharRNN
    vocab: Vocab
    label: str
    live: bool = False  # a copy of the weights of a run still training
    info: dict = field(default_factory=dict)

    @property
    def cell(self) -> str:
        return self.model.config.cell


def _describe(config) -> str:
    return f"{config.cell.upper()} {config.num_layers}×{config.hidden_size}"


def bundled_files() -> list[Path]:
    """Bundled checkpoints, LSTMs first (the default everywhere), then by name."""
    folder = bundled_dir()
    files = sorted(folder.glob("*.safetensors")) if folder.is_dir() else []
    return sorted(files, key=lambda p: (not p.name.lower().startswith("lstm"), p.name))


def sources(owner: str) -> list[Source]:
    """Everything this session may load, bundled first, then its runs (newest first), then its
    uploads."""
    found = [Source(f"bundled:{p.name}", f"bundled: {p.stem}") for p in bundled_files()]
    owned = state.registry().owned(owner)
    names = state.run_labels(owned)
    for job in sorted(owned, key=lambda j: -j.created):
        snap = job.snapshot(max_points=1)
        if snap.status in ACTIVE:
            label = f"your run: {names[job.id]} (training now: live weights)"
        elif snap.checkpoint_path:
            label = f"your run: {names[job.id]} ({snap.status} at step {snap.step})"
        else:
            continue  # failed before its first checkpoint: nothing to load
        found.append(Source(f"run:{job.id}", label))
    for key, name, ckpt in state.uploads().list(owner):
        found.append(Source(f"upload:{key}", f"uploaded: {name} ({_describe(ckpt.model_config)})"))
    return found


@st.cache_resource(show_spinner="Loading the checkpoint...", max_entries=6)
def _load_file(path: str, mtime: float) -> Checkpoint:
    # NOTE: shared by every session; the model is only ever used for inference (read-only)
    return checkpoint.load(path)


def _from_checkpoint(ckpt: Checkpoint, label: str) -> Loaded:
    return Loaded(ckpt.model, ckpt.vocab, label, info=ckpt.info)


def load(source: Source, owner: str) -> Loaded | None:
    """The model behind a source. None (with a message shown) when a run has no weights yet.
    Raises CheckpointError for a file that cannot be read."""
    kind, _, key = source.key.partition(":")
    if kind == "bundled":
        path = bundled_dir() / key
        return _from_checkpoint(_load_file(str(path), path.stat().st_mtime), source.label)
    if kind == "upload":
        item = state.uploads().get(owner, key)
        if item is None:
            raise CheckpointError("that upload is gone: upload it again on the Runs page")
        return _from_checkpoint(item[1], source.label)
    job = state.registry().get(key, owner)
    if job is None:
        raise CheckpointError("that run was deleted: pick another model")
    if job.status in ACTIVE:
        model = job.weights()  # a private copy, never the module being trained
        if model is None:
            st.info("This run has not published weights yet: wait for its first sample.")
            return None
        return Loaded(model, job.corpus.vocab, source.label, live=True)
    path = Path(job.snapshot(max_points=1).checkpoint_path)
    return _from_checkpoint(_load_file(str(path), path.stat().st_mtime), source.label)


def choose(prefix: str) -> Loaded | None:
    """A model picker (selectbox keyed `<prefix>_model`). Shows an st.info pointing to Train and
    returns None when there is nothing to choose, or an error when loading fails."""
    owner = state.owner()
    options = sources(owner)
    if not options:
        st.info(
            "There is no model yet: none is bundled in `checkpoints/` and this session has no "
            "runs. Train one (a minute is enough for something that looks like text), or upload "
            "a `.safetensors` checkpoint on the Runs page."
        )
        st.page_link("pages/train.py", label="Go to Train", icon=":material/model_training:")
        return None
    by_key = {s.key: s for s in options}
    key = f"{prefix}_model"
    # the pick of an earlier run that is no longer offered (deleted in another tab with the
    # same owner link, removed after its TTL, an upload pushed out): Streamlit would quietly
    # fall back to the first option, so say so
    before, before_label = st.session_state.get(key), st.session_state.get(f"{key}_label")
    gone = before is not None and before not in by_key
    # prefer the user's latest pick, else the bundled LSTM (listed first), else the newest run
    chosen = st.selectbox(
        "Model",
        list(by_key),
        format_func=lambda k: by_key[k].label if k in by_key else k,
        key=key,
        help="Bundled checkpoints are shared and read-only; your runs and uploads are yours.",
        persist_state="session",
    )
    st.session_state[f"{key}_label"] = by_key[chosen].label
    st.session_state[f"{key}_gone"] = gone  # the page may hold back an action on this run
    if gone:
        kind, _, ident = before.partition(":")
        why = state.registry().why_missing(ident, owner) if kind == "run" else ""
        st.warning(
            common.plain(
                f"The model you had chosen ({before_label or before}) is gone"
                + (f": {why}" if why else "")
                + f". Now selected: {by_key[chosen].label}."
            )
        )
    try:
        loaded = load(by_key[chosen], owner)
    except (CheckpointError, OSError) as e:
        st.error(common.plain(f"Could not load this model: {e}"))
        return None
    if loaded is not None:
        c = loaded.model.config
        st.caption(
            f"{_describe(c)} ({c.backend} cells), {loaded.model.num_params():,} parameters, "
            f"{len(loaded.vocab)} characters in its vocabulary"
            + (" · live weights, refreshed when you rerun" if loaded.live else "")
        )
    return loaded
