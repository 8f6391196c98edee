"""The journey page in real headless Chromium (Debian's package, driven by Playwright)."""

from __future__ import annotations

import os
import re
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ..live.test_feed import BLOCKED_TERM, Served, serve_app

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = Path(__file__).resolve().parents[3] / "test-artifacts"
TABLET = {"width": 1024, "height": 768}
PHONE = {"width": 390, "height": 844}
HOSTILE = "<img src=x onerror=alert(1)> und <script>alert(1)</script> im Garten"


def _require_browser() -> None:
    """Skip without Chromium or Playwright locally; in CI (CI=true) that is a failure."""
    missing = None
    if not CHROMIUM.exists():
        missing = f"{CHROMIUM} is not installed (apt-get install chromium)"
    else:
        try:
            import playwright.sync_api  # noqa: F401
        except ImportError:
            missing = "playwright is not installed (pip install -e '.[test]')"
    if missing is None:
        return
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"browser tests are required in CI: {missing}")
    pytest.skip(missing)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """A real server for the page (shipped configs plus ``mixed``, the scripted backend)."""
    _require_browser()
    # A quick pace: these tests are about what is shown, test_ui_journey.py about the pace.
    yield from serve_app(
        tmp_path_factory.mktemp("ui"), {"FEED_HEARTBEAT_S": 1.0, "JOURNEY_STEP_MS": 40}
    )


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


class Watched:
    """A page with everything that must not happen recorded: dialogs, page errors, CSP reports."""

    def __init__(self, browser: Any, viewport: dict[str, int], locale: str = "de-DE") -> None:
        self.context = browser.new_context(viewport=viewport, locale=locale)
        self.page = self.context.new_page()
        self.dialogs: list[str] = []
        self.errors: list[str] = []
        self.page.on("dialog", self._dialog)
        self.page.on("pageerror", lambda error: self.errors.append(str(error)))
        self.page.on(
            "console",
            lambda message: (
                self.errors.append(message.text)
                if message.type == "error" and "Content Security Policy" in message.text
                else None
            ),
        )

    def _dialog(self, dialog: Any) -> None:
        self.dialogs.append(dialog.message)
        dialog.dismiss()

    def close(self) -> None:
        self.context.close()


@pytest.fixture
def watched(browser: Any) -> Iterator[Watched]:
    page = Watched(browser, TABLET)
    yield page
    page.close()


def start_journey(page: Any, base: str, text: str, config: str = "stillepost") -> str:
    """Open the page, type ``text``, pick ``config``, start by keyboard; returns the run id."""
    page.goto(base + "/")
    page.wait_for_selector(f"#config option[value='{config}']", state="attached")
    page.locator("#prompt").fill(text)
    page.select_option("#config", config)
    page.focus("#level")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.id") == "start"
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(r"[?&]run=[0-9a-f]{32}"))
    run_id = re.search(r"run=([0-9a-f]{32})", page.url)
    assert run_id is not None
    return run_id.group(1)


def wait_for_end(page: Any) -> None:
    page.wait_for_selector("#downloads:not([hidden]) a.download", timeout=30_000)


def iteration_texts(page: Any) -> list[tuple[str, str]]:
    rows = page.locator("#stage-2 li.iteration")
    return [
        (rows.nth(k).get_attribute("data-iteration") or "", rows.nth(k).text_content() or "")
        for k in range(rows.count())
    ]


