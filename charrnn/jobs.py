"""Training jobs: a Trainer in a background thread, and the registry that queues and limits them.

NOTE: which thread runs what. A TrainingJob's own thread runs the Trainer and writes the job's
fields under the job's lock; nothing else touches the model being trained. Any other thread (a
Streamlit script run, the CLI, a test) only calls `snapshot()`, `weights()`, `stop()` and the
registry's methods, which copy data out under the lock. The job thread never calls a UI and
never takes the registry's lock (lock order: registry, then job).

The registry is process-wide (the app keeps one in `st.cache_resource`). It

- runs at most K jobs at once (K = `max_running`) and queues the rest first in, first out; a
  queued job's `queue_position` moves on by itself as slots free up;
- splits a budget of torch threads between the running jobs (each job thread sets its own
  count; see `_set_thread_share`);
- keeps every job behind its owner: each lookup takes the owner, and an id of someone else's
  job gets nothing (ids are 128 random bits besides);
- caps what one owner and everyone together may hold: active runs, kept runs, the queue, the
  estimated memory of running jobs, the disk of all checkpoints (see `charrnn.limits`);
- removes finished runs and their checkpoints `run_ttl_s` after they end;
- stops an owner's queued and running jobs a grace period after its last session ended
  (`attach` / `release_owner`), unless the owner comes back first;
- on interpreter exit stops and joins every job (a torch thread still running at exit aborts
  the process with SIGABRT).
"""

import atexit
import collections
import copy
import json
import logging
import os
import re
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
from .limits import LIMITS, Limits, why
from .model import CharRNN
from .storage import RunStore, clean_label, safe_name
from .training import Metrics, Trainer, TrainingDiverged

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


def _same(a: str, b: str) -> bool:
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
        if torch.get_num_threads() != self._threads:
            _set_thread_share(self._threads)  # the registry changed this job's share
        if self._max_seconds and time.time() - self.started > self._max_seconds:
            self.stop(
                f"it reached the {self._max_seconds:,} s limit for one run, because "
                f"{why('max_run_seconds')}"
            )
        if self._stop.is_set():
            raise _StopRequested

    def _run(self) -> None:
        _set_thread_share(self._threads)
        trainer = self.trainer
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
                **self.extra,
            },
        )
        with self._lock:
            self._saved = str(self.checkpoint_path)

    def checkpoint_bytes_estimate(self) -> int:
        """About the size of this run's checkpoint: float32 weights plus metadata."""
        return 4 * self.num_params + 512 * 1024


class _StopRequested(Exception):
    pass


def _set_thread_share(n: int) -> None:
    """Give the calling thread n torch intra-op threads.

    NOTE: measured on torch 2.13 CPU (OpenMP build): the count is per OS thread, but each thread
    copies the process default the first time it touches torch, and set_num_threads() also
    rewrites that default. So touch torch first (get_num_threads) and then set: the job keeps
    its own share, and threads that start later inherit the last share set, which is never more
    than the registry's budget.
    """
    torch.get_num_threads()
    torch.set_num_threads(max(1, n))


def _recent_speed(history: list[Metrics], window: int = 20) -> float:
    """Characters per second over the last few steps (a steadier figure than one step)."""
    rows = history[-window:]
    if not rows:
        return 0.0
    return sum(m.chars_per_s for m in rows) / len(rows)


def default_max_running() -> int:
    """Jobs that may train at once: CHARRNN_MAX_JOBS, else one per two cores, at least one."""
    return LIMITS.running_slots()


@dataclass
class _Presence:
    """What the registry knows about an owner's browser sessions."""

    sessions: int = 0  # live sessions (attach minus release)
    release_at: float | None = None  # monotonic deadline of a pending release
    last_seen: float = 0.0  # monotonic time of the last call for this owner


