"""The researchers' page and the children's downloads in real headless Chromium (Playwright)."""

from __future__ import annotations

import io
import json
import re
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ..live.test_feed import BLOCKED_TERM, Served, serve_app
from .test_ui_browser import (
    ARTIFACTS,
    CHROMIUM,
    CHROMIUM_ARGS,
    Watched,
    _require_browser,
    start_journey,
    wait_for_end,
)

pytestmark = pytest.mark.browser

DESKTOP = {"width": 1280, "height": 900}
TABLET = {"width": 768, "height": 1024}
PHONE = {"width": 390, "height": 844}
WORKSHOP = "class-4b"
#: Runs seeded once for the module: more than one page of the page's 25 rows.
SEEDED = {"dada": 24, "stillepost": 3}
RESEARCH_FORMATS = ("QDPX", "QDC", "ROCRATE", "XLSX", "DOCX", "JSON", "XML", "CSV")


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """A real server with runs of two configs, some from one workshop, one blocked."""
    _require_browser()
    for served in serve_app(tmp_path_factory.mktemp("research"), {}):
        ids = []
        for config, count in SEEDED.items():
            for n in range(count):
                session = WORKSHOP if n % 3 == 0 else "class-9a"
                ids.append(served.start(config, f"Ein Hund {n}", session_id=session))
        ids.append(served.start("dada", f"Ein {BLOCKED_TERM} im Garten", session_id=WORKSHOP))
        for run_id in ids:
            served.record(run_id)
        yield served


@pytest.fixture(scope="module")
def browser(served: Served) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
        )
        try:
            yield browser
        finally:
            browser.close()


class Recorded(Watched):
    """A watched page that also records every URL it requests and the headers sent."""

    def __init__(self, browser: Any, viewport: dict[str, int], locale: str = "de-DE") -> None:
        super().__init__(browser, viewport, locale)
        self.requests: list[Any] = []
        self.context.on("request", lambda request: self.requests.append(request))

    def urls(self) -> list[str]:
        return [request.url for request in self.requests]


@pytest.fixture
def page(browser: Any) -> Iterator[Recorded]:
    watched = Recorded(browser, DESKTOP)
    yield watched
    watched.close()


def token_of(served: Served) -> str:
    return str(served.app.extensions["devserver"].settings.research_token)


def api(served: Served, path: str) -> Any:
    status, _, data = served.call(
        "GET", path, headers={"Authorization": "Bearer " + token_of(served)}
    )
    assert status == 200, data
    return json.loads(data)


def sign_in(page: Any, served: Served) -> None:
    page.goto(served.base + "/research")
    page.fill("#token", token_of(served))
    page.click("#signin-button")
    page.wait_for_selector("#workspace:not([hidden]) #runs-table tbody tr")
    page.wait_for_selector("#chart-status g.bar")


def rows(page: Any) -> list[dict[str, str]]:
    return page.eval_on_selector_all(
        "#runs-table tbody tr[data-run-id]",
        """rows => rows.map(r => ({id: r.dataset.runId, config: r.cells[1].textContent,
            status: r.cells[2].textContent, workshop: r.cells[4].textContent}))""",
    )


def wait_count(tab: Any, selector: str, count: int) -> None:
    """Wait until ``selector`` matches ``count`` elements (a function: the CSP forbids eval)."""
    tab.wait_for_function(
        "([selector, count]) => document.querySelectorAll(selector).length === count",
        arg=[selector, count],
    )


def load_every_image(tab: Any) -> None:
    """Scroll each (lazily loaded) image into view and wait until it is decoded."""
    images = tab.locator("#stage-4 img.output-image")
    for k in range(images.count()):
        images.nth(k).scroll_into_view_if_needed()
    tab.wait_for_function(
        "() => [...document.querySelectorAll('#stage-4 img')].every(i => i.naturalWidth > 0)"
    )
    tab.evaluate("window.scrollTo(0, 0)")


def total_runs() -> int:
    return sum(SEEDED.values()) + 1


def test_a_wrong_token_is_refused_clearly_and_the_right_one_opens_the_page(
    served: Served, page: Recorded
) -> None:
    tab = page.page
    tab.goto(served.base + "/research")
    wrong = "not-the-token-" + "x" * 30
    tab.fill("#token", wrong)
    tab.click("#signin-button")
    error = tab.locator("#signin-error")
    error.wait_for(state="visible")
    assert "nicht gültig" in error.inner_text()
    assert tab.locator("#workspace").is_hidden()
    tab.click("button.lang[data-lang='en']")
    assert "not valid" in error.inner_text()
    tab.fill("#token", token_of(served))
    tab.click("#signin-button")
    tab.wait_for_selector("#runs-table tbody tr[data-run-id]")
    assert tab.locator("#signin").is_hidden() and error.is_hidden()
    # One page of 25, then the API's cursor brings the rest.
    assert len(rows(tab)) == 25
    tab.click("#more")
    wait_count(tab, "#runs-table tbody tr", total_runs())
    assert tab.locator("#more").is_hidden()
    assert len({row["id"] for row in rows(tab)}) == total_runs()
    # Kept in this tab's sessionStorage only; a reload stays signed in.
    token = token_of(served)
    assert tab.evaluate("sessionStorage.getItem('research-token')") == token
    assert tab.evaluate("localStorage.getItem('research-token')") is None
    tab.reload()
    tab.wait_for_selector("#runs-table tbody tr[data-run-id]")
    # The token went out in the Authorization header, never in any URL.
    research = [r for r in page.requests if re.search(r"/api/(runs|stats|exports)(\?|$)", r.url)]
    sent = [r.headers.get("authorization") for r in research]
    assert sent[0] == "Bearer " + wrong and len(sent) > 3
    assert set(sent[1:]) == {"Bearer " + token}
    assert not [url for url in page.urls() if token in url]
    tab.click("#signout")
    assert tab.evaluate("sessionStorage.getItem('research-token')") is None
    assert not page.errors and not page.dialogs


