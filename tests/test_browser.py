"""The app in a real browser: `streamlit run app.py` on loopback, driven by Debian's Chromium.

The journey a teacher makes in front of a class: open the app, train a tiny LSTM while the
loss chart grows, stop it, sample from it, and look at its gates. Screenshots of each page go
to test-output/browser/. Waits are on visible content, never on the script-state attribute,
which flickers while a timed fragment is live.
"""

import time

import pytest

from tests.browser_support import launch, need_chromium, streamlit_server
from tests.conftest import ROOT

pytestmark = pytest.mark.browser
SHOTS = ROOT / "test-output" / "browser"


@pytest.fixture(scope="module")
def app_url(tmp_path_factory):
    with streamlit_server(tmp_path_factory.mktemp("app")) as url:
        yield url


@pytest.fixture(scope="module")
def chromium_browser():
    need_chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = launch(p)
        yield browser
        browser.close()


PLOTS_JS = """[...document.querySelectorAll('[data-testid="stPlotlyChart"] .js-plotly-plot')]"""
# points in the first trace of the i-th plotly chart on the page (0 if none yet)
POINTS_JS = f"""(i) => {{
    const gd = {PLOTS_JS}[i];
    const t = gd && gd._fullData && gd._fullData[0];
    return t && t.x ? t.x.length : 0;
}}"""
# charts holding at least one heatmap with data
HEATMAPS_JS = f"""() => {PLOTS_JS}
    .filter(gd => (gd._fullData || []).some(t => t.type === "heatmap" && t.z && t.z.length))
    .length"""


def _chart_points(page, index: int = 0) -> int:
    return page.evaluate(POINTS_JS, index)


def _set_number(page, label: str, value) -> None:
    box = page.get_by_label(label, exact=True)
    box.fill(str(value))
    box.press("Enter")


def _nav(page, name: str) -> None:
    """Click a page in the sidebar navigation and wait for its title."""
    page.get_by_test_id("stSidebarNav").get_by_role("link", name=name, exact=True).click()
    page.get_by_role("heading", name=name).first.wait_for(timeout=30_000)


def test_train_watch_stop_sample_gates(app_url, chromium_browser):
    SHOTS.mkdir(parents=True, exist_ok=True)
    # tall: Streamlit scrolls inside its own container, so a screenshot shows the viewport only
    context = chromium_browser.new_context(viewport={"width": 1400, "height": 1600})
    page = context.new_page()
    errors = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))

    # home
    page.goto(app_url)
    page.get_by_role("heading", name="charrnn playground").wait_for(timeout=30_000)
    page.screenshot(path=SHOTS / "1-home.png", full_page=True)

    # train: a small LSTM with enough steps that the chart refreshes several times
    _nav(page, "Train")
    _set_number(page, "Hidden units per layer", 32)
    _set_number(page, "Embedding width", 16)
    _set_number(page, "Batch size", 8)
    _set_number(page, "Sequence length", 32)
    _set_number(page, "Steps", 20_000)
    page.get_by_role("button", name="Start", exact=True).click()

    # the live chart must gain points while the run goes on
    counts = []
    deadline = time.monotonic() + 45
    while time.monotonic() < deadline and len(set(c for c in counts if c)) < 2:
        counts.append(_chart_points(page))
        time.sleep(1.0)
    assert len(set(c for c in counts if c)) >= 2, f"chart never refreshed: {counts}"
    _scroll_to_chart(page)
    page.screenshot(path=SHOTS / "2-train-running.png", full_page=True)

    page.get_by_role("button", name="Stop", exact=True).click()
    page.get_by_text("stopped at step").first.wait_for(timeout=30_000)
    page.screenshot(path=SHOTS / "3-train-stopped.png", full_page=True)

    # sample with the run just trained
    _nav(page, "Sample")
    page.get_by_role("button", name="Generate", exact=True).click()
    sample = page.get_by_test_id("stCode").first
    sample.wait_for(timeout=30_000)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and len(sample.inner_text().strip()) < 50:
        time.sleep(0.3)
    assert len(sample.inner_text().strip()) >= 50
    page.screenshot(path=SHOTS / "4-sample.png", full_page=True)

    # gates: heatmaps with data
    _nav(page, "Gates")
    page.locator('[data-testid="stPlotlyChart"] .js-plotly-plot').first.wait_for(timeout=30_000)
    heatmaps, deadline = 0, time.monotonic() + 30
    while heatmaps == 0 and time.monotonic() < deadline:
        time.sleep(0.5)
        heatmaps = page.evaluate(HEATMAPS_JS)
    page.screenshot(path=SHOTS / "5-gates.png", full_page=True)
    assert heatmaps >= 1

    context.close()
    assert not errors, errors


def _scroll_to_chart(page) -> None:
    """Bring the live chart into view. The fragment redraws it every second, and Playwright
    gives up, rather than waits, when the element it holds is replaced mid-scroll; so try
    again with a fresh lookup."""
    from playwright.sync_api import Error as PlaywrightError

    for attempt in range(5):
        try:
            page.locator('[data-testid="stPlotlyChart"]').first.scroll_into_view_if_needed(
                timeout=5_000
            )
            return
        except PlaywrightError:
            if attempt == 4:
                raise
            time.sleep(0.5)
