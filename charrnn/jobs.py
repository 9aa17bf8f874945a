"""Training jobs: a Trainer in a background thread, and the registry that queues and limits them.

NOTE: which thread runs what. A TrainingJob's own thread runs the Trainer and writes the job's
fields under the job's lock; nothing else touches the model being trained. Any other thread (a
Streamlit script run, the CLI, a test) only calls `snapshot()`, `weights()`, `stop()` and the
registry's methods, which copy data out under the lock. The job thread never calls a UI.

The registry is process-wide (the app keeps one in `st.cache_resource`): it runs at most
`max_running` jobs at once, queues the rest in order, gives each running job its share of the
CPU threads, and on interpreter exit stops and joins every job (a torch thread still running at
exit aborts the process with SIGABRT).
"""

import atexit
import copy
import logging
import os
import secrets
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from . import checkpoint
from .config import ModelConfig, TrainConfig
from .corpus import Corpus
from .model import CharRNN
from .training import Metrics, Trainer, TrainingDiverged

log = logging.getLogger(__name__)

QUEUED, RUNNING, STOPPED, FINISHED, FAILED = "queued", "running", "stopped", "finished", "failed"
ACTIVE = (QUEUED, RUNNING)
MAX_CHART_POINTS = 500  # history rows handed to a UI per snapshot, however long the run


def new_id() -> str:
    """An unguessable id (128 bits), safe in a URL."""
    return secrets.token_urlsafe(16)


def thin(rows: list, limit: int = MAX_CHART_POINTS) -> list:
    """Evenly spaced rows, at most about `limit`, always keeping the last one and every
    evaluation row (they are few and they are the curve people compare)."""
    if len(rows) <= limit:
        return list(rows)
    stride = -(-len(rows) // limit)
    return [
        r
        for i, r in enumerate(rows)
        if i % stride == 0 or r.val_loss is not None or i == len(rows) - 1
    ]


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

    @property
    def active(self) -> bool:
        return self.status in ACTIVE


class TrainingJob:
    """One training run in its own thread. Create it, hand it to a JobRegistry to run."""

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
        self.name = (
            name or f"{model_config.cell} {model_config.num_layers}x{model_config.hidden_size}"
        )
        self.extra = dict(extra or {})
        self.created = time.time()
        # the file name is the unguessable id; the CLI may name the file itself
        self.checkpoint_path = Path(checkpoint_path or Path(out_dir) / f"{self.id}.safetensors")
        # Building the trainer checks configs, corpus length and memory: bad input fails here,
        # in the caller's thread, with a ValueError the caller can show.
        self.trainer = Trainer(corpus, model_config, train_config)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._status, self._message = QUEUED, "waiting for a free slot"
        self._history: list[Metrics] = []
        self._sample, self._weights = "", None
        self._saved: str | None = None
        self._threads = 1  # torch intra-op threads this job may use; set by the registry
        self.queue_position: int | None = None

    # --- called from other threads ------------------------------------------------------------
    def stop(self) -> None:
        """Ask the run to end after the current step; a queued job is cancelled at once."""
        self._stop.set()
        with self._lock:
            if self._status == QUEUED:
                self._status, self._message = STOPPED, "cancelled before it started"

    def join(self, timeout: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    @property
    def status(self) -> str:
        with self._lock:
            return self._status

    def snapshot(self, max_points: int = MAX_CHART_POINTS) -> JobSnapshot:
        with self._lock:
            history = thin(self._history, max_points)
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
            queue_position=self.queue_position if status == QUEUED else None,
            model_config=self.trainer.model_config,
            train_config=tc,
            num_params=self.trainer.model.num_params(),
            checkpoint_path=saved,
            corpus_name=self.corpus.name,
            created=self.created,
            val_loss=vals[-1] if vals else None,
            device=str(self.trainer.device),
            extra=self.extra,
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
        if torch.get_num_threads() != self._threads:
            torch.set_num_threads(self._threads)  # the registry changed this job's share
        if self._stop.is_set():
            raise _StopRequested

    def _run(self) -> None:
        torch.set_num_threads(self._threads)  # per thread: this job's share of the cores
        trainer = self.trainer
        trainer.add_callback("on_step", self._on_step)
        trainer.add_callback("on_sample", self._publish)
        trainer.add_callback("on_eval", self._publish)
        status, message = FINISHED, "done"
        try:
            trainer.run(stop=self._stop, on_checkpoint=self._save)
            if self._stop.is_set():
                status, message = STOPPED, f"stopped at step {trainer.step}"
        except _StopRequested:
            status, message = STOPPED, f"stopped at step {trainer.step}"
        except TrainingDiverged as e:
            status, message = FAILED, str(e)
        except Exception as e:  # the job must end as failed, never as a dead thread
            log.exception("training job %s failed", self.id)
            status, message = FAILED, f"{type(e).__name__}: {e}"
        try:
            if trainer.step > 0:
                if trainer.final_val_loss() is None or status == STOPPED:
                    trainer.evaluate()
                self._publish(trainer)
                self._save(trainer)
        except Exception as e:
            log.exception("job %s could not save its checkpoint", self.id)
            status, message = FAILED, f"could not save the checkpoint: {e}"
        with self._lock:
            self._status, self._message = status, message
            if trainer.history:
                self._history = list(trainer.history)  # picks up the last evaluation

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
                **self.extra,
            },
        )
        with self._lock:
            self._saved = str(self.checkpoint_path)


