"""Every bound the playground enforces, in one place.

The core checks these (configs, corpora, sampling, traces, uploads); the app's widgets only
mirror them. Each limit can be changed with an environment variable, read once at import, so a
classroom server or a Space can be tuned without touching code. The table in the README lists
the variables and their defaults.
"""

import os
from dataclasses import dataclass, fields


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw)
    except ValueError as e:
        raise ValueError(f"{name}={raw!r} is not a whole number") from e
    if value < 0:
        raise ValueError(f"{name}={raw!r} must not be negative")
    return value


@dataclass(frozen=True)
class Limits:
    """Bounds on what one user may ask of the process. Sizes in characters unless named."""

    max_hidden: int = 1024  # hidden units per layer
    max_layers: int = 4  # recurrent layers
    max_embed: int = 512  # embedding width
    max_seq_len: int = 1024  # characters per training chunk
    max_batch: int = 512  # chunks per batch
    max_steps: int = 200_000  # optimizer steps in one run
    max_vocab: int = 1000  # distinct characters; more is not a character model
    max_corpus_bytes: int = 20_000_000  # size of one corpus (bytes of UTF-8)
    max_generate: int = 20_000  # characters in one sample
    max_prime: int = 2_000  # characters of prime text
    max_trace_chars: int = 2_000  # characters in one gate trace
    max_model_mb: int = 2_048  # estimated training memory of one model, MiB
    max_upload_mb: int = 20  # checkpoint or text upload, MiB

    @classmethod
    def from_env(cls) -> "Limits":
        """Defaults overridden by CHARRNN_<FIELD> variables, e.g. CHARRNN_MAX_HIDDEN=512."""
        values = {f.name: _env_int(f"CHARRNN_{f.name.upper()}", f.default) for f in fields(cls)}
        return cls(**values)


LIMITS = Limits.from_env()


def check_range(what: str, value, low, high, hint: str = "") -> None:
    """Raise a ValueError naming the allowed range when value is outside [low, high]."""
    if not (low <= value <= high):
        extra = f" {hint}" if hint else ""
        raise ValueError(f"{what} must be between {low} and {high}, got {value}.{extra}")
