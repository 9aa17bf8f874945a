"""Recurrent state, handled the same way for every cell.

An RNN or GRU carries one tensor h of shape (L, B, H); an LSTM carries a pair (h, c) of two
such tensors. Every function here accepts either shape, so no caller needs to ask which cell
it has (forgetting the pair is how char-rnn.pytorch's LSTM-on-CUDA crash happened).
"""

import torch

State = torch.Tensor | tuple[torch.Tensor, torch.Tensor] | None


def map_state(state: State, fn) -> State:
    """Apply fn to every tensor in the state, keeping its shape (tensor, pair or None)."""
    if state is None:
        return None
    if isinstance(state, tuple):
        return tuple(fn(s) for s in state)
    return fn(state)


def detach_state(state: State) -> State:
    """Cut the graph behind the state: truncated backprop through time."""
    return map_state(state, lambda s: s.detach())


def state_to(state: State, device) -> State:
    return map_state(state, lambda s: s.to(device))


def layer_state(state: State, layer: int) -> State:
    """The state of one layer: (B, H), or an (h, c) pair of (B, H)."""
    return map_state(state, lambda s: s[layer])


def zero_state(cell: str, num_layers: int, batch: int, hidden: int, like: torch.Tensor) -> State:
    """A zero state on the device and dtype of `like` (a parameter of the model)."""
    h = like.new_zeros(num_layers, batch, hidden)
    return (h, h.clone()) if cell == "lstm" else h
