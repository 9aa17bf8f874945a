"""The job registry: a fair queue, owners kept apart, caps with clear messages, cleanup and the
release of closed sessions. Tiny models, and every job started here is stopped and joined."""

import dataclasses
import os
import threading
import time

import pytest

from charrnn.config import ModelConfig, TrainConfig
from charrnn.corpus import corpus_from_text
from charrnn.jobs import TrainingJob, new_id, new_owner
from charrnn.limits import LIMITS
from charrnn.registry import JobRegistry
from charrnn.storage import owner_key

TINY_MODEL = dict(cell="rnn", hidden_size=8, num_layers=1, embed_size=4)
TINY_TRAIN = dict(batch_size=2, seq_len=8, eval_every=0, sample_every=0, eval_chars=64)
LONG = 100_000  # steps: a job that runs until it is stopped


def wait_until(cond, timeout=10.0, what="condition"):
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


@pytest.fixture
def corpus(tiny_text):
    return corpus_from_text(tiny_text, "tiny")


@pytest.fixture
def make_registry(tmp_path):
    """Registries with test limits; each is shut down (jobs stopped and joined) afterwards."""
    made = []

    def make(max_running=2, total_threads=2, **limits):
        lim = dataclasses.replace(LIMITS, **{"release_grace_s": 60, **limits})
        folder = tmp_path / f"runs{len(made)}"
        reg = JobRegistry(max_running, total_threads, runs_dir=folder, limits=lim)
        made.append(reg)
        return reg

    yield make
    for reg in made:
        reg.shutdown(timeout=30)
        assert not any(j.is_alive() for j in reg._jobs.values())
        assert not reg._watcher.is_alive()


def job(corpus, owner, steps=LONG, name=""):
    return TrainingJob(
        corpus,
        ModelConfig(**TINY_MODEL),
        TrainConfig(steps=steps, **TINY_TRAIN),
        name=name,
        owner=owner,
    )


def test_queue_runs_k_jobs_in_order_and_moves_on(make_registry, corpus):
    reg = make_registry(max_running=2, max_active_per_owner=10)
    owners = [new_owner() for _ in range(5)]  # K + 3 jobs, one per session
    jobs = [job(corpus, o) for o in owners]
    for j in jobs:
        reg.submit(j)
    wait_until(lambda: all(j.status == "running" for j in jobs[:2]), what="two running")
    assert [j.status for j in jobs[2:]] == ["queued"] * 3
    assert [j.snapshot().queue_position for j in jobs[2:]] == [1, 2, 3]
    assert jobs[2].snapshot().queue_length == 3 and jobs[2].snapshot().queue_wait_s >= 0

    # a stopped queued job leaves the queue; the ones behind it move up by themselves
    assert reg.stop(jobs[3].id, owners[3])
    assert jobs[3].status == "stopped" and "cancelled" in jobs[3].snapshot().message
    assert reg.queued() == [jobs[2], jobs[4]]
    wait_until(lambda: jobs[4].snapshot().queue_position == 1 + 1, what="renumbering")

    # a finished slot goes to the head of the queue, never to a later job
    reg.stop(jobs[0].id, owners[0])
    wait_until(lambda: jobs[2].status == "running", what="the head to start")
    assert jobs[4].status == "queued" and jobs[4].snapshot().queue_position == 1
    assert len(reg.running()) == 2 and reg.peak_running == 2
    assert jobs[0].started < jobs[1].started <= jobs[2].started
    assert reg.stats()["queue_wait_max_s"] >= 0


def test_threads_are_shared_between_running_jobs(make_registry, corpus):
    reg = make_registry(max_running=2, total_threads=2)
    seen = {}
    a, b = job(corpus, "a"), job(corpus, "b")
    for j in (a, b):
        j.trainer.add_callback("on_step", lambda t, m, j=j: _record_threads(seen, j))
        reg.submit(j)
    wait_until(lambda: seen.get(a.id) == (1, 1) and seen.get(b.id) == (1, 1), what="1 each")
    reg.stop(b.id, "b")
    # alone now: the whole budget, handed to the job's tuner at its next step; the tuner then
    # runs each step at 1 or 2 threads, whichever it measures faster
    wait_until(lambda: seen.get(a.id, (0,))[0] == 2, what="share of 2")
    assert a.snapshot().threads == 2
    wait_until(lambda: seen[a.id][1] in (1, 2) and not a.trainer.tuner.probing, what="a choice")


