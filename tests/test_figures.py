"""charrnn.figures: pure plotly builders, checked without Streamlit."""

import math
import re
from html import unescape

import numpy as np
import pytest

from charrnn import figures
from charrnn.training import Metrics


def history(n: int, val_every: int = 0):
    rows = [
        Metrics(step=s, loss=4.0 - s / n, lr=1e-3, chars_per_s=1e4, elapsed_s=s)
        for s in range(1, n + 1)
    ]
    for row in rows:
        if val_every and row.step % val_every == 0:
            row.val_loss = row.loss + 0.1
    return rows


def test_loss_figure_converts_units_and_keeps_zoom():
    rows = history(10, val_every=5)
    bits = figures.loss_figure([{"name": "a", "history": rows}], unit="bpc")
    nats = figures.loss_figure([{"name": "a", "history": rows}], unit="nats")
    assert bits.data[0].y[0] == pytest.approx(rows[0].loss / math.log(2))
    assert nats.data[0].y[0] == pytest.approx(rows[0].loss)
    assert [t.name for t in bits.data] == ["a train", "a validation"]
    assert list(bits.data[1].x) == [5, 10]
    assert bits.layout.uirevision == "loss" and bits.layout.height == figures.HEIGHT
    with pytest.raises(ValueError, match="bpc or nats"):
        figures.loss_figure([], unit="bits")


def test_loss_figure_is_bounded_however_long_the_run():
    fig = figures.loss_figure([{"name": "long", "history": history(20_000)}])
    assert len(fig.data[0].x) <= figures.MAX_POINTS + 1
    assert fig.data[0].x[-1] == 20_000  # the latest step is always drawn


def test_loss_figure_baseline_and_empty_runs():
    fig = figures.loss_figure([{"name": "new", "history": []}], baseline_bits=4.5, unit="nats")
    assert fig.layout.shapes[0].y0 == pytest.approx(4.5 * math.log(2))
    texts = [a.text for a in fig.layout.annotations]
    assert any("line to beat" in t for t in texts) and "no steps yet" in texts
    # plain dict rows (as stored in checkpoints) work as well as Metrics
    fig = figures.loss_figure([{"name": "d", "history": [{"step": 1, "loss": 1.0}]}])
    assert list(fig.data[0].y) == [pytest.approx(1 / math.log(2))]


def test_char_labels_make_invisible_characters_visible():
    assert [figures.char_label(c) for c in "\n \ta\x01"] == ["↵", "␣", "⇥", "a", "\\x01"]
    fig = figures.char_frequency_figure([(" ", 3), ("e", 1)])
    assert list(fig.data[0].y) == [0.75, 0.25]
    assert list(fig.layout.xaxis.ticktext) == ["␣", "e"]


def test_next_char_figure_keeps_the_top_characters():
    dist = [(chr(97 + k), 1 / 2 ** (k + 1)) for k in range(26)]
    fig = figures.next_char_figure(dist, top=5, title="after x")
    assert len(fig.data[0].y) == 5 and fig.data[0].y[0] == 0.5
    assert fig.layout.title.text == "after x" and list(fig.layout.yaxis.range) == [0, 1]


def test_gate_heatmap_orientation_and_ranges():
    T, H = 12, 40
    values = np.random.default_rng(0).random((T, H)).astype(np.float32)
    chars = list("hello, world")
    fig = figures.gate_heatmap(values, chars, "f", units=range(8, 24))
    z = np.asarray(fig.data[0].z)
    assert z.shape == (16, T)  # units by characters
    assert np.allclose(z[0], values[:, 8])
    assert (fig.data[0].zmin, fig.data[0].zmax) == (0.0, 1.0)
    assert fig.layout.title.text == "forget gate f"
    assert list(fig.layout.xaxis.ticktext)[5] == ","
    cell = figures.gate_heatmap(values * 3 - 1, chars, "c")
    assert cell.data[0].zmin == -cell.data[0].zmax == pytest.approx(-np.abs(values * 3 - 1).max())


def test_saturation_figure_one_panel_per_gate():
    rng = np.random.default_rng(1)
    sat = {g: (rng.random(10), rng.random(10)) for g in ("i", "f", "o")}
    fig = figures.saturation_figure(sat)
    dots = [t for t in fig.data if t.mode == "markers"]
    assert len(dots) == 3 and all(len(t.x) == 10 for t in dots)
    assert [a.text for a in fig.layout.annotations] == [
        "input gate i",
        "forget gate f",
        "output gate o",
    ]


def test_next_char_probability_sits_under_the_predicted_character():
    fig = figures.next_char_prob_figure(list("abc"), np.array([0.2, 0.9]))
    assert list(fig.data[0].x) == [1, 2] and list(fig.data[0].y) == [0.2, 0.9]
    assert "'a' → 'b'" in fig.data[0].customdata[0]


def test_colored_text_escapes_user_text():
    evil = list('<script>alert("x")</script>&\n')
    html = figures.colored_text_html(evil, [0.5] * len(evil), -1.0, 1.0, label='u"1')
    assert "<script" not in html and "&lt;" in html and "u&quot;1" in html
    # the tags removed and the entities read back give exactly the user's text
    assert unescape(re.sub(r"<[^>]+>", "", html)) == '<script>alert("x")</script>&↵'
    assert html.count("<br>") == 1 and "↵" in html
    # gates (0..1) colour green; None (no value) leaves the character plain
    html = figures.colored_text_html(list("ab"), [None, 1.0], 0.0, 1.0)
    assert "<span>a</span>" in html and "rgba(44, 160, 44, 1.00)" in html
