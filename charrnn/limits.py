"""Every bound the playground enforces, in one place.

The core checks these (configs, corpora, sampling, traces, uploads, the job registry); the
app's widgets only mirror them. Each limit can be changed with an environment variable
`CHARRNN_<FIELD>` (e.g. CHARRNN_MAX_HIDDEN=512), read once at import, so a classroom server or
a Space can be tuned without touching code. The README's tables list the variables and their
defaults. Every refusal names the limit, its value, the reason and the variable that sets it.
"""

import math
import os
from dataclasses import dataclass, fields
from pathlib import Path


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

    # what one model and one run may be
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
    max_name_chars: int = 80  # characters in a run's display name
    max_run_seconds: int = 3_600  # wall-clock time one run may train; 0 = no limit

    # how the server shares itself between sessions (the job registry)
    max_jobs: int = 0  # runs training at once (K); 0 = one per two cores, at least 1
    torch_threads: int = 0  # torch threads shared by running jobs; 0 = cores - 1, at least 1
    max_active_per_owner: int = 3  # queued + running runs of one session (Compare starts 3)
    max_runs_per_owner: int = 12  # runs one session keeps (any status) until deleted or expired
    max_queue: int = 30  # runs waiting for a slot, all sessions together
    max_runs_total: int = 200  # runs the process keeps, all sessions together
    max_running_mb: int = 6_144  # estimated training memory of all running jobs, MiB
    max_runs_disk_mb: int = 2_048  # checkpoints of all runs together, MiB
    run_ttl_s: int = 7_200  # a finished run and its checkpoint are removed this long after it ends
    release_grace_s: int = 60  # a closed session's queued/running jobs stop after this grace

    @classmethod
    def from_env(cls) -> "Limits":
        """Defaults overridden by CHARRNN_<FIELD> variables, e.g. CHARRNN_MAX_HIDDEN=512."""
        values = {f.name: _env_int(env_name(f.name), f.default) for f in fields(cls)}
        return cls(**values)

    def running_slots(self) -> int:
        """K: jobs that may train at once."""
        return self.max_jobs or max(1, available_cores() // 2)

    def thread_budget(self) -> int:
        """Torch threads the running jobs share; one core is left for the server."""
        return self.torch_threads or max(1, available_cores() - 1)


def env_name(field_name: str) -> str:
    return f"CHARRNN_{field_name.upper()}"


# Why each limit exists, in words a student can act on. Used in every refusal message.
REASONS = {
    "max_hidden": "bigger layers train too slowly on a shared CPU",
    "max_layers": "deeper stacks train too slowly on a shared CPU",
    "max_embed": "wider embeddings add little to a character model",
    "max_seq_len": "longer chunks use memory in proportion to their length",
    "max_batch": "bigger batches use memory in proportion to their size",
    "max_steps": "one run must not hold a training slot for hours",
    "max_vocab": "more distinct characters means this is not a character-level text",
    "max_corpus_bytes": "the text is held in memory for every run that uses it",
    "max_generate": "long samples keep the server busy for everyone",
    "max_prime": "the prime is read one character at a time",
    "max_trace_chars": "a trace stores every gate of every layer for every character",
    "max_model_mb": "the server's memory is shared by every session",
    "max_upload_mb": "uploads are held in memory",
    "max_name_chars": "names are shown in lists and file names",
    "max_run_seconds": "one run must not hold a training slot for hours",
    "max_active_per_owner": "the training slots are shared fairly between sessions",
    "max_runs_per_owner": "each kept run holds memory and a checkpoint file",
    "max_queue": "a longer queue would wait longer than anyone stays",
    "max_runs_total": "each kept run holds memory and a checkpoint file",
    "max_running_mb": "the server's memory is shared by every running job",
    "max_runs_disk_mb": "the server's disk is shared by every session",
}


def why(limit: str) -> str:
    """'reason (set by CHARRNN_X)': the tail of a refusal message for the named limit."""
    return f"{REASONS[limit]} (this server's limit, set by {env_name(limit)})"


def available_cores() -> int:
    """CPU cores this process may really use: the smallest of the CPU affinity, the cgroup quota
    (a container's share, which os.cpu_count() does not see) and $CPU_CORES (set by HF Spaces)."""
    counts = [os.cpu_count() or 1]
    if hasattr(os, "sched_getaffinity"):
        counts.append(len(os.sched_getaffinity(0)))
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        if quota != "max":
            counts.append(max(1, math.ceil(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    spaces = os.environ.get("CPU_CORES", "")
    if spaces.isdigit() and int(spaces) > 0:
        counts.append(int(spaces))
    return max(1, min(counts))


LIMITS = Limits.from_env()


def check_range(what: str, value, low, high, hint: str = "", limit: str = "") -> None:
    """Raise a ValueError naming the allowed range when value is outside [low, high]; with
    `limit` (a Limits field) the message also says why the bound exists and how it is set."""
    if not (low <= value <= high):
        extra = f" {hint}" if hint else ""
        if limit and value > high:
            extra += f" The upper bound is there because {why(limit)}."
        raise ValueError(f"{what} must be between {low} and {high}, got {value}.{extra}")
