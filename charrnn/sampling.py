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
    token = torch.empty(1, 1, dtype=torch.long, device=model.device)
    for _ in range(length):
        probs = probabilities(logits, temperature, top_k)
        nxt = int(torch.multinomial(probs, 1, generator=gen))
        yield vocab.chars[nxt]
        token.fill_(nxt)
        out, _, state = model(token, None, state)
        logits = out[0, -1]


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
