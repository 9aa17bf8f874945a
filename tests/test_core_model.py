"""The hand-written cells against torch's own modules: same outputs, states and gradients."""

import pytest
import torch

from charrnn.cells import ScratchRecurrent
from charrnn.config import ModelConfig
from charrnn.model import TORCH_MODULES, CharRNN, with_backend
from charrnn.state import detach_state, layer_state, state_to, zero_state
from charrnn.training import build_model

CELLS = ["rnn", "gru", "lstm"]


def _pair(cell, E=12, H=20, L=2):
    torch.manual_seed(0)
    ref = TORCH_MODULES[cell](E, H, L, batch_first=True).double()
    ours = ScratchRecurrent(cell, E, H, L).double()
    ours.load_state_dict(ref.state_dict())  # same names and shapes: loads with no conversion
    return ref, ours


def _random_state(cell, L, B, H):
    h = torch.randn(L, B, H, dtype=torch.float64)
    return (h, torch.randn_like(h)) if cell == "lstm" else h


@pytest.mark.parametrize("cell", CELLS)
def test_scratch_matches_torch_outputs_states_and_gradients(cell):
    B, T, E, H, L = 3, 50, 12, 20, 2
    ref, ours = _pair(cell, E, H, L)
    x = torch.randn(B, T, E, dtype=torch.float64)
    state = _random_state(cell, L, B, H)
    x_ref, x_ours = x.clone().requires_grad_(), x.clone().requires_grad_()
    out_ref, st_ref = ref(x_ref, state)
    out_ours, st_ours = ours(x_ours, state)
    torch.testing.assert_close(out_ours, out_ref, atol=1e-5, rtol=0)
    for a, b in zip(
        torch.utils._pytree.tree_leaves(st_ours),
        torch.utils._pytree.tree_leaves(st_ref),
        strict=True,
    ):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=0)

    # gradients through outputs and final state, for inputs and every parameter
    def total(out, st):
        return out.sum() + sum(s.pow(2).sum() for s in torch.utils._pytree.tree_leaves(st))

    total(out_ref, st_ref).backward()
    total(out_ours, st_ours).backward()
    torch.testing.assert_close(x_ours.grad, x_ref.grad, atol=1e-5, rtol=0)
    ref_params = dict(ref.named_parameters())
    for name, p in ours.named_parameters():
        torch.testing.assert_close(p.grad, ref_params[name].grad, atol=1e-5, rtol=0, msg=name)


@pytest.mark.parametrize("cell", CELLS)
def test_float32_parity_within_1e_5(cell):
    torch.manual_seed(1)
    ref = TORCH_MODULES[cell](16, 32, 2, batch_first=True)
    ours = ScratchRecurrent(cell, 16, 32, 2)
    ours.load_state_dict(ref.state_dict())
    x = torch.randn(2, 50, 16)
    out_ref, _ = ref(x)
    out_ours, _ = ours(x, zero_state(cell, 2, 2, 32, x))
    torch.testing.assert_close(out_ours, out_ref, atol=1e-5, rtol=0)


@pytest.mark.parametrize("cell", CELLS)
def test_same_seed_same_weights_on_both_backends(cell):
    a = build_model(ModelConfig(cell=cell, hidden_size=24, backend="torch"), seed=7)
    b = build_model(ModelConfig(cell=cell, hidden_size=24, backend="scratch"), seed=7)
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k


def test_model_shapes_and_backend_swap():
    model = CharRNN(ModelConfig(vocab_size=30, hidden_size=16, embed_size=8, cell="lstm")).eval()
    idx = torch.randint(30, (4, 9))
    logits, loss, state = model(idx, idx)
    assert logits.shape == (4, 9, 30) and loss.ndim == 0
    assert state[0].shape == state[1].shape == (2, 4, 16)
    twin = with_backend(model, "scratch").eval()  # eval: the default dropout is off
    torch.testing.assert_close(twin(idx)[0], logits, atol=1e-5, rtol=0)
    assert model.num_params() == model.config.num_params()


@pytest.mark.parametrize("cell", CELLS)
def test_param_count_formula(cell):
    config = ModelConfig(vocab_size=50, cell=cell, hidden_size=33, num_layers=3, embed_size=7)
    assert CharRNN(config).num_params() == config.num_params()


def test_state_helpers_take_either_shape():
    h = torch.ones(2, 3, 4, requires_grad=True)
    pair = (h * 2, h * 3)
    assert not detach_state(pair)[0].requires_grad
    assert detach_state(h * 1).requires_grad is False
    assert layer_state(pair, 1)[1].shape == (3, 4)
    assert state_to(None, "cpu") is None
    assert isinstance(zero_state("lstm", 2, 3, 4, h), tuple)
    assert zero_state("gru", 2, 3, 4, h).shape == (2, 3, 4)


@pytest.mark.parametrize(
    "bad, message",
    [
        ({"cell": "transformer"}, "cell must be one of rnn, gru, lstm"),
        ({"hidden_size": 0}, "hidden_size must be between 1 and"),
        ({"num_layers": 99}, "num_layers must be between 1 and"),
        ({"backend": "cuda"}, "backend must be one of torch, scratch"),
    ],
)
def test_model_config_refuses_bad_values(bad, message):
    with pytest.raises(ValueError, match=message):
        ModelConfig(**bad)
