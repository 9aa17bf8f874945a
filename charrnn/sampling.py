"""Generating text: warm the state on the prime, then draw one character at a time.

Temperature T divides the logits before the softmax: T < 1 sharpens the distribution (safer,
more repetitive text), T > 1 flattens it (wilder text), T = 0 means greedy argmax. Top-k keeps
only the k most likely characters. A seed gives a torch.Generator, so a lesson can replay a
sample exactly. Layout: the model sees (1, T) ids and returns (1, T, V) logits.
"""

from collections.abc import Iterator

import torch

from .corpus import CorpusError, Vocab
from .limits import LIMITS, check_range, why
from .model import CharRNN


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


class Stepper:
    """Feeds a model one character at a time, for sampling.

    It calls torch's fused single-step kernels (torch.lstm_cell / gru_cell / rnn_tanh_cell, the
    ones nn.LSTMCell uses) with the model's own weights. At batch 1 on a CPU this is about ten
    times faster than calling nn.LSTM per character, whose oneDNN path has a large fixed cost
    per call; the arithmetic, and so the text, is the same.
    """

    OPS = {"lstm": torch.lstm_cell, "gru": torch.gru_cell, "rnn": torch.rnn_tanh_cell}

    def __init__(self, model: CharRNN, state):
        self.model, self.op = model, self.OPS[model.config.cell]
        self.is_lstm = model.config.cell == "lstm"
        rnn, L = model.rnn, model.config.num_layers
        self.weights = [
            [getattr(rnn, f"{w}_l{k}") for w in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
            for k in range(L)
        ]
        # per layer: h (1, H), or an (h, c) pair for an LSTM
        self.layers = [(state[0][k], state[1][k]) if self.is_lstm else state[k] for k in range(L)]

    def __call__(self, token: int) -> torch.Tensor:
        """Logits (V,) after reading one more character."""
        x = self.model.embed.weight[token][None]  # (1, E)
        for k, w in enumerate(self.weights):
            self.layers[k] = self.op(x, self.layers[k], *w)
            x = self.layers[k][0] if self.is_lstm else self.layers[k]  # (1, H)
        return self.model.head(x)[0]


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
    gen = torch.Generator(device=model.device)
    if seed is None:
        gen.seed()
    else:
        gen.manual_seed(seed)
    logits, state = _warm(model, vocab, prime)
    stepper = Stepper(model, state)
    for _ in range(length):
        probs = probabilities(logits, temperature, top_k)
        nxt = int(torch.multinomial(probs, 1, generator=gen))
        yield vocab.chars[nxt]
        logits = stepper(nxt)


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
