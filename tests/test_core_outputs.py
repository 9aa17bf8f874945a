"""Sampling, gate traces and checkpoints."""

import pickle

import numpy as np
import pytest
import torch

from charrnn import checkpoint
from charrnn.checkpoint import CheckpointError
from charrnn.config import ModelConfig, TrainConfig
from charrnn.corpus import CorpusError, Vocab
from charrnn.model import CharRNN
from charrnn.sampling import generate, next_char_distribution, probabilities, stream
from charrnn.trace import trace
from charrnn.training import build_model, thin_history

VOCAB = Vocab("\n !,.:?ERMOabcdefghilmnorstuw")


def _model(cell="lstm", backend="torch"):
    config = ModelConfig(
        vocab_size=len(VOCAB), cell=cell, hidden_size=24, embed_size=8, backend=backend
    )
    return build_model(config, seed=3).eval()


def test_seeded_sampling_repeats_and_differs_by_seed():
    model = _model()
    a = generate(model, VOCAB, "ROMEO:", 80, 1.0, seed=5)
    assert a == generate(model, VOCAB, "ROMEO:", 80, 1.0, seed=5)
    assert a != generate(model, VOCAB, "ROMEO:", 80, 1.0, seed=6)
    assert a.startswith("ROMEO:") and len(a) == 86
    assert "".join(stream(model, VOCAB, "ROMEO:", 80, 1.0, seed=5)) == a[6:]


def test_draw_follows_the_probabilities_and_skips_impossible_characters():
    import random

    from charrnn.sampling import draw

    probs = torch.tensor([0.0, 0.5, 0.0, 0.3, 0.2, 0.0])
    rng = random.Random(0)
    counts = np.bincount([draw(probs, rng) for _ in range(20_000)], minlength=6) / 20_000
    assert counts[[0, 2, 5]].sum() == 0  # zero probability: never drawn
    np.testing.assert_allclose(counts, probs.numpy(), atol=0.015)
    assert draw(torch.tensor([0.0, 0.0, 1.0]), random.Random(1)) == 2


def test_greedy_and_extreme_temperatures():
    model = _model()
    greedy = generate(model, VOCAB, "a", 30, 0.0)
    assert greedy == generate(model, VOCAB, "a", 30, 0.0, seed=123)  # no randomness at T = 0
    assert generate(model, VOCAB, "a", 30, 0.001, seed=1) == greedy  # T -> 0 tends to argmax
    logits = torch.tensor([50.0, -50.0, 0.0])
    for t in (0.001, 1.0, 100.0):
        p = probabilities(logits, t)
        assert torch.isfinite(p).all() and p.sum().item() == pytest.approx(1.0)
    assert probabilities(logits, 100.0).max() < 0.55  # much flatter than at T = 1
    assert probabilities(logits, 0.0).tolist() == [1.0, 0.0, 0.0]


def test_top_k_limits_the_choices():
    p = probabilities(torch.tensor([3.0, 2.0, 1.0, 0.0]), 1.0, top_k=2)
    assert (p[2:] == 0).all() and p[:2].sum().item() == pytest.approx(1.0)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(prime=""), "prime text is empty"),
        (dict(prime="ROMEO€✓"), r"does not know these characters: '€', '✓'"),
        (dict(temperature=-1.0), "temperature must be between 0.0 and 100.0"),
        (dict(top_k=0), "top_k must be between 1"),
        (dict(length=10**9), "length must be between 0 and"),
    ],
)
def test_bad_sampling_arguments(kwargs, message):
    args = dict(prime="ROMEO:", length=10, temperature=1.0, top_k=None) | kwargs
    with pytest.raises(ValueError, match=message):
        generate(_model(), VOCAB, **args)


def test_next_char_distribution_sums_to_one():
    dist = next_char_distribution(_model(), VOCAB, "ROMEO", temperature=0.7)
    assert len(dist) == len(VOCAB) and sum(p for _, p in dist) == pytest.approx(1.0, abs=1e-5)
    assert dist[0][1] >= dist[-1][1]


@pytest.mark.parametrize(
    "cell, names",
    [("lstm", ["i", "f", "g", "o", "c", "h"]), ("gru", ["r", "z", "n", "h"]), ("rnn", ["h"])],
)
def test_trace_records_every_gate_and_matches_the_model(cell, names):
    model = _model(cell)
    text = "ROMEO: a rose, sir!"
    tr = trace(model, VOCAB, text)
    assert len(tr.layers) == 2 and list(tr.layers[0]) == names
    for layer in tr.layers:
        for values in layer.values():
            assert values.shape == (len(text), 24)
    # the trace's probabilities are the torch model's own
    with torch.no_grad():
        probs = torch.softmax(model(VOCAB.encode(text)[None])[0][0], -1)
    expected = probs[:-1].gather(1, VOCAB.encode(text)[1:, None])[:, 0].numpy()
    np.testing.assert_allclose(tr.next_char_prob, expected, atol=1e-5)
    sat = tr.saturation(0)
    assert set(sat) == {n for n in names if n in "ifozr"}
    for left, right in sat.values():
        assert ((0 <= left) & (left <= 1) & (left + right <= 1)).all()


@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm"])
def test_trace_equals_stepping_the_hand_written_cells(cell):
    # the trace takes h from torch's kernel and evaluates the cells over all steps at once;
    # the reference steps the cells one character at a time, as the equations read
    from charrnn.model import make_recurrent

    model = _model(cell)
    text = "ROMEO: a rose, sir! " * 3
    tr = trace(model, VOCAB, text)
    scratch = make_recurrent(model.config, backend="scratch").eval()
    scratch.load_state_dict(model.rnn.state_dict())
    with torch.no_grad():
        x = model.embed(VOCAB.encode(text)[None])
        _, _, records = scratch(x, model.init_state(1), record=True)
    for layer, reference in zip(tr.layers, records, strict=True):
        for name, values in layer.items():
            np.testing.assert_allclose(values, reference[name][0].numpy(), atol=1e-5)


