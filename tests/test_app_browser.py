"""The app in Chromium, for what AppTest cannot see: a fresh server whose very first request
is a deep link (/gates?owner=...) must still go through app.py's navigation and sidebar,
not Streamlit's legacy pages/ mode."""

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

pytestmark = pytest.mark.browser
ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
]


@pytest.fixture
def fresh_server(tmp_path):
    if not CHROMIUM:
        if os.environ.get("CI"):
            pytest.fail("needs Debian's chromium: apt-get install chromium")
        pytest.skip("needs Debian's chromium: apt-get install chromium")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = dict(os.environ, CHARRNN_RUNS_DIR=str(tmp_path / "runs"))
    cmd = [sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port)]
    cmd += ["--server.address", "127.0.0.1", "--server.headless", "true"]
    cmd += ["--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none"]
    with open(tmp_path / "streamlit.log", "w") as log:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                        if r.read().strip() == b"ok":
                            break
                except OSError:
                    if proc.poll() is not None or time.monotonic() > deadline:
                        raise
                time.sleep(0.3)
            yield url
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()


def test_first_request_is_a_deep_link(fresh_server):
    from playwright.sync_api import expect, sync_playwright

    token = "abcdefghijklmnopqrstuv"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page(viewport={"width": 1300, "height": 900})
        page.goto(f"{fresh_server}/gates?owner={token}")
        expect(page.get_by_role("heading", name="Gates")).to_be_visible(timeout=30_000)
        nav = page.get_by_test_id("stSidebarNav")
        expect(nav.get_by_text("Home", exact=True)).to_be_visible()  # app.py's menu...
        expect(nav.get_by_text("app", exact=True)).to_have_count(0)  # ...not the legacy one
        expect(page.get_by_text("Device:")).to_be_visible()
        assert f"owner={token}" in page.url
        browser.close()
