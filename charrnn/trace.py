"""What happens inside: every gate of every layer on every character of a text.

Every number drawn comes from the hand-written cells of `cells.py` with the model's own
weights, whatever backend trained it: the equations a student reads. Stepping those cells one
character at a time costs about 0.1 ms a step in Python overhead alone, so a trace goes in two
passes per layer. Torch's fused kernel runs the layer over the text and gives its hidden state
at every step; with those known, the cell function runs once over all T steps as a batch, each
row being one step's state. Only an LSTM's cell state c needs a loop of its own (one
multiply-add a step). A test checks this against stepping the cells.
Layout: one sequence, batch 1; every intermediate comes out as (T, H), time by unit.
"""

from dataclasses import dataclass

import numpy as np
import torch

from .cells import CELL_FUNCTIONS, TRACE_NAMES, WEIGHT_NAMES, layer_weights
from .corpus import CorpusError, Vocab
from .limits import LIMITS, why
from .model import TORCH_MODULES, CharRNN


@dataclass
class Trace:
    """chars: the T input characters. layers[k][name]: (T, H) array for layer k (names from
    cells.TRACE_NAMES, e.g. i f g o c h for an LSTM). next_char_prob[t]: the model's probability
    of chars[t + 1] after reading chars[: t + 1] (T - 1 values). top_next[t]: its most likely
    next character at t."""

    cell: str
    chars: list[str]
    layers: list[dict[str, np.ndarray]]
    next_char_prob: np.ndarray
    top_next: list[str]

    def saturation(self, layer: int, low: float = 0.1, high: float = 0.9) -> dict:
        """For each gate of a layer, each unit's fraction of time below `low` and above `high`
        (Karpathy, Johnson & Fei-Fei 2015). Gate name -> (left (H,), right (H,))."""
        gates = [n for n in self.layers[layer] if n in ("i", "f", "o", "r", "z")]
        out = {}
        for name in gates:
            values = self.layers[layer][name]  # (T, H)
            out[name] = ((values < low).mean(axis=0), (values > high).mean(axis=0))
        return out

    def to_dict(self) -> dict:
        """Plain lists, for JSON."""
        return {
            "cell": self.cell,
            "chars": self.chars,
            "layers": [{n: v.round(5).tolist() for n, v in layer.items()} for layer in self.layers],
            "next_char_prob": self.next_char_prob.round(5).tolist(),
            "top_next": self.top_next,
        }


@torch.inference_mode()
def trace(model: CharRNN, vocab: Vocab, text: str) -> Trace:
    """Run `text` through the model and record every intermediate of every layer."""
    if not text:
        raise CorpusError("the text to trace is empty: type a line for the model to read")
    if len(text) > LIMITS.max_trace_chars:
        raise CorpusError(
            f"the text is {len(text):,} characters; traces are limited to "
            f"{LIMITS.max_trace_chars:,} because {why('max_trace_chars')}: shorten it"
        )
    idx = vocab.encode(text)[None].to(model.device)  # (1, T)
    x = model.embed(idx)[0]  # (T, E)
    state = model.init_state(1)
    records = []
    for k in range(model.config.num_layers):
        start = (state[0][k], state[1][k]) if model.config.cell == "lstm" else (state[k],)
        records.append(_trace_layer(model, k, x, start))
        x = records[-1]["h"]  # (T, H): the next layer's input
    probs = torch.softmax(model.head(x).float(), dim=-1)  # (T, V)

    layers = [
        {n: rec[n].float().cpu().numpy() for n in TRACE_NAMES[model.config.cell]} for rec in records
    ]
    actual_next = idx[0, 1:]
    next_prob = probs[:-1].gather(1, actual_next[:, None])[:, 0].cpu().numpy()
    top = [vocab.chars[i] for i in probs.argmax(dim=1).tolist()]
    return Trace(model.config.cell, list(text), layers, next_prob, top)


def _trace_layer(model: CharRNN, k: int, x: torch.Tensor, start: tuple) -> dict:
    """Every intermediate of layer k over the inputs x (T, E or H), from the state `start`
    ((h0,) or (h0, c0), each (1, H)): name -> (T, H)."""
    cell, w_ih, w_hh, b_ih, b_hh = model.config.cell, *layer_weights(model.rnn, k)
    hs = _hidden_states(cell, (w_ih, w_hh, b_ih, b_hh), x, start)  # (T, H)
    h_prev = torch.cat([start[0], hs[:-1]])  # row t: the state step t starts from
    xw = x @ w_ih.T + b_ih  # (T, G*H), as ScratchRecurrent computes it
    step = CELL_FUNCTIONS[cell]
    if cell != "lstm":
        return step(xw, h_prev, w_hh, b_hh)[1]
    # i, f, g, o do not depend on the old c; c_t = f_t * c_{t-1} + i_t * g_t does
    gates = step(xw, (h_prev, torch.zeros_like(h_prev)), w_hh, b_hh)[1]
    c = _running_cell_state(gates["f"], gates["i"] * gates["g"], start[1])
    return step(xw, (h_prev, torch.cat([start[1], c[:-1]])), w_hh, b_hh)[1]


def _hidden_states(cell: str, weights, x: torch.Tensor, start: tuple) -> torch.Tensor:
    """h_t for every t (T, H), from torch's fused one-layer kernel with these weights."""
    w_ih, w_hh = weights[0], weights[1]
    layer = TORCH_MODULES[cell](w_ih.shape[1], w_hh.shape[1], 1, batch_first=True)
    layer.load_state_dict({f"{n}_l0": w for n, w in zip(WEIGHT_NAMES, weights, strict=True)})
    layer = layer.to(x.device)
    state = tuple(s[None] for s in start)  # (1, 1, H) each
    return layer(x[None], state if cell == "lstm" else state[0])[0][0]


def _running_cell_state(f: torch.Tensor, ig: torch.Tensor, c0: torch.Tensor) -> torch.Tensor:
    """c_t = f_t * c_{t-1} + (i * g)_t for t = 0 .. T-1, from c0 (1, H): (T, H). A NumPy loop,
    because at (H,) a NumPy multiply-add costs about a microsecond and a torch one several."""
    f_np, ig_np = f.float().cpu().numpy(), ig.float().cpu().numpy()
    c, prev = np.empty_like(f_np), c0[0].float().cpu().numpy()
    for t in range(len(f_np)):
        prev = c[t] = f_np[t] * prev + ig_np[t]
    return torch.from_numpy(c).to(f.device, f.dtype)
