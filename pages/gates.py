"""Gates: what every gate of every layer does on every character of a text."""

from ui import startup  # noqa: F401  (first: a bad CHARRNN_* setting stops here)

# isort: split
import numpy as np
import streamlit as st

from charrnn import cells, trace
from charrnn.cells import TRACE_NAMES
from charrnn.corpus import CorpusError
from charrnn.figures import (
    NAMES,
    colored_text_html,
    gate_heatmap,
    next_char_prob_figure,
    saturation_figure,
    value_range,
)
from charrnn.limits import LIMITS, why
from ui import common, models

MAX_CHARS = LIMITS.max_trace_chars  # the core's cap on one trace (CHARRNN_MAX_TRACE_CHARS)
UNITS_PER_VIEW = 64  # heatmap rows drawn at once
DEFAULT_TEXT = (
    "First Citizen:\n"
    "Before we proceed any further, hear me speak.\n\n"
    "All:\n"
    "Speak, speak.\n\n"
    "First Citizen:\n"
    "You are all resolved rather to die than to famish?\n"
)

# what the cell of the chosen model does at every character, shown once a model is chosen
CELL_INTROS = {
    "lstm": "An **LSTM** decides, at every character, what to forget from its cell (forget gate "
    "f), what to write (input gate i times candidate g) and what to show (output gate o); the "
    "cell state c is its memory and h what the next layer sees.",
    "gru": "A **GRU** decides, at every character, how much of its past to use when it forms "
    "a candidate (reset gate r gives the candidate n) and how much of its state to keep "
    "rather than replace by that candidate (update gate z); its hidden state h is both its "
    "memory and what the next layer sees.",
    "rnn": "A plain **RNN** (Elman) has no gates: at every character its hidden state h is "
    "tanh of the character's embedding plus the previous h, each through a weight matrix; h is "
    "its only memory and what the next layer sees.",
}

common.header(
    "Gates",
    "A recurrent cell reads your text one character at a time and updates its state. Below, "
    "every gate and state of the chosen model is drawn for every unit and every character of "
    "your text: look for units that switch on inside quotes, count towards the end of a line, "
    "or stay saturated.",
)


def controls(loaded) -> tuple[str, int]:
    text = st.text_area(
        f"Text for the model to read (up to {MAX_CHARS:,} characters)",
        DEFAULT_TEXT,
        height=150,
        key="gates_text",
        persist_state="session",
    )
    layers = loaded.model.config.num_layers
    layer = st.radio(
        "Layer",
        list(range(layers)),
        format_func=lambda k: f"layer {k + 1}" + (" (bottom)" if k == 0 and layers > 1 else ""),
        horizontal=True,
        key="gates_layer",
    )
    return text, layer


def check(loaded, text: str) -> bool:
    if not text:
        st.info("Type a line of text for the model to read.")
        return False
    if len(text) > MAX_CHARS:
        st.error(
            f"The text is {len(text):,} characters; one trace covers at most {MAX_CHARS:,} "
            f"because {why('max_trace_chars')}: shorten it."
        )
        return False
    missing = loaded.vocab.unknown(text)
    if missing:
        shown = ", ".join(repr(ch) for ch in missing[:20])
        st.error(
            common.plain(
                f"The model does not know these characters: {shown}. Remove them, or use a "
                "model trained on a text that has them."
            )
        )
        return False
    return True


