"""The job registry: the process-wide set of training jobs, their queue and their limits.

The app keeps one in `st.cache_resource`. It

- runs at most K jobs at once (K = `max_running`) and queues the rest first in, first out; a
  queued job's `queue_position` moves on by itself as slots free up;
- splits a budget of torch threads between the running jobs (each job thread sets its own
  count, and a tuner picks within it; see `threads.py`);
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
import json
import logging
import os
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from .jobs import ACTIVE, QUEUED, RUNNING, TrainingJob, same_owner
from .limits import LIMITS, Limits, why
from .storage import RunStore

log = logging.getLogger(__name__)


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
        return job if job is not None and same_owner(job.owner, owner) else None

    def owned(self, owner: str) -> list[TrainingJob]:
        """The owner's jobs, oldest first."""
        self._seen(owner)
        with self._lock:
            jobs = [j for j in self._jobs.values() if same_owner(j.owner, owner)]
        return sorted(jobs, key=lambda j: j.created)

    def why_missing(self, job_id: str, owner: str) -> str:
        """A message for an id that `get` did not find (say, from an old URL)."""
        with self._lock:
            gone = self._gone.get(job_id) if isinstance(job_id, str) else None
        if gone is not None and same_owner(gone[0], owner):
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
