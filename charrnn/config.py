"""The two configs every run is made of: what the model is, and how it is trained.

Pages build these from widgets, the CLI from flags, checkpoints store them as plain dicts.
Every field is checked in `__post_init__` against `charrnn.limits`, so a bad value is refused
with the allowed range whatever front end it came through.
"""

from dataclasses import asdict, dataclass, fields

from .limits import LIMITS, check_range, why

CELLS = ("rnn", "gru", "lstm")
BACKENDS = ("torch", "scratch")
SAMPLERS = ("random", "stream")
SCHEDULES = ("cosine", "constant")
PRECISIONS = ("auto", "fp32", "bf16")
DEVICES = ("auto", "cpu", "cuda", "mps")


def _check_choice(what: str, value, choices) -> None:
    if value not in choices:
        raise ValueError(f"{what} must be one of {', '.join(choices)}; got {value!r}")


def from_dict(cls, data: dict):
    """Build a config dataclass from a dict, refusing unknown keys (they mean a typo or a newer
    file) and filling missing ones with defaults."""
    if not isinstance(data, dict):
        raise ValueError(f"{cls.__name__} must be a JSON object, got {type(data).__name__}")
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"unknown {cls.__name__} field(s): {', '.join(unknown)}")
    return cls(**data)


@dataclass
class ModelConfig:
    """What the network is: embedding -> `num_layers` recurrent layers -> linear decoder."""

    vocab_size: int = 65  # distinct characters; set from the corpus, not by hand
    cell: str = "lstm"  # rnn (Elman, tanh) | gru | lstm; lstm learns text best
    hidden_size: int = 256  # units per layer; 256 learns most per CPU-minute on 2 cores
    num_layers: int = 2  # stacked recurrent layers; 2 is the classic char-rnn depth
    embed_size: int = 64  # width of each character's learned vector
    dropout: float = 0.1  # on each layer's output while training (to the next, to the decoder)
    backend: str = "torch"  # torch (fused, fast) | scratch (the equations in cells.py)

    def __post_init__(self):
        _check_choice("cell", self.cell, CELLS)
        _check_choice("backend", self.backend, BACKENDS)
        check_range("vocab_size", self.vocab_size, 2, LIMITS.max_vocab, limit="max_vocab")
        check_range("hidden_size", self.hidden_size, 1, LIMITS.max_hidden, limit="max_hidden")
        check_range("num_layers", self.num_layers, 1, LIMITS.max_layers, limit="max_layers")
        check_range("embed_size", self.embed_size, 1, LIMITS.max_embed, limit="max_embed")
        check_range("dropout", self.dropout, 0.0, 0.9)

    def to_dict(self) -> dict:
        return asdict(self)

    def num_params(self) -> int:
        """Parameter count, computed from the shapes alone (no model needed)."""
        V, E, H, L = self.vocab_size, self.embed_size, self.hidden_size, self.num_layers
        gates = {"rnn": 1, "gru": 3, "lstm": 4}[self.cell]
        recurrent = sum(gates * H * ((E if k == 0 else H) + H + 2) for k in range(L))
        return V * E + recurrent + H * V + V


@dataclass
class TrainConfig:
    """How a model is trained. Units: steps are optimizer updates, lengths are characters."""

    steps: int = 2000  # optimizer updates; 2000 x 64 x 128 chars is about 10 min on 2 cores
    batch_size: int = 64  # chunks per batch
    seq_len: int = 128  # characters per chunk (backprop through time length)
    lr: float = 4e-3  # AdamW peak learning rate; 4e-3 was best for 2x256 on tiny Shakespeare
    schedule: str = "cosine"  # cosine (decay to lr * min_lr_ratio) | constant
    warmup_steps: int = 50  # linear warm-up from 0 to lr
    min_lr_ratio: float = 0.05  # cosine floor as a fraction of lr
    weight_decay: float = 0.0  # AdamW decoupled decay; 0 is plain Adam
    grad_clip: float = 1.0  # max global gradient norm; 0 turns clipping off
    sampler: str = "random"  # random chunks (course notebook) | stream (carried state, TBPTT)
    val_fraction: float = 0.1  # tail of the text held out for validation
    eval_every: int = 200  # steps between validation passes; 0 = only at the end
    eval_chars: int = 65_536  # validation characters per pass (capped by the split)
    sample_every: int = 200  # steps between progress samples; 0 = never
    sample_length: int = 200  # characters per progress sample
    checkpoint_every: int = 0  # steps between checkpoints; 0 = only at the end
    seed: int = 1337  # seeds weights and batches; same seed, same run on the CPU
    device: str = "auto"  # auto (cuda > mps > cpu) | cpu | cuda | mps
    precision: str = "auto"  # auto (bf16 where fast) | fp32 | bf16 autocast for matmuls

    def __post_init__(self):
        check_range("steps", self.steps, 1, LIMITS.max_steps, limit="max_steps")
        check_range("batch_size", self.batch_size, 1, LIMITS.max_batch, limit="max_batch")
        check_range("seq_len", self.seq_len, 1, LIMITS.max_seq_len, limit="max_seq_len")
        check_range("lr", self.lr, 1e-6, 1.0)
        _check_choice("schedule", self.schedule, SCHEDULES)
        check_range("warmup_steps", self.warmup_steps, 0, LIMITS.max_steps)
        check_range("min_lr_ratio", self.min_lr_ratio, 0.0, 1.0)
        check_range("weight_decay", self.weight_decay, 0.0, 1.0)
        check_range("grad_clip", self.grad_clip, 0.0, 1000.0)
        _check_choice("sampler", self.sampler, SAMPLERS)
        check_range("val_fraction", self.val_fraction, 0.01, 0.5)
        check_range("eval_every", self.eval_every, 0, LIMITS.max_steps)
        check_range("eval_chars", self.eval_chars, 1, 10_000_000)
        check_range("sample_every", self.sample_every, 0, LIMITS.max_steps)
        check_range(
            "sample_length", self.sample_length, 1, LIMITS.max_generate, limit="max_generate"
        )
        check_range("checkpoint_every", self.checkpoint_every, 0, LIMITS.max_steps)
        check_range("seed", self.seed, 0, 2**63 - 1)
        _check_choice("device", self.device, DEVICES)
        _check_choice("precision", self.precision, PRECISIONS)

    def to_dict(self) -> dict:
        return asdict(self)


def estimate_memory_mb(model: ModelConfig, train: TrainConfig) -> float:
    """Rough peak training memory in MiB: weights, grads and two Adam moments (4 copies), plus
    the activations kept for backprop (about 12 floats per unit per character per layer for an
    LSTM, fewer for simpler cells) and the logits (B*T*V, with softmax and grad)."""
    per_unit = {"rnn": 3, "gru": 9, "lstm": 12}[model.cell]
    B, T = train.batch_size, train.seq_len
    weights = 4 * model.num_params()
    acts = B * T * (model.num_layers * model.hidden_size * per_unit + model.embed_size)
    logits = 3 * B * T * model.vocab_size
    return 4 * (weights + acts + logits) / 2**20


def check_fits(model: ModelConfig, train: TrainConfig) -> None:
    """Refuse a model whose estimated training memory exceeds the configured cap."""
    mb = estimate_memory_mb(model, train)
    if mb > LIMITS.max_model_mb:
        raise ValueError(
            f"this model needs about {mb:,.0f} MiB to train, over the {LIMITS.max_model_mb:,} "
            f"MiB limit, because {why('max_model_mb')}: lower the hidden size, layers, batch "
            "size or sequence length"
        )
