"""The thread tuner, fed made-up step times: which count it runs and when it looks again."""

import pytest
import torch

from charrnn.threads import ThreadTuner, one_thread, use_threads


@pytest.fixture(autouse=True)
def keep_thread_count():
    before = torch.get_num_threads()
    yield
    use_threads(before)


def run(tuner, seconds_at, steps):
    """Feed `steps` steps whose time depends on the thread count; return the counts used."""
    used = []
    for _ in range(steps):
        n = tuner.threads()
        assert torch.get_num_threads() == n  # applied to the calling thread
        used.append(n)
        tuner.record(seconds_at(n))
    return used


def test_the_first_slow_step_of_a_probe_does_not_decide():
    tuner = ThreadTuner(2)  # three steps a count by default
    times = iter([3.0, 0.6, 0.6, 1.0, 1.0, 1.0])  # the run's first step pays one-time costs
    used = run(tuner, lambda n: next(times, 0.6 if n == 2 else 1.0), 10)
    assert used[:6] == [2, 2, 2, 1, 1, 1] and used[6:] == [2] * 4


def test_probes_both_counts_then_keeps_the_faster():
    tuner = ThreadTuner(2, recheck_every=100, probe_steps=2)
    used = run(tuner, {1: 1.0, 2: 0.6}.get, 10)
    assert used[:4] == [2, 2, 1, 1] and used[4:] == [2] * 6
    assert tuner.best == 2 and not tuner.probing

    tuner = ThreadTuner(2, recheck_every=100, probe_steps=2)
    used = run(tuner, {1: 0.5, 2: 0.6}.get, 10)
    assert used[4:] == [1] * 6  # a small model: one thread wins


def test_looks_again_every_so_often():
    tuner = ThreadTuner(2, recheck_every=20, probe_steps=2)
    used = run(tuner, {1: 1.0, 2: 0.6}.get, 4 + 20 + 4)
    assert used[4:24] == [2] * 20 and used[24:] == [2, 2, 1, 1]


def test_a_slowdown_moves_it_to_one_thread_at_once():
    # another process takes a core: two threads that wait for each other slow down 3x
    tuner = ThreadTuner(2, recheck_every=1000, probe_steps=2)
    run(tuner, {1: 1.0, 2: 0.6}.get, 10)
    used = run(tuner, {1: 1.0, 2: 1.8}.get, 12)
    assert 1 in used[:6] and used[-3:] == [1, 1, 1]
    # and when the machine is free again, the periodic look brings two threads back
    tuner.recheck_every = 5
    used = run(tuner, {1: 1.0, 2: 0.6}.get, 20)
    assert used[-3:] == [2, 2, 2]


def test_a_limit_of_one_never_probes_and_a_new_limit_probes_again():
    tuner = ThreadTuner(1, probe_steps=2)
    assert run(tuner, lambda n: 1.0, 5) == [1] * 5 and not tuner.probing
    tuner.set_limit(2)  # the registry gave this job more threads
    assert tuner.probing and run(tuner, {1: 1.0, 2: 0.5}.get, 6)[-2:] == [2, 2]
    tuner.set_limit(1)
    assert run(tuner, {1: 1.0, 2: 0.5}.get, 3) == [1, 1, 1]


def test_one_thread_restores_the_callers_count():
    use_threads(2)
    with one_thread():
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == 2
