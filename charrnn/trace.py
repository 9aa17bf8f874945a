"""What happens inside: every gate of every layer on every character of a text.

The text runs through the hand-written cells of `cells.py` with the model's own weights,
whatever backend trained it, so the numbers drawn are the equations a student reads.
Layout: one sequence, batch 1; every intermediate comes out as (T, H), time by unit.
"""

from dataclasses import dataclass

import numpy as np
import torch

from .cells import TRACE_NAMES
from .corpus import CorpusError, Vocab
from .limits import LIMITS, why
from .model import CharRNN, make_recurrent


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

    # the scratch twin of the model's recurrent stack, holding the very same weights
    scratch = make_recurrent(model.config, backend="scratch").to(model.device).eval()
    scratch.load_state_dict(model.rnn.state_dict())
    x = model.embed(idx)  # (1, T, E)
    out, _, records = scratch(x, model.init_state(1), record=True)
    probs = torch.softmax(model.head(out)[0].float(), dim=-1)  # (T, V)

    layers = [
        {n: rec[n][0].float().cpu().numpy() for n in TRACE_NAMES[model.config.cell]}
        for rec in records
    ]
    actual_next = idx[0, 1:]
    next_prob = probs[:-1].gather(1, actual_next[:, None])[:, 0].cpu().numpy()
    top = [vocab.chars[i] for i in probs.argmax(dim=1).tolist()]
    return Trace(model.config.cell, list(text), layers, next_prob, top)
