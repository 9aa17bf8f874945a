"""Figures for the playground's pages: plotly only, no Streamlit, so tests can read them.

Every builder takes plain data (history rows, (char, value) pairs, (T, H) arrays from a
`trace.Trace`) and returns a `plotly.graph_objects.Figure` with a fixed height and a constant
`layout.uirevision`, so a chart redrawn once a second keeps its zoom and does not jump.
Layout of activations: (T, H), time by unit, as `trace` gives them; heatmaps draw units on the
y axis and the characters of the text along the x axis.
"""

import html
import math

import numpy as np
import pandas  # noqa: F401  (see below)
import plotly.graph_objects as go
from plotly.subplots import make_subplots

# NOTE: pandas is imported here, eagerly, because plotly imports it lazily on a figure's first
# use; several sessions drawing their first chart at once could then see a half-imported
# pandas ("partially initialized module 'pandas' has no attribute 'Series"), as the load test
# showed. Importing it once at module load closes that race.

LN2 = math.log(2)
HEIGHT = 380  # pixels; every chart has a fixed height so live pages do not jump
MAX_POINTS = 500  # points per line, however long the run
WINDOW = 80  # characters shown at first along the x axis of text charts (pan for more)
COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#17becf"]
CELL_COLORS = {"rnn": "#ff7f0e", "gru": "#2ca02c", "lstm": "#1f77b4"}

# What each traced intermediate is called on a page, and the range its values live in.
NAMES = {
    "i": "input gate i",
    "f": "forget gate f",
    "g": "cell candidate g",
    "o": "output gate o",
    "c": "cell state c",
    "h": "hidden state h",
    "r": "reset gate r",
    "z": "update gate z",
    "n": "candidate n",
}
SIGMOID = ("i", "f", "o", "r", "z")  # values in (0, 1)
TANH = ("g", "n", "h")  # values in (-1, 1); c is unbounded


def char_label(ch: str) -> str:
    """A visible stand-in for characters that print as nothing (newline, space, tab...)."""
    special = {"\n": "↵", " ": "␣", "\t": "⇥", "\r": "␍"}
    if ch in special:
        return special[ch]
    if not ch.isprintable():
        return repr(ch)[1:-1]
    return ch


def _base_layout(fig: go.Figure, height: int, uirevision: str, **extra) -> go.Figure:
    fig.update_layout(
        height=height,
        uirevision=uirevision,
        margin=dict(l=50, r=20, t=40, b=40),
        legend=dict(orientation="h", yanchor="bottom", y=1.02, xanchor="left", x=0),
        **extra,
    )
    return fig


def _field(row, name):
    """Read a history row that is either a training.Metrics or a plain dict (checkpoints)."""
    return row.get(name) if isinstance(row, dict) else getattr(row, name, None)


