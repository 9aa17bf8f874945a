"""Load test: the app on loopback with many simulated browser sessions (not part of pytest).

    python scripts/loadtest.py                       # 30 sessions, 10 train, about 3 minutes
    python scripts/loadtest.py --sessions 5 --trainers 2 --duration 30 --json out.json

It starts `streamlit run app.py` on 127.0.0.1 (a free port, its own temp folder as TMPDIR, the
corpus cache seeded from ../shared/data or ~/.cache/charrnn) and talks to it the way the
browser does: one WebSocket per session at /_stcore/stream carrying Streamlit's own protobuf
messages (page runs, widget values, button clicks, and the timed fragment reruns a live page
asks for). So every session is a real AppSession on the server, with its own owner token in
the URL, its session-scoped lease and its on_release when the socket closes.

NOTE: no browser renders anything here. Server cost is real (script runs, registry, training,
WebSocket traffic); client-side JavaScript, plotly drawing and static-file caching are not.
30 headless Chromium contexts would not fit next to the server on a 2-core machine.

Each session opens the pages; `--trainers` of them start a small training run (a distinct
hidden size each, so a run's name gives away its owner), watch it, then sample from it; all
sessions visit Sample. A spy session with a random owner token lists Runs and must see
nothing. At the end every socket closes (like closing the tabs), the script waits for the
registry to stop what is left, stops the server with SIGTERM and checks what remains.

Report: failed requests, page latency percentiles, fragment (live view) latency, queue waits
(server side, from $CHARRNN_STATS_FILE), the most jobs running at once against K, peak memory
(VmHWM) and threads of the server, runs seen by a non-owner, and leftovers (threads, files,
processes). Exit status 0 when the issue's "done when" holds.
"""

import argparse
import asyncio
import json
import os
import random
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import websockets
from streamlit.proto.BackMsg_pb2 import BackMsg
from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"  # never anything else
PAGES = ["", "data", "train", "runs", "sample", "gates"]  # url paths; "" is Home
FINISHED = {0: "ok", 1: "compile error", 2: "early for rerun", 3: "fragment ok"}
TRAIN_SETTINGS = {  # config field -> value; small runs that finish in seconds
    "num_layers": 1,
    "embed_size": 16,
    "steps": 100,
    "batch_size": 8,
    "seq_len": 32,
    "eval_every": 50,
    "eval_chars": 4096,
    "sample_every": 50,
    "sample_length": 80,
}
# the Train page's widget keys: train_<field> now, shorter names in earlier versions
OLD_KEYS = {"hidden_size": "hidden", "num_layers": "layers", "embed_size": "embed"}
OLD_KEYS |= {"batch_size": "batch", "seq_len": "seq"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def thread_census(pid: int) -> dict:
    """The server's OS threads by name (Linux), to tell pools from leftovers."""
    names: dict[str, int] = {}
    for comm in Path(f"/proc/{pid}/task").glob("*/comm"):
        try:
            name = comm.read_text().strip()
        except OSError:
            continue
        names[name] = names.get(name, 0) + 1
    return names


def percentile(values, q):
    if not values:
        return None
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q / 100 * (len(values) - 1))))]


def proc_status(pid: int) -> dict:
    out = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM", "Threads"):
                out[key] = int(value.split()[0])
    except OSError:
        pass
    return out


# --- one simulated browser session -------------------------------------------------------------


