"""Generating text: warm the state on the prime, then draw one character at a time.

Temperature T divides the logits before the softmax: T < 1 sharpens the distribution (safer,
more repetitive text), T > 1 flattens it (wilder text), T = 0 means greedy argmax. Top-k keeps
only the k most likely characters. A seed gives a random.Random, so a lesson can replay a
sample exactly. Layout: the model sees (1, T) ids and returns (1, T, V) logits.
"""

import bisect
import itertools
import random
from collections.abc import Iterator

import torch
import torch.nn.functional as F

from .cells import GATES, layer_weights
from .corpus import CorpusError, Vocab
from .limits import LIMITS, check_range, why
from .model import CharRNN
from .threads import one_thread


def check_sampling_args(
    vocab: Vocab, prime: str, length: int, temperature: float, top_k: int | None
) -> None:
    """Refuse bad sampling arguments with a message that says what is allowed."""
    if not prime:
        raise CorpusError("the prime text is empty: give at least one character to start from")
    if len(prime) > LIMITS.max_prime:
        raise CorpusError(
            f"the prime is {len(prime):,} characters; the limit is {LIMITS.max_prime:,} because "
            f"{why('max_prime')}: shorten it"
        )
    vocab.encode(prime)  # raises a CorpusError naming unknown characters
    check_range("length", length, 0, LIMITS.max_generate, limit="max_generate")
    check_range("temperature", temperature, 0.0, 100.0, "Use 0 for greedy decoding.")
    if top_k is not None:
        check_range("top_k", top_k, 1, len(vocab))


def probabilities(logits: torch.Tensor, temperature: float, top_k: int | None = None):
    """Next-character probabilities (V,) from logits (V,). Stable for any T in [0, 100]."""
    logits = logits.float()
    if top_k is not None and top_k < logits.numel():
        kth = torch.topk(logits, top_k).values[-1]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if temperature == 0:
        probs = torch.zeros_like(logits)
        probs[logits.argmax()] = 1.0
        return probs
    # softmax subtracts the max first, so even logits / 0.001 cannot overflow
    return torch.softmax(logits / temperature, dim=-1)


def draw(probs: torch.Tensor, rng: random.Random) -> int:
    """One index drawn from probs (V,), by inverting the cumulative sum at one uniform number.
    The same draw as torch.multinomial, which costs about 25 us a call at this size, as much
    as a whole layer of the model."""
    cdf = list(itertools.accumulate(probs.tolist()))
    # bisect_right never lands on an index whose probability is zero
    return min(bisect.bisect_right(cdf, rng.random() * cdf[-1]), len(cdf) - 1)


