"""The owner's workspace: a refresh (a new session with the same ?owner= link) gets back the
chosen corpus and the Train settings; another owner never sees them."""

import pytest

pytest.register_assert_rewrite("tests.app_fixtures")
from tests.app_fixtures import new_app, open_page, texts  # noqa: E402

pytest_plugins = ["tests.app_fixtures"]

PASTED = "To be, or not to be, that is the question: whether 'tis nobler in the mind. " * 40


def test_refresh_keeps_the_corpus_and_train_settings(app_env):
    at = open_page(new_app(), "data")
    token = at.query_params["owner"]
    at.radio(key="data_how").set_value("Paste text").run()
    at.text_area(key="data_paste").input(PASTED)
    at.button(key="data_use_paste").click().run()
    assert not at.error
    open_page(at, "train")
    at.number_input(key="train_hidden_size").set_value(48)
    at.selectbox(key="train_cell").set_value("gru")
    at.run()

    # a refresh: a new session holding the same URL
    again = new_app({"owner": token})
    assert again.session_state["corpus"].text == PASTED
    open_page(again, "train")
    assert again.number_input(key="train_hidden_size").value == 48
    assert again.selectbox(key="train_cell").value == "gru"
    assert any("pasted text" in t for t in texts(again.caption))
    # the Data page shows the same choice, and does not swap it for the built-in default
    open_page(again, "data")
    assert again.radio(key="data_how").value == "Paste text"
    assert again.session_state["corpus"].text == PASTED

    # another owner (a new link) starts from the defaults
    other = open_page(new_app(), "train")
    assert other.query_params["owner"] != token
    assert other.session_state["corpus"].name == "tiny-shakespeare"
    assert other.number_input(key="train_hidden_size").value != 48
    assert other.selectbox(key="train_cell").value == "lstm"


def test_workspace_store_is_per_owner_bounded_and_expires(monkeypatch):
    from charrnn.corpus import corpus_from_text
    from ui import state

    clock = [1000.0]
    monkeypatch.setattr(state.time, "monotonic", lambda: clock[0])
    store = state.WorkspaceStore(ttl_s=60, max_owners=3, max_chars=2 * len(PASTED))
    text = corpus_from_text(PASTED, "pasted text")
    store.save_corpus("alice" * 4, text, "pasted text")
    store.save_train("alice" * 4, {"train_hidden_size": 64})
    assert store.get("bob" * 6) is None
    got = store.get("alice" * 4)
    assert got.corpus is text and got.train == {"train_hidden_size": 64}
    got.train["train_hidden_size"] = 1  # a copy: the stored entry is unchanged
    assert store.get("alice" * 4).train == {"train_hidden_size": 64}

    # the text budget: a third long text pushes the least recently used owner out
    store.save_corpus("bob" * 6, text, "pasted text")
    store.save_corpus("carol" * 4, text, "pasted text")
    assert store.get("alice" * 4) is None and store.get("carol" * 4) is not None
    # the owner count
    for name in ("d", "e", "f"):
        store.save_train(name * 20, {})
    assert len(store._items) == 3
    # the TTL: untouched for longer than ttl_s, gone
    clock[0] += 61
    assert store.get("f" * 20) is None and not store._items