def _record_threads(seen, j):
    import torch

    # (the job's limit, the count its thread uses now)
    seen[j.id] = (j.trainer.tuner.limit, torch.get_num_threads())


def test_another_owner_cannot_see_or_touch_a_run(make_registry, corpus):
    reg = make_registry()
    alice, bob = new_owner(), new_owner()
    a = job(corpus, alice, name="alice's run")
    reg.submit(a)
    wait_until(lambda: a.status == "running", what="alice's run")

    assert reg.get(a.id, alice) is a and reg.owned(alice) == [a]
    assert reg.get(a.id, bob) is None and reg.owned(bob) == []
    assert not reg.stop(a.id, bob) and not reg.delete(a.id, bob)
    assert reg.checkpoint_bytes(a.id, bob) is None
    assert "no run with this id" in reg.why_missing(a.id, bob)
    assert a.status == "running"
    # a guessed id, odd ids and odd owners get nothing and raise nothing
    for job_id, owner in [(new_id(), alice), (new_id(), bob), (None, alice), (a.id, "é€🙂")]:
        assert reg.get(job_id, owner) is None
    assert reg.get(a.id, "") is None and reg.get(a.id, alice + "x") is None
    # on disk the run sits in a folder named by a hash, not by the owner token
    assert a.checkpoint_path.parent.name == owner_key(alice)
    assert alice not in str(a.checkpoint_path)
    assert reg.stop(a.id, alice)


def test_refusals_name_the_limit_and_the_variable(make_registry, corpus):
    reg = make_registry(max_running=1, max_active_per_owner=1, max_runs_per_owner=2)
    owner = new_owner()
    first = job(corpus, owner)
    reg.submit(first)
    with pytest.raises(ValueError, match=r"the limit is 1 because .*CHARRNN_MAX_ACTIVE_PER_OWNER"):
        reg.submit(job(corpus, owner))
    reg.stop(first.id, owner)
    wait_until(lambda: first.status == "stopped", what="stop")
    second = job(corpus, owner, steps=2)
    reg.submit(second)
    wait_until(lambda: second.status == "finished", what="a short run")
    with pytest.raises(ValueError, match=r"keeps 2 runs; the limit is 2 .*delete a run"):
        reg.submit(job(corpus, owner))
    # deleting one makes room again
    assert reg.delete(second.id, owner) and not second.checkpoint_path.exists()
    assert reg.why_missing(second.id, owner) == "this run was deleted"
    reg.submit(job(corpus, owner, steps=1))


@pytest.mark.parametrize(
    "limits, message",
    [
        (dict(max_queue=0), r"queue holds at most 0 because .*CHARRNN_MAX_QUEUE"),
        (dict(max_runs_total=0), r"the limit is 0 because .*CHARRNN_MAX_RUNS_TOTAL"),
        (dict(max_running_mb=0), r"over the 0 MiB that all running jobs .*CHARRNN_MAX_RUNNING_MB"),
        (dict(max_runs_disk_mb=0), r"over the 0 MiB allowed, .*CHARRNN_MAX_RUNS_DISK_MB"),
        (dict(max_active_per_owner=0), r"already has 0 runs.*limit is 0"),
        (dict(max_runs_per_owner=0), r"keeps 0 runs; the limit is 0"),
    ],
)
def test_every_registry_cap_has_a_message(make_registry, corpus, limits, message):
    reg = make_registry(**limits)
    with pytest.raises(ValueError, match=message):
        reg.submit(job(corpus, new_owner()))
    assert reg.stats()["kept"] == 0


def test_a_run_stops_at_its_time_limit(make_registry, corpus):
    reg = make_registry(max_run_seconds=1)
    j = job(corpus, "me")
    reg.submit(j)
    wait_until(lambda: j.status == "stopped", timeout=20, what="the time limit")
    snap = j.snapshot()
    assert "1 s limit for one run" in snap.message and "CHARRNN_MAX_RUN_SECONDS" in snap.message
    assert snap.checkpoint_path and os.path.isfile(snap.checkpoint_path)