class Session:
    def __init__(self, idx: int, port: int, hidden: int | None, deadline: float, behaviour=""):
        self.idx, self.port, self.hidden, self.deadline = idx, port, hidden, deadline
        self.behaviour = behaviour  # "" | "refresh" (reloads mid-run) | "abandon" (closes it)
        self.overrun = 0.0  # seconds a trainer may keep watching its run after the deadline
        self.owner = secrets.token_urlsafe(16)
        self.query = f"owner={self.owner}"
        self.ws = None
        self.page_latency: list[float] = []  # seconds from request to script finished
        self.fragment_latency: list[float] = []
        self.failures: list[str] = []
        self.errors_shown: list[str] = []  # st.error texts (a refusal is not a failed request)
        self.texts: list[str] = []  # every text the runs-listing pages showed
        self.widgets: dict[str, object] = {}  # key -> element proto, current page
        self.fragments: dict[str, float] = {}  # fragment id -> interval (s)
        self.requests = 0
        self.samples = 0
        self.sample_pages_without_model = 0
        self.queue_places: list[int] = []
        self.run_outcome = None
        self.watch_end = ""
        self.page_hash = ""  # the page the last full run showed
        self.trace: list = []  # (request, finish status, texts, fragment timers) for debugging

    # messages ------------------------------------------------------------------------------------
    async def _run(self, page=None, states=None, fragment=None, what="page") -> list[str]:
        """Send one rerun request, read until the run finishes; returns the texts shown."""
        msg = BackMsg()
        cs = msg.rerun_script
        cs.query_string = self.query
        if page is not None:
            cs.page_name = page
        if fragment:  # like the browser: the timer's fragment on the page now shown
            cs.fragment_id, cs.is_auto_rerun = fragment, True
            cs.page_script_hash = self.page_hash
        for ws in states or []:
            cs.widget_states.widgets.append(ws)
        t0 = time.monotonic()
        self.requests += 1
        texts = []
        try:
            await self.ws.send(msg.SerializeToString())
            while True:
                raw = await asyncio.wait_for(self.ws.recv(), timeout=60)
                fwd = ForwardMsg()
                fwd.ParseFromString(raw)
                kind = fwd.WhichOneof("type")
                if kind == "new_session" and not fwd.metadata.run.fragment_ids:
                    # a full run (also one a fragment's st.rerun asked for): the browser
                    # drops its fragment timers here and the run registers them again
                    self.widgets = {}
                    self.fragments.clear()
                    self.page_hash = fwd.new_session.page_script_hash
                elif kind == "delta":
                    texts.extend(self._element(fwd))
                elif kind == "auto_rerun":
                    self.fragments[fwd.auto_rerun.fragment_id] = fwd.auto_rerun.interval
                elif kind == "stop_auto_rerun":
                    for fid in fwd.stop_auto_rerun.fragment_ids:
                        self.fragments.pop(fid, None)
                elif kind == "page_info_changed":
                    self.query = fwd.page_info_changed.query_string or self.query
                elif kind == "script_finished":
                    status = fwd.script_finished
                    self.trace.append((what, status, len(texts), dict(self.fragments)))
                    if status == 1:
                        self.failures.append(f"{what}: compile error")
                    if status in (0, 1, 3):
                        break
        except (TimeoutError, websockets.ConnectionClosed, OSError) as e:
            self.failures.append(f"{what}: {type(e).__name__} {e}"[:200])
            return texts
        dt = time.monotonic() - t0
        (self.fragment_latency if fragment else self.page_latency).append(dt)
        return texts

    def _element(self, fwd) -> list[str]:
        delta = fwd.delta
        if delta.WhichOneof("type") != "new_element":
            return []
        kind = delta.new_element.WhichOneof("type")
        el = getattr(delta.new_element, kind)
        if kind == "exception":
            self.failures.append(f"exception on the page: {el.type}: {el.message}"[:300])
        widget_id = getattr(el, "id", "")
        if isinstance(widget_id, str) and widget_id.startswith("$$ID-"):
            self.widgets[widget_id.rsplit("-", 1)[-1]] = el
        texts = [
            str(getattr(el, f))
            for f in ("body", "label", "text")
            if f in el.DESCRIPTOR.fields_by_name and getattr(el, f)
        ]
        if kind == "alert" and el.format == 1:  # ERROR
            self.errors_shown.append(el.body[:200])
        return texts

    def _widget(self, field: str):
        for key in (f"train_{field}", f"train_{OLD_KEYS.get(field, field)}"):
            if key in self.widgets:
                return self.widgets[key]
        return None

    def _states(self, values: dict, click: str | None = None):
        from streamlit.proto.WidgetStates_pb2 import WidgetState

        out = []
        for field, value in values.items():
            el = self._widget(field)
            if el is None:
                self.failures.append(f"the Train page has no widget for {field}")
                continue
            ws = WidgetState(id=el.id)
            if getattr(el, "data_type", 0) == 1:  # FLOAT number_input
                ws.double_value = float(value)
            else:
                ws.int_value = int(value)
            out.append(ws)
        if click and click in self.widgets:
            out.append(WidgetState(id=self.widgets[click].id, trigger_value=True))
        return out

    # behaviour -----------------------------------------------------------------------------------
    async def open_page(self, page: str) -> list[str]:
        texts = await self._run(page=page, what=f"page /{page}")
        if page in ("runs", "train", "sample"):
            self.texts.extend(texts)
        return texts

    async def think(self, low=4.0, high=10.0):  # a student reads a page for a few seconds
        await asyncio.sleep(random.uniform(low, high))

    async def train(self) -> None:
        await self.open_page("train")
        settings = dict(TRAIN_SETTINGS, hidden_size=self.hidden)
        if self.behaviour == "abandon":
            settings["steps"] = 5000  # still training (or queued) when the tab closes
        if "train_start" not in self.widgets:
            self.failures.append("train page has no Start button")
            return
        texts = await self._run(
            page="train", states=self._states(settings, click="train_start"), what="start"
        )
        self._read_train(texts)
        if not any(f"1×{self.hidden}" in t for t in texts):
            self.failures.append(f"the run did not get the settings (no 'LSTM 1×{self.hidden}')")
        # watch it the way the live fragment does, until it ends (or a while after time is up:
        # a queue of runs on two cores takes a while to drain)
        polls = 0
        while time.monotonic() < self.deadline + self.overrun and self.fragments:
            fragment, interval = next(iter(self.fragments.items()))
            await asyncio.sleep(interval)
            texts = await self._run(
                page="train", states=self._states(settings), fragment=fragment, what="live view"
            )
            self._read_train(texts)
            polls += 1
            if self.behaviour == "abandon" and polls == 3:
                return  # the tab is closed while the run trains or waits
            if self.behaviour == "refresh" and polls == 3:
                await self.reconnect()  # a reload: a new session, same owner in the URL
                self._read_train(await self.open_page("train"))
        self.watch_end = (
            "time is up" if self.fragments else f"the page stopped polling after {polls} polls"
        )

    def _read_train(self, texts: list[str]) -> None:
        self.texts.extend(texts)
        for t in texts:
            m = re.search(r"place (\d+) in the queue", t)
            if m:
                self.queue_places.append(int(m.group(1)))
            if t.startswith("Could not start") or re.search(
                r" finished|stopped at step|cancelled before| failed:", t
            ):
                self.run_outcome = t[:160]

    async def connect(self) -> None:
        url = f"ws://{HOST}:{self.port}/_stcore/stream"
        self.ws = await websockets.connect(url, subprotocols=["streamlit"], max_size=None)

    async def reconnect(self) -> None:
        await self.ws.close()
        self.fragments.clear()
        await self.connect()

    async def sample(self) -> None:
        await self.open_page("sample")
        if "sample_go" not in self.widgets:
            self.sample_pages_without_model += 1
            return
        texts = await self._run(
            page="sample", states=self._states({}, click="sample_go"), what="generate"
        )
        self.texts.extend(texts)
        self.samples += 1

    async def http_get(self, path: str) -> None:
        def get():
            with urllib.request.urlopen(f"http://{HOST}:{self.port}{path}", timeout=30) as r:
                r.read()
                return r.status

        t0 = time.monotonic()
        self.requests += 1
        try:
            status = await asyncio.to_thread(get)
            if status != 200:
                self.failures.append(f"GET {path}: HTTP {status}")
        except Exception as e:  # any HTTP failure is a failed request
            self.failures.append(f"GET {path}: {e}"[:200])
        else:
            self.page_latency.append(time.monotonic() - t0)

    async def live(self, start_delay: float) -> None:
        await asyncio.sleep(start_delay)
        await self.http_get("/")  # the HTML shell a browser loads first
        try:
            await self.connect()
        except OSError as e:
            self.failures.append(f"connect: {e}")
            return
        try:
            await self.open_page("")
            if self.hidden is not None:
                await self.think(0.5, 2)
                await self.train()
                if self.behaviour == "abandon":
                    return
                await self.sample()
            while time.monotonic() < self.deadline:
                await self.think()
                page = random.choice(PAGES)
                if page == "sample":
                    await self.sample()
                else:
                    await self.open_page(page)
            if self.samples == 0 and self.sample_pages_without_model == 0:
                await self.sample()
        finally:
            await self.ws.close()  # like closing the tab


