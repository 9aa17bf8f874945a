"""How many CPU threads a training step uses, chosen by timing the steps themselves.

On an idle 2-core machine two OpenMP threads train a 2x256 LSTM about 1.5x faster than one.
When something else holds a core (the web server drawing a page, another process), the same
two threads run about 3x slower than one, because at every operation each waits for the other.
Small models are often faster on one thread either way. Nothing known in advance says which
case holds, so ThreadTuner measures: it tries each candidate count for a couple of steps, keeps
the fastest, and tries the others again every so often and as soon as steps turn slow.

In our measurements the thread count did not change the arithmetic: seeded runs at 1, at 2 and
at alternating counts gave bit-identical losses.
"""

from contextlib import contextmanager

import torch


def use_threads(n: int) -> None:
    """Give the calling thread n torch intra-op threads.

    NOTE: measured on torch 2.13 CPU (OpenMP build): the count is per OS thread, but each thread
    copies the process default the first time it touches torch, and set_num_threads() also
    rewrites that default. So touch torch first (get_num_threads) and then set: the caller keeps
    its own count, and threads that start later inherit the last count set.
    """
    torch.get_num_threads()
    torch.set_num_threads(max(1, n))


@contextmanager
def one_thread():
    """Run the block on one torch thread, then restore the caller's count.

    For work at batch 1 (sampling a character at a time): each operation is too small to
    split, and waking a second thread for it made sampling 1.5-2.5x slower on 2 cores.
    """
    before = torch.get_num_threads()
    if before != 1:
        use_threads(1)
    try:
        yield
    finally:
        if before != 1:
            use_threads(before)


class ThreadTuner:
    """Picks the fastest thread count in {1, limit} for a step that repeats.

    Call `threads()` before a step (it also applies the count) and `record(seconds)` after it.
    A probe runs each candidate for `probe_steps` steps and keeps its fastest time (the first
    step of a run, or at a new count, pays one-time costs: 2 threads lost to 1 on it); between
    probes the chosen count's time is a running average, so a slowdown shows. A new probe
    starts every `recheck_every` steps, or when the chosen count runs `slow_factor` times slower
    than when it was chosen.
    """

    def __init__(
        self,
        limit: int,
        recheck_every: int = 100,
        probe_steps: int = 3,
        slow_factor: float = 1.5,
    ):
        self.recheck_every, self.probe_steps, self.slow_factor = (
            recheck_every,
            probe_steps,
            slow_factor,
        )
        self.seconds: dict[int, float] = {}  # thread count -> seconds per step, lately
        self.chosen_at = 0.0  # the chosen count's time when it was chosen
        self.limit = None
        self.set_limit(limit)

    # --- what the trainer calls -----------------------------------------------------------
    def threads(self) -> int:
        """The count for the next step, applied to the calling thread."""
        n = self._probes[0][0] if self._probes else self.best
        if torch.get_num_threads() != n:
            use_threads(n)
        self._current = n
        return n

    def record(self, seconds: float) -> None:
        """The time the step at `threads()`'s count took."""
        n = self._current
        if self._probes:
            count, left = self._probes[0]
            fastest = min(seconds, self._probe_best.get(n, float("inf")))
            self._probe_best[n] = fastest
            self._probes[0] = (count, left - 1)
            if left - 1 == 0:
                self._probes.pop(0)
                self.seconds[n] = fastest
                if not self._probes:
                    self._choose()
            return
        self.seconds[n] = 0.8 * self.seconds.get(n, seconds) + 0.2 * seconds
        self._since_probe += 1
        slow = self.seconds[n] > self.slow_factor * self.chosen_at
        if self._since_probe >= self.recheck_every or (slow and len(self.candidates) > 1):
            self._start_probe()

    def set_limit(self, limit: int) -> None:
        """A new upper bound (the registry changed this job's share); re-probe if it matters."""
        limit = max(1, int(limit))
        if self.limit == limit:
            return
        self.limit = limit
        self.candidates = sorted({1, limit})
        self.seconds = {n: s for n, s in self.seconds.items() if n in self.candidates}
        self.best = limit
        self._current = limit
        self._start_probe()

    @property
    def probing(self) -> bool:
        return bool(self._probes)

    # --- inside ---------------------------------------------------------------------------
    def _start_probe(self) -> None:
        # the count in use last, so the switch costs one change of team, not two
        order = sorted(self.candidates, key=lambda n: n != self.best)
        self._probes = [(n, self.probe_steps) for n in order] if len(order) > 1 else []
        self._probe_best: dict[int, float] = {}
        self._since_probe = 0
        if not self._probes:
            self.best = self.candidates[0]

    def _choose(self) -> None:
        self.best = min(self.candidates, key=lambda n: self.seconds.get(n, float("inf")))
        self.chosen_at = self.seconds[self.best]
