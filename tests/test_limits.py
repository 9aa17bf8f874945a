"""Every limit: read from the environment, and refused with the reason and the allowed value."""

import dataclasses

import pytest
import torch

from charrnn.checkpoint import CheckpointError, from_bytes
from charrnn.config import ModelConfig, TrainConfig
from charrnn.corpus import CorpusError, Vocab
from charrnn.limits import LIMITS, REASONS, Limits, available_cores, check_range, env_name
from charrnn.model import CharRNN
from charrnn.sampling import generate
from charrnn.trace import trace


def test_every_field_has_an_env_variable(monkeypatch):
    monkeypatch.setenv("CHARRNN_MAX_HIDDEN", "64")
    monkeypatch.setenv("CHARRNN_MAX_JOBS", "3")
    monkeypatch.setenv("CHARRNN_RUN_TTL_S", " ")  # blank: the default
    lim = Limits.from_env()
    assert lim.max_hidden == 64 and lim.running_slots() == 3
    assert lim.run_ttl_s == Limits.run_ttl_s
    assert env_name("max_active_per_owner") == "CHARRNN_MAX_ACTIVE_PER_OWNER"


@pytest.mark.parametrize("raw, message", [("lots", "not a whole number"), ("-1", "negative")])
def test_bad_env_values_are_refused(monkeypatch, raw, message):
    monkeypatch.setenv("CHARRNN_MAX_QUEUE", raw)
    with pytest.raises(ValueError, match=f"CHARRNN_MAX_QUEUE={raw!r} .*{message}"):
        Limits.from_env()


def test_automatic_slots_and_threads_follow_the_cores(monkeypatch):
    cores = available_cores()
    assert 1 <= cores <= (torch.get_num_threads() + 64)
    auto = dataclasses.replace(LIMITS, max_jobs=0, torch_threads=0)
    assert auto.running_slots() == max(1, cores // 2)
    assert auto.thread_budget() == max(1, cores - 1)
    monkeypatch.setenv("CPU_CORES", "1")  # what a Space says about itself
    assert available_cores() == 1


def test_every_refusal_reason_is_a_limit():
    names = {f.name for f in dataclasses.fields(Limits)}
    assert set(REASONS) <= names


def test_check_range_says_why_only_above_the_bound():
    with pytest.raises(ValueError, match=r"between 1 and 4, got 9\. .*CHARRNN_MAX_LAYERS"):
        check_range("num_layers", 9, 1, 4, limit="max_layers")
    with pytest.raises(ValueError, match=r"got 0\.$"):
        check_range("num_layers", 0, 1, 4, limit="max_layers")


BIG = 10**7


@pytest.mark.parametrize(
    "build, allowed",
    [
        (lambda: ModelConfig(hidden_size=BIG), f"between 1 and {LIMITS.max_hidden}"),
        (lambda: ModelConfig(num_layers=BIG), f"between 1 and {LIMITS.max_layers}"),
        (lambda: ModelConfig(embed_size=BIG), f"between 1 and {LIMITS.max_embed}"),
        (lambda: ModelConfig(vocab_size=BIG), f"between 2 and {LIMITS.max_vocab}"),
        (lambda: TrainConfig(seq_len=BIG), f"between 1 and {LIMITS.max_seq_len}"),
        (lambda: TrainConfig(batch_size=BIG), f"between 1 and {LIMITS.max_batch}"),
        (lambda: TrainConfig(steps=BIG), f"between 1 and {LIMITS.max_steps}"),
        (lambda: TrainConfig(sample_length=BIG), f"between 1 and {LIMITS.max_generate}"),
    ],
)
def test_config_limits_say_the_allowed_value_and_why(build, allowed):
    with pytest.raises(ValueError, match=allowed) as err:
        build()
    assert "because" in str(err.value) and "CHARRNN_MAX_" in str(err.value)


VOCAB = Vocab.from_text("abc ")


def _model():
    return CharRNN(ModelConfig(vocab_size=len(VOCAB), cell="rnn", hidden_size=4, embed_size=2))


def test_generation_prime_and_trace_limits_say_why():
    with pytest.raises(ValueError, match=f"and {LIMITS.max_generate}, got .*CHARRNN_MAX_GEN"):
        generate(_model(), VOCAB, "a", LIMITS.max_generate + 1, 1.0)
    with pytest.raises(CorpusError, match=f"limit is {LIMITS.max_prime:,} because .*PRIME"):
        generate(_model(), VOCAB, "a" * (LIMITS.max_prime + 1), 1, 1.0)
    with pytest.raises(CorpusError, match=f"{LIMITS.max_trace_chars:,} because .*TRACE_CHARS"):
        trace(_model(), VOCAB, "a" * (LIMITS.max_trace_chars + 1))


def test_memory_and_upload_limits_say_why():
    from charrnn.corpus import corpus_from_text
    from charrnn.training import Trainer

    big = ModelConfig(hidden_size=1024, num_layers=4)
    train = TrainConfig(batch_size=512, seq_len=1024)
    with pytest.raises(ValueError, match=r"MiB limit, because .*CHARRNN_MAX_MODEL_MB"):
        Trainer(corpus_from_text("abcd efgh " * 20000), big, train)
    too_big = b"\0" * (LIMITS.max_upload_mb * 2**20 + 1)
    with pytest.raises(CheckpointError, match=r"limit for checkpoints, because .*UPLOAD_MB"):
        from_bytes(too_big)
