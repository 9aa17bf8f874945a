"""AppTest: bundled checkpoints (shared, read-only) and uploaded ones (this session only) on
the Sample, Gates and Runs pages; GRU and RNN gate views."""

import pytest

pytest.register_assert_rewrite("tests.app_fixtures")
from tests.app_fixtures import (  # noqa: E402
    charts,
    new_app,
    open_page,
    save_checkpoint,
    texts,
    train_tiny,
)

pytest_plugins = ["tests.app_fixtures"]


def test_bundled_lstm_is_the_default_and_samples(app_env):
    save_checkpoint(app_env, "gru-small.safetensors", cell="gru")
    save_checkpoint(app_env, "lstm-small.safetensors", cell="lstm")
    at = open_page(new_app(), "sample")
    picker = at.selectbox(key="sample_model")
    assert picker.value == "bundled:lstm-small.safetensors"
    assert picker.options == ["bundled: lstm-small", "bundled: gru-small"]
    # typed numbers out of range are not applied, so the ranges are in the labels
    vocab = int(at.number_input(key="sample_top_k").proto.max)
    assert at.number_input(key="sample_top_k").label == f"Top-k (0 = all, max {vocab})"
    assert at.number_input(key="sample_seed").label == "Seed (0 to 2,147,483,647)"
    assert "not applied" in at.number_input(key="sample_seed").help
    at.number_input(key="sample_length").set_value(40)
    at.button(key="sample_go").click().run()
    assert not at.exception and not at.error
    result = at.session_state["sample_result"]
    assert len(result["text"]) == len("ROMEO:\n") + 40
    # seeded: the same button press gives the same text
    at.button(key="sample_go").click().run()
    assert at.session_state["sample_result"]["text"] == result["text"]


def test_first_visit_writes_with_the_bundled_lstm_at_once(app_env):
    save_checkpoint(app_env, "lstm-small.safetensors", cell="lstm")
    at = open_page(new_app(), "sample")  # no click
    assert not at.exception and not at.error
    text = at.session_state["sample_result"]["text"]
    assert text.startswith("ROMEO:") and len(text) > len("ROMEO:")
    assert any(text in c.value for c in at.code)


def test_gates_of_every_layer_and_cell(app_env):
    save_checkpoint(app_env, "lstm-2layers.safetensors", cell="lstm", layers=2)
    at = open_page(new_app(), "gates")
    assert at.radio(key="gates_layer").options == ["layer 1 (bottom)", "layer 2"]
    first = charts(at)
    at.radio(key="gates_layer").set_value(1).run()
    assert not at.exception
    second = charts(at)
    assert first[0]["data"][0]["z"] != second[0]["data"][0]["z"]  # another layer's values
    sat = [c for c in second if len(c["data"]) == 6]  # i, f, o: a dot cloud and a guide each
    assert sat and sat[0]["layout"]["annotations"][0]["text"] == "input gate i"
    intro = " ".join(m.value for m in at.markdown)
    assert "An **LSTM**" in intro and "forget gate" in intro
    # the coloured text sits on a white card, each highlight with its own text colour
    for block in at.get("html"):
        body = block.proto.body
        assert "background: #fff; color: #000" in body
        assert body.count('style="background:') == body.count(";color:#")

    save_checkpoint(app_env, "x-gru.safetensors", cell="gru", layers=1)
    save_checkpoint(app_env, "y-rnn.safetensors", cell="rnn", layers=1)
    at = open_page(new_app(), "gates")
    at.selectbox(key="gates_model").set_value("bundled:x-gru.safetensors").run()
    titles = [c["layout"]["title"]["text"] for c in charts(at) if c["data"][0]["type"] == "heatmap"]
    assert titles == ["reset gate r", "update gate z", "candidate n", "hidden state h"]
    intro = " ".join(m.value for m in at.markdown)
    assert "A **GRU**" in intro and "LSTM" not in intro and "forget gate" not in intro
    at.selectbox(key="gates_model").set_value("bundled:y-rnn.safetensors").run()
    titles = [c["layout"]["title"]["text"] for c in charts(at) if c["data"][0]["type"] == "heatmap"]
    assert titles == ["hidden state h"]
    assert any("no gates" in t for t in texts(at.info))
    intro = " ".join(m.value for m in at.markdown)
    assert "A plain **RNN**" in intro and "LSTM" not in intro and "GRU" not in intro


