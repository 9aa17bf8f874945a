"""Train: every knob, a Start button, and the loss curve moving while the run trains."""

import streamlit as st

from charrnn import config as cfg
from charrnn.config import ModelConfig, TrainConfig, check_fits, estimate_memory_mb
from charrnn.corpus import CorpusError, min_chars
from charrnn.devices import pick_device
from charrnn.figures import CELL_COLORS, LN2, loss_figure
from charrnn.jobs import ACTIVE, FAILED, QUEUED, STOPPED, JobSnapshot, TrainingJob, new_id
from charrnn.limits import LIMITS
from charrnn.training import Trainer
from ui import common, state

M, T = ModelConfig(), TrainConfig()  # the defaults every knob starts from

common.header(
    "Train",
    "Training shows the model a random chunk of text, asks it to predict every next "
    "character, and nudges the weights to make the right ones more likely. The loss is the "
    "average surprise per character in bits: it starts near log2 of the vocabulary size and "
    "should fall below the dashed unigram line, where context starts to pay.",
)


def _int(col, label, key, default, lo, hi, help, step=1):
    return col.number_input(
        label, lo, hi, int(default), step, key=f"train_{key}", help=help, persist_state="session"
    )


def _float(col, label, key, default, lo, hi, help, step, fmt="%.2f"):
    return col.number_input(
        label,
        float(lo),
        float(hi),
        float(default),
        float(step),
        format=fmt,
        key=f"train_{key}",
        help=help,
        persist_state="session",
    )


def _choice(col, label, key, options, default, help):
    options = list(options)
    return col.selectbox(
        label,
        options,
        index=options.index(default) if default in options else 0,
        key=f"train_{key}",
        help=help,
        persist_state="session",
    )


def knobs(vocab_size: int) -> tuple[dict, dict]:
    """Every ModelConfig and TrainConfig field as a widget; returns the two kwargs dicts."""
    basic, more = st.tabs(["Model and training", "Schedule, evaluation, samples"])
    left, right = basic.columns(2)
    left.markdown("**Model**")
    m = dict(vocab_size=vocab_size)
    m["cell"] = _choice(
        left, "Cell", "cell", cfg.CELLS, M.cell, "rnn: Elman, tanh; lstm learns text best"
    )
    m["hidden_size"] = _int(
        left,
        "Hidden units per layer",
        "hidden",
        M.hidden_size,
        1,
        LIMITS.max_hidden,
        "more units, more memory and capacity",
        32,
    )
    m["num_layers"] = _int(
        left, "Layers", "layers", M.num_layers, 1, LIMITS.max_layers, "stacked recurrent layers"
    )
    m["embed_size"] = _int(
        left,
        "Embedding width",
        "embed",
        M.embed_size,
        1,
        LIMITS.max_embed,
        "the size of each character's learned vector",
        8,
    )
    m["dropout"] = _float(
        left,
        "Dropout between layers",
        "dropout",
        M.dropout,
        0.0,
        0.9,
        "0.1-0.3 helps long runs; needs 2+ layers",
        0.05,
    )
    m["backend"] = _choice(
        left,
        "Cells",
        "backend",
        cfg.BACKENDS,
        M.backend,
        "torch: fused and fast; scratch: the hand-written equations of cells.py (slower)",
    )

    right.markdown("**Training**")
    t = {}
    t["steps"] = _int(
        right, "Steps", "steps", T.steps, 1, LIMITS.max_steps, "optimizer updates", 100
    )
    t["batch_size"] = _int(
        right, "Batch size", "batch", T.batch_size, 1, LIMITS.max_batch, "chunks per step", 8
    )
    t["seq_len"] = _int(
        right,
        "Sequence length",
        "seq",
        T.seq_len,
        1,
        LIMITS.max_seq_len,
        "characters per chunk: how far back gradients flow",
        16,
    )
    t["lr"] = _float(
        right, "Learning rate", "lr", T.lr, 1e-6, 1.0, "Adam's peak rate", 5e-4, "%.4f"
    )
    t["seed"] = _int(right, "Seed", "seed", T.seed, 0, 2**31 - 1, "same seed, same run on the CPU")
    devices = ["auto", "cpu"] + [d for d in ("cuda", "mps") if _available(d)]
    t["device"] = _choice(
        right, "Device", "device", devices, T.device, "auto: the GPU when there is one"
    )

    with more:
        a, b, c = st.columns(3)
        t["schedule"] = _choice(
            a, "LR schedule", "schedule", cfg.SCHEDULES, T.schedule, "cosine decays to lr × floor"
        )
        t["warmup_steps"] = _int(
            a,
            "Warm-up steps",
            "warmup",
            T.warmup_steps,
            0,
            LIMITS.max_steps,
            "linear ramp from 0 to lr",
        )
        t["min_lr_ratio"] = _float(
            a, "Cosine floor (× lr)", "min_lr", T.min_lr_ratio, 0.0, 1.0, "", 0.05
        )
        t["weight_decay"] = _float(
            a, "Weight decay", "wd", T.weight_decay, 0.0, 1.0, "AdamW decay; 0 is plain Adam", 0.01
        )
        t["grad_clip"] = _float(
            b, "Gradient clip", "clip", T.grad_clip, 0.0, 1000.0, "max gradient norm; 0 = off", 0.5
        )
        t["sampler"] = _choice(
            b,
            "Batches",
            "sampler",
            cfg.SAMPLERS,
            T.sampler,
            "random chunks, or streams that carry the state (TBPTT)",
        )
        t["val_fraction"] = _float(
            b,
            "Validation share",
            "val",
            T.val_fraction,
            0.01,
            0.5,
            "the tail of the text held out",
            0.01,
        )
        t["eval_every"] = _int(
            b,
            "Evaluate every (steps)",
            "eval_every",
            T.eval_every,
            0,
            LIMITS.max_steps,
            "0 = only at the end",
            50,
        )
        t["eval_chars"] = _int(
            c,
            "Validation characters",
            "eval_chars",
            T.eval_chars,
            1,
            10_000_000,
            "per evaluation",
            4096,
        )
        t["sample_every"] = _int(
            c,
            "Sample every (steps)",
            "sample_every",
            T.sample_every,
            0,
            LIMITS.max_steps,
            "a short sample from a copy of the weights; 0 = never",
            50,
        )
        t["sample_length"] = _int(
            c,
            "Sample length",
            "sample_length",
            T.sample_length,
            1,
            LIMITS.max_generate,
            "characters",
            50,
        )
        t["checkpoint_every"] = _int(
            c,
            "Checkpoint every (steps)",
            "ckpt_every",
            T.checkpoint_every,
            0,
            LIMITS.max_steps,
            "0 = only at the end",
            100,
        )
        t["precision"] = _choice(
            a,
            "Precision",
            "precision",
            cfg.PRECISIONS,
            T.precision,
            "auto: bf16 where the hardware is fast at it",
        )
    return m, t