class Stepper:
    """Feeds a model one character at a time, for sampling.

    The equations are the model's own (those of `cells.py`), arranged for batch 1, where each
    torch call costs more than its arithmetic: at 2x256 on a CPU, torch.lstm_cell took about
    106 us a layer, and the one matmul that holds all of its weights about 44 us. So:
    - layer 0's input half of every gate, W_ih e(c) + b_ih, depends on the character alone:
      it is a row of a (V, G*H) table computed once;
    - above layer 0, W_ih x and W_hh h are one matmul over [x, h] (a GRU keeps the two apart,
      because its reset gate multiplies only the W_hh h part of the candidate);
    - an LSTM's gate rows are reordered i, f, o, g, so one sigmoid covers three gates.
    A test checks the logits against the full forward pass.
    """

    def __init__(self, model: CharRNN, state):
        cfg, rnn = model.config, model.rnn
        self.cell, self.H = cfg.cell, cfg.hidden_size
        rows = _gate_rows(cfg.cell, self.H)
        self.layers = []  # per layer: the weights as this class uses them
        for k in range(cfg.num_layers):
            w_ih, w_hh, b_ih, b_hh = (w[rows] for w in layer_weights(rnn, k))
            if self.cell != "gru":  # the two biases simply add up
                b_ih, b_hh = b_ih + b_hh, None
            if k == 0:
                self.x_table = F.linear(model.embed.weight, w_ih, b_ih)  # (V, G*H)
                w_ih = b_ih = None
            if self.cell == "gru" or k == 0:
                layer = {"w_ih": _t(w_ih), "b_ih": b_ih, "w_hh": _t(w_hh), "b_hh": b_hh}
            else:
                layer = {"w": _t(torch.cat([w_ih, w_hh], dim=1)), "b": b_ih}
            self.layers.append(layer)
        self.head_w, self.head_b = _t(model.head.weight), model.head.bias
        # per layer: h (1, H), and c (1, H) for an LSTM
        self.h = [state[0][k] if cfg.cell == "lstm" else state[k] for k in range(cfg.num_layers)]
        self.c = [state[1][k] for k in range(cfg.num_layers)] if cfg.cell == "lstm" else None

    def __call__(self, token: int) -> torch.Tensor:
        """Logits (V,) after reading one more character."""
        x = None
        for k, w in enumerate(self.layers):
            if self.cell == "gru":
                x = self._gru(k, w, token, x)
            else:
                gates = self._summed_gates(k, w, token, x)
                x = torch.tanh(gates) if self.cell == "rnn" else self._lstm(k, gates)
            self.h[k] = x
        return torch.addmm(self.head_b, x, self.head_w)[0]

    def _summed_gates(self, k, w, token, x):
        """W_ih x + b_ih + W_hh h + b_hh (1, G*H): a table row plus one matmul, or one matmul."""
        if k == 0:
            return torch.addmm(self.x_table[token : token + 1], self.h[0], w["w_hh"])
        return torch.addmm(w["b"], torch.cat([x, self.h[k]], dim=1), w["w"])

    def _lstm(self, k, gates):
        ifo, g = gates.split_with_sizes([3 * self.H, self.H], dim=1)
        i, f, o = torch.sigmoid(ifo).chunk(3, dim=1)
        self.c[k] = c = torch.addcmul(f * self.c[k], i, torch.tanh(g))  # f * c + i * g
        return o * torch.tanh(c)

    def _gru(self, k, w, token, x):
        h, H = self.h[k], self.H
        gx = self.x_table[token : token + 1] if k == 0 else torch.addmm(w["b_ih"], x, w["w_ih"])
        gh = torch.addmm(w["b_hh"], h, w["w_hh"])
        (x_rz, x_n), (h_rz, h_n) = (t.split_with_sizes([2 * H, H], dim=1) for t in (gx, gh))
        r, z = torch.sigmoid(x_rz + h_rz).chunk(2, dim=1)
        n = torch.tanh(torch.addcmul(x_n, r, h_n))  # tanh(x_n + r * h_n)
        return torch.lerp(n, h, z)  # (1 - z) * n + z * h


def _gate_rows(cell: str, H: int) -> torch.Tensor:
    """Row order of the stacked gate weights: torch's, except an LSTM's i f g o -> i f o g."""
    rows = torch.arange(GATES[cell] * H)
    if cell == "lstm":
        rows = torch.cat([rows[: 2 * H], rows[3 * H :], rows[2 * H : 3 * H]])
    return rows


def _t(w: torch.Tensor | None) -> torch.Tensor | None:
    """W as the right operand of x @ W^T, contiguous, ready for addmm."""
    return None if w is None else w.t().contiguous()


def _warm(model: CharRNN, vocab: Vocab, prime: str):
    """Run the prime through the model; return the logits after its last char and the state."""
    idx = vocab.encode(prime).to(model.device)[None]  # (1, P)
    logits, _, state = model(idx)
    return logits[0, -1], state


@torch.inference_mode()
def stream(
    model: CharRNN,
    vocab: Vocab,
    prime: str,
    length: int,
    temperature: float = 0.8,
    top_k: int | None = None,
    seed: int | None = None,
) -> Iterator[str]:
    """Yield `length` generated characters one by one (the prime itself is not yielded)."""
    check_sampling_args(vocab, prime, length, temperature, top_k)
    model.eval()
    rng = random.Random(seed)  # seed None: fresh entropy from the OS
    with one_thread():
        logits, state = _warm(model, vocab, prime)
        stepper = Stepper(model, state)
    for _ in range(length):
        with one_thread():
            nxt = draw(probabilities(logits, temperature, top_k), rng)
            logits = stepper(nxt)
        yield vocab.chars[nxt]


def generate(
    model: CharRNN,
    vocab: Vocab,
    prime: str,
    length: int,
    temperature: float = 0.8,
    top_k: int | None = None,
    seed: int | None = None,
) -> str:
    """The prime followed by `length` generated characters."""
    return prime + "".join(stream(model, vocab, prime, length, temperature, top_k, seed))


@torch.inference_mode()
def next_char_distribution(
    model: CharRNN, vocab: Vocab, prefix: str, temperature: float = 1.0, top_k: int | None = None
) -> list[tuple[str, float]]:
    """(character, probability) for every character in the vocabulary after `prefix`, most
    likely first."""
    check_sampling_args(vocab, prefix, 0, temperature, top_k)
    model.eval()
    logits, _ = _warm(model, vocab, prefix)
    probs = probabilities(logits, temperature, top_k).cpu().tolist()
    return sorted(zip(vocab.chars, probs, strict=True), key=lambda cp: -cp[1])
