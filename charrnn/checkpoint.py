"""Checkpoints: one `.safetensors` file, weights as tensors and everything else as JSON text in
its metadata (vocabulary, both configs, metrics history, corpus fingerprint, versions).

No pickle anywhere: loading parses a JSON header and copies raw tensor bytes, so a file from a
stranger can never run code. Loading is strict: a file that is not a complete, consistent
charrnn checkpoint is refused with a CheckpointError that says what is wrong.
"""

import json
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_bytes
from safetensors.torch import save as save_bytes

from . import __version__
from .config import ModelConfig, TrainConfig, from_dict
from .corpus import Vocab
from .limits import LIMITS, why
from .model import CharRNN
from .training import thin_history

SCHEMA = "charrnn/1"
MAX_HISTORY_ROWS = 2000  # metrics rows kept in a file; evaluation rows are always kept


class CheckpointError(ValueError):
    """A file that is not a usable charrnn checkpoint; the message says why."""


@dataclass
class Checkpoint:
    """A loaded checkpoint: a ready model (CPU, eval mode) and everything recorded with it."""

    model: CharRNN
    vocab: Vocab
    train_config: TrainConfig | None = None
    history: list[dict] = field(default_factory=list)
    corpus: dict = field(default_factory=dict)
    info: dict = field(default_factory=dict)  # created, versions, command line, device, ...

    @property
    def model_config(self) -> ModelConfig:
        return self.model.config

    def final_val_loss(self) -> float | None:
        vals = [row["val_loss"] for row in self.history if row.get("val_loss") is not None]
        return vals[-1] if vals else None


def to_bytes(
    model: CharRNN,
    vocab: Vocab,
    train_config: TrainConfig | None = None,
    history: list[dict] | None = None,
    corpus: dict | None = None,
    info: dict | None = None,
) -> bytes:
    """Serialise a model and its record to safetensors bytes."""
    assert len(vocab) == model.config.vocab_size, "vocabulary and model disagree"
    meta = {
        "schema": SCHEMA,
        "model_config": json.dumps(model.config.to_dict()),
        "train_config": json.dumps(train_config.to_dict() if train_config else None),
        "vocab": json.dumps(vocab.chars, ensure_ascii=False),
        "history": json.dumps(thin_history(history or [], MAX_HISTORY_ROWS)),
        "corpus": json.dumps(corpus or {}, ensure_ascii=False),
        "info": json.dumps(
            {
                "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "charrnn_version": __version__,
                "torch_version": torch.__version__,
                **(info or {}),
            },
            ensure_ascii=False,
        ),
    }
    tensors = {
        k: v.detach().to("cpu", torch.float32).contiguous() for k, v in model.state_dict().items()
    }
    return save_bytes(tensors, metadata=meta)


def save(path, model: CharRNN, vocab: Vocab, **record) -> Path:
    """Write a checkpoint atomically (temp file in the same folder, then rename)."""
    path = Path(path)
    data = to_bytes(model, vocab, **record)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".ckpt-", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes it owner-only; a checkpoint is meant to be read
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def _json_field(meta: dict, key: str, name: str):
    if key not in meta:
        raise CheckpointError(f"{name}: the checkpoint's metadata has no {key!r} entry")
    try:
        return json.loads(meta[key])
    except json.JSONDecodeError as e:
        raise CheckpointError(
            f"{name}: the checkpoint's {key!r} entry is not valid JSON ({e.msg})"
        ) from None


def _looks_like_pickle(data: bytes) -> bool:
    # torch.save writes a zip archive (PK..) or, in the legacy format, a bare pickle (0x80 N)
    return data[:4] == b"PK\x03\x04" or (data[:1] == b"\x80" and data[1:2] in b"\x02\x03\x04\x05")


def _parse(data: bytes, name: str):
    """Bytes -> (tensors, metadata), refusing anything that is not a safetensors file."""
    try:
        tensors = load_bytes(data)
        meta = _read_metadata(data)  # load_bytes returns the tensors only
    except (SafetensorError, ValueError, RuntimeError, OverflowError) as e:
        if _looks_like_pickle(data):
            raise CheckpointError(
                f"{name} is a PyTorch pickle (.pt/.pth), not a .safetensors checkpoint. Pickles "
                "can run code when loaded, so they are never opened here: re-save the weights "
                "with safetensors (python -m charrnn train writes that format)."
            ) from None
        raise CheckpointError(
            f"{name} is not a valid .safetensors file ({str(e)[:120]}); it may be truncated or "
            "not a checkpoint at all"
        ) from None
    return tensors, meta