def heatmaps(tr: trace.Trace, layer: int) -> None:
    names = TRACE_NAMES[tr.cell]
    H = tr.layers[layer][names[0]].shape[1]
    units = range(H)
    if H > UNITS_PER_VIEW:
        starts = list(range(0, H, UNITS_PER_VIEW))
        first = st.selectbox(
            f"Units to draw ({UNITS_PER_VIEW} at a time, of {H})",
            starts,
            format_func=lambda s: f"units {s}-{min(H, s + UNITS_PER_VIEW) - 1}",
            key="gates_units",
        )
        units = range(first, min(H, first + UNITS_PER_VIEW))
    st.caption(
        "Drag along the characters to pan (the first 80 are shown); hover for values. Gates "
        "run from 0 (closed) to 1 (open); g, h and c are centred on 0."
    )
    for tab, name in zip(st.tabs([NAMES[n] for n in names]), names, strict=True):
        with tab:
            fig = gate_heatmap(tr.layers[layer][name], tr.chars, name, units)
            st.plotly_chart(fig, key=f"gates_heat_{name}", width="stretch")
    st.plotly_chart(
        next_char_prob_figure(tr.chars, tr.next_char_prob), key="gates_prob_chart", width="stretch"
    )


def per_unit(tr: trace.Trace, layer: int) -> None:
    """Karpathy-style: the text coloured by one unit's value, unit by unit."""
    st.subheader("One unit at a time")
    names = TRACE_NAMES[tr.cell]
    a, b = st.columns([1, 2])
    name = a.selectbox(
        "Quantity",
        names,
        index=names.index("c") if "c" in names else len(names) - 1,
        format_func=NAMES.get,
        key="gates_quantity",
    )
    values = tr.layers[layer][name]  # (T, H)
    H = values.shape[1]
    unit = b.number_input(
        f"Unit (0-{H - 1}; use - and + to step through)", 0, H - 1, 0, 1, key="gates_unit"
    )
    shown = np.tanh(values) if name == "c" else values
    lo, hi = value_range("h" if name == "c" else name, shown)
    busiest = np.argsort(-shown.std(axis=0))[:8].tolist()
    st.caption(
        f"{'tanh(c), ' if name == 'c' else ''}red above 0, blue below"
        if lo < 0
        else "green: how open the gate is"
    )
    st.html(colored_text_html(tr.chars, shown[:, unit], lo, hi, f"unit {unit}"))
    st.caption(f"Units that vary most on this text: {', '.join(map(str, busiest))}")
    st.markdown("**How sure the model was of each next character** (green: confident and right)")
    probs = [None] + [float(p) for p in tr.next_char_prob]
    st.html(colored_text_html(tr.chars, probs, 0.0, 1.0, "p"))


def saturation(tr: trace.Trace, layer: int) -> None:
    st.subheader("Gate saturation")
    sat = tr.saturation(layer)
    if not sat:
        st.info(
            "A plain RNN has no gates: only its hidden state h, drawn above. Train an LSTM or a "
            "GRU to see gates open and close."
        )
        return
    st.caption(
        "Each dot is one unit: how often its gate is nearly shut (< 0.1, x) against nearly "
        "open (> 0.9, y) on this text. Dots near the top left are gates that are always open "
        "(remember, or always write); a long text gives a steadier picture."
    )
    st.plotly_chart(saturation_figure(sat), key="gates_saturation_chart", width="stretch")


def traced(loaded, text: str) -> trace.Trace:
    """The trace of this text, reused while only the view changes (unit, layer, quantity).
    Live weights of a training run change between reruns, so they are traced every time."""
    key = (st.session_state.get("gates_model"), id(loaded.model), text)
    kept = st.session_state.get("gates_trace")
    if loaded.live or kept is None or kept[0] != key:
        kept = (key, trace.trace(loaded.model, loaded.vocab, text))
        st.session_state["gates_trace"] = kept
    return kept[1]


def body() -> None:
    loaded = models.choose("gates")
    if loaded is None:
        return
    st.markdown(CELL_INTROS.get(loaded.cell, ""))
    text, layer = controls(loaded)
    if not check(loaded, text):
        return
    try:
        tr = traced(loaded, text)
    except CorpusError as e:
        st.error(common.plain(e))
        return
    heatmaps(tr, layer)
    per_unit(tr, layer)
    saturation(tr, layer)
    cell_fn = cells.CELL_FUNCTIONS[tr.cell]
    common.show_code(cell_fn, trace.trace)


body()
