"""CharRNN: embedding -> recurrent stack -> linear decoder.

Layout, everywhere in this package: batch-first. Token ids are (B, T), the recurrent stack
returns (B, T, H), logits are (B, T, V). B batch, T time, V vocabulary, E embedding, H hidden,
L layers.

The recurrent stack is either torch's fused module (backend "torch", fast) or the hand-written
cells of `cells.py` (backend "scratch", readable). Both have the same parameter names, so one
state_dict fits either.
"""

import torch
import torch.nn as nn
import torch.nn.functional as F

from .cells import ScratchRecurrent
from .config import ModelConfig
from .state import State, zero_state

TORCH_MODULES = {"rnn": nn.RNN, "gru": nn.GRU, "lstm": nn.LSTM}


def make_recurrent(config: ModelConfig, backend: str | None = None) -> nn.Module:
    backend = backend or config.backend
    args = (config.embed_size, config.hidden_size, config.num_layers)
    dropout = config.dropout if config.num_layers > 1 else 0.0
    if backend == "scratch":
        return ScratchRecurrent(config.cell, *args, dropout=dropout)
    return TORCH_MODULES[config.cell](*args, batch_first=True, dropout=dropout)


class CharRNN(nn.Module):
    """A character-level language model.

    Shape: forward(idx (B, T), targets (B, T) | None, state | None)
           -> logits (B, T, V), loss (scalar, nats per char) | None, state
    """

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.embed = nn.Embedding(config.vocab_size, config.embed_size)
        self.rnn = make_recurrent(config)
        # dropout on what the top layer hands the decoder, as on what each layer hands the next
        # (inside self.rnn). Ten minutes of the default 2x256 LSTM on tiny Shakespeare overfit
        # without dropout (val 1.488 at 6 min, 1.498 at 10); dropout between the layers only
        # reached 1.466 (0.2) and 1.474 (0.3); here as well, 1.460 (0.1) and 1.465 (0.2)
        self.drop = nn.Dropout(config.dropout)
        self.head = nn.Linear(config.hidden_size, config.vocab_size)

    def init_state(self, batch: int) -> State:
        """Zero state for `batch` sequences, on the model's device."""
        c = self.config
        return zero_state(c.cell, c.num_layers, batch, c.hidden_size, self.head.weight)

    def forward(self, idx, targets=None, state: State = None):
        if state is None:
            state = self.init_state(idx.shape[0])
        x = self.embed(idx)  # (B, T, E)
        out, state = self.rnn(x, state)  # (B, T, H)
        logits = self.head(self.drop(out))  # (B, T, V)
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten())
        return logits, loss, state

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    @property
    def device(self) -> torch.device:
        return self.head.weight.device


def with_backend(model: CharRNN, backend: str) -> CharRNN:
    """A copy of `model` whose recurrent stack uses `backend`, with the same weights."""
    config = ModelConfig(**{**model.config.to_dict(), "backend": backend})
    twin = CharRNN(config).to(model.device)
    twin.load_state_dict(model.state_dict())
    return twin