def _read_metadata(data: bytes) -> dict:
    """The header's __metadata__ map (the header was already validated by safetensors)."""
    n = int.from_bytes(data[:8], "little")
    header = json.loads(data[8 : 8 + n])
    meta = header.get("__metadata__") or {}
    if not isinstance(meta, dict):
        raise ValueError("metadata is not a map")
    return meta


def _check_tensors(model: CharRNN, tensors: dict, name: str) -> None:
    expected = model.state_dict()
    missing = sorted(set(expected) - set(tensors))
    extra = sorted(set(tensors) - set(expected))
    if missing or extra:
        raise CheckpointError(
            f"{name} does not fit its own config: missing {missing[:4]}, unexpected {extra[:4]}"
        )
    for key, want in expected.items():
        got = tensors[key]
        if got.shape != want.shape or got.dtype != torch.float32:
            raise CheckpointError(
                f"{name}: tensor {key} is {got.dtype} {tuple(got.shape)}, "
                f"expected float32 {tuple(want.shape)}"
            )
        if not torch.isfinite(got).all():
            raise CheckpointError(f"{name}: tensor {key} holds NaN or infinite values")


def from_bytes(data: bytes, name: str = "checkpoint") -> Checkpoint:
    """Validate and load a checkpoint from bytes (an upload); the model lands on the CPU."""
    if len(data) > LIMITS.max_upload_mb * 2**20:
        raise CheckpointError(
            f"{name} is {len(data) / 2**20:.1f} MiB, over the "
            f"{LIMITS.max_upload_mb} MiB limit for checkpoints, because {why('max_upload_mb')}"
        )
    if len(data) < 8:
        raise CheckpointError(f"{name} is only {len(data)} bytes: not a checkpoint")
    tensors, meta = _parse(data, name)
    if meta.get("schema") != SCHEMA:
        raise CheckpointError(
            f"{name} is a .safetensors file but not a charrnn checkpoint "
            f"(schema {meta.get('schema')!r}, expected {SCHEMA!r})"
        )
    try:
        model_config = from_dict(ModelConfig, _json_field(meta, "model_config", name))
        raw_train = _json_field(meta, "train_config", name)
        train_config = from_dict(TrainConfig, raw_train) if raw_train is not None else None
        chars = _json_field(meta, "vocab", name)
        if not (isinstance(chars, list) and all(isinstance(c, str) and len(c) == 1 for c in chars)):
            raise CheckpointError(f"{name}: the vocabulary is not a list of single characters")
        vocab = Vocab(chars)
    except CheckpointError:
        raise
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{name} has an invalid config: {e}") from None
    if len(vocab) != model_config.vocab_size:
        raise CheckpointError(
            f"{name}: the vocabulary has {len(vocab)} characters but the model "
            f"expects {model_config.vocab_size}"
        )
    model = CharRNN(model_config)
    _check_tensors(model, tensors, name)
    model.load_state_dict(tensors, strict=True)
    history = _json_field(meta, "history", name)
    corpus, info = _json_field(meta, "corpus", name), _json_field(meta, "info", name)
    if not isinstance(history, list) or not isinstance(corpus, dict) or not isinstance(info, dict):
        raise CheckpointError(f"{name} has a malformed history, corpus or info entry")
    return Checkpoint(model.eval(), vocab, train_config, history, corpus, info)


def load(path) -> Checkpoint:
    """Validate and load a checkpoint file."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no such checkpoint file: {path}")
    size = path.stat().st_size
    if size > LIMITS.max_upload_mb * 2**20:
        raise CheckpointError(
            f"{path} is {size / 2**20:.1f} MiB, over the "
            f"{LIMITS.max_upload_mb} MiB limit for checkpoints, because {why('max_upload_mb')}"
        )
    return from_bytes(path.read_bytes(), path.name)
