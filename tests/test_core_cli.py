"""The command line, as a user runs it: real processes, real files."""

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT


def run(*args, check=True):
    result = subprocess.run(
        [sys.executable, "-m", "charrnn", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
        env=os.environ.copy(),
    )
    if check:
        assert result.returncode == 0, result.stderr
    return result


@pytest.fixture(scope="module")
def trained(tmp_path_factory, shakespeare):
    out = tmp_path_factory.mktemp("cli") / "lstm.safetensors"
    run(
        "train",
        "--corpus",
        "tiny-shakespeare",
        "--cell",
        "lstm",
        "--hidden",
        "32",
        "--layers",
        "2",
        "--seq-len",
        "32",
        "--batch-size",
        "16",
        "--steps",
        "30",
        "--eval-chars",
        "5000",
        "--out",
        str(out),
        "--quiet",
        "--seed",
        "1",
    )
    return out


def test_train_sample_eval_trace(trained):
    text = run("sample", str(trained), "--prime", "ROMEO:", "--length", "50", "--seed", "3").stdout
    assert text.startswith("ROMEO:") and len(text) >= 56
    again = run("sample", str(trained), "--prime", "ROMEO:", "--length", "50", "--seed", "3")
    assert again.stdout == text

    result = json.loads(run("eval", str(trained), "--json").stdout)
    assert set(result) >= {"loss", "bpc", "perplexity", "chars"}
    assert result["chars"] == 111_539 and 1.0 < result["loss"] < 4.2

    tr = json.loads(run("trace", str(trained), "--text", "To be", "--json").stdout)
    assert tr["cell"] == "lstm" and len(tr["layers"]) == 2
    assert len(tr["layers"][0]["f"]) == 5 and len(tr["layers"][0]["f"][0]) == 32


def _one_error_line(result):
    assert result.returncode == 2, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.stderr
    return lines[0]


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["train", "--hidden", "99999"], "hidden_size must be between"),
        (["train", "--cell", "transformer"], "invalid choice"),
        (["train", "--corpus", "/nope.txt"], "no such file"),
        (["train", "--steps", "abc"], "invalid int value"),
        (["train", "--out", "model.pt"], "must end in .safetensors"),
        (["sample", "/nope.safetensors"], "no such checkpoint file"),
        (["frobnicate"], "invalid choice"),
    ],
)
def test_bad_arguments_give_one_error_line(args, fragment):
    assert fragment in _one_error_line(run(*args, check=False))


def test_bad_inputs_with_a_real_checkpoint(trained, tmp_path):
    line = _one_error_line(run("sample", str(trained), "--prime", "ROMEO€", check=False))
    assert "'€'" in line
    line = _one_error_line(run("sample", str(trained), "--temperature", "-2", check=False))
    assert "temperature must be between" in line
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"\x00" * 100)
    assert "not a valid .safetensors" in _one_error_line(run("sample", str(junk), check=False))
    binary = tmp_path / "blob.txt"
    binary.write_bytes(b"abc\x00def" * 100)
    line = _one_error_line(run("train", "--corpus", str(binary), check=False))
    assert "binary data" in line
    short = tmp_path / "short.txt"
    short.write_text("a short text, far too short")
    line = _one_error_line(run("train", "--corpus", str(short), check=False))
    assert "needs at least" in line


def test_prime_escapes_keep_non_ascii_text():
    from charrnn.cli import unescape

    assert unescape("Café\\n") == "Café\n"
    assert unescape("a\\tb\\\\n") == "a\tb\\n"
    assert unescape("ROMEO:") == "ROMEO:"


def test_sample_checks_everything_before_printing(trained):
    result = run("sample", str(trained), "--prime", "Héllo 😀", check=False)
    assert "'é', '😀'" in _one_error_line(result) and result.stdout == ""
    result = run("sample", str(trained), "--seed", str(2**70), check=False)
    assert "--seed must be between 0 and" in _one_error_line(result)
    greedy_all = run("sample", str(trained), "--top-k", "0", "--length", "10", "--seed", "1")
    assert len(greedy_all.stdout) > 10


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["train", "--threads", "0"], "--threads must be between 1 and"),
        (["train", "--out", "/no/such/folder/x.safetensors"], "does not exist; create it first"),
    ],
)
def test_train_refuses_before_any_work(args, fragment):
    result = run(*args, check=False)
    assert fragment in _one_error_line(result) and result.stdout == ""


def test_a_bad_limit_variable_is_one_error_line():
    env = dict(os.environ, CHARRNN_MAX_HIDDEN="abc")
    result = subprocess.run(
        [sys.executable, "-m", "charrnn", "sample", "x.safetensors"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert "CHARRNN_MAX_HIDDEN='abc' is not a whole number" in _one_error_line(result)


def test_a_closed_pipe_is_not_an_error(trained):
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "charrnn",
            "trace",
            str(trained),
            "--text",
            "To be, or not to be" * 20,
            "--json",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    proc.stdout.read(10)
    proc.stdout.close()
    assert proc.wait(timeout=60) == 0 and proc.stderr.read() == b""


def test_eval_record_writes_the_figures_into_the_checkpoint(trained, tmp_path):
    import shutil

    from charrnn import checkpoint

    copy = tmp_path / "copy.safetensors"
    shutil.copyfile(trained, copy)
    before = checkpoint.load(copy)
    shown = json.loads(run("eval", str(copy), "--json", "--record").stdout)
    after = checkpoint.load(copy)
    assert after.info["val"]["loss"] == pytest.approx(shown["loss"])
    assert after.info["created"] == before.info["created"]
    assert after.history == before.history
    assert checkpoint.load(trained).info["val"]["chars"] == shown["chars"]  # set by training
