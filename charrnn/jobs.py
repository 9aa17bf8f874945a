"""Training jobs: a Trainer in a background thread, with a thread-safe view for any UI.

NOTE: which thread runs what. A TrainingJob's own thread runs the Trainer and writes the job's
fields under the job's lock; nothing else touches the model being trained. Any other thread (a
Streamlit script run, the CLI, a test) only calls `snapshot()`, `weights()` and `stop()`, which
copy data out under the lock. The job thread never calls a UI and never takes the registry's
lock (lock order: registry, then job). Jobs are queued, limited and looked up by
`charrnn.registry.JobRegistry`.
"""

import copy
import logging
import math
import secrets
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from . import checkpoint
from .config import ModelConfig, TrainConfig, estimate_memory_mb
from .corpus import Corpus
from .limits import LIMITS, why
from .model import CharRNN
from .storage import clean_label, safe_name
from .threads import use_threads
from .training import Metrics, Trainer, TrainingDiverged, thin_history

log = logging.getLogger(__name__)


QUEUED, RUNNING, STOPPED, FINISHED, FAILED = "queued", "running", "stopped", "finished", "failed"
ACTIVE = (QUEUED, RUNNING)
MAX_CHART_POINTS = 500  # history rows handed to a UI per snapshot, however long the run


def new_id() -> str:
    """An unguessable id (128 bits), safe in a URL."""
    return secrets.token_urlsafe(16)


def new_owner() -> str:
    """An unguessable owner token for a browser session (keep it in the URL to survive a
    refresh: whoever holds it sees that owner's runs)."""
    return secrets.token_urlsafe(16)


def same_owner(a: str, b: str) -> bool:
    """Constant-time comparison of two owner strings (any characters; compare_digest refuses
    non-ASCII str, so compare their bytes)."""
    if not isinstance(a, str) or not isinstance(b, str):
        return False
    return secrets.compare_digest(
        a.encode("utf-8", "surrogatepass"), b.encode("utf-8", "surrogatepass")
    )


@dataclass(frozen=True)
class JobSnapshot:
    """A consistent copy of a job's public state, safe to read from any thread."""

    id: str
    name: str
    status: str
    message: str
    step: int
    total_steps: int
    history: list  # Metrics rows, thinned to at most about MAX_CHART_POINTS
    last_sample: str
    chars_per_s: float
    elapsed_s: float
    eta_s: float | None
    queue_position: int | None  # 1-based place in the queue while queued
    model_config: ModelConfig
    train_config: TrainConfig
    num_params: int
    checkpoint_path: str | None
    corpus_name: str
    created: float
    val_loss: float | None = None
    device: str = ""
    extra: dict = field(default_factory=dict)
    queue_length: int | None = None  # jobs waiting in all, while this one is queued
    queue_wait_s: float | None = None  # seconds from submit to start (so far, while queued)
    started: float | None = None  # wall-clock times (time.time()); None until they happen
    ended: float | None = None
    expires: float | None = None  # when cleanup removes this run and its checkpoint
    threads: int = 1  # torch threads this job may use
    threads_in_use: int | None = None  # what its thread tuner chose (None off the CPU)

    @property
    def active(self) -> bool:
        return self.status in ACTIVE


