"""Where run files live on disk: one folder per owner under the registry's runs folder, names
that cannot escape it, a disk cap and a sweep for files nobody knows any more.

Layout (the owner's folder name is a hash, so a folder listing reveals no session token):

    <runs dir>/                         $CHARRNN_RUNS_DIR, else a fresh temp folder
        <sha256(owner)[:24]>/
            <job id>.safetensors        the run's checkpoint; the id is 128 random bits
            .ckpt-*.tmp                 a checkpoint being written (atomic rename)

Nothing here trusts a name from a user: `safe_name` turns any text into a plain file name and
`inside` refuses a path that resolves outside its folder (`..`, absolute paths, symlinks).
"""

import hashlib
import logging
import os
import re
import shutil
import tempfile
import time
import unicodedata
from pathlib import Path

log = logging.getLogger(__name__)

# Windows device names are harmless on Linux but turn a download into an odd file elsewhere.
_RESERVED = {"con", "prn", "aux", "nul", *(f"com{i}" for i in range(10))}
_RESERVED |= {f"lpt{i}" for i in range(10)}
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_OWNER_DIR = re.compile(r"[0-9a-f]{24}")
_RUN_FILE = re.compile(r"[A-Za-z0-9_-]{1,64}\.safetensors|\.ckpt-[^/]*\.tmp")


def safe_name(name: str, default: str = "run", max_len: int = 64) -> str:
    """Any text -> a plain file name: ASCII letters, digits, '.', '_' and '-' only, no leading
    dot, no path separators, at most `max_len` characters, never empty.

    >>> safe_name("../../etc/passwd")
    'etc-passwd'
    """
    text = str(name).replace("×", "x")  # "LSTM 2×64" must not become "LSTM-264"
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    text = _UNSAFE.sub("-", text)
    text = re.sub(r"\.{2,}", ".", re.sub(r"[-.]*-[-.]*", "-", text))  # no '..', one '-'
    text = text.strip("-._")[:max_len].strip("-._")
    if not text or text.split(".")[0].lower() in _RESERVED:
        return default
    return text


def clean_label(text: str, max_len: int) -> str:
    """A user's display name for a run: control characters dropped, whitespace collapsed, cut to
    `max_len`. It is shown, never used as a path."""
    text = "".join(ch if unicodedata.category(ch)[0] != "C" else " " for ch in str(text))
    return " ".join(text.split())[:max_len]


def inside(base: Path, *parts: str) -> Path:
    """base/parts..., refusing anything that resolves outside `base` (after symlinks)."""
    base = Path(base).resolve()
    path = base.joinpath(*parts).resolve()
    if path != base and base not in path.parents:
        raise ValueError(f"the path {'/'.join(parts)!r} leaves its folder: refused")
    return path


def owner_key(owner: str) -> str:
    """A folder name for an owner: a hash, so the token itself is never written to disk."""
    return hashlib.sha256(owner.encode("utf-8", "surrogatepass")).hexdigest()[:24]


class RunStore:
    """The runs folder of one registry: per-owner subfolders, sizes, and cleanup."""

    def __init__(self, root: str | os.PathLike | None = None):
        root = root or os.environ.get("CHARRNN_RUNS_DIR") or None
        # a folder we create ourselves we may also delete whole at shutdown
        self.owns_root = root is None
        self.root = Path(root or tempfile.mkdtemp(prefix="charrnn-runs-")).resolve()
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            if not os.access(self.root, os.W_OK | os.X_OK):
                raise PermissionError("not writable")
        except OSError as e:
            raise RuntimeError(
                f"the runs folder {self.root} cannot be created or written ({e}): point "
                "CHARRNN_RUNS_DIR at a writable folder, or unset it for a temp folder"
            ) from None

    def owner_dir(self, owner: str, create: bool = True) -> Path:
        path = inside(self.root, owner_key(owner))
        if create:
            path.mkdir(exist_ok=True)
        return path

    def path_for(self, owner: str, filename: str) -> Path:
        """A file in the owner's folder; `filename` is sanitised first."""
        return inside(self.owner_dir(owner), safe_name(filename))

    def usage_bytes(self) -> int:
        """Bytes of every file under the runs folder (temp files included)."""
        total = 0
        for dirpath, _, files in os.walk(self.root):
            for f in files:
                try:
                    total += os.lstat(os.path.join(dirpath, f)).st_size
                except OSError:
                    pass  # removed while we walked
        return total

    def sweep(self, keep: set[Path], older_than_s: float, now: float | None = None) -> int:
        """Remove files not in `keep` that were last written more than `older_than_s` ago
        (left by a crashed run or an earlier process), then empty owner folders. Returns the
        number of files removed."""
        now = time.time() if now is None else now
        keep = {Path(p).resolve() for p in keep}
        removed = 0
        for sub in self.root.iterdir():
            # only what we write: hashed owner folders holding checkpoints and their temp files,
            # so a runs folder pointed somewhere unfortunate loses nothing else
            if not _OWNER_DIR.fullmatch(sub.name) or not sub.is_dir() or sub.is_symlink():
                continue
            for f in sub.iterdir():
                if not _RUN_FILE.fullmatch(f.name):
                    continue
                try:
                    if f.resolve() in keep or now - f.lstat().st_mtime < older_than_s:
                        continue
                    f.unlink()
                    removed += 1
                except OSError as e:
                    log.warning("could not remove %s: %s", f, e)
            try:
                sub.rmdir()  # only succeeds when empty
            except OSError:
                pass
        return removed

    def close(self) -> None:
        """Remove the runs folder if this store created it (a temp folder)."""
        if self.owns_root:
            shutil.rmtree(self.root, ignore_errors=True)