def _thin(xs: list, ys: list, limit: int = MAX_POINTS) -> tuple[list, list]:
    """Evenly spaced points, at most `limit`, keeping the last one."""
    if len(xs) <= limit:
        return list(xs), list(ys)
    stride = -(-len(xs) // limit)
    keep = list(range(0, len(xs), stride))
    if keep[-1] != len(xs) - 1:
        keep.append(len(xs) - 1)
    return [xs[i] for i in keep], [ys[i] for i in keep]


def loss_figure(
    runs: list[dict],
    unit: str = "bpc",
    baseline_bits: float | None = None,
    height: int = HEIGHT,
    uirevision: str = "loss",
    max_points: int = MAX_POINTS,
) -> go.Figure:
    """Training (thin line) and validation (markers) loss of one or more runs.

    runs: [{"name": str, "history": rows with .step .loss .val_loss, "color": optional}].
    unit: "bpc" (bits per char) or "nats" (nats per char). baseline_bits draws the unigram
    entropy of the corpus: the loss of a model that ignores context, the line to beat.
    """
    if unit not in ("bpc", "nats"):
        raise ValueError(f"unit must be bpc or nats, got {unit!r}")
    scale = 1 / LN2 if unit == "bpc" else 1.0
    fig = go.Figure()
    for k, run in enumerate(runs):
        color = run.get("color") or COLORS[k % len(COLORS)]
        rows = run["history"]
        steps = [_field(r, "step") for r in rows]
        loss = [_field(r, "loss") * scale for r in rows]
        xs, ys = _thin(steps, loss, max_points)
        fig.add_trace(
            go.Scatter(
                x=xs,
                y=ys,
                mode="lines",
                name=f"{run['name']} train",
                line=dict(color=color, width=1.5),
                opacity=0.55,
                legendgroup=run["name"],
            )
        )
        val = [(_field(r, "step"), _field(r, "val_loss")) for r in rows]
        val = [(s, v * scale) for s, v in val if v is not None]
        if val:
            vx, vy = _thin([s for s, _ in val], [v for _, v in val], max_points)
            fig.add_trace(
                go.Scatter(
                    x=vx,
                    y=vy,
                    mode="lines+markers",
                    name=f"{run['name']} validation",
                    line=dict(color=color, width=2.5),
                    marker=dict(size=7),
                    legendgroup=run["name"],
                )
            )
    if baseline_bits is not None:
        level = baseline_bits if unit == "bpc" else baseline_bits * LN2
        fig.add_hline(
            y=level,
            line=dict(color="gray", dash="dash", width=1),
            annotation_text=f"unigram entropy {level:.2f}: the line to beat",
            annotation_position="top right",
        )
    if not runs or not any(run["history"] for run in runs):
        fig.add_annotation(
            text="no steps yet",
            showarrow=False,
            x=0.5,
            y=0.5,
            xref="paper",
            yref="paper",
            font=dict(size=16, color="gray"),
        )
    ytitle = "bits per char" if unit == "bpc" else "nats per char"
    return _base_layout(
        fig,
        height,
        uirevision,
        xaxis_title="step",
        yaxis_title=f"loss ({ytitle})",
        hovermode="x unified",
    )


def char_frequency_figure(
    counts: list[tuple[str, int]], top: int = 80, height: int = HEIGHT
) -> go.Figure:
    """Bar chart of character frequencies, most frequent first (at most `top` bars)."""
    total = sum(n for _, n in counts) or 1
    shown = counts[:top]
    x = list(range(len(shown)))
    fig = go.Figure(
        go.Bar(
            x=x,
            y=[n / total for _, n in shown],
            customdata=[[repr(ch), n] for ch, n in shown],
            hovertemplate="%{customdata[0]}: %{customdata[1]:,} times (%{y:.2%})<extra></extra>",
            marker_color=COLORS[0],
        )
    )
    fig.update_xaxes(tickmode="array", tickvals=x, ticktext=[char_label(ch) for ch, _ in shown])
    note = f" (the {top} most frequent of {len(counts)})" if len(counts) > top else ""
    return _base_layout(
        fig,
        height,
        "freq",
        title=f"character frequency{note}",
        yaxis_title="share of the text",
        yaxis_tickformat=".0%",
        bargap=0.15,
    )


def next_char_figure(
    dist: list[tuple[str, float]],
    top: int = 30,
    title: str = "",
    height: int = HEIGHT,
    uirevision: str = "next",
) -> go.Figure:
    """The `top` most likely next characters and their probabilities (dist sorted, likely first)."""
    shown = dist[:top]
    x = list(range(len(shown)))
    fig = go.Figure(
        go.Bar(
            x=x,
            y=[p for _, p in shown],
            customdata=[repr(ch) for ch, _ in shown],
            hovertemplate="%{customdata}: %{y:.3f}<extra></extra>",
            marker_color=COLORS[0],
        )
    )
    fig.update_xaxes(tickmode="array", tickvals=x, ticktext=[char_label(ch) for ch, _ in shown])
    fig.update_yaxes(range=[0, 1])
    return _base_layout(fig, height, uirevision, title=title, yaxis_title="probability")


def value_range(name: str, values: np.ndarray) -> tuple[float, float]:
    """The colour range for an intermediate: (0, 1) for gates, (-1, 1) for tanh outputs,
    symmetric around 0 for the unbounded cell state."""
    if name in SIGMOID:
        return 0.0, 1.0
    if name in TANH:
        return -1.0, 1.0
    peak = float(np.abs(values).max()) if values.size else 1.0
    return -max(peak, 1e-6), max(peak, 1e-6)


def _text_axis(fig: go.Figure, chars: list[str], window: int, row=None, col=None) -> None:
    """Characters along x, one tick per character, showing the first `window` at first."""
    x = list(range(len(chars)))
    fig.update_xaxes(
        tickmode="array",
        tickvals=x,
        ticktext=[char_label(ch) for ch in chars],
        tickangle=0,
        range=[-0.5, min(len(chars), window) - 0.5],
        row=row,
        col=col,
    )


def gate_heatmap(
    values: np.ndarray,
    chars: list[str],
    name: str,
    units: range | None = None,
    window: int = WINDOW,
    uirevision: str = "gates",
) -> go.Figure:
    """One traced intermediate as a heatmap: units (rows) by characters (columns).

    values: (T, H) for one layer, e.g. trace.layers[k]["f"]; units: which units to draw.
    """
    T, H = values.shape
    units = units if units is not None else range(H)
    z = values[:, units.start : units.stop].T  # (U, T)
    zmin, zmax = value_range(name, values)
    labels = np.array([repr(ch) for ch in chars], dtype=object)
    fig = go.Figure(
        go.Heatmap(
            z=z,
            x=list(range(T)),
            y=list(units),
            zmin=zmin,
            zmax=zmax,
            colorscale="Viridis" if name in SIGMOID else "RdBu_r",
            customdata=np.broadcast_to(labels, z.shape),
            hovertemplate="char %{customdata} (#%{x})<br>unit %{y}<br>value %{z:.3f}"
            "<extra></extra>",
            colorbar=dict(thickness=12),
        )
    )
    _text_axis(fig, chars, window)
    fig.update_yaxes(title="unit", autorange="reversed")
    height = int(min(640, 120 + 9 * len(units)))
    return _base_layout(fig, height, uirevision, title=NAMES.get(name, name), dragmode="pan")


def next_char_prob_figure(
    chars: list[str], probs: np.ndarray, window: int = WINDOW, uirevision: str = "gates"
) -> go.Figure:
    """The model's probability of each actual next character, drawn under that character.

    probs[t] is the probability of chars[t + 1] after reading chars[: t + 1] (T - 1 values).
    """
    x = list(range(1, len(chars)))
    after = [f"{repr(chars[t])} → {repr(chars[t + 1])}" for t in range(len(chars) - 1)]
    fig = go.Figure(
        go.Bar(
            x=x,
            y=list(map(float, probs)),
            customdata=after,
            hovertemplate="%{customdata}: p = %{y:.3f}<extra></extra>",
            marker=dict(
                color=list(map(float, probs)),
                colorscale="Viridis",
                cmin=0,
                cmax=1,
                showscale=True,  # as wide as a heatmap's colour bar: the columns line up
                colorbar=dict(thickness=12),
            ),
        )
    )
    _text_axis(fig, chars, window)
    fig.update_yaxes(range=[0, 1], title="p(next char)")
    return _base_layout(
        fig, 220, uirevision, title="probability the model gave each character", dragmode="pan"
    )


def saturation_figure(
    saturation: dict[str, tuple[np.ndarray, np.ndarray]], height: int = 360
) -> go.Figure:
    """For each gate, one dot per unit: fraction of characters below 0.1 (left-saturated, x)
    against fraction above 0.9 (right-saturated, y), as in Karpathy, Johnson & Fei-Fei (2015).

    saturation: gate name -> (left (H,), right (H,)), from `trace.Trace.saturation(layer)`.
    """
    names = list(saturation)
    fig = make_subplots(
        rows=1,
        cols=max(1, len(names)),
        subplot_titles=[NAMES.get(n, n) for n in names],
        horizontal_spacing=0.06,
    )
    for k, name in enumerate(names, start=1):
        left, right = saturation[name]
        fig.add_trace(
            go.Scatter(
                x=list(map(float, left)),
                y=list(map(float, right)),
                mode="markers",
                marker=dict(size=6, color=COLORS[(k - 1) % len(COLORS)], opacity=0.7),
                text=[f"unit {u}" for u in range(len(left))],
                hovertemplate="%{text}<br>below 0.1: %{x:.0%}<br>above 0.9: %{y:.0%}"
                "<extra></extra>",
                showlegend=False,
            ),
            row=1,
            col=k,
        )
        # a unit cannot be more than 100% saturated in total: the points live under x + y = 1
        fig.add_trace(
            go.Scatter(
                x=[0, 1],
                y=[1, 0],
                mode="lines",
                line=dict(color="lightgray", dash="dot", width=1),
                hoverinfo="skip",
                showlegend=False,
            ),
            row=1,
            col=k,
        )
        fig.update_xaxes(range=[-0.02, 1.02], title="fraction < 0.1", row=1, col=k)
        fig.update_yaxes(range=[-0.02, 1.02], row=1, col=k)
    fig.update_yaxes(title="fraction > 0.9", row=1, col=1)
    return _base_layout(fig, height, "saturation")


def _background_rgba(value: float, lo: float, hi: float) -> tuple[tuple[int, int, int], float]:
    """(rgb, alpha) for a value: green intensity on (0, 1) ranges, blue (negative) to red
    (positive) on ranges centred on zero."""
    if lo >= 0:
        return (44, 160, 44), min(1.0, max(0.0, (value - lo) / (hi - lo or 1)))
    a = min(1.0, abs(value) / (max(abs(lo), abs(hi)) or 1))
    return ((214, 39, 40) if value > 0 else (31, 119, 180)), a


def _background(value: float, lo: float, hi: float) -> str:
    """The CSS colour of _background_rgba."""
    (r, g, b), a = _background_rgba(value, lo, hi)
    return f"rgba({r}, {g}, {b}, {a:.2f})"


def _luminance(rgb) -> float:
    """WCAG relative luminance of an sRGB colour (0 black .. 1 white)."""

    def linear(c: float) -> float:
        c /= 255
        return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = (linear(c) for c in rgb)
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def _text_colour(value: float, lo: float, hi: float) -> str:
    """Black or white, whichever contrasts more with the highlight as seen on the white card
    colored_text_html draws on (the translucent colour blended with white)."""
    rgb, a = _background_rgba(value, lo, hi)
    seen = [255 + (c - 255) * a for c in rgb]
    # contrast with black (L + .05) / .05 against with white 1.05 / (L + .05): equal at ~0.179
    return "#000" if _luminance(seen) > 0.179 else "#fff"


def colored_text_html(chars: list[str], values, lo: float, hi: float, label: str = "value") -> str:
    """The text with each character's background coloured by its value (Karpathy's cell
    visualisations). Every character is HTML-escaped: user text never becomes markup."""
    spans = []
    for ch, v in zip(chars, values, strict=True):
        if v is None or (isinstance(v, float) and math.isnan(v)):
            style, tip = "", ""
        else:
            v = float(v)
            style = f' style="background:{_background(v, lo, hi)};color:{_text_colour(v, lo, hi)}"'
            tip = f' title="{html.escape(label)}: {float(v):.3f}"'
        shown = "↵" if ch == "\n" else html.escape(ch, quote=True)
        spans.append(f"<span{style}{tip}>{shown}</span>")
        if ch == "\n":
            spans.append("<br>")
    # a white card with dark text in light and dark themes alike, so the text colour chosen
    # for each highlight (by its luminance on white) always holds
    return (
        '<div style="font-family: ui-monospace, SFMono-Regular, Menlo, monospace; '
        "font-size: 15px; line-height: 1.7; white-space: pre-wrap; word-break: break-all; "
        'background: #fff; color: #000; padding: 0.4em 0.6em; border-radius: 0.4em">'
        + "".join(spans)
        + "</div>"
    )