def test_stille_post_journey_shows_eight_iterations_in_order_and_downloads_work(
    served: Served, browser: Any, watched: Watched
) -> None:
    page = watched.page
    run_id = start_journey(page, served.base, "Ein Hund spielt im Garten")
    wait_for_end(page)
    rows = iteration_texts(page)
    assert [n for n, _ in rows] == [str(n) for n in range(1, 9)]
    record = served.record(run_id)
    texts = [i["content"] for i in record["items"] if i["item_type"] == "interception_iteration"]
    for (_, shown), text in zip(rows, texts, strict=True):
        assert text in shown
    assert rows[0][1].startswith("1. Deutsch → Französisch")
    for n in range(1, 5):
        assert page.get_attribute(f"#stage-{n}", "data-status") == "done"
    image = page.locator("#stage-4 img.output-image")
    assert image.count() == 1
    assert page.evaluate("document.querySelector('#stage-4 img').naturalWidth") == 512
    assert page.locator("#run-status").inner_text() == "Fertig! Die Reise ist zu Ende."
    # The config's description and the output's name come in the page's language.
    description = page.locator("#config-description")
    card_title = page.locator("#stage-4 .card-title").first
    assert description.inner_text().startswith("Stille Post: Deine Eingabe wandert")
    assert (card_title.text_content() or "").endswith(": Bild")
    page.click("button.lang[data-lang='en']")
    assert description.inner_text().startswith("Stille Post (Chinese whispers): the prompt")
    assert (card_title.text_content() or "").endswith(": picture")
    page.click("button.lang[data-lang='de']")
    # Every download link works: the picture book and the picture, nothing for researchers.
    links = page.locator("#download-list a")
    hrefs = [links.nth(k).get_attribute("href") for k in range(links.count())]
    assert hrefs[0] == f"/api/runs/{run_id}/export/picturebook"
    assert len(hrefs) == 2 and re.fullmatch(rf"/api/runs/{run_id}/media/[\w.-]+", hrefs[1] or "")
    fetched = page.evaluate(
        "async (url) => { const r = await fetch(url);"
        " return [r.status, r.headers.get('content-type')]; }",
        hrefs[0],
    )
    assert fetched == [200, "application/pdf"]
    for href in hrefs:
        with urllib.request.urlopen(served.base + href, timeout=60) as answer:
            assert answer.status == 200 and answer.read(1)
    # The page obeys its own Content-Security-Policy and raised nothing.
    assert watched.errors == [] and watched.dialogs == []
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "ui-journey.png"), full_page=True, animations="disabled")
    # The same journey on a phone-sized screen, in English.
    phone = Watched(browser, PHONE, locale="en-GB")
    try:
        phone.page.goto(f"{served.base}/?run={run_id}")
        wait_for_end(phone.page)
        assert phone.page.locator("h1").inner_text() == "Your idea's journey"
        assert len(iteration_texts(phone.page)) == 8
        width = phone.page.evaluate("document.documentElement.scrollWidth")
        assert width <= PHONE["width"], "the page must not scroll sideways on a phone"
        phone.page.screenshot(
            path=str(ARTIFACTS / "ui-journey-phone.png"), full_page=True, animations="disabled"
        )
    finally:
        phone.close()


def test_hostile_prompt_is_shown_as_text_and_runs_nothing(served: Served, watched: Watched) -> None:
    page = watched.page
    start_journey(page, served.base, HOSTILE, config="dada")
    wait_for_end(page)
    assert page.locator("#stage-1 .entry.input .entry-text").inner_text() == HOSTILE
    # No element was made from the prompt: the only image is the generated one.
    sources = page.eval_on_selector_all("img", "nodes => nodes.map(n => n.getAttribute('src'))")
    assert all(re.fullmatch(r"/api/runs/[0-9a-f]{32}/media/[\w.-]+", s or "") for s in sources)
    assert len(sources) == 1
    assert page.eval_on_selector_all("main script", "nodes => nodes.length") == 0
    assert watched.dialogs == [] and watched.errors == []


def test_blocked_prompt_shows_the_kind_message_in_the_ui_language(
    served: Served, browser: Any, watched: Watched
) -> None:
    page = watched.page
    start_journey(page, served.base, f"Ein {BLOCKED_TERM} im Garten")
    wait_for_end(page)
    message = page.locator("#stage-1 .kind-message")
    assert "in Deutschland verboten" in message.inner_text()
    assert message.get_attribute("role") == "alert"
    assert page.get_attribute("#stage-1", "data-status") == "blocked"
    assert [page.get_attribute(f"#stage-{n}", "data-status") for n in (2, 3, 4)] == ["skipped"] * 3
    assert page.locator("#stage-2 li.iteration").count() == 0
    # Switching the language re-renders the message.
    page.click("button.lang[data-lang='en']")
    assert "forbidden in Germany" in message.inner_text()
    assert page.locator("html").get_attribute("lang") == "en"
    assert watched.errors == [] and watched.dialogs == []