def test_highlight_text_colour_follows_the_background_luminance():
    from charrnn import figures

    # strong red, blue and green highlights are dark: white text; faint ones: black text
    assert figures._text_colour(1.0, -1.0, 1.0) == "#fff"
    assert figures._text_colour(-1.0, -1.0, 1.0) == "#fff"
    assert figures._text_colour(0.05, -1.0, 1.0) == "#000"
    assert figures._text_colour(0.1, 0.0, 1.0) == "#000"
    html = figures.colored_text_html(list("ab"), [1.0, 0.0], -1.0, 1.0)
    assert "color:#fff" in html and "color:#000" in html


def test_wide_models_draw_a_window_of_units(app_env):
    save_checkpoint(app_env, "lstm-wide.safetensors", layers=1, hidden=100)
    at = open_page(new_app(), "gates")
    assert at.selectbox(key="gates_units").options == ["units 0-63", "units 64-99"]
    at.selectbox(key="gates_units").set_value(64).run()
    z = charts(at)[0]["data"][0]["z"]
    assert z["shape"].replace(" ", "").startswith("36,")
    at.number_input(key="gates_unit").set_value(99).run()
    assert not at.exception


def test_upload_checkpoint_or_refuse_it(app_env, tmp_path):
    at = open_page(new_app(), "runs")
    uploader = at.file_uploader(key="runs_upload")
    uploader.set_value(("fake.safetensors", b"\x80\x04not a checkpoint at all", "application/x"))
    at.run()
    assert not at.exception
    assert texts(at.error)[0].startswith("Refused: ")
    good = save_checkpoint(tmp_path, "mine.safetensors", cell="gru", layers=1)
    at.file_uploader(key="runs_upload").set_value(
        ("mine.safetensors", good.read_bytes(), "application/octet-stream")
    )
    at.run()
    assert "loaded" in texts(at.success)[0]
    assert any("mine.safetensors" in t for t in texts(at.markdown))
    open_page(at, "sample")
    options = at.selectbox(key="sample_model").options
    assert options == ["uploaded: mine.safetensors (GRU 1×24)"]
    # another session does not see it
    stranger = open_page(new_app(), "sample")
    assert "There is no model yet" in texts(stranger.info)[0]


def test_user_file_names_are_shown_literally(app_env, tmp_path):
    name = "**big** :red[x] [link](javascript:alert(1)).safetensors"
    good = save_checkpoint(tmp_path, "ok.safetensors", cell="rnn", layers=1)
    at = open_page(new_app(), "runs")
    at.file_uploader(key="runs_upload").set_value((name, good.read_bytes(), "application/x"))
    at.run()
    shown = [m.value for m in at.markdown if "javascript" in m.value]
    assert shown and "[link](" not in shown[0] and "\\*\\*big\\*\\*" in shown[0]
    assert texts(at.success)[0].startswith(name)  # and reads back exactly as uploaded


def test_a_new_run_becomes_the_default_model(app_env):
    save_checkpoint(app_env, "lstm-bundled.safetensors")
    at = open_page(new_app(), "sample")
    assert at.selectbox(key="sample_model").value == "bundled:lstm-bundled.safetensors"
    train_tiny(at, steps=5)
    for page in ("sample", "gates"):
        open_page(at, page)
        assert at.selectbox(key=f"{page}_model").value.startswith("run:")
    # the bundled model is still one pick away
    at.selectbox(key="gates_model").set_value("bundled:lstm-bundled.safetensors").run()
    assert not at.exception and at.get("plotly_chart")


def test_a_bundled_seeded_sample_is_computed_once_for_everyone(app_env, monkeypatch):
    import streamlit as st

    from charrnn import sampling

    st.cache_data.clear()
    save_checkpoint(app_env, "lstm-small.safetensors", cell="lstm")
    calls = []
    real = sampling.generate
    monkeypatch.setattr(sampling, "generate", lambda *a, **k: calls.append(1) or real(*a, **k))
    first = open_page(new_app(), "sample").session_state["sample_result"]["text"]
    after_first = len(calls)
    second = open_page(new_app(), "sample").session_state["sample_result"]["text"]
    assert after_first > 0 and len(calls) == after_first  # the second session used the cache
    assert first == second