class TrainingJob:
    """One training run in its own thread. Create it, hand it to a JobRegistry to run.

    `out_dir` / `checkpoint_path` say where the checkpoint goes when the job runs on its own
    (the CLI, a test); a registry ignores both and files the checkpoint in its owner's folder.
    """

    def __init__(
        self,
        corpus: Corpus,
        model_config: ModelConfig,
        train_config: TrainConfig,
        out_dir=None,
        name: str = "",
        owner: str = "",
        extra: dict | None = None,
        checkpoint_path=None,
    ):
        self.id = new_id()
        self.owner, self.corpus = owner, corpus
        default = f"{model_config.cell} {model_config.num_layers}x{model_config.hidden_size}"
        # a display name only (files are named by the id); cut, never refused
        self.name = clean_label(name, LIMITS.max_name_chars) or default
        self.extra = dict(extra or {})
        self.created = time.time()
        self.started: float | None = None
        self.ended: float | None = None
        if checkpoint_path is not None:
            self.checkpoint_path: Path | None = Path(checkpoint_path)
        elif out_dir is not None:
            self.checkpoint_path = Path(out_dir) / f"{self.id}.safetensors"
        else:
            self.checkpoint_path = None  # set by the registry, or a temp folder at start
        # Building the trainer checks configs, corpus length and memory: bad input fails here,
        # in the caller's thread, with a ValueError the caller can show.
        self.trainer = Trainer(corpus, model_config, train_config)
        self.num_params = self.trainer.model.num_params()
        self.memory_mb = estimate_memory_mb(self.trainer.model_config, train_config)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._stop_reason = ""
        self._thread: threading.Thread | None = None
        self._status, self._message = QUEUED, "waiting for a free slot"
        self._history: list[Metrics] = []
        self._sample, self._weights = "", None
        self._saved: str | None = None
        self._threads = 1  # torch intra-op threads this job may use; set by the registry
        self._max_seconds = 0  # wall-clock limit on training; 0 = none (the registry sets it)
        self._on_done = None  # called (no arguments) from the job thread when it ends
        self.queue_position: int | None = None
        self.queue_length: int | None = None
        self._ttl = 0  # seconds a registry keeps the run after it ends; 0 = not in a registry

    # --- called from other threads ------------------------------------------------------------
    def stop(self, reason: str = "") -> None:
        """Ask the run to end after the current step; a queued job is cancelled at once.
        `reason` ends up in the job's message."""
        with self._lock:
            if self._stop.is_set():
                return
            self._stop_reason = reason
            self._stop.set()
            if self._status == QUEUED:
                self._status = STOPPED
                self._message = (
                    f"cancelled before it started: {reason}"
                    if reason
                    else ("cancelled before it started")
                )
                self.ended = time.time()

    def join(self, timeout: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    def is_alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    @property
    def status(self) -> str:
        with self._lock:
            return self._status

    def download_name(self) -> str:
        """A safe file name for downloading this run's checkpoint."""
        return f"{safe_name(self.name)}.safetensors"

    def snapshot(self, max_points: int = MAX_CHART_POINTS) -> JobSnapshot:
        with self._lock:
            history = thin_history(self._history, max_points)
            status, message, sample = self._status, self._message, self._sample
            saved = self._saved
        tc, last = self.trainer.train_config, history[-1] if history else None
        step = last.step if last else 0
        speed = _recent_speed(history)
        eta = (
            (tc.steps - step) * tc.batch_size * tc.seq_len / speed
            if speed and status == RUNNING
            else None
        )
        vals = [m.val_loss for m in history if m.val_loss is not None]
        queued = status == QUEUED
        if self.started is not None:
            waited = self.started - self.created
        else:
            waited = time.time() - self.created if queued else None
        return JobSnapshot(
            id=self.id,
            name=self.name,
            status=status,
            message=message,
            step=step,
            total_steps=tc.steps,
            history=[copy.copy(m) for m in history],
            last_sample=sample,
            chars_per_s=speed,
            elapsed_s=last.elapsed_s if last else 0.0,
            eta_s=eta,
            queue_position=self.queue_position if queued else None,
            model_config=self.trainer.model_config,
            train_config=tc,
            num_params=self.num_params,
            checkpoint_path=saved,
            corpus_name=self.corpus.name,
            created=self.created,
            val_loss=vals[-1] if vals else None,
            device=str(self.trainer.device),
            extra=self.extra,
            queue_length=self.queue_length if queued else None,
            queue_wait_s=waited,
            started=self.started,
            ended=self.ended,
            expires=self.ended + self._ttl if self.ended is not None and self._ttl else None,
            threads=self._threads,
            threads_in_use=self.trainer.tuner.best if self.trainer.tuner else None,
        )

    def weights(self) -> CharRNN | None:
        """A private copy of the latest published weights (CPU, eval mode), or None before the
        first one. Never the module the job thread is updating."""
        with self._lock:
            published = self._weights
        if published is None:
            return None
        model = CharRNN(self.trainer.model_config)
        model.load_state_dict(published)
        return model.eval()

    # --- the job thread -----------------------------------------------------------------------
    def _start(self, threads: int) -> None:
        self._threads = threads
        with self._lock:
            if self._status != QUEUED:
                return
            self._status, self._message = RUNNING, ""
            self.started = time.time()
        if self.checkpoint_path is None:
            self.checkpoint_path = Path(tempfile.gettempdir()) / f"charrnn-{self.id}.safetensors"
        self._thread = threading.Thread(target=self._run, name=f"job-{self.id[:6]}", daemon=True)
        self._thread.start()

    def _publish(self, trainer: Trainer, _=None) -> None:
        """Copy the current weights out for samplers (on the job thread, between steps)."""
        state = {k: v.detach().to("cpu", copy=True) for k, v in trainer.model.state_dict().items()}
        with self._lock:
            self._weights, self._sample = state, trainer.last_sample

    def _on_step(self, trainer: Trainer, metrics: Metrics) -> None:
        with self._lock:
            self._history.append(metrics)
        self._apply_thread_share(trainer)  # the registry may have changed this job's share
        if self._max_seconds and time.time() - self.started > self._max_seconds:
            self.stop(
                f"it reached the {self._max_seconds:,} s limit for one run, because "
                f"{why('max_run_seconds')}"
            )
        if self._stop.is_set():
            raise _StopRequested

    def _apply_thread_share(self, trainer: Trainer) -> None:
        """At most the registry's share of threads; on a CPU the tuner picks within it."""
        if trainer.tuner:
            trainer.tuner.set_limit(self._threads)  # applied by the tuner before each step
        elif torch.get_num_threads() != self._threads:
            use_threads(self._threads)

    def _run(self) -> None:
        trainer = self.trainer
        self._apply_thread_share(trainer)
        trainer.add_callback("on_step", self._on_step)
        trainer.add_callback("on_sample", self._publish)
        trainer.add_callback("on_eval", self._publish)
        status, message = FINISHED, "done"
        try:
            trainer.run(stop=self._stop, on_checkpoint=self._save)
            if self._stop.is_set():
                status, message = STOPPED, self._stopped_message(trainer)
        except _StopRequested:
            status, message = STOPPED, self._stopped_message(trainer)
        except TrainingDiverged as e:
            status, message = FAILED, str(e)
        except Exception as e:  # the job must end as failed, never as a dead thread
            log.exception("training job %s failed", self.id)
            status, message = FAILED, f"{type(e).__name__}: {e}"
        try:
            if trainer.step > 0:
                if trainer.final_val_loss() is None or status == STOPPED:
                    trainer.evaluate(final=True)  # whole split, fp32: what the file records
                self._publish(trainer)
                self._save(trainer)
        except Exception as e:
            log.exception("job %s could not save its checkpoint", self.id)
            status, message = FAILED, f"could not save the checkpoint: {e}"
        # NOTE: the finished job keeps its model (samplers may still ask for the trainer) but
        # drops Adam's two moment buffers, half of its weight memory; nothing trains it again.
        trainer.optimizer.state.clear()
        with self._lock:
            self._status, self._message = status, message
            self.ended = time.time()
            if trainer.history:
                self._history = list(trainer.history)  # picks up the last evaluation
        if self._on_done is not None:
            self._on_done()

    def _stopped_message(self, trainer: Trainer) -> str:
        reason = self._stop_reason
        return f"stopped at step {trainer.step}" + (f": {reason}" if reason else "")

    def _save(self, trainer: Trainer) -> None:
        checkpoint.save(
            self.checkpoint_path,
            trainer.model,
            trainer.vocab,
            train_config=trainer.train_config,
            history=[m.to_dict() for m in trainer.history],
            corpus={
                "name": self.corpus.name,
                "sha256": self.corpus.sha256,
                "chars": len(self.corpus.text),
            },
            info={
                "device": str(trainer.device),
                "bf16": trainer.bf16,
                "train_seconds": round(trainer.elapsed, 1),
                "steps": trainer.step,
                "name": self.name,
                "val": val_summary(
                    trainer.history[-1].val_loss if trainer.history else None, len(trainer.val_ids)
                ),
                **self.extra,
            },
        )
        with self._lock:
            self._saved = str(self.checkpoint_path)

    def checkpoint_bytes_estimate(self) -> int:
        """About the size of this run's checkpoint: float32 weights plus metadata."""
        return 4 * self.num_params + 512 * 1024


def val_summary(loss: float | None, chars: int) -> dict | None:
    """The validation figures a checkpoint records: nats and bits per char, perplexity."""
    if loss is None:
        return None
    return {"loss": loss, "bpc": loss / math.log(2), "perplexity": math.exp(loss), "chars": chars}


class _StopRequested(Exception):
    pass


def _recent_speed(history: list[Metrics], window: int = 20) -> float:
    """Characters per second over the last few steps (a steadier figure than one step)."""
    rows = history[-window:]
    if not rows:
        return 0.0
    return sum(m.chars_per_s for m in rows) / len(rows)
