"""Run files: names from users never leave their folder; owners get hashed folders."""

import os

import pytest

from charrnn.jobs import TrainingJob
from charrnn.storage import RunStore, clean_label, inside, owner_key, safe_name


@pytest.mark.parametrize(
    "name, expected",
    [
        ("../../etc/passwd", "etc-passwd"),
        ("/abs/path.safetensors", "abs-path.safetensors"),
        ("..", "run"),
        ("", "run"),
        (".bashrc", "bashrc"),
        ("CON", "run"),
        ("nul.txt", "run"),
        ("a\\b\\..\\c", "a-b-c"),
        ("été run #1", "ete-run-1"),
        ("名前", "run"),
        ("x\x00y", "x-y"),
        ("a" * 300, "a" * 64),
    ],
)
def test_safe_name(name, expected):
    assert safe_name(name) == expected
    assert "/" not in safe_name(name) and not safe_name(name).startswith(".")


def test_paths_cannot_escape_their_folder(tmp_path):
    store = RunStore(tmp_path / "runs")
    for name in ["../../x", "/etc/passwd", "..", "a/../../b", "~/.ssh/id_rsa"]:
        path = store.path_for("owner", name)
        assert store.owner_dir("owner") in path.parents
    with pytest.raises(ValueError, match="leaves its folder"):
        inside(tmp_path, "..", "elsewhere")
    with pytest.raises(ValueError, match="leaves its folder"):
        inside(tmp_path, "/etc")
    # a symlink planted in the folder does not lead out of it either
    os.symlink("/", tmp_path / "link")
    with pytest.raises(ValueError, match="leaves its folder"):
        inside(tmp_path, "link", "etc")


def test_owner_folders_are_hashed_and_distinct(tmp_path):
    store = RunStore(tmp_path)
    a, b = store.owner_dir("alice-token"), store.owner_dir("bob-token")
    assert a != b and a.name == owner_key("alice-token") and "alice" not in a.name
    assert store.owner_dir("é€🙂").parent == store.root  # any string is a valid owner


def test_a_given_runs_dir_is_never_removed_and_only_our_files_are_swept(tmp_path):
    store = RunStore(tmp_path)
    mine = store.path_for("o", "abc.safetensors")
    mine.write_bytes(b"1")
    theirs = tmp_path / "someone-elses" / "old.safetensors"  # not a hashed owner folder
    theirs.parent.mkdir()
    theirs.write_bytes(b"2")
    assert store.usage_bytes() == 2
    assert store.sweep(keep=set(), older_than_s=0, now=10**12) == 1
    assert not mine.exists() and theirs.exists()
    store.close()
    assert tmp_path.exists()


def test_temp_runs_dir_is_removed_on_close(monkeypatch):
    monkeypatch.delenv("CHARRNN_RUNS_DIR", raising=False)
    store = RunStore()
    assert store.owns_root and store.root.is_dir()
    store.close()
    assert not store.root.exists()


def test_runs_dir_from_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("CHARRNN_RUNS_DIR", str(tmp_path / "from-env"))
    store = RunStore()
    assert store.root == (tmp_path / "from-env").resolve() and not store.owns_root


def test_display_names_are_cleaned_and_download_names_safe(tiny_text):
    from charrnn.config import ModelConfig, TrainConfig
    from charrnn.corpus import corpus_from_text

    assert clean_label("a\nb\x1b[31m  c", 80) == "a b [31m c"
    job = TrainingJob(
        corpus_from_text(tiny_text),
        ModelConfig(cell="rnn", hidden_size=4, embed_size=2),
        TrainConfig(steps=1, batch_size=2, seq_len=8),
        name="../../" + "x" * 500,
    )
    assert len(job.name) <= 80
    assert job.download_name().endswith(".safetensors") and "/" not in job.download_name()


def test_an_unwritable_runs_dir_is_refused_with_the_variable(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(RuntimeError, match="point CHARRNN_RUNS_DIR at a writable folder"):
        RunStore(blocker / "runs")
