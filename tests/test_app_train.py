"""AppTest: a tiny run started from the Train page trains, shows its curve, appears in Runs,
and its checkpoint samples text and draws its gates."""

import pytest

pytest.register_assert_rewrite("tests.app_fixtures")
from tests.app_fixtures import (  # noqa: E402
    charts,
    new_app,
    open_page,
    run_until,
    texts,
    train_tiny,
)

pytest_plugins = ["tests.app_fixtures"]


def test_tiny_run_trains_and_is_sampled_and_traced(app_env):
    at = train_tiny(new_app())
    assert "finished" in texts(at.success)[0], texts(at.error)
    progress = at.get("progress")[0].proto.text
    assert "step 20/20" in progress and "chars/s" in progress
    loss = charts(at)[0]
    names = [trace["name"] for trace in loss["data"]]
    assert any(n.endswith("train") for n in names) and any(n.endswith("validation") for n in names)
    assert len(loss["data"][0]["y"]) == 20
    assert loss["layout"]["uirevision"] == "train" and loss["layout"]["height"] == 380
    assert at.code[0].value  # the latest progress sample

    # Runs: one row, finished, with a checkpoint to download
    open_page(at, "runs")
    table = at.dataframe[0].value
    assert list(table["status"]) == ["finished"] and list(table["steps"]) == ["20/20"]
    assert table["val bits/char"][0] > 0
    assert at.get("download_button")

    # Sample: the fresh run is the default model; text comes back, prime first
    open_page(at, "sample")
    assert at.selectbox(key="sample_model").value.startswith("run:")
    at.number_input(key="sample_length").set_value(50)
    at.button(key="sample_go").click().run()
    assert not at.exception and not at.error
    text = at.session_state["sample_result"]["text"]
    assert text.startswith("ROMEO:\n") and len(text) == len("ROMEO:\n") + 50
    assert len(at.session_state["sample_result"]["compare"]) == 3
    next_chart = charts(at)[0]
    assert next_chart["data"][0]["type"] == "bar" and len(next_chart["data"][0]["y"]) >= 10

    # Gates: an LSTM shows i f g o c h, the next-char probabilities and the saturation plot
    open_page(at, "gates")
    specs = charts(at)
    heatmaps = [s for s in specs if s["data"][0]["type"] == "heatmap"]
    assert [h["layout"]["title"]["text"] for h in heatmaps] == [
        "input gate i",
        "forget gate f",
        "cell candidate g",
        "output gate o",
        "cell state c",
        "hidden state h",
    ]
    z = heatmaps[0]["data"][0]["z"]  # plotly 7 sends numpy arrays as typed binary data
    assert z["shape"].replace(" ", "") == f"16,{len(at.session_state['gates_text'])}"
    assert len(specs) == 8  # six heatmaps, next-char probability, saturation
    assert len(at.get("html")) == 2  # the unit's coloured text, the probabilities' one


def test_sample_refuses_bad_primes_with_messages(app_env):
    at = train_tiny(new_app(), steps=5)
    open_page(at, "sample")
    at.text_area(key="sample_prime").input("ROMEO: ★").run()
    assert not at.exception
    assert "'★'" in texts(at.error)[0]
    at.text_area(key="sample_prime").input("").run()
    assert "Type a prime" in texts(at.info)[0]
    # a paste over the limit is not dropped: the core's message gives the limit
    from charrnn.limits import LIMITS

    assert at.text_area(key="sample_prime").proto.max_chars == 0  # no browser-side cut
    at.text_area(key="sample_prime").input("a" * (LIMITS.max_prime + 1)).run()
    assert f"the limit is {LIMITS.max_prime:,}" in texts(at.error)[0]
    assert not at.info
    at.text_area(key="sample_prime").input("ROMEO").run()
    at.toggle(key="sample_greedy").set_value(True).run()
    assert "greedy" in charts(at)[0]["layout"]["title"]["text"]


def test_gates_refuses_long_and_unknown_text(app_env):
    at = train_tiny(new_app(), steps=5)
    open_page(at, "gates")
    from charrnn.limits import LIMITS

    # the page draws as much as the core traces (CHARRNN_MAX_TRACE_CHARS, as the README says)
    assert f"up to {LIMITS.max_trace_chars:,} characters" in at.text_area(key="gates_text").label
    at.text_area(key="gates_text").input("a" * (LIMITS.max_trace_chars + 1)).run()
    assert f"at most {LIMITS.max_trace_chars:,}" in texts(at.error)[0]
    at.text_area(key="gates_text").input("hello ☃").run()
    assert "'☃'" in texts(at.error)[0]
    assert not at.get("plotly_chart")


def test_stop_keeps_a_checkpoint(app_env):
    at = open_page(new_app(), "train")
    at.number_input(key="train_hidden_size").set_value(16)
    at.number_input(key="train_num_layers").set_value(1)
    at.number_input(key="train_steps").set_value(20_000)
    at.number_input(key="train_batch_size").set_value(4)
    at.number_input(key="train_seq_len").set_value(16)
    at.run()
    at.button(key="train_start").click().run()
    run_until(at, lambda a: "step 0/" not in a.get("progress")[0].proto.text)
    at.button(key="train_stop").click().run()
    run_until(at, lambda a: a.warning)
    assert (
        "stopped at step" in texts(at.warning)[0] and "checkpoint is kept" in texts(at.warning)[0]
    )
    open_page(at, "runs")
    assert list(at.dataframe[0].value["status"]) == ["stopped"]
    assert at.get("download_button")
    at.button(key="runs_delete").click().run()
    assert "Delete" in texts(at.warning)[0]  # asks first
    at.button(key="runs_delete_confirm").click().run()
    assert "No runs yet" in texts(at.info)[0]