def test_filters_narrow_the_table(served: Served, page: Recorded) -> None:
    tab = page.page
    sign_in(tab, served)
    # Switching the language re-renders the table: headings, statuses and local times.
    german_time = tab.locator("td.time").first.inner_text()
    tab.click("button.lang[data-lang='en']")
    assert tab.locator("#runs-table th").first.inner_text() == "Started"
    assert tab.locator("td.status").first.inner_text() in ("success", "blocked")
    assert tab.locator("td.time").first.inner_text() != german_time
    tab.click("button.lang[data-lang='de']")
    assert tab.locator("td.time").first.inner_text() == german_time
    tab.select_option("#f-config", "stillepost")
    tab.click("#apply")
    wait_count(tab, "#runs-table tbody tr", SEEDED["stillepost"])
    assert {row["config"] for row in rows(tab)} == {"stillepost"}
    tab.select_option("#f-config", "")
    tab.select_option("#f-status", "blocked")
    tab.click("#apply")
    wait_count(tab, "#runs-table tbody tr", 1)
    assert rows(tab)[0]["status"] == "gestoppt"
    # The workshop filter takes the raw session id; the table shows only its pseudonym.
    tab.select_option("#f-status", "")
    tab.fill("#f-session", WORKSHOP)
    tab.click("#apply")
    expected = api(served, f"/api/runs?session_id={WORKSHOP}&limit=100")["runs"]
    wait_count(tab, "#runs-table tbody tr", len(expected))
    assert {row["id"] for row in rows(tab)} == {run["run_id"] for run in expected}
    assert len({row["workshop"] for row in rows(tab)}) == 1
    assert WORKSHOP not in tab.content()
    # A time window in the future holds nothing.
    tab.fill("#f-since", "2999-01-01T00:00")
    tab.click("#apply")
    tab.wait_for_selector("#runs-empty:not([hidden])")
    assert rows(tab) == []
    # A window that ends before it starts: the API's refusal is shown, as text.
    tab.fill("#f-until", "2998-01-01T00:00")
    tab.click("#apply")
    error = tab.locator("#filters-error")
    error.wait_for(state="visible")
    assert error.inner_text().startswith("Der Server lehnt die Anfrage ab: ")
    assert "since" in error.inner_text()
    # The device filter follows the API: disabled, with a reason, until /api/runs has it.
    _, spec = served.json("GET", "/api/openapi.json")
    names = {p["name"] for p in spec["paths"]["/api/runs"]["get"].get("parameters", [])}
    assert tab.locator("#f-device").is_disabled() == ("device_id" not in names)
    hint = tab.locator("#f-device-hint").inner_text()
    assert ("noch nicht" in hint) == ("device_id" not in names)
    assert not page.errors and not page.dialogs


def test_the_statistics_chart_shows_the_apis_numbers(served: Served, page: Recorded) -> None:
    tab = page.page
    sign_in(tab, served)
    stats = api(served, "/api/stats")
    drawn = tab.eval_on_selector_all(
        "#chart-status g.bar",
        "bars => bars.map(b => [b.dataset.key, b.querySelector('.bar-count').textContent,"
        " b.querySelector('rect').getAttribute('width')])",
    )
    assert {key: int(count) for key, count, _ in drawn} == stats["by_status"]
    assert stats["by_status"] == {"success": sum(SEEDED.values()), "blocked": 1}
    widths = {key: float(width) for key, _, width in drawn}
    assert widths["success"] > widths["blocked"]  # bars in proportion to the counts
    by_config = tab.eval_on_selector_all(
        "#chart-config g.bar", "bars => bars.map(b => [b.dataset.key, b.dataset.count])"
    )
    assert {key: int(n) for key, n in by_config} == stats["by_config"]
    assert str(stats["runs"]) in tab.locator("#stats-total").inner_text()
    # Filtered, the chart follows the filter.
    tab.select_option("#f-config", "stillepost")
    tab.click("#apply")
    wait_count(tab, "#chart-config g.bar", 1)
    assert tab.eval_on_selector("#chart-config g.bar", "b => b.dataset.count") == str(
        SEEDED["stillepost"]
    )
    assert not page.errors and not page.dialogs