def test_cleanup_removes_expired_runs_and_stray_files(make_registry, corpus):
    reg = make_registry(run_ttl_s=3600)
    j = job(corpus, "me", steps=2)
    reg.submit(j)
    wait_until(lambda: j.status == "finished", what="a short run")
    path = j.checkpoint_path
    assert path.is_file() and reg.checkpoint_bytes(j.id, "me") == path.read_bytes()
    snap = j.snapshot()
    assert snap.expires == pytest.approx(snap.ended + 3600)

    stray = path.parent / (new_id() + ".safetensors")  # say, left by an earlier process
    stray.write_bytes(b"x")
    other = path.parent / "notes.txt"  # not ours: never touched
    other.write_text("keep")
    assert reg.cleanup() == 0 and path.is_file() and stray.is_file()

    later = time.time() + 3601
    assert reg.cleanup(now=later) == 1
    assert not path.exists() and not stray.exists() and other.exists()
    assert reg.get(j.id, "me") is None and "ended more than 1 h ago" in reg.why_missing(j.id, "me")


def test_disk_cap_counts_checkpoints_on_disk(make_registry, corpus):
    reg = make_registry(max_runs_disk_mb=1)
    first = job(corpus, "me", steps=2)
    reg.submit(first)
    wait_until(lambda: first.status == "finished", what="a short run")
    filler = first.checkpoint_path.parent / (new_id() + ".safetensors")
    filler.write_bytes(b"\0" * 2**20)
    with pytest.raises(ValueError, match=r"MiB, over the 1 MiB allowed.*removed 2 h after"):
        reg.submit(job(corpus, "me"))


def test_release_stops_jobs_after_the_grace_period(make_registry, corpus):
    reg = make_registry(max_running=1)
    owner = new_owner()
    running, waiting = job(corpus, owner), job(corpus, owner)
    lease = reg.attach(owner)
    reg.submit(running)
    reg.submit(waiting)
    wait_until(lambda: running.status == "running", what="start")
    lease.release(grace_s=0.3)
    lease.release(grace_s=0.3)  # a second on_release is harmless
    assert 0 < reg.pending_release(owner) <= 0.3
    wait_until(lambda: running.status == "stopped", what="the release")
    assert waiting.status == "stopped"
    assert "session ended" in running.snapshot().message
    assert running.checkpoint_path.is_file()  # still downloadable until cleanup
    assert reg.get(running.id, owner) is running


@pytest.mark.parametrize("comeback", ["attach", "touch", "get"])
def test_a_refresh_within_the_grace_keeps_the_jobs(make_registry, corpus, comeback):
    reg = make_registry(max_running=1)
    owner = new_owner()
    j = job(corpus, owner)
    lease = reg.attach(owner)
    reg.submit(j)
    lease.release(grace_s=0.5)
    # the new session of the refreshed page finds the job through the URL
    {"attach": reg.attach, "touch": reg.touch, "get": lambda o: reg.get(j.id, o)}[comeback](owner)
    assert reg.pending_release(owner) is None
    time.sleep(0.9)
    assert j.status in ("queued", "running")


def test_a_second_tab_keeps_the_jobs_when_one_closes(make_registry, corpus):
    reg = make_registry()
    owner = new_owner()
    j = job(corpus, owner)
    tab1, tab2 = reg.attach(owner), reg.attach(owner)
    reg.submit(j)
    tab1.release(grace_s=0)
    time.sleep(0.5)
    assert reg.pending_release(owner) is None and j.status in ("queued", "running")
    tab2.release(grace_s=0)
    wait_until(lambda: j.status == "stopped", what="the last tab's release")


def test_shutdown_joins_everything_and_removes_its_temp_folder(corpus):
    reg = JobRegistry(max_running=1, total_threads=1)  # runs folder: a fresh temp folder
    assert reg.store.owns_root and reg.store.root.is_dir()
    jobs = [job(corpus, "me"), job(corpus, "you")]
    for j in jobs:
        reg.submit(j)
    wait_until(lambda: jobs[0].status == "running", what="start")
    reg.shutdown(timeout=30)
    assert all(j.status == "stopped" and not j.is_alive() for j in jobs)
    assert not reg.store.root.exists() and not reg._watcher.is_alive()
    with pytest.raises(RuntimeError, match="shut down"):
        reg.submit(job(corpus, "me"))
    assert threading.active_count() < 50  # nothing piling up across the suite
