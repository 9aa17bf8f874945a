"""AppTest: every page renders, its main widgets exist, and bad input is a message, not a
traceback. No training here (see test_app_train.py)."""

import pytest

pytest.register_assert_rewrite("tests.app_fixtures")
from tests.app_fixtures import charts, new_app, open_page, texts  # noqa: E402

pytest_plugins = ["tests.app_fixtures"]


def test_every_page_renders_with_its_main_widgets(app_env):
    at = new_app()
    assert not at.exception
    assert at.title[0].value == "charrnn playground"
    assert len(at.get("page_link")) >= 3  # train, sample, look inside
    assert any("Device:" in m.value for m in at.sidebar.markdown)

    open_page(at, "data")
    assert at.radio(key="data_how").value == "Built-in"
    assert at.selectbox(key="data_preset").value == "tiny-shakespeare"
    assert [m.label for m in at.metric][:2] == ["Characters", "Vocabulary"]
    assert charts(at)[0]["data"][0]["type"] == "bar"

    open_page(at, "train")
    for key in (
        "train_hidden_size",
        "train_num_layers",
        "train_steps",
        "train_seq_len",
        "train_lr",
    ):
        assert at.number_input(key=key) is not None
    assert at.selectbox(key="train_cell").value == "lstm"
    assert at.button(key="train_start") is not None
    assert at.button(key="train_compare") is not None
    assert at.metric[0].label == "Parameters"
    assert any("press Start" in t for t in texts(at.info))
    from charrnn.limits import LIMITS

    hidden_help = at.number_input(key="train_hidden_size").help
    assert hidden_help.endswith(f"from 1 to {LIMITS.max_hidden:,}")
    assert at.number_input(key="train_lr").help.endswith("from 1e-06 to 1")

    open_page(at, "runs")
    assert "No runs yet" in texts(at.info)[0]
    assert at.get("file_uploader")

    # with no bundled checkpoint and no run, both model pages point to Train
    for page in ("sample", "gates"):
        open_page(at, page)
        assert "There is no model yet" in texts(at.info)[0]


def test_owner_token_is_kept_in_the_url(app_env):
    at = new_app()
    token = at.query_params["owner"]
    assert len(token) >= 16
    open_page(at, "runs")
    assert at.query_params["owner"] == token
    # a refresh is a new session holding the same URL: it keeps the same token
    again = new_app({"owner": token})
    assert again.session_state["owner"] == token
    # a malformed token is replaced, not trusted
    other = new_app({"owner": "x<script>"})
    assert other.session_state["owner"] != "x<script>"


def test_parameter_count_follows_the_knobs(app_env):
    at = open_page(new_app(), "train")
    before = at.metric[0].value
    at.number_input(key="train_hidden_size").set_value(32).run()
    after = at.metric[0].value
    assert before != after
    from charrnn.config import ModelConfig

    vocab = len(at.session_state["corpus"].vocab)
    expected = ModelConfig(vocab_size=vocab, hidden_size=32).num_params()
    assert after == f"{expected:,}"


def test_bad_text_upload_is_an_error_in_the_page(app_env):
    at = open_page(new_app(), "data")
    at.radio(key="data_how").set_value("Upload a .txt").run()
    at.file_uploader(key="data_upload").set_value(("junk.txt", b"abc\x00\x01def", "text/plain"))
    at.run()
    assert not at.exception
    assert "binary" in texts(at.error)[0]
    at.file_uploader(key="data_upload").set_value(
        ("latin.txt", "café".encode("latin-1"), "text/plain")
    )
    at.run()
    assert "not valid UTF-8" in texts(at.error)[0]


def test_pasted_text_too_short_for_the_sequence_length(app_env):
    at = open_page(new_app(), "data")
    at.radio(key="data_how").set_value("Paste text").run()
    at.text_area(key="data_paste").input("to be or not to be, that is the question. " * 5)
    at.button(key="data_use_paste").click().run()
    assert not at.error
    assert at.session_state["corpus"].name == "pasted text"
    open_page(at, "train")
    assert any("needs at least" in t for t in texts(at.error))
    assert not [b for b in at.button if b.key == "train_start"]  # no Start without a corpus
    assert not [t for t in texts(at.info) if "press Start" in t]  # and no invitation to press it
    # an empty paste is refused with the core's message
    open_page(at, "data")
    at.text_area(key="data_paste").input("")
    at.button(key="data_use_paste").click().run()
    assert "empty" in texts(at.error)[0]


def test_python_source_corpus_is_offline(app_env):
    at = open_page(new_app(), "data")
    at.selectbox(key="data_preset").set_value("python-source").run()
    assert not at.error
    assert at.session_state["corpus"].name == "python-source"


def test_offline_without_a_cached_shakespeare(app_env, tmp_path, monkeypatch):
    from charrnn import corpus
    from charrnn.corpus import CorpusError

    def offline(url, path, size, sha256, progress):
        raise CorpusError(f"could not download {url} (ConnectionError). Save it as {path}.")

    monkeypatch.setenv("CHARRNN_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.setattr(corpus, "download", offline)
    at = open_page(new_app(), "home")  # the home page needs nothing
    assert not at.error
    open_page(at, "data")
    assert "could not download" in texts(at.error)[0]
    assert "Python-source" in texts(at.info)[0]
    open_page(at, "train")
    assert "Could not load tiny Shakespeare" in texts(at.error)[0]
    # the offline corpus is one click away, and then Train works
    open_page(at, "data")
    at.selectbox(key="data_preset").set_value("python-source").run()
    assert not at.error
    open_page(at, "train")
    assert not at.error and at.metric[0].label == "Parameters"


def test_too_big_a_model_is_refused_before_start(app_env, monkeypatch):
    at = open_page(new_app(), "train")
    at.number_input(key="train_hidden_size").set_value(1024)
    at.number_input(key="train_num_layers").set_value(4)
    at.number_input(key="train_batch_size").set_value(512)
    at.number_input(key="train_seq_len").set_value(1024)
    at.run()
    assert "Too big to train here" in texts(at.error)[0]
    assert not [b for b in at.button if b.key == "train_start"]
    assert not [t for t in texts(at.info) if "press Start" in t]


_BAD_ENV_SCRIPT = """
import json, sys
from streamlit.testing.v1 import AppTest
at = AppTest.from_file(sys.argv[1], default_timeout=60).run()
seen = [[e.value for e in at.error], [str(e.value) for e in at.exception], len(at.title)]
at.switch_page("pages/train.py").run()
seen += [[e.value for e in at.error], [str(e.value) for e in at.exception], len(at.title)]
print(json.dumps(seen))
"""


@pytest.mark.parametrize(
    "name, value", [("CHARRNN_MAX_HIDDEN", "abc"), ("CHARRNN_MAX_STEPS", "-1")]
)
def test_bad_limit_variable_is_one_clear_error_on_every_page(app_env, name, value):
    # charrnn.limits reads the variables once per process, at import: a fresh interpreter
    import json
    import os
    import subprocess
    import sys

    from tests.app_fixtures import APP

    env = {**os.environ, name: value}
    out = subprocess.run(
        [sys.executable, "-c", _BAD_ENV_SCRIPT, APP],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    errors, exceptions, titles, page_errors, page_exceptions, page_titles = json.loads(
        out.stdout.strip().splitlines()[-1]
    )
    for errs, excs, n_titles in (
        (errors, exceptions, titles),
        (page_errors, page_exceptions, page_titles),
    ):
        assert excs == [] and n_titles == 0
        assert len(errs) == 1
        shown = errs[0].replace("\\", "")
        assert f"{name}='{value}'" in shown and "restart the server" in shown, shown