def test_a_batch_download_streams_a_zip_with_its_manifest(
    served: Served, page: Recorded, tmp_path: Path
) -> None:
    tab = page.page
    sign_in(tab, served)
    tab.fill("#f-session", WORKSHOP)
    tab.click("#apply")
    expected = api(served, f"/api/runs?session_id={WORKSHOP}&limit=100")["runs"]
    tab.select_option("#format", "json")
    # Every text the progress line shows, in order (installed from outside the page's CSP).
    tab.evaluate(
        """() => { window.seen = []; new MutationObserver(() => window.seen.push(
            document.getElementById('download-progress').textContent)).observe(
            document.getElementById('download-progress'), {childList: true, subtree: true}); }"""
    )
    with tab.expect_download() as caught:
        tab.click("#download")
    download = caught.value
    assert re.fullmatch(r"runs_json_\d{8}T\d{6}Z\.zip", download.suggested_filename)
    saved = tmp_path / download.suggested_filename
    download.save_as(saved)
    with zipfile.ZipFile(saved) as archive:
        assert archive.testzip() is None
        manifest = json.loads(archive.read("manifest.json"))
        assert manifest["runs"] == len(expected)
        assert manifest["format"]["name"] == "json"
        exported = {f["run_id"] for f in manifest["files"] if f["kind"] == "export"}
        assert exported == {run["run_id"] for run in expected}
    seen = tab.evaluate("window.seen")
    received = [text for text in seen if text.endswith("empfangen …")]
    assert received[0] == "0 B empfangen …"
    assert any(re.match(r"[1-9][\d.]* (B|KiB|MiB) empfangen", text) for text in received)
    progress = tab.locator("#download-progress").inner_text()
    assert progress.startswith("Fertig: runs_json_") and "KiB" in progress
    token = token_of(served)
    assert not [url for url in page.urls() if token in url]
    exports_requests = [r for r in page.requests if "/api/exports" in r.url]
    assert len(exports_requests) == 1
    assert exports_requests[0].headers.get("authorization") == "Bearer " + token
    assert not page.errors and not page.dialogs
    # The page with a journey opened, for the docs.
    tab.locator("#runs-table tbody tr[data-run-id]", has_text="stillepost").first.locator(
        "button"
    ).click()
    tab.wait_for_selector("tr.journey-row ol.items li")
    ARTIFACTS.mkdir(exist_ok=True)
    tab.screenshot(path=str(ARTIFACTS / "research-page.png"), full_page=True, animations="disabled")


def test_the_childrens_page_offers_the_picture_book_and_images_only(
    served: Served, browser: Any, tmp_path: Path
) -> None:
    pypdf = pytest.importorskip("pypdf")
    tablet = Recorded(browser, TABLET)
    try:
        tab = tablet.page
        run_id = start_journey(tab, served.base, "Ein Hund spielt im Garten", config="triptych")
        wait_for_end(tab)
        load_every_image(tab)
        ARTIFACTS.mkdir(exist_ok=True)
        tab.screenshot(path=str(ARTIFACTS / "ui-tablet.png"), full_page=True, animations="disabled")
        box = tab.locator("#downloads")
        shown = box.inner_text()
        for name in RESEARCH_FORMATS:
            assert name not in shown.upper()
        links = tab.locator("#download-list a")
        hrefs = [links.nth(k).get_attribute("href") for k in range(links.count())]
        images = [h for h in hrefs if h and "/media/" in h]
        assert hrefs[0] == f"/api/runs/{run_id}/export/picturebook"
        assert len(images) == 3 and len(hrefs) == 4  # the triptych's three pictures
        assert "Bilderbuch" in links.nth(0).inner_text()
        with tab.expect_download() as caught:
            links.nth(0).click()
        book = tmp_path / "book.pdf"
        caught.value.save_as(book)
        reader = pypdf.PdfReader(io.BytesIO(book.read_bytes()), strict=True)
        text = " ".join(page.extract_text() for page in reader.pages)
        assert "Ein Hund spielt im Garten" in text and "Ausgabe 3" in text
        with tab.expect_download() as caught:
            links.nth(1).click()
        picture = tmp_path / "picture"
        caught.value.save_as(picture)
        assert picture.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert not tablet.errors and not tablet.dialogs
    finally:
        tablet.close()
    phone = Recorded(browser, PHONE, locale="en-GB")
    try:
        phone.page.goto(f"{served.base}/?run={run_id}")
        wait_for_end(phone.page)
        assert "Picture book" in phone.page.locator("#download-list").inner_text()
        load_every_image(phone.page)
        width = phone.page.evaluate("document.documentElement.scrollWidth")
        assert width <= PHONE["width"], "the page must not scroll sideways on a phone"
        phone.page.screenshot(
            path=str(ARTIFACTS / "ui-phone.png"), full_page=True, animations="disabled"
        )
    finally:
        phone.close()