def test_compare_cells_overlays_three_curves(app_env):
    at = open_page(new_app(), "train")
    for key, value in dict(
        hidden_size=16, num_layers=1, steps=8, batch_size=4, seq_len=16, eval_every=4
    ).items():
        at.number_input(key=f"train_{key}").set_value(value)
    at.run()
    at.button(key="train_compare").click().run()
    assert not at.error, texts(at.error)
    run_until(at, lambda a: len(a.success) == 3, timeout=120)
    names = {t["name"] for t in charts(at)[0]["data"] if t["name"].endswith("validation")}
    assert names == {"RNN 1×16 validation", "GRU 1×16 validation", "LSTM 1×16 validation"}


def test_a_refresh_finds_the_run_again(app_env):
    at = train_tiny(new_app(), steps=5)
    token = at.query_params["owner"]
    again = open_page(new_app({"owner": token}), "runs")
    assert len(again.dataframe[0].value) == 1
    stranger = open_page(new_app(), "runs")
    assert "No runs yet" in texts(stranger.info)[0]


def test_a_failed_run_shows_its_reason(app_env, monkeypatch):
    from charrnn import training

    def diverge(self):
        raise training.TrainingDiverged("the loss became nan at step 1: lower the learning rate")

    monkeypatch.setattr(training.Trainer, "train_step", diverge)
    at = train_tiny(new_app())
    assert "failed: the loss became nan" in texts(at.error)[0]


def test_same_settings_runs_have_distinct_labels_and_delete_asks_first(app_env):
    at = train_tiny(new_app(), steps=5)
    train_tiny(at, steps=5)  # the very same settings: the same name
    open_page(at, "runs")
    labels = list(at.dataframe[0].value["run"])
    assert len(labels) == 2 and len(set(labels)) == 2
    assert all(label.startswith("LSTM 1×16") for label in labels)
    assert at.selectbox(key="runs_pick").options == labels
    legend = {t["name"] for t in charts(at)[0]["data"]}
    assert {f"{label} train" for label in labels} <= legend
    open_page(at, "sample")
    models = at.selectbox(key="sample_model").options
    assert len(set(models)) == 2
    assert all(any(label in o for o in models) for label in labels)

    # Delete asks for a confirmation; Cancel keeps the run
    open_page(at, "runs")
    at.selectbox(key="runs_pick").set_value(at.selectbox(key="runs_pick").options[0])
    at.button(key="runs_delete").click().run()
    assert not at.exception
    assert labels[0] in texts(at.warning)[0] and "cannot be undone" in texts(at.warning)[0]
    assert len(at.dataframe[0].value) == 2
    at.button(key="runs_delete_cancel").click().run()
    assert len(at.dataframe[0].value) == 2 and not at.warning
    # nor does a pending confirmation wait across pages
    at.button(key="runs_delete").click().run()
    open_page(open_page(at, "train"), "runs")
    assert not at.warning
    # Confirm deletes it and says which one went
    at.button(key="runs_delete").click().run()
    at.button(key="runs_delete_confirm").click().run()
    assert f"Deleted {labels[0]}." in texts(at.success)
    assert list(at.dataframe[0].value["run"]) == ["LSTM 1×16"]  # no longer a repeat


def test_sample_warns_when_the_chosen_run_was_deleted_elsewhere(app_env):
    at = train_tiny(new_app(), steps=5)
    train_tiny(at, hidden_size=24, steps=5)
    token = at.query_params["owner"]
    from ui import state

    older = next(j for j in state.registry().owned(token) if j.name == "LSTM 1×16")
    open_page(at, "sample")
    at.selectbox(key="sample_model").set_value(f"run:{older.id}").run()
    assert not at.warning
    before = at.session_state["sample_result"]  # the first visit's text, from the newest run
    # another tab with the same owner link deletes that run
    other = open_page(new_app({"owner": token}), "runs")
    other.selectbox(key="runs_pick").set_value(older.id).run()
    other.button(key="runs_delete").click().run()
    other.button(key="runs_delete_confirm").click().run()
    assert "Deleted LSTM 1×16." in texts(other.success)
    # back in the first tab, Generate does not silently use another model
    at.button(key="sample_go").click().run()
    warning = texts(at.warning)[0]
    assert "LSTM 1×16" in warning and "is gone" in warning and "this run was deleted" in warning
    assert "LSTM 1×24" in warning.split("Now selected:")[1]
    assert at.session_state["sample_result"] == before  # nothing generated with the stand-in
    at.button(key="sample_go").click().run()
    # the next click writes with the model now selected, shown as text on the page
    assert not at.warning and at.session_state["sample_result"]["text"] in at.code[0].value


def test_compare_cells_says_how_many_runs_to_delete_first(app_env):
    import dataclasses

    from ui import state

    at = open_page(new_app(), "train")
    reg = state.registry()
    reg.limits = dataclasses.replace(reg.limits, max_runs_per_owner=2)
    at.button(key="train_compare").click().run()
    assert "keeps 0 of at most 2: delete 1 on the Runs page first" in texts(at.error)[0]
    assert reg.owned(at.session_state["owner"]) == []  # all or nothing