def test_reload_mid_run_resumes_without_losing_or_repeating_steps(
    served: Served, watched: Watched
) -> None:
    page = watched.page
    served.backend.delay_s = 0.3  # each translation takes a while: the run lasts ~3 s
    try:
        run_id = start_journey(page, served.base, "Ein Hund spielt im Garten")
        page.wait_for_selector("#stage-2 li.iteration[data-iteration='2']")
        page.reload()
        page.wait_for_selector("#stage-2 li.iteration[data-iteration='1']")
        assert page.get_attribute("#stage-4", "data-status") == "pending"  # still going
        wait_for_end(page)
    finally:
        served.backend.delay_s = 0.0
    assert [n for n, _ in iteration_texts(page)] == [str(n) for n in range(1, 9)]
    assert page.locator("#stage-1 .entry.input").count() == 1
    assert page.locator("#stage-4 img.output-image").count() == 1
    assert served.record(run_id)["status"] == "success"
    assert watched.errors == [] and watched.dialogs == []


def test_dropped_connection_reconnects_by_itself_with_last_event_id(
    served: Served, watched: Watched
) -> None:
    """The server cuts the stream mid-run; the browser resumes after the last step it saw."""
    page = watched.page
    streams: list[Any] = []
    page.on(
        "request", lambda request: streams.append(request) if "/events" in request.url else None
    )
    backend = served.backend
    backend.hold_word, backend.hold_at_call = "Zauberwort", 4  # stage-2 step 3 waits
    reached, release = backend.hold
    try:
        start_journey(page, served.base, "Ein Hund Zauberwort im Garten")
        assert reached.wait(10)
        page.wait_for_selector("#stage-2 li.iteration[data-iteration='2']")
        assert served.cut_streams() >= 1
        page.wait_for_function("document.querySelectorAll('#stage-2 li.iteration').length == 2")
        deadline = time.monotonic() + 10
        while len(streams) < 2 and time.monotonic() < deadline:
            page.wait_for_timeout(100)
        release.set()
        wait_for_end(page)
    finally:
        release.set()
        backend.hold_word = None
    assert [n for n, _ in iteration_texts(page)] == [str(n) for n in range(1, 9)]
    sent = [request.all_headers().get("last-event-id") for request in streams]
    assert len(sent) >= 2 and sent[0] is None and int(sent[1] or 0) >= 2
    assert page.locator("#stage-1 .entry.input").count() == 1
    assert watched.errors == [] and watched.dialogs == []


def test_the_page_cannot_loosen_the_workshops_age_level(served: Served, watched: Watched) -> None:
    """In a 'kids' workshop the page offers only 'kids'; a level added by hand is refused."""
    page = watched.page
    page.goto(served.base + "/")
    page.wait_for_selector("#config option[value='stillepost']", state="attached")
    options = page.locator("#level option")
    assert [options.nth(k).get_attribute("value") for k in range(options.count())] == ["kids"]
    # A child with the browser's tools adds a looser level and picks it.
    page.evaluate(
        """() => {
            const option = document.createElement("option");
            option.value = "research"; option.textContent = "Forschung";
            document.getElementById("level").append(option);
            document.getElementById("level").value = "research";
        }"""
    )
    page.locator("#prompt").fill("Ein Mörder tötet mit einer Waffe, überall Blut")
    page.click("#start")
    error = page.locator("#form-error")
    error.wait_for(state="visible")
    assert "research token" in (error.text_content() or "")
    assert "run=" not in page.url  # no run was started
    assert not watched.errors and not watched.dialogs


@pytest.mark.parametrize(
    ("config", "german", "english", "note"),
    [
        ("stillepost", "Ein Bild entsteht", "A picture appears", "8 von 8 Verwandlungen"),
        ("dada", "Ein Bild entsteht", "A picture appears", None),
        ("triptych", "Bilder entstehen", "Pictures appear", "3 von 3 Verwandlungen"),
        ("image_and_sound", "Bild und Klang entstehen", "Pictures and sounds appear", None),
    ],
)
def test_stage_4_is_titled_by_what_the_config_makes(
    served: Served, watched: Watched, config: str, german: str, english: str, note: str | None
) -> None:
    """One picture is not "Bild und Klang"; a single step gets no "1 von 1" note."""
    page = watched.page
    start_journey(page, served.base, "Ein Hund spielt im Garten", config=config)
    wait_for_end(page)
    title = page.locator("#stage-4 h3 span[data-i18n^='stage4']")
    assert title.inner_text() == german
    assert german in page.locator("#run-step").inner_text()  # the step line says it too
    notes = page.locator("#stage-2 .iterations-done")
    if note is None:
        assert notes.count() == 0
    else:
        assert notes.inner_text() == note
    page.click("button.lang[data-lang='en']")
    assert title.inner_text() == english
    page.click("button.lang[data-lang='de']")
    assert not watched.errors and not watched.dialogs
