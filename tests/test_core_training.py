"""Trainer: real learning on tiny Shakespeare, reproducibility, divergence, and jobs in threads."""

import math
import time

import pytest
import torch

from charrnn.config import ModelConfig, TrainConfig, estimate_memory_mb
from charrnn.corpus import corpus_from_text
from charrnn.jobs import TrainingJob
from charrnn.training import Trainer, TrainingDiverged

TINY_MODEL = dict(hidden_size=32, embed_size=16)
TINY_TRAIN = dict(batch_size=8, seq_len=16, eval_every=0, sample_every=0, warmup_steps=2)


def test_short_real_training_beats_the_unigram_entropy(shakespeare):
    # a broken trainer cannot get below a context-free model's 4.78 bits per char
    trainer = Trainer(
        shakespeare,
        ModelConfig(hidden_size=128, embed_size=32),
        TrainConfig(
            steps=150,
            batch_size=32,
            seq_len=64,
            lr=1e-2,
            eval_chars=20_000,
            eval_every=0,
            sample_every=0,
        ),
    )
    trainer.run()
    val_bits = trainer.final_val_loss() / math.log(2)
    assert val_bits < shakespeare.unigram_entropy_bits() - 0.8, val_bits
    row = trainer.history[-1]
    assert row.step == 150 and row.chars_per_s > 0 and row.elapsed_s > 0
    assert row.bpc == pytest.approx(row.loss / math.log(2))
    assert row.val_ppl == pytest.approx(math.exp(row.val_loss))


@pytest.mark.parametrize("sampler", ["random", "stream"])
def test_seeded_runs_repeat_exactly(tiny_text, sampler):
    def losses():
        t = Trainer(
            corpus_from_text(tiny_text),
            ModelConfig(dropout=0.3, **TINY_MODEL),
            TrainConfig(steps=6, sampler=sampler, **TINY_TRAIN),
        )
        torch.rand(7)  # whatever else used torch's global generator does not matter
        t.run()
        return [m.loss for m in t.history] + [t.final_val_loss()]

    assert losses() == losses()


@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm"])
def test_seeded_20_steps_same_loss_on_either_backend(tiny_text, cell):
    def final(backend):
        t = Trainer(
            corpus_from_text(tiny_text),
            # no dropout: the two backends draw their masks differently
            ModelConfig(cell=cell, backend=backend, dropout=0.0, **TINY_MODEL),
            TrainConfig(steps=20, precision="fp32", **TINY_TRAIN),
        )
        t.run()
        return t.history[-1].loss

    assert final("scratch") == pytest.approx(final("torch"), abs=1e-4)


def test_nan_loss_stops_with_reason_and_keeps_weights(tiny_text):
    t = Trainer(
        corpus_from_text(tiny_text), ModelConfig(**TINY_MODEL), TrainConfig(steps=5, **TINY_TRAIN)
    )
    t.train_step()
    before = {k: v.clone() for k, v in t.model.state_dict().items()}
    with torch.no_grad():
        t.model.head.bias.fill_(float("nan"))
    nan_bias = t.model.head.bias.clone()
    with pytest.raises(TrainingDiverged, match="lower the learning rate"):
        t.train_step()
    # no optimizer step was taken: everything but the poisoned tensor is as it was
    for k, v in t.model.state_dict().items():
        if k != "head.bias":
            assert torch.equal(v, before[k]), k
    assert torch.equal(t.model.head.bias.isnan(), nan_bias.isnan())


def test_learning_rate_schedule():
    t_cfg = TrainConfig(steps=100, lr=1e-2, warmup_steps=10, min_lr_ratio=0.1)
    t = Trainer.__new__(Trainer)
    t.train_config = t_cfg
    assert t.lr_at(0) == pytest.approx(1e-3)
    assert t.lr_at(10) == pytest.approx(1e-2)
    assert t.lr_at(100) == pytest.approx(1e-3)


def test_memory_estimate_refuses_huge_models(tiny_text):
    big = ModelConfig(hidden_size=1024, num_layers=4)
    train = TrainConfig(batch_size=512, seq_len=1024)
    assert estimate_memory_mb(big, train) > 10_000
    with pytest.raises(ValueError, match="MiB to train, over the"):
        Trainer(corpus_from_text(tiny_text * 100), big, train)


@pytest.mark.parametrize(
    "bad, message",
    [
        ({"steps": 0}, "steps must be between 1 and"),
        ({"sampler": "shuffle"}, "sampler must be one of random, stream"),
        ({"precision": "fp8"}, "precision must be one of auto, fp32, bf16"),
        ({"device": "tpu"}, "device must be one of"),
        ({"lr": 5.0}, "lr must be between"),
    ],
)
def test_train_config_refuses_bad_values(bad, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig(**bad)


def _wait(job, timeout=60):
    deadline = time.monotonic() + timeout
    while job.status in ("queued", "running") and time.monotonic() < deadline:
        job.join(0.1)
    return job.snapshot()


def test_job_runs_in_a_thread_and_saves(tiny_text, tmp_path):
    job = TrainingJob(
        corpus_from_text(tiny_text),
        ModelConfig(**TINY_MODEL),
        TrainConfig(steps=12, sample_every=6, eval_every=6, batch_size=8, seq_len=16),
        tmp_path,
    )
    job._start(threads=1)
    snap = _wait(job)
    assert snap.status == "finished" and snap.step == 12
    assert snap.val_loss is not None and snap.last_sample
    assert job.checkpoint_path.is_file() and snap.checkpoint_path == str(job.checkpoint_path)
    model = job.weights()
    assert model is not None and model is not job.trainer.model


def test_job_stop_keeps_a_checkpoint(tiny_text, tmp_path):
    job = TrainingJob(
        corpus_from_text(tiny_text),
        ModelConfig(**TINY_MODEL),
        TrainConfig(steps=100_000, **TINY_TRAIN),
        tmp_path,
    )
    job._start(threads=1)
    while job.snapshot().step < 2:
        time.sleep(0.02)
    job.stop()
    snap = _wait(job)
    assert snap.status == "stopped" and "stopped at step" in snap.message
    assert job.checkpoint_path.is_file()


def test_exception_in_job_thread_ends_as_failed(tiny_text, tmp_path, monkeypatch):
    job = TrainingJob(
        corpus_from_text(tiny_text),
        ModelConfig(**TINY_MODEL),
        TrainConfig(steps=10, **TINY_TRAIN),
        tmp_path,
    )

    def boom():
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(job.trainer, "train_step", boom)
    job._start(threads=1)
    snap = _wait(job)
    assert snap.status == "failed" and "disk on fire" in snap.message
    assert not job._thread.is_alive()