def test_trace_refuses_empty_long_and_unknown_text():
    model = _model()
    with pytest.raises(CorpusError, match="empty"):
        trace(model, VOCAB, "")
    with pytest.raises(CorpusError, match="limited to"):
        trace(model, VOCAB, "a" * 100_000)
    with pytest.raises(CorpusError, match="'Z'"):
        trace(model, VOCAB, "aZ")


# --- checkpoints -------------------------------------------------------------------------------


def _saved(tmp_path, cell="gru"):
    model = _model(cell)
    path = checkpoint.save(
        tmp_path / "m.safetensors",
        model,
        VOCAB,
        train_config=TrainConfig(steps=3),
        history=[{"step": 1, "loss": 3.0, "val_loss": 2.5}],
        corpus={"name": "x", "sha256": "ab"},
        info={"command": "test"},
    )
    return model, path


def test_checkpoint_round_trip(tmp_path):
    model, path = _saved(tmp_path)
    ck = checkpoint.load(path)
    assert ck.vocab == VOCAB and ck.model_config == model.config
    assert ck.train_config.steps == 3 and ck.final_val_loss() == 2.5
    assert ck.corpus["name"] == "x" and ck.info["command"] == "test"
    assert ck.info["torch_version"] == torch.__version__
    idx = VOCAB.encode("ROMEO")[None]
    torch.testing.assert_close(ck.model(idx)[0], model(idx)[0])
    assert not list(tmp_path.glob("*.tmp"))  # the atomic write left no temp file


def test_history_is_thinned_but_keeps_evaluations():
    rows = [
        {"step": i, "loss": 1.0, "val_loss": 1.0 if i % 1000 == 0 else None} for i in range(10_000)
    ]
    kept = thin_history(rows, 500)
    assert len(kept) < 600 and kept[-1]["step"] == 9999
    assert sum(r["val_loss"] is not None for r in kept) == 10


def test_refuses_files_that_are_not_checkpoints(tmp_path):
    _, path = _saved(tmp_path)
    data = path.read_bytes()
    cases = {
        "truncated": data[: len(data) // 2],
        "random": np.random.default_rng(0).bytes(5000),
        "tiny": b"abc",
        "pickle": pickle.dumps({"weights": [1, 2, 3]}),
    }
    messages = {
        "truncated": "not a valid .safetensors",
        "random": "not a valid .safetensors",
        "tiny": "not a checkpoint",
        "pickle": "pickle",
    }
    for name, blob in cases.items():
        with pytest.raises(CheckpointError, match=messages[name]):
            checkpoint.from_bytes(blob, name)


def test_refuses_torch_save_pickles(tmp_path):
    path = tmp_path / "model.pt"
    torch.save(_model().state_dict(), path)
    with pytest.raises(CheckpointError, match="pickle"):
        checkpoint.load(path)


def test_refuses_foreign_or_inconsistent_safetensors(tmp_path):
    from safetensors.torch import save

    foreign = save({"w": torch.zeros(2)}, metadata={"format": "pt"})
    with pytest.raises(CheckpointError, match="not a charrnn checkpoint"):
        checkpoint.from_bytes(foreign)

    model = _model()
    good = checkpoint.to_bytes(model, VOCAB)
    # weights that do not fit the config
    bigger = CharRNN(ModelConfig(vocab_size=len(VOCAB), hidden_size=32, embed_size=8))
    wrong = checkpoint.to_bytes(bigger, VOCAB)
    meta = checkpoint._read_metadata(good)
    tensors = {k: v for k, v in bigger.state_dict().items()}
    with pytest.raises(CheckpointError, match="expected float32"):
        checkpoint.from_bytes(save(tensors, metadata=meta))
    assert checkpoint.from_bytes(wrong).model_config.hidden_size == 32
    # a vocabulary that disagrees with the model
    bad_vocab = dict(meta, vocab='["a", "b"]')
    with pytest.raises(CheckpointError, match="vocabulary has 2 characters"):
        checkpoint.from_bytes(save(dict(model.state_dict()), metadata=bad_vocab))
    # a config outside the limits
    bad_cfg = dict(
        meta,
        model_config=meta["model_config"].replace('"hidden_size": 24', '"hidden_size": 999999'),
    )
    with pytest.raises(CheckpointError, match="hidden_size must be between"):
        checkpoint.from_bytes(save(dict(model.state_dict()), metadata=bad_cfg))
    # NaN weights
    poisoned = dict(model.state_dict())
    poisoned["head.bias"] = torch.full_like(poisoned["head.bias"], float("nan"))
    with pytest.raises(CheckpointError, match="NaN"):
        checkpoint.from_bytes(save(poisoned, metadata=meta))


def test_checkpoint_made_on_another_device_loads_on_cpu(tmp_path):
    # safetensors stores plain bytes; saving always goes through the CPU, loading lands there
    model, path = _saved(tmp_path, "lstm")
    assert checkpoint.load(path).model.device.type == "cpu"


@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm"])
@pytest.mark.parametrize("backend", ["torch", "scratch"])
def test_fast_stepper_matches_the_full_forward(cell, backend):
    from charrnn.sampling import Stepper

    model = _model(cell, backend)
    idx = VOCAB.encode("ROMEO: a rose")
    with torch.no_grad():
        full = model(idx[None])[0][0]  # (T, V)
        stepper = Stepper(model, model.init_state(1))
        stepped = torch.stack([stepper(int(i)) for i in idx])
    torch.testing.assert_close(stepped, full, atol=1e-5, rtol=0)
