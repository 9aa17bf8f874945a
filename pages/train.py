"""Train: every knob, a Start button, and the loss curve moving while the run trains."""

from ui import startup  # noqa: F401  (first: a bad CHARRNN_* setting stops here)

# isort: split
from collections.abc import Callable
from dataclasses import dataclass

import streamlit as st

from charrnn import config as cfg
from charrnn.config import ModelConfig, TrainConfig, check_fits, estimate_memory_mb
from charrnn.corpus import CorpusError, min_chars
from charrnn.devices import pick_device
from charrnn.figures import CELL_COLORS, LN2, loss_figure
from charrnn.jobs import (
    ACTIVE,
    FAILED,
    QUEUED,
    RUNNING,
    STOPPED,
    JobSnapshot,
    TrainingJob,
    new_id,
)
from charrnn.limits import LIMITS
from charrnn.training import Trainer
from ui import common, state

M, T = ModelConfig(), TrainConfig()  # the defaults every knob starts from
L = LIMITS


@dataclass(frozen=True)
class Knob:
    """One config field as a widget: (low, high, step) for a number, or a tuple of choices
    (a callable giving them, for choices known only at run time)."""

    field: str  # ModelConfig or TrainConfig field; the widget key is "train_<field>"
    label: str
    spec: tuple | Callable
    help: str = ""


def _devices() -> tuple[str, ...]:
    usable = []
    for name in cfg.DEVICES:
        try:
            pick_device(name)
            usable.append(name)
        except ValueError:
            pass
    return tuple(usable)


MODEL_KNOBS = [
    Knob("cell", "Cell", cfg.CELLS, "rnn: Elman, tanh; lstm learns text best"),
    Knob("hidden_size", "Hidden units per layer", (1, L.max_hidden, 32), "capacity and cost"),
    Knob("num_layers", "Layers", (1, L.max_layers, 1), "stacked recurrent layers"),
    Knob("embed_size", "Embedding width", (1, L.max_embed, 8), "each character's vector"),
    Knob("dropout", "Dropout on layer outputs", (0.0, 0.9, 0.05), "against overfitting"),
    Knob("backend", "Cells", cfg.BACKENDS, "scratch: the equations of cells.py, slower"),
]
TRAIN_KNOBS = [
    Knob("steps", "Steps", (1, L.max_steps, 100), "optimizer updates"),
    Knob("batch_size", "Batch size", (1, L.max_batch, 8), "chunks of text per step"),
    Knob("seq_len", "Sequence length", (1, L.max_seq_len, 16), "how far back gradients reach"),
    Knob("lr", "Learning rate", (1e-6, 1.0, 5e-4), "Adam's peak rate"),
    Knob("seed", "Seed", (0, 2**31 - 1, 1), "same seed, same run on the CPU"),
    Knob("device", "Device", _devices, "auto: the GPU when there is one"),
]
MORE_KNOBS = [
    Knob("schedule", "LR schedule", cfg.SCHEDULES, "cosine decays to lr × floor"),
    Knob("warmup_steps", "Warm-up steps", (0, L.max_steps, 10), "linear ramp from 0 to lr"),
    Knob("min_lr_ratio", "Cosine floor (× lr)", (0.0, 1.0, 0.05)),
    Knob("weight_decay", "Weight decay", (0.0, 1.0, 0.01), "AdamW decay; 0 is plain Adam"),
    Knob("precision", "Precision", cfg.PRECISIONS, "auto: bf16 where the hardware is fast"),
    Knob("grad_clip", "Gradient clip", (0.0, 1000.0, 0.5), "max gradient norm; 0 = off"),
    Knob("sampler", "Batches", cfg.SAMPLERS, "stream: carry the state across steps (TBPTT)"),
    Knob("val_fraction", "Validation share", (0.01, 0.5, 0.01), "the tail of the text"),
    Knob("eval_every", "Evaluate every (steps)", (0, L.max_steps, 50), "0 = only at the end"),
    Knob("eval_chars", "Validation characters", (1, 10_000_000, 4096), "per evaluation"),
    Knob("sample_every", "Sample every (steps)", (0, L.max_steps, 50), "0 = never"),
    Knob("sample_length", "Sample length", (1, L.max_generate, 50), "characters"),
    Knob("checkpoint_every", "Checkpoint every (steps)", (0, L.max_steps, 100), "0 = at the end"),
]

common.header(
    "Train",
    "Training shows the model a random chunk of text, asks it to predict every next "
    "character, and nudges the weights to make the right ones more likely. The loss is the "
    "average surprise per character in bits: it starts near log2 of the vocabulary size and "
    "should fall below the dashed unigram line, where context starts to pay.",
)