async def spy(port: int) -> Session:
    """A session with a random owner of its own: must list no runs at all."""
    s = Session(-1, port, None, 0)
    await s.connect()
    try:
        await s.open_page("runs")
        await s.open_page("sample")
    finally:
        await s.ws.close()
    return s


async def come_back(port: int, gone: Session) -> str:
    """The owner of an abandoned run opens the Train page again, long after closing the tab:
    the run should have been stopped by the release, its checkpoint kept."""
    s = Session(gone.idx, port, gone.hidden, 0)
    s.query = gone.query
    await s.connect()
    try:
        s._read_train(await s.open_page("train"))
        await s.open_page("runs")
    finally:
        await s.ws.close()
    gone.failures.extend(s.failures)
    return s.run_outcome or "no outcome shown"


# --- the whole test ------------------------------------------------------------------------------


def seed_cache(cache: Path) -> None:
    cache.mkdir(parents=True, exist_ok=True)
    for src in (
        ROOT.parent / "shared" / "data" / "tinyshakespeare.txt",
        Path(os.environ.get("CHARRNN_CACHE", Path.home() / ".cache" / "charrnn"))
        / "tinyshakespeare.txt",
    ):
        if src.is_file():
            shutil.copyfile(src, cache / "tinyshakespeare.txt")
            return
    sys.exit("loadtest: tiny Shakespeare is not cached here (no network): seed ~/.cache/charrnn")