class _StopRequested(Exception):
    pass


def _recent_speed(history: list[Metrics], window: int = 20) -> float:
    """Characters per second over the last few steps (a steadier figure than one step)."""
    rows = history[-window:]
    if not rows:
        return 0.0
    return sum(m.chars_per_s for m in rows) / len(rows)


def default_max_running() -> int:
    """Jobs that may train at once: one per two cores, at least one."""
    return max(1, (os.cpu_count() or 2) // 2)


class JobRegistry:
    """The process-wide set of jobs: submit, look up by owner, stop, delete, and a fair queue.

    Every lookup takes the owner: a job is visible only to the owner that submitted it, so a
    guessed or leaked id is useless to anyone else.
    """

    def __init__(self, max_running: int | None = None, total_threads: int | None = None):
        self.max_running = max_running or default_max_running()
        self.total_threads = total_threads or torch.get_num_threads()
        self._lock = threading.RLock()
        self._jobs: dict[str, TrainingJob] = {}
        self._queue: list[TrainingJob] = []
        self._closed = False
        self._watcher = threading.Thread(target=self._watch, name="job-scheduler", daemon=True)
        self._wake = threading.Event()
        self._watcher.start()
        atexit.register(self.shutdown)

    def submit(self, job: TrainingJob) -> str:
        with self._lock:
            if self._closed:
                raise RuntimeError("the job registry is shut down")
            self._jobs[job.id] = job
            self._queue.append(job)
            self._schedule()
        return job.id

    def get(self, job_id: str, owner: str) -> TrainingJob | None:
        with self._lock:
            job = self._jobs.get(job_id)
        return job if job is not None and secrets.compare_digest(job.owner, owner) else None

    def owned(self, owner: str) -> list[TrainingJob]:
        with self._lock:
            return [j for j in self._jobs.values() if j.owner == owner]

    def stop(self, job_id: str, owner: str) -> bool:
        job = self.get(job_id, owner)
        if job is None:
            return False
        job.stop()
        self._wake.set()
        return True

    def delete(self, job_id: str, owner: str) -> bool:
        """Stop a job, forget it and remove its checkpoint file."""
        job = self.get(job_id, owner)
        if job is None:
            return False
        job.stop()
        job.join(timeout=30)
        with self._lock:
            self._jobs.pop(job_id, None)
            if job in self._queue:
                self._queue.remove(job)
        job.checkpoint_path.unlink(missing_ok=True)
        self._wake.set()
        return True

    def running(self) -> list[TrainingJob]:
        with self._lock:
            return [j for j in self._jobs.values() if j.status == RUNNING]

    def _schedule(self) -> None:
        """Start queued jobs while slots are free; renumber the queue; share the threads."""
        with self._lock:
            self._queue = [j for j in self._queue if j.status == QUEUED]
            running = [j for j in self._jobs.values() if j.status == RUNNING]
            while self._queue and len(running) < self.max_running:
                job = self._queue.pop(0)
                running.append(job)
                job._start(threads=1)
            share = max(1, self.total_threads // max(1, len(running)))
            for job in running:
                job._threads = share
            for place, job in enumerate(self._queue, start=1):
                job.queue_position = place

    def _watch(self) -> None:
        # a finished job frees a slot; poll rather than have job threads call back into us
        while not self._closed:
            self._wake.wait(0.2)
            self._wake.clear()
            if not self._closed:
                self._schedule()

    def shutdown(self, timeout: float = 30.0) -> None:
        """Stop every job and wait for the threads: the process can then exit cleanly."""
        with self._lock:
            self._closed = True
            jobs = list(self._jobs.values())
        for job in jobs:
            job.stop()
        deadline = time.monotonic() + timeout
        for job in jobs:
            job.join(max(0.0, deadline - time.monotonic()))
        self._wake.set()
