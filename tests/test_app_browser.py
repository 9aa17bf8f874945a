"""The app in Chromium, for what AppTest cannot see: a fresh server whose very first request
is a deep link (/gates?owner=...) must still go through app.py's navigation and sidebar,
not Streamlit's legacy pages/ mode."""

import pytest

from tests.browser_support import launch, streamlit_server

pytestmark = pytest.mark.browser


@pytest.fixture
def fresh_server(tmp_path):
    with streamlit_server(tmp_path) as url:
        yield url


def test_first_request_is_a_deep_link(fresh_server):
    from playwright.sync_api import expect, sync_playwright

    token = "abcdefghijklmnopqrstuv"
    with sync_playwright() as p:
        browser = launch(p)
        page = browser.new_page(viewport={"width": 1300, "height": 900})
        page.goto(f"{fresh_server}/gates?owner={token}")
        expect(page.get_by_role("heading", name="Gates")).to_be_visible(timeout=30_000)
        nav = page.get_by_test_id("stSidebarNav")
        expect(nav.get_by_text("Home", exact=True)).to_be_visible()  # app.py's menu...
        expect(nav.get_by_text("app", exact=True)).to_have_count(0)  # ...not the legacy one
        expect(page.get_by_text("Device:")).to_be_visible()
        assert f"owner={token}" in page.url
        browser.close()


def test_a_bad_setting_is_one_message_even_on_a_first_deep_link(tmp_path, monkeypatch):
    from playwright.sync_api import expect, sync_playwright

    monkeypatch.setenv("CHARRNN_MAX_HIDDEN", "abc")
    with streamlit_server(tmp_path) as url, sync_playwright() as p:
        browser = launch(p)
        page = browser.new_page(viewport={"width": 1300, "height": 900})
        for path in ("/train?owner=abcdefghijklmnopqrstuv", "/", "/sample"):
            page.goto(f"{url}{path}")
            alert = page.get_by_test_id("stAlertContentError")
            expect(alert).to_contain_text("CHARRNN_MAX_HIDDEN='abc'", timeout=30_000)
            expect(alert).to_contain_text("restart the server")
            expect(page.get_by_test_id("stException")).to_have_count(0)
        browser.close()