def widget(col, knob: Knob, default):
    """The widget for one knob; its value survives a trip to another page."""
    common_args = dict(key=f"train_{knob.field}", help=knob.help or None, persist_state="session")
    if isinstance(default, str):
        options = list(knob.spec() if callable(knob.spec) else knob.spec)
        index = options.index(default) if default in options else 0
        return col.selectbox(knob.label, options, index=index, **common_args)
    lo, hi, step = knob.spec
    # a typed number out of range is not applied (Streamlit marks it and keeps the last valid
    # one), so every number's range is in its help
    shown = (f"{lo:,}", f"{hi:,}") if isinstance(default, int) else (f"{lo:g}", f"{hi:g}")
    common_args["help"] = (knob.help + "; " if knob.help else "") + "from {} to {}".format(*shown)
    if isinstance(default, int):
        return col.number_input(
            knob.label, int(lo), int(hi), int(default), int(step), **common_args
        )
    fmt = "%.4f" if step < 0.01 else "%.2f"
    return col.number_input(
        knob.label, float(lo), float(hi), float(default), float(step), format=fmt, **common_args
    )


def knobs(vocab_size: int) -> tuple[dict, dict]:
    """Every ModelConfig and TrainConfig field as a widget; returns the two kwargs dicts."""
    basic, more = st.tabs(["Model and training", "Schedule, evaluation, samples"])
    left, right = basic.columns(2)
    left.markdown("**Model**")
    m = {k.field: widget(left, k, getattr(M, k.field)) for k in MODEL_KNOBS}
    right.markdown("**Training**")
    t = {k.field: widget(right, k, getattr(T, k.field)) for k in TRAIN_KNOBS}
    columns = more.columns(3)
    for i, k in enumerate(MORE_KNOBS):
        t[k.field] = widget(columns[i % 3], k, getattr(T, k.field))
    # kept for this owner, so a refresh (a new session) starts from the same settings
    state.remember_train({f"train_{name}": value for name, value in {**m, **t}.items()})
    return {**m, "vocab_size": vocab_size}, t


def latest_launch(owner: str) -> list[TrainingJob]:
    """The jobs of this session's most recent Start or Compare click, in start order."""
    jobs = sorted(state.registry().owned(owner), key=lambda j: j.created)
    if not jobs:
        return []
    launch = jobs[-1].extra.get("launch")
    return [j for j in jobs if j.extra.get("launch") == launch] if launch else jobs[-1:]


def start(corpus, m: dict, t: dict, cells: tuple[str, ...]) -> None:
    """Submit one job per cell (one for Start, three for Compare) with the same budget."""
    owner, launch = state.owner(), new_id()[:8]
    kept, cap = len(state.registry().owned(owner)), state.registry().limits.max_runs_per_owner
    if len(cells) > 1 and kept + len(cells) > cap:
        raise ValueError(
            f"Compare cells starts {len(cells)} runs; this session keeps {kept} of at most {cap}: "
            f"delete {kept + len(cells) - cap} on the Runs page first"
        )
    jobs = []
    for cell in cells:
        mc = ModelConfig(**{**m, "cell": cell})
        name = f"{cell.upper()} {mc.num_layers}×{mc.hidden_size}" + (
            " scratch" if mc.backend == "scratch" else ""
        )
        jobs.append(
            TrainingJob(
                corpus,
                mc,
                TrainConfig(**t),
                name=name,
                owner=owner,
                extra={"launch": launch, "compare": len(cells) > 1},
            )
        )
    submitted = []
    try:
        for job in jobs:  # only once every config was accepted
            state.registry().submit(job)
            submitted.append(job)
    except ValueError as e:
        for job in submitted:  # all three or none: half a comparison compares nothing
            state.registry().delete(job.id, owner)
        if len(cells) > 1:
            raise ValueError(f"Compare cells starts {len(cells)} runs at once, and {e}") from None
        raise
    # the run just started (the LSTM of a comparison) becomes the model Sample and Gates show
    # first; the picker keys belong to those pages, whose widgets are not on this one
    st.session_state["sample_model"] = st.session_state["gates_model"] = f"run:{jobs[-1].id}"


def controls(corpus, m: dict, t: dict) -> bool:
    """Parameter count, memory estimate, and the Start / Compare / Stop buttons. False when
    these settings cannot start (the reason is shown instead of the buttons)."""
    try:
        mc, tc = ModelConfig(**m), TrainConfig(**t)
    except ValueError as e:
        st.error(common.plain(f"These settings cannot train: {e}"))
        return False
    need = min_chars(tc.seq_len, tc.val_fraction)
    a, b, c = st.columns(3)
    a.metric("Parameters", f"{mc.num_params():,}")
    b.metric("Training memory (estimate)", f"{estimate_memory_mb(mc, tc):,.0f} MiB")
    c.metric("Characters per step", f"{tc.batch_size * tc.seq_len:,}")
    try:
        check_fits(mc, tc)
    except ValueError as e:
        st.error(common.plain(f"Too big to train here: {e}"))
        return False
    if len(corpus.text) < need:
        st.error(
            f"The corpus has {len(corpus.text):,} characters; with a sequence length of "
            f"{tc.seq_len} and {tc.val_fraction:.0%} held out it needs at least {need:,}. "
            "Use a longer text (Data page) or a shorter sequence length."
        )
        return False
    active = [j for j in latest_launch(state.owner()) if j.status in ACTIVE]
    row = st.container(horizontal=True)
    go = row.button("Start", type="primary", key="train_start", disabled=bool(active))
    compare = row.button(
        "Compare cells",
        key="train_compare",
        disabled=bool(active),
        help="RNN, GRU and LSTM with these very settings, their curves overlaid",
    )
    stop = row.button("Stop", key="train_stop", disabled=not active)
    if go or compare:
        try:
            start(corpus, m, t, cfg.CELLS if compare else (m["cell"],))
        except (ValueError, CorpusError) as e:
            st.error(common.plain(f"Could not start: {e}"))
            return False
        st.session_state["train_fold"] = True
        st.rerun()
    if stop:
        for job in active:
            state.registry().stop(job.id, state.owner())
        st.toast("Stopping: the run ends after its current step and keeps a checkpoint.")
    return True