class OwnerLease:
    """One browser session's hold on an owner's jobs; `release()` it when the session ends.

    Made by `JobRegistry.attach`. Releasing twice is harmless, so it is safe as the
    `on_release` of a session-scoped `st.cache_resource` (which may fire more than once).
    """

    def __init__(self, registry: "JobRegistry", owner: str):
        self.registry, self.owner = registry, owner
        self._released = threading.Event()

    def release(self, grace_s: float | None = None) -> None:
        if not self._released.is_set():
            self._released.set()
            self.registry.release_owner(self.owner, grace_s)

    def __repr__(self) -> str:  # never print the token itself
        return f"OwnerLease(released={self._released.is_set()})"


class JobRegistry:
    """The process-wide set of jobs: submit, look up by owner, stop, delete, and a fair queue.

    Every lookup takes the owner: a job is visible only to the owner that submitted it, so a
    guessed or leaked id is useless to anyone else. Refusals (a cap reached) are ValueErrors
    whose message says which limit, its value, why it exists and what to do.

    Settings come from `limits` (default: `charrnn.limits.LIMITS`, i.e. the CHARRNN_*
    environment variables); `max_running` and `total_threads` override K and the thread budget.
    The runs folder is `runs_dir`, else $CHARRNN_RUNS_DIR, else a fresh temp folder (removed at
    shutdown). With $CHARRNN_STATS_FILE set, the scheduler appends a JSON line of figures
    (running, queued, peak, disk) every half second, for load tests.
    """

    def __init__(
        self,
        max_running: int | None = None,
        total_threads: int | None = None,
        runs_dir=None,
        limits: Limits | None = None,
        stats_file: str | None = None,
    ):
        self.limits = limits or LIMITS
        self.max_running = max_running or self.limits.running_slots()
        self.total_threads = total_threads or self.limits.thread_budget()
        self.store = RunStore(runs_dir)
        self.stats_file = stats_file or os.environ.get("CHARRNN_STATS_FILE") or None
        self.peak_running = 0
        self.queue_waits: collections.deque = collections.deque(maxlen=1000)  # seconds
        self._lock = threading.RLock()
        self._jobs: dict[str, TrainingJob] = {}
        self._queue: list[TrainingJob] = []
        self._owners: dict[str, _Presence] = {}
        self._gone: collections.OrderedDict = collections.OrderedDict()  # id -> (owner, why)
        self._closed = False
        self._wake = threading.Event()
        self._next_cleanup = 0.0
        self._next_stats = 0.0
        self._watcher = threading.Thread(target=self._watch, name="job-scheduler", daemon=True)
        self._watcher.start()
        atexit.register(self.shutdown)

    @classmethod
    def from_env(cls) -> "JobRegistry":
        """A registry configured by the CHARRNN_* variables as they are now."""
        return cls(limits=Limits.from_env())

    # --- submitting ---------------------------------------------------------------------------
    def submit(self, job: TrainingJob) -> str:
        """Queue a job; it starts as soon as a slot is free. Raises ValueError when a cap is
        reached (the message says which and what to do)."""
        with self._lock:
            if self._closed:
                raise RuntimeError("the job registry is shut down")
            self._check_caps(job)
            job.checkpoint_path = self.store.path_for(job.owner, f"{job.id}.safetensors")
            job._max_seconds = self.limits.max_run_seconds
            job._ttl = self.limits.run_ttl_s
            job._on_done = self._wake.set
            self._jobs[job.id] = job
            self._queue.append(job)
            self._seen(job.owner)
            self._schedule()
        return job.id

    def _check_caps(self, job: TrainingJob) -> None:
        lim, mine = self.limits, [j for j in self._jobs.values() if j.owner == job.owner]
        active = sum(j.status in ACTIVE for j in mine)
        if active >= lim.max_active_per_owner:
            raise ValueError(
                f"this session already has {active} runs queued or training; the limit is "
                f"{lim.max_active_per_owner} because {why('max_active_per_owner')}: stop one "
                "or wait for it to finish"
            )
        if len(mine) >= lim.max_runs_per_owner:
            raise ValueError(
                f"this session keeps {len(mine)} runs; the limit is {lim.max_runs_per_owner} "
                f"because {why('max_runs_per_owner')}: delete a run you no longer need"
            )
        waiting = sum(j.status == QUEUED for j in self._queue)
        if waiting >= lim.max_queue:
            raise ValueError(
                f"{waiting} runs are already waiting for a training slot; the queue holds at "
                f"most {lim.max_queue} because {why('max_queue')}: try again in a few minutes"
            )
        if len(self._jobs) >= lim.max_runs_total:
            raise ValueError(
                f"the server keeps {len(self._jobs)} runs; the limit is {lim.max_runs_total} "
                f"because {why('max_runs_total')}: try again when older runs expire "
                f"({_hours(lim.run_ttl_s)} after they end)"
            )
        if job.memory_mb > lim.max_running_mb:
            raise ValueError(
                f"this run needs about {job.memory_mb:,.0f} MiB to train, over the "
                f"{lim.max_running_mb:,} MiB that all running jobs may use together, because "
                f"{why('max_running_mb')}: lower the hidden size, batch size or sequence length"
            )
        used = self.disk_bytes() + job.checkpoint_bytes_estimate()
        if used > lim.max_runs_disk_mb * 2**20:
            raise ValueError(
                f"run checkpoints would use {used / 2**20:,.1f} MiB, over the "
                f"{lim.max_runs_disk_mb:,} MiB allowed, because {why('max_runs_disk_mb')}: "
                f"delete old runs, or wait: runs are removed {_hours(lim.run_ttl_s)} after they end"
            )

    # --- looking up (every call takes the owner) -------------------------------------------------
    def get(self, job_id: str, owner: str) -> TrainingJob | None:
        self._seen(owner)
        with self._lock:
            job = self._jobs.get(job_id) if isinstance(job_id, str) else None
        return job if job is not None and _same(job.owner, owner) else None

    def owned(self, owner: str) -> list[TrainingJob]:
        """The owner's jobs, oldest first."""
        self._seen(owner)
        with self._lock:
            jobs = [j for j in self._jobs.values() if _same(j.owner, owner)]
        return sorted(jobs, key=lambda j: j.created)

    def why_missing(self, job_id: str, owner: str) -> str:
        """A message for an id that `get` did not find (say, from an old URL)."""
        with self._lock:
            gone = self._gone.get(job_id) if isinstance(job_id, str) else None
        if gone is not None and _same(gone[0], owner):
            return gone[1]
        return "no run with this id belongs to this session (it may have expired)"

    def checkpoint_bytes(self, job_id: str, owner: str) -> bytes | None:
        """The owner's saved checkpoint of this run, for a download button; None if none."""
        job = self.get(job_id, owner)
        path = job.snapshot().checkpoint_path if job is not None else None
        try:
            return Path(path).read_bytes() if path else None
        except FileNotFoundError:
            return None

    def stop(self, job_id: str, owner: str, reason: str = "") -> bool:
        job = self.get(job_id, owner)
        if job is None:
            return False
        job.stop(reason)
        self._wake.set()
        return True

    def delete(self, job_id: str, owner: str) -> bool:
        """Stop a job, forget it and remove its checkpoint file."""
        job = self.get(job_id, owner)
        if job is None:
            return False
        job.stop("deleted")
        job.join(timeout=30)
        self._forget(job, "this run was deleted")
        self._wake.set()
        return True

    def _forget(self, job: TrainingJob, reason: str) -> None:
        with self._lock:
            self._jobs.pop(job.id, None)
            if job in self._queue:
                self._queue.remove(job)
            self._gone[job.id] = (job.owner, reason)
            while len(self._gone) > 1000:
                self._gone.popitem(last=False)
        if job.checkpoint_path is not None:
            job.checkpoint_path.unlink(missing_ok=True)

    def running(self) -> list[TrainingJob]:
        with self._lock:
            return [j for j in self._jobs.values() if j.status == RUNNING]

    def queued(self) -> list[TrainingJob]:
        """Waiting jobs in the order they will start."""
        with self._lock:
            return [j for j in self._queue if j.status == QUEUED]

    def disk_bytes(self) -> int:
        """Bytes on disk under the runs folder, plus the expected size of checkpoints that
        active jobs have not written yet (so a burst of submits cannot overshoot the cap)."""
        with self._lock:
            pending = [j for j in self._jobs.values() if j.status in ACTIVE]
        reserved = sum(
            j.checkpoint_bytes_estimate()
            for j in pending
            if j.checkpoint_path is None or not j.checkpoint_path.exists()
        )
        return self.store.usage_bytes() + reserved

    def stats(self) -> dict:
        """Figures for an operator or a load test (no owner tokens, no ids)."""
        with self._lock:
            jobs = list(self._jobs.values())
            owners = len({j.owner for j in jobs})
            live = sum(p.sessions for p in self._owners.values())
        statuses = collections.Counter(j.status for j in jobs)
        waits = sorted(self.queue_waits)
        return {
            "time": time.time(),
            "running": statuses[RUNNING],
            "queued": statuses[QUEUED],
            "kept": len(jobs),
            "owners_with_runs": owners,
            "live_sessions": live,
            "peak_running": self.peak_running,
            "max_running": self.max_running,
            "total_threads": self.total_threads,
            "started": len(waits),
            "queue_wait_p50_s": waits[len(waits) // 2] if waits else None,
            "queue_wait_max_s": waits[-1] if waits else None,
            "disk_bytes": self.store.usage_bytes(),
            "job_threads_alive": sum(j.is_alive() for j in jobs),
            "python_threads": _thread_census(),
        }

    # --- sessions coming and going --------------------------------------------------------------
    def attach(self, owner: str) -> OwnerLease:
        """A browser session of `owner` started (or came back after a refresh): cancel any
        pending release. Call `release()` on the lease when the session ends."""
        with self._lock:
            presence = self._owners.setdefault(owner, _Presence())
            presence.sessions += 1
        self._seen(owner)
        return OwnerLease(self, owner)

    def touch(self, owner: str) -> None:
        """The owner is here: cancel a pending release. Every other call for the owner does
        this too, so an app that polls its jobs keeps them."""
        self._seen(owner)

    def release_owner(self, owner: str, grace_s: float | None = None) -> None:
        """A session of `owner` ended. When no session of the owner is left, its queued and
        running jobs are stopped `grace_s` seconds from now (default: the release_grace_s
        limit) unless the owner comes back first (`attach`, `touch` or any call with the
        owner). Stopped runs keep their checkpoints until cleanup."""
        grace = self.limits.release_grace_s if grace_s is None else grace_s
        with self._lock:
            presence = self._owners.setdefault(owner, _Presence())
            presence.sessions = max(0, presence.sessions - 1)
            if presence.sessions == 0:
                presence.release_at = time.monotonic() + max(0.0, grace)
        self._wake.set()

    def pending_release(self, owner: str) -> float | None:
        """Seconds until the owner's jobs are stopped, or None if no release is pending."""
        with self._lock:
            presence = self._owners.get(owner)
            if presence is None or presence.release_at is None:
                return None
            return max(0.0, presence.release_at - time.monotonic())

    def _seen(self, owner: str) -> None:
        with self._lock:
            presence = self._owners.get(owner)
            if presence is not None:
                presence.release_at = None
                presence.last_seen = time.monotonic()

    def _expire_releases(self) -> None:
        now = time.monotonic()
        with self._lock:
            due = [
                o
                for o, p in self._owners.items()
                if p.release_at is not None and p.release_at <= now and p.sessions == 0
            ]
            for owner in due:
                self._owners[owner].release_at = None
                for job in self._jobs.values():
                    if job.owner == owner and job.status in ACTIVE:
                        job.stop("its browser session ended and did not come back in time")
                        log.info("stopped job %s… of a closed session", job.id[:6])
        if due:
            self._schedule()

    # --- scheduling -----------------------------------------------------------------------------
    def _schedule(self) -> None:
        """Start queued jobs while slots (and memory) are free; renumber the queue; share the
        threads between running jobs."""
        with self._lock:
            self._queue = [j for j in self._queue if j.status == QUEUED]
            running = [j for j in self._jobs.values() if j.status == RUNNING]
            memory = sum(j.memory_mb for j in running)
            while self._queue and len(running) < self.max_running:
                head = self._queue[0]
                # first in, first out: a big job at the head waits for memory, nobody overtakes
                if running and memory + head.memory_mb > self.limits.max_running_mb:
                    break
                self._queue.pop(0)
                share = max(1, self.total_threads // (len(running) + 1))
                head._start(threads=share)
                running.append(head)
                memory += head.memory_mb
                self.queue_waits.append(head.started - head.created)
            self.peak_running = max(self.peak_running, len(running))
            share = max(1, self.total_threads // max(1, len(running)))
            for job in running:
                job._threads = share
            for place, job in enumerate(self._queue, start=1):
                job.queue_position, job.queue_length = place, len(self._queue)

    def cleanup(self, now: float | None = None) -> int:
        """Remove runs that ended more than run_ttl_s ago (and their checkpoints), stray files
        in the runs folder, and owners nobody uses. Returns the number of runs removed. The
        scheduler calls this every few seconds; tests call it with a made-up `now`."""
        now = time.time() if now is None else now
        ttl = self.limits.run_ttl_s
        with self._lock:
            old = [
                j
                for j in self._jobs.values()
                if j.status not in ACTIVE and j.ended is not None and now - j.ended > ttl
            ]
        for job in old:
            job.join(timeout=5)
            self._forget(job, f"this run ended more than {_hours(ttl)} ago and was removed")
        with self._lock:
            keep = {j.checkpoint_path for j in self._jobs.values() if j.checkpoint_path}
            owners = {j.owner for j in self._jobs.values()}
            for owner in [o for o, p in self._owners.items() if o not in owners]:
                p = self._owners[owner]
                if p.sessions == 0 and p.release_at is None:
                    del self._owners[owner]
        self.store.sweep(keep, older_than_s=ttl, now=now)
        return len(old)

    def _watch(self) -> None:
        # a finished job frees a slot; the job thread only sets _wake, never calls us
        while not self._closed:
            self._wake.wait(0.2)
            self._wake.clear()
            if self._closed:
                break
            try:
                self._expire_releases()
                self._schedule()
                now = time.monotonic()
                if now >= self._next_cleanup:
                    self._next_cleanup = now + 5.0
                    self.cleanup()
                if self.stats_file and now >= self._next_stats:
                    self._next_stats = now + 0.5
                    self._write_stats()
            except Exception:  # the scheduler must outlive any one bad job or file
                log.exception("job scheduler error")

    def _write_stats(self) -> None:
        with open(self.stats_file, "a", encoding="utf-8") as f:
            f.write(json.dumps(self.stats()) + "\n")

    def shutdown(self, timeout: float = 30.0) -> None:
        """Stop every job and wait for the threads: the process can then exit cleanly. The
        runs folder is removed if the registry made it (a temp folder)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            jobs = list(self._jobs.values())
        for job in jobs:
            job.stop("the server is shutting down")
        deadline = time.monotonic() + timeout
        for job in jobs:
            job.join(max(0.0, deadline - time.monotonic()))
        self._wake.set()
        if threading.current_thread() is not self._watcher:
            self._watcher.join(max(0.0, deadline - time.monotonic()))
        if self.stats_file:
            self._write_stats()
        if not any(j.is_alive() for j in jobs):
            self.store.close()
        atexit.unregister(self.shutdown)


def _thread_census() -> dict:
    """Live Python threads by name, numbers dropped (pools show up as one name with a count)."""
    names = (re.sub(r"[-_ ]?\d+$", "", t.name) for t in threading.enumerate())
    return dict(collections.Counter(names))


def _hours(seconds: int) -> str:
    if seconds % 3600 == 0:
        return f"{seconds // 3600} h"
    if seconds % 60 == 0:
        return f"{seconds // 60} min"
    return f"{seconds} s"