def _available(device: str) -> bool:
    try:
        pick_device(device)
        return True
    except ValueError:
        return False


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


def controls(corpus, m: dict, t: dict) -> None:
    """Parameter count, memory estimate, and the Start / Compare / Stop buttons."""
    try:
        mc, tc = ModelConfig(**m), TrainConfig(**t)
    except ValueError as e:
        st.error(common.plain(f"These settings cannot train: {e}"))
        return
    need = min_chars(tc.seq_len, tc.val_fraction)
    a, b, c = st.columns(3)
    a.metric("Parameters", f"{mc.num_params():,}")
    b.metric("Training memory (estimate)", f"{estimate_memory_mb(mc, tc):,.0f} MiB")
    c.metric("Characters per step", f"{tc.batch_size * tc.seq_len:,}")
    try:
        check_fits(mc, tc)
    except ValueError as e:
        st.error(common.plain(f"Too big to train here: {e}"))
        return
    if len(corpus.text) < need:
        st.error(
            f"The corpus has {len(corpus.text):,} characters; with a sequence length of "
            f"{tc.seq_len} and {tc.val_fraction:.0%} held out it needs at least {need:,}. "
            "Use a longer text (Data page) or a shorter sequence length."
        )
        return
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
            return
        st.session_state["train_fold"] = True
        st.rerun()
    if stop:
        for job in active:
            state.registry().stop(job.id, state.owner())
        st.toast("Stopping: the run ends after its current step and keeps a checkpoint.")


def status_line(snap: JobSnapshot) -> None:
    """A progress bar with step, speed and time left, or the run's outcome."""
    if snap.status == QUEUED:
        st.info(f"{snap.name}: waiting for a free slot (place {snap.queue_position} in the queue)")
        return
    done = snap.step / max(1, snap.total_steps)
    text = (
        f"{snap.name} · step {snap.step:,}/{snap.total_steps:,} · "
        f"{snap.chars_per_s:,.0f} chars/s · {common.duration(snap.elapsed_s)} elapsed"
    )
    if snap.status in ACTIVE:
        text += f" · {common.duration(snap.eta_s)} left"
    st.progress(min(1.0, done), text=text)
    if snap.status == FAILED:
        st.error(common.plain(f"{snap.name} failed: {snap.message}"))
    elif snap.status == STOPPED:
        st.warning(f"{snap.name} {snap.message}; its checkpoint is kept (see Runs, Sample).")
    elif snap.status not in ACTIVE:
        val = f", validation {snap.val_loss / LN2:.3f} bits/char" if snap.val_loss else ""
        st.success(f"{snap.name} finished{val}. Try it on Sample, or look inside on Gates.")


def live_view(snaps: list[JobSnapshot], baseline_bits: float) -> None:
    for snap in snaps:
        status_line(snap)
    unit = st.session_state.get("train_unit") or "bpc"
    runs = [
        {
            "name": s.name,
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
            column.caption(s.name)
            column.code(s.last_sample, language=None, wrap_lines=True)


def body() -> None:
    corpus = state.current_corpus()
    if corpus is None:
        return
    bits = corpus.unigram_entropy_bits()
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
    controls(corpus, m, t)

    st.divider()
    jobs = latest_launch(state.owner())
    if not jobs:
        st.info("No run yet: press Start. A few hundred steps already give text-like samples.")
        return
    st.segmented_control(
        "Loss in",
        ["bpc", "nats"],
        default="bpc",
        format_func={"bpc": "bits per char", "nats": "nats per char"}.get,
        key="train_unit",
        required=True,
        persist_state="session",
    )
    running = any(j.status in ACTIVE for j in jobs)

    # NOTE: this fragment reruns once a second only while a job is active; the job threads
    # never call Streamlit, the fragment only reads their snapshots. When the last job ends it
    # reruns the whole page once, to redraw the buttons and stop polling.
    @st.fragment(run_every=1.0 if running else None)
    def live() -> None:
        snaps = [j.snapshot() for j in jobs]
        live_view(snaps, bits)
        if running and not any(s.active for s in snaps):
            st.rerun()

    live()
    common.show_code(Trainer.train_step)


body()