def status_line(snap: JobSnapshot, name: str) -> None:
    """A progress bar with step, speed and time left, or the run's outcome."""
    if snap.status == QUEUED:
        st.info(f"{name}: waiting for a free slot (place {snap.queue_position} in the queue)")
        return
    done = snap.step / max(1, snap.total_steps)
    text = (
        f"{name} · step {snap.step:,}/{snap.total_steps:,} · "
        f"{snap.chars_per_s:,.0f} chars/s · {common.duration(snap.elapsed_s)} elapsed"
    )
    if snap.status in ACTIVE:
        text += f" · {common.duration(snap.eta_s)} left"
        if snap.status == RUNNING and snap.threads_in_use and snap.threads > 1:  # tuner: 1 if busy
            text += f" · {snap.threads_in_use} of {snap.threads} CPU threads"
    st.progress(min(1.0, done), text=text)
    if snap.status == FAILED:
        st.error(common.plain(f"{name} failed: {snap.message}"))
    elif snap.status == STOPPED:
        st.warning(f"{name} {snap.message}; its checkpoint is kept (see Runs, Sample).")
    elif snap.status not in ACTIVE:
        val = f", validation {snap.val_loss / LN2:.3f} bits/char" if snap.val_loss else ""
        st.success(f"{name} finished{val}. Try it on Sample, or look inside on Gates.")


def live_view(snaps: list[JobSnapshot], baseline_bits: float, labels: dict[str, str]) -> None:
    for snap in snaps:
        status_line(snap, labels.get(snap.id, snap.name))
    unit = st.session_state.get("train_unit") or "bpc"
    runs = [
        {
            "name": labels.get(s.id, s.name),
            "history": s.history,
            "color": CELL_COLORS.get(s.model_config.cell) if len(snaps) > 1 else None,
        }
        for s in snaps
    ]
    fig = loss_figure(runs, unit=unit, baseline_bits=baseline_bits, uirevision="train")
    st.plotly_chart(fig, key="train_loss_chart", width="stretch", height=380)
    samples = [s for s in snaps if s.last_sample]
    if samples:
        st.markdown("**Latest samples** (from a copy of the weights, every few steps)")
        for column, s in zip(st.columns(len(samples)), samples, strict=True):
            column.caption(labels.get(s.id, s.name))
            column.code(s.last_sample, language=None, wrap_lines=True)


def body() -> None:
    corpus = state.current_corpus()
    if corpus is None:
        return
    bits, _ = state.corpus_summary(corpus.sha256, corpus)
    st.caption(
        f"Corpus: **{corpus.name}**, {len(corpus.text):,} characters, {len(corpus.vocab)} "
        f"distinct, unigram entropy {bits:.3f} bits/char. Change it on the Data page."
    )
    # the settings fold away once a run starts, so the curve sits right under the buttons
    if st.session_state.pop("train_fold", False):
        st.session_state["train_settings"] = False
    st.session_state.setdefault("train_settings", True)
    with st.expander("Settings", key="train_settings", on_change="rerun"):
        m, t = knobs(len(corpus.vocab))
    can_start = controls(corpus, m, t)

    st.divider()
    jobs = latest_launch(state.owner())
    if not jobs:
        if can_start:  # else the reason in red above says what to change first
            st.info("No run yet: press Start. A few hundred steps already give text-like samples.")
        return
    common.loss_unit_picker("train_unit")
    running = any(j.status in ACTIVE for j in jobs)

    # NOTE: this fragment reruns once a second only while a job is active; the job threads
    # never call Streamlit, the fragment only reads their snapshots. When the last job ends it
    # reruns the whole page once, to redraw the buttons and stop polling.
    @st.fragment(run_every=1.0 if running else None)
    def live() -> None:
        snaps = [j.snapshot() for j in jobs]
        live_view(snaps, bits, state.owner_run_labels())
        if running and not any(s.active for s in snaps):
            st.rerun()

    live()
    common.show_code(Trainer.train_step)


body()