def read_stats(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            pass  # a line being written
    return rows


async def monitor(pid: int, samples: list, stop: asyncio.Event) -> None:
    while not stop.is_set():
        samples.append({"t": time.monotonic(), **proc_status(pid)})
        try:
            await asyncio.wait_for(stop.wait(), 0.5)
        except TimeoutError:
            pass


async def drive(args, port: int, pid: int) -> tuple[list[Session], Session, list]:
    deadline = time.monotonic() + args.duration
    trainers = sorted(random.Random(7).sample(range(args.sessions), args.trainers))
    behaviours = {t: "" for t in trainers}
    if trainers:
        behaviours[trainers[0]] = "refresh"
    for t in trainers[len(trainers) - args.abandon :] if args.abandon else []:
        behaviours[t] = "abandon"
    sessions = []
    for i in range(args.sessions):
        hidden = 17 + trainers.index(i) if i in behaviours else None
        sessions.append(Session(i, port, hidden, deadline, behaviours.get(i, "")))
        sessions[-1].overrun = args.overrun
    samples, stop = [], asyncio.Event()
    mon = asyncio.create_task(monitor(pid, samples, stop))
    ramp = args.ramp / max(1, args.sessions)
    await asyncio.gather(*(s.live(i * ramp) for i, s in enumerate(sessions)))
    the_spy = await spy(port)
    stop.set()
    await mon
    return sessions, the_spy, samples


def leaks(sessions: list[Session], the_spy: Session) -> list[str]:
    """Runs are named '<CELL> 1×<hidden>' and every trainer has its own hidden size: a name
    with someone else's size on a session's pages is a run it should not see."""
    found = []
    sizes = {s.hidden: s.idx for s in sessions if s.hidden is not None}
    for s in [*sessions, the_spy]:
        seen = set()
        for text in s.texts:
            seen.update(int(h) for h in re.findall(r"\b1×(\d+)", text))
        for h in seen:
            if h in sizes and sizes[h] != s.idx:
                found.append(f"session {s.idx} saw the run of session {sizes[h]} (1×{h})")
    return found


def leftovers(tmp: Path) -> tuple[list[str], list[str]]:
    """(what the app left in its TMPDIR, what torch left). torch makes an empty per-user cache
    folder, torchinductor_<user>, at a model's first optimizer step; it is shared by every run
    of the machine and holds nothing of a session, so it is reported apart."""
    left, torch_cache = [], []
    for p in sorted(tmp.rglob("*")):
        rel = p.relative_to(tmp)
        if rel.parts[0].startswith("torchinductor_"):
            torch_cache.append(f"{rel}{'/' if p.is_dir() else ''}")
        else:
            left.append(str(rel))
    return left, torch_cache


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sessions", type=int, default=30)
    ap.add_argument("--trainers", type=int, default=10)
    ap.add_argument("--duration", type=float, default=100, help="seconds of browsing per session")
    ap.add_argument("--overrun", type=float, default=50, help="extra seconds to watch a run end")
    ap.add_argument("--ramp", type=float, default=15, help="seconds over which sessions arrive")
    ap.add_argument("--grace", type=int, default=5, help="CHARRNN_RELEASE_GRACE_S for the run")
    ap.add_argument("--abandon", type=int, default=2, help="trainers that close the tab mid-run")
    ap.add_argument("--json", help="also write the report here")
    args = ap.parse_args(argv)
    random.seed(1)

    work = Path(tempfile.mkdtemp(prefix="charrnn-loadtest-"))
    server_tmp = work / "tmp"  # the server's TMPDIR: whatever is left here was left behind
    server_tmp.mkdir()
    seed_cache(work / "cache")
    stats_file = work / "stats.jsonl"
    port = free_port()
    env = {
        **os.environ,
        "TMPDIR": str(server_tmp),
        "CHARRNN_CACHE": str(work / "cache"),
        "CHARRNN_STATS_FILE": str(stats_file),
        "CHARRNN_RELEASE_GRACE_S": str(args.grace),
    }
    env.pop("CHARRNN_RUNS_DIR", None)  # the registry's own temp folder, inside TMPDIR
    cmd = [
        sys.executable,
        *("-m", "streamlit", "run", "app.py"),
        *("--server.address", HOST, "--server.port", str(port)),
        *("--server.headless", "true", "--server.fileWatcherType", "none"),
        *("--browser.gatherUsageStats", "false"),
    ]
    log = open(work / "server.log", "w")
    load_before = [round(x, 1) for x in os.getloadavg()]  # the machine may be shared
    t_start = time.monotonic()
    server = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    report: dict = {"sessions": args.sessions, "trainers": args.trainers, "port": port}
    try:
        for _ in range(120):
            try:
                with urllib.request.urlopen(f"http://{HOST}:{port}/_stcore/health", timeout=2):
                    break
            except OSError:
                time.sleep(0.5)
        else:
            raise SystemExit("loadtest: the server did not become healthy in 60 s")
        report["startup_s"] = round(time.monotonic() - t_start, 1)
        baseline = proc_status(server.pid)

        sessions, the_spy, samples = asyncio.run(drive(args, port, server.pid))
        closed_at = time.monotonic()

        # every tab is closed: the registry should stop what is left after the grace period
        drained_s = None
        for _ in range(int((args.grace + 60) / 0.5)):
            rows = read_stats(stats_file)
            if rows and rows[-1]["running"] == 0 and rows[-1]["queued"] == 0:
                if rows[-1]["job_threads_alive"] == 0 and rows[-1]["time"] > time.time() - 2:
                    drained_s = round(time.monotonic() - closed_at, 1)
                    break
            time.sleep(0.5)
        after = proc_status(server.pid)
        thread_names = thread_census(server.pid)
        rows = read_stats(stats_file)
        abandoned = [s for s in sessions if s.behaviour == "abandon"]
        for s in abandoned:
            s.run_outcome = asyncio.run(come_back(port, s))
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            rc = server.wait(timeout=60)
        except subprocess.TimeoutExpired:
            server.kill()
            rc = server.wait()
        log.close()

    all_sessions = [*sessions, the_spy]
    failures = [f"session {s.idx}: {f}" for s in all_sessions for f in s.failures]
    page_lat = [x for s in all_sessions for x in s.page_latency]
    frag_lat = [x for s in sessions for x in s.fragment_latency]
    server_log = (work / "server.log").read_text(errors="replace")
    left, torch_cache = leftovers(server_tmp)
    last = rows[-1] if rows else {}
    report.update(
        {
            "requests": sum(s.requests for s in all_sessions),
            "failed_requests": len(failures),
            "failures": failures[:20],
            "errors_shown": sorted({e for s in sessions for e in s.errors_shown})[:10],
            "page_latency_s": {
                q: round(percentile(page_lat, q), 3) if page_lat else None for q in (50, 90, 99)
            }
            | {"max": round(max(page_lat), 3) if page_lat else None, "n": len(page_lat)},
            "live_view_latency_s": {
                q: round(percentile(frag_lat, q), 3) if frag_lat else None for q in (50, 90, 99)
            }
            | {"n": len(frag_lat)},
            "runs_started": sum(1 for s in sessions if s.hidden is not None),
            "run_outcomes": {
                f"{s.idx}{' (' + s.behaviour + ')' if s.behaviour else ''}": s.run_outcome
                or f"none seen: {s.watch_end}"
                for s in sessions
                if s.hidden is not None
            },
            "queue_places_seen": sorted({p for s in sessions for p in s.queue_places}),
            "samples_generated": sum(s.samples for s in sessions),
            "sample_pages_without_a_model": sum(s.sample_pages_without_model for s in sessions),
            "K": last.get("max_running"),
            "max_running_seen": max((r["running"] for r in rows), default=None),
            "peak_running": last.get("peak_running"),
            "queue_wait_p50_s": last.get("queue_wait_p50_s"),
            "queue_wait_max_s": last.get("queue_wait_max_s"),
            "max_queued_seen": max((r["queued"] for r in rows), default=None),
            "runs_seen_by_non_owners": leaks(sessions, the_spy),
            "peak_rss_mib": round(max((s.get("VmHWM", 0) for s in samples), default=0) / 1024),
            "baseline_rss_mib": round(baseline.get("VmRSS", 0) / 1024),
            "server_threads": {
                "at_start": baseline.get("Threads"),
                "peak": max((s.get("Threads", 0) for s in samples), default=None),
                "after_close": after.get("Threads"),
                "after_close_by_name": thread_names,
                "python_threads_after_close": last.get("python_threads"),
            },
            "jobs_stopped_after_close_s": drained_s,
            "server_exit_code": rc,
            "abort_on_exit": "terminate called" in server_log,
            "tracebacks_in_server_log": server_log.count("Traceback"),
            "left_in_server_tmp": left,
            "torch_cache_in_server_tmp": torch_cache,
            "wall_s": round(time.monotonic() - t_start, 1),
            "load_average_before_after": [load_before, [round(x, 1) for x in os.getloadavg()]],
        }
    )
    done = (
        report["failed_requests"] == 0
        and not report["runs_seen_by_non_owners"]
        and (report["max_running_seen"] or 0) <= (report["K"] or 0)
        and drained_s is not None
        and rc == 0
        and not report["abort_on_exit"]
        and not left
    )
    released = [s.run_outcome or "" for s in sessions if s.behaviour == "abandon"]
    refreshed = [s.run_outcome or "" for s in sessions if s.behaviour == "refresh"]
    report["closed_tabs_released"] = all("session ended" in o for o in released)
    report["refreshed_run_kept"] = all(" finished" in o for o in refreshed)
    done = done and report["closed_tabs_released"] and report["refreshed_run_kept"]
    report["done_when_holds"] = done
    text = json.dumps(report, indent=2, ensure_ascii=False)
    print(text)
    if args.json:
        Path(args.json).write_text(text)
    if done:
        shutil.rmtree(work, ignore_errors=True)
    else:
        print(f"loadtest: kept {work} (server.log, stats.jsonl) for a look", file=sys.stderr)
    return 0 if done else 1


if __name__ == "__main__":
    sys.exit(main())
