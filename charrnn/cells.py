"""The recurrent cells written out by hand: Elman RNN, LSTM and GRU.

Each cell function is one time step with one line per equation, using torch's own parameter
layout, so a state_dict of nn.RNN / nn.LSTM / nn.GRU loads into `ScratchRecurrent` unchanged:

    weight_ih_l{k}  (G*H, E or H)   input -> gates, gate blocks stacked in torch's order
    weight_hh_l{k}  (G*H, H)        hidden -> gates
    bias_ih_l{k}, bias_hh_l{k}  (G*H,)
    G = 1 (rnn), 3 (gru: r, z, n), 4 (lstm: i, f, g, o)

Layout: batch-first. x is (B, T, E), each step works on (B, ·), outputs are (B, T, H).
The input half of every gate, x_t @ W_ih^T + b_ih, does not depend on the previous step, so it
is computed for all T steps in one matmul before the loop; the loop then does only the work
that truly is sequential.
"""

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

GATES = {"rnn": 1, "gru": 3, "lstm": 4}
# The intermediates each cell reports to the gate pages, in display order.
TRACE_NAMES = {
    "rnn": ("h",),
    "gru": ("r", "z", "n", "h"),
    "lstm": ("i", "f", "g", "o", "c", "h"),
}


def rnn_cell(xw, h, w_hh, b_hh):
    """Elman RNN. xw = W_ih x_t + b_ih, precomputed. Shapes (B, H)."""
    h = torch.tanh(xw + h @ w_hh.T + b_hh)  # h_t = tanh(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh)
    return h, {"h": h}


def lstm_cell(xw, state, w_hh, b_hh):
    """LSTM. xw = W_ih x_t + b_ih (B, 4H), precomputed; state = (h, c), each (B, H)."""
    h, c = state
    gates = xw + h @ w_hh.T + b_hh  # (B, 4H), the four blocks in torch's order i, f, g, o
    i, f, g, o = gates.chunk(4, dim=1)
    i = torch.sigmoid(i)  # input gate: how much of the candidate to write
    f = torch.sigmoid(f)  # forget gate: how much of the old cell to keep
    g = torch.tanh(g)  # cell candidate: what could be written
    o = torch.sigmoid(o)  # output gate: how much of the cell to show
    c = f * c + i * g  # c_t = f * c_{t-1} + i * g
    h = o * torch.tanh(c)  # h_t = o * tanh(c_t)
    return (h, c), {"i": i, "f": f, "g": g, "o": o, "c": c, "h": h}


def gru_cell(xw, h, w_hh, b_hh):
    """GRU. xw = W_ih x_t + b_ih (B, 3H), precomputed; h is (B, H)."""
    hw = h @ w_hh.T + b_hh  # (B, 3H): W_hr h + b_hr | W_hz h + b_hz | W_hn h + b_hn
    x_r, x_z, x_n = xw.chunk(3, dim=1)
    h_r, h_z, h_n = hw.chunk(3, dim=1)
    r = torch.sigmoid(x_r + h_r)  # reset gate: how much of the past feeds the candidate
    z = torch.sigmoid(x_z + h_z)  # update gate: how much of the old state to keep
    n = torch.tanh(x_n + r * h_n)  # candidate state
    h = (1 - z) * n + z * h  # h_t = (1 - z) * n + z * h_{t-1}
    return h, {"r": r, "z": z, "n": n, "h": h}


CELL_FUNCTIONS = {"rnn": rnn_cell, "gru": gru_cell, "lstm": lstm_cell}
WEIGHT_NAMES = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")


def layer_weights(rnn: nn.Module, k: int) -> tuple[torch.Tensor, ...]:
    """Layer k's (w_ih, w_hh, b_ih, b_hh) from torch's recurrent module or ScratchRecurrent."""
    return tuple(getattr(rnn, f"{name}_l{k}") for name in WEIGHT_NAMES)


class ScratchRecurrent(nn.Module):
    """A drop-in for nn.RNN / nn.GRU / nn.LSTM(batch_first=True) built from the cells above.

    Same parameter names, shapes, initialisation order and state shapes as torch's module, so
    with the same seed both start from identical weights, and either loads the other's
    state_dict.
    """

    def __init__(
        self, cell: str, input_size: int, hidden_size: int, num_layers: int, dropout: float = 0.0
    ):
        super().__init__()
        self.cell, self.hidden_size, self.num_layers, self.dropout = (
            cell,
            hidden_size,
            num_layers,
            dropout,
        )
        G = GATES[cell]
        for k in range(num_layers):
            fan_in = input_size if k == 0 else hidden_size
            shapes = {
                "weight_ih": (G * hidden_size, fan_in),
                "weight_hh": (G * hidden_size, hidden_size),
                "bias_ih": (G * hidden_size,),
                "bias_hh": (G * hidden_size,),
            }
            for name, shape in shapes.items():
                self.register_parameter(f"{name}_l{k}", nn.Parameter(torch.empty(shape)))
        self.reset_parameters()

    def reset_parameters(self):
        # torch's recurrent modules draw every parameter from U(-1/sqrt(H), 1/sqrt(H)) in
        # registration order; doing the same keeps the two backends' seeded weights identical
        bound = 1.0 / math.sqrt(self.hidden_size)
        for p in self.parameters():
            nn.init.uniform_(p, -bound, bound)

    def forward(self, x, state, record: bool = False):
        """x (B, T, E), state as torch's ((L, B, H) or a pair of them).

        Returns out (B, T, H), the new state, and with record=True a list (one per layer) of
        dicts name -> (B, T, H) holding every intermediate of TRACE_NAMES.
        """
        step = CELL_FUNCTIONS[self.cell]
        is_lstm = self.cell == "lstm"
        final_h, final_c, records = [], [], []
        for k in range(self.num_layers):
            w_ih, w_hh, b_ih, b_hh = layer_weights(self, k)
            s = (state[0][k], state[1][k]) if is_lstm else state[k]
            xw = x @ w_ih.T + b_ih  # (B, T, G*H): the input half of every gate, all steps at once
            outs, trail = [], []
            for t in range(x.shape[1]):
                s, inside = step(xw[:, t], s, w_hh, b_hh)
                outs.append(inside["h"])
                if record:
                    trail.append(inside)
            x = torch.stack(outs, dim=1)  # (B, T, H)
            if record:
                records.append({n: torch.stack([d[n] for d in trail], 1) for n in trail[0]})
            final_h.append(s[0] if is_lstm else s)
            final_c.append(s[1] if is_lstm else None)
            if self.training and self.dropout > 0 and k < self.num_layers - 1:
                x = F.dropout(x, self.dropout, training=True)
        h = torch.stack(final_h)  # (L, B, H)
        new_state = (h, torch.stack(final_c)) if is_lstm else h
        return (x, new_state, records) if record else (x, new_state)
