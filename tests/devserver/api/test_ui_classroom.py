"""The page in a classroom, in real Chromium: devices, workshops, the recording notice, the
words for every outcome, and a journey shown step by step at a child's pace."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest

from ..live.test_feed import Served, serve_app
from ..outcomes import OUTCOME_CONFIGS, OUTCOMES
from .test_ui_browser import CHROMIUM, CHROMIUM_ARGS, TABLET, Watched, _require_browser

pytestmark = pytest.mark.browser

SERVER_WORKSHOP = "werkstatt-am-server"
#: The paced server's step: long enough that a step is never missed between two looks.
PACED_MS = 500


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    _require_browser()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
        )
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture(scope="module")
def classroom(tmp_path_factory: pytest.TempPathFactory, browser: Any) -> Iterator[Served]:
    """A server with a workshop set and the outcome configs, at a quick pace."""
    yield from serve_app(
        tmp_path_factory.mktemp("classroom"),
        {"WORKSHOP": SERVER_WORKSHOP, "JOURNEY_STEP_MS": 40},
        OUTCOME_CONFIGS,
    )


@pytest.fixture(scope="module")
def paced(tmp_path_factory: pytest.TempPathFactory, browser: Any) -> Iterator[Served]:
    """A server whose page shows a step every ``PACED_MS`` (the backend stays instant)."""
    yield from serve_app(tmp_path_factory.mktemp("paced"), {"JOURNEY_STEP_MS": PACED_MS})


@pytest.fixture
def watched(browser: Any) -> Iterator[Watched]:
    page = Watched(browser, TABLET)
    yield page
    page.close()


def open_page(page: Any, url: str, config: str = "stillepost") -> None:
    page.goto(url)
    page.wait_for_selector(f"#config option[value='{config}']", state="attached")


def start(page: Any, text: str, config: str = "stillepost") -> str:
    """Start a run on the open page; returns its id."""
    page.locator("#prompt").fill(text)
    page.select_option("#config", config)
    before = page.url
    page.click("#start")
    page.wait_for_url(lambda url: url != before and re.search(r"run=[0-9a-f]{32}", url))
    found = re.search(r"run=([0-9a-f]{32})", page.url)
    assert found is not None
    return found.group(1)


def wait_for_end(page: Any) -> None:
    page.wait_for_selector("#downloads:not([hidden]) a.download", timeout=60_000)


def words(text: str | None) -> str:
    return " ".join((text or "").split())


def research_get(served: Served, path: str) -> Any:
    import json

    token = served.app.extensions["devserver"].settings.research_token
    status, _, data = served.call("GET", path, headers={"Authorization": f"Bearer {token}"})
    assert status == 200, data
    return json.loads(data)


# ------------------------------------------------------------------ devices and workshops


def test_device_id_is_made_once_and_sent_with_the_workshop_of_the_link_or_the_server(
    classroom: Served, browser: Any, watched: Watched
) -> None:
    page = watched.page
    open_page(page, classroom.base + "/?workshop=4b")
    device = page.evaluate("localStorage.getItem('journey-device')")
    assert re.fullmatch(r"[0-9a-f]{32}", device or ""), device
    first = start(page, "Ein Hund spielt im Garten", config="dada")
    wait_for_end(page)
    # A second visit of the same browser keeps its id; without a workshop in the link
    # the server's workshop applies.
    open_page(page, classroom.base + "/")
    assert page.evaluate("localStorage.getItem('journey-device')") == device
    second = start(page, "Eine Katze", config="dada")
    wait_for_end(page)
    store = classroom.app.extensions["devserver"].store
    pseudonymiser = classroom.app.extensions["devserver"].pseudonymiser
    stored = {run_id: store.load(run_id) for run_id in (first, second)}
    assert stored[first].device_id == device and stored[first].session_id == "4b"
    assert stored[second].device_id == device and stored[second].session_id == SERVER_WORKSHOP
    # Shown only as pseudonyms.
    record = classroom.record(first)
    assert record["device_id"] is None and record["session_id"] is None
    assert record["device_pseudonym"] == pseudonymiser.device(device)
    assert record["session_pseudonym"] == pseudonymiser.session("4b")
    # The research list filters by the device.
    listed = research_get(classroom, f"/api/runs?device_id={device}")
    assert {run["run_id"] for run in listed["runs"]} == {first, second}
    assert device not in str(listed)
    # Another browser is another device.
    other = Watched(browser, TABLET)
    try:
        open_page(other.page, classroom.base + "/")
        made = other.page.evaluate("localStorage.getItem('journey-device')")
        assert re.fullmatch(r"[0-9a-f]{32}", made or "") and made != device
    finally:
        other.close()
    assert watched.errors == [] and watched.dialogs == []


def test_the_recording_notice_is_visible_in_both_languages(
    classroom: Served, watched: Watched
) -> None:
    page = watched.page
    open_page(page, classroom.base + "/")
    notice = page.locator("#recording-notice")
    assert notice.is_visible()
    assert "für ein Forschungsprojekt aufgezeichnet" in notice.inner_text()
    page.click("button.lang[data-lang='en']")
    assert "recorded for a research project" in notice.inner_text()
    page.click("button.lang[data-lang='de']")


# ------------------------------------------------------------------ honest outcomes

KIDS_DE, KIDS_EN = "„Kinder“", "“Children”"
NOTHING_DE, NOTHING_EN = (
    "Diesmal ist leider nichts entstanden.",
    "Sorry, nothing could be made this time.",
)
OUTCOME_WORDS = {
    "all blocked": (
        f"{NOTHING_DE} 2 Ausgaben passen nicht zur Altersstufe {KIDS_DE}. "
        "Probier es gern mit einer anderen Idee!",
        f"{NOTHING_EN} 2 outputs are not right for the age level {KIDS_EN}. "
        "Please try another idea!",
    ),
    "some blocked": (
        f"Fertig! 2 von 3 Ausgaben sind da. 1 Ausgabe passt nicht zur Altersstufe {KIDS_DE}.",
        f"Done! 2 of 3 outputs are here. 1 output is not right for the age level {KIDS_EN}.",
    ),
    "all failed": (
        f"{NOTHING_DE} 2 Ausgaben konnten nicht erstellt werden. Versuch es gleich noch einmal.",
        f"{NOTHING_EN} 2 outputs could not be made. Please try again in a moment.",
    ),
    "some failed": (
        "Fertig! 1 von 2 Ausgaben ist da. 1 Ausgabe konnte nicht erstellt werden.",
        "Done! 1 of 2 outputs is here. 1 output could not be made.",
    ),
    "mixed, none made": (
        f"{NOTHING_DE} 1 Ausgabe passt nicht zur Altersstufe {KIDS_DE}. "
        "2 Ausgaben konnten nicht erstellt werden. Probier es gern mit einer anderen Idee!",
        f"{NOTHING_EN} 1 output is not right for the age level {KIDS_EN}. "
        "2 outputs could not be made. Please try another idea!",
    ),
    "mixed, one made": (
        f"Fertig! 1 von 3 Ausgaben ist da. 1 Ausgabe passt nicht zur Altersstufe {KIDS_DE}. "
        "1 Ausgabe konnte nicht erstellt werden.",
        f"Done! 1 of 3 outputs is here. 1 output is not right for the age level {KIDS_EN}. "
        "1 output could not be made.",
    ),
}


@pytest.mark.parametrize("case", list(OUTCOMES))
def test_the_words_match_what_became_of_the_outputs(
    classroom: Served, watched: Watched, case: str
) -> None:
    config, fail_widths, status, _ = OUTCOMES[case]
    german, english = OUTCOME_WORDS[case]
    page = watched.page
    classroom.backend.fail_widths = set(fail_widths)
    try:
        open_page(page, classroom.base + "/", config=config)
        run_id = start(page, "Ein Hund spielt im Garten", config=config)
        wait_for_end(page)
    finally:
        classroom.backend.fail_widths = set()
    assert classroom.record(run_id)["status"] == status
    status_line = page.locator("#run-status")
    assert words(status_line.inner_text()) == german
    # No card promises outputs that did not come.
    cards = words(page.locator(".stages").inner_text())
    assert "trotzdem" not in cards
    page.click("button.lang[data-lang='en']")
    assert words(status_line.inner_text()) == english
    assert "still come" not in words(page.locator(".stages").inner_text())
    page.click("button.lang[data-lang='de']")
    assert words(status_line.inner_text()) == german
    assert watched.errors == [] and watched.dialogs == []


# ------------------------------------------------------------------ a journey worth watching

ITERATIONS = "#stage-2 li.iteration"
FIRST_SEEN = f"""() => {{
    const n = document.querySelectorAll("{ITERATIONS}").length;
    return n > 0 ? n : null;
}}"""


def shown(page: Any) -> int:
    count: int = page.locator(ITERATIONS).count()
    return count


def test_an_instant_journey_is_shown_step_by_step_with_controls_replay_and_skip(
    paced: Served, watched: Watched
) -> None:
    page = watched.page
    open_page(page, paced.base + "/")
    run_id = start(page, "Ein Hund spielt im Garten")
    # The first translation appears alone: the others come one by one after it.
    assert page.wait_for_function(FIRST_SEEN).json_value() == 1
    assert page.locator(f"{ITERATIONS}[data-iteration='8']").count() == 0
    page.click("#player-pause")
    # The run has ended on the server; the page, paused, still shows only the start.
    assert paced.record(run_id)["status"] == "success"
    paused_at = shown(page)
    assert 1 <= paused_at < 8
    assert page.locator("#downloads").is_hidden()
    assert page.locator("#run-status").inner_text() != "Fertig! Die Reise ist zu Ende."
    assert page.locator("#player-pause").inner_text() == "Weiter"
    # Step forward and back, one translation at a time, with its caption.
    page.click("#player-forward")
    assert shown(page) == paused_at + 1
    assert page.locator("#run-step").inner_text() == f"Übersetzung {paused_at + 1} von 8"
    page.click("#player-back")
    assert shown(page) == paused_at
    assert page.locator("#run-step").inner_text() == f"Übersetzung {paused_at} von 8"
    # Continue to the end.
    page.click("#player-pause")
    wait_for_end(page)
    assert shown(page) == 8
    assert page.locator("#run-status").inner_text() == "Fertig! Die Reise ist zu Ende."
    assert page.locator("#player-replay").is_enabled()
    # Replay from the start, then skip to the end.
    page.click("#player-replay")
    page.wait_for_function(f"document.querySelectorAll('{ITERATIONS}').length < 8")
    assert page.locator("#downloads").is_hidden()
    page.click("#player-all")
    wait_for_end(page)
    assert shown(page) == 8
    assert page.locator("#run-status").inner_text() == "Fertig! Die Reise ist zu Ende."
    assert watched.errors == [] and watched.dialogs == []


def test_with_a_slow_backend_the_page_says_which_step_runs_now(
    paced: Served, watched: Watched
) -> None:
    page = watched.page
    backend = paced.backend
    backend.hold_word, backend.hold_at_call = "Zauberwort", 4  # stage-2 step 3 waits
    reached, release = backend.hold
    reached.clear()
    release.clear()
    try:
        open_page(page, paced.base + "/")
        start(page, "Ein Hund Zauberwort im Garten")
        assert reached.wait(10)
        # Everything before the held step is shown; then the page says what runs now.
        page.wait_for_selector(f"{ITERATIONS}[data-iteration='2']", timeout=30_000)
        now = page.locator("#run-now")
        now.wait_for(state="visible", timeout=30_000)
        assert now.inner_text() == "Gerade läuft: Übersetzung 3 von 8 …"
        assert shown(page) == 2
        release.set()
        wait_for_end(page)
        assert now.is_hidden()
    finally:
        release.set()
        backend.hold_word = None
    assert watched.errors == [] and watched.dialogs == []


def test_reduced_motion_shows_steps_one_by_one_without_animation(
    paced: Served, browser: Any
) -> None:
    watched = Watched(browser, TABLET)
    page = watched.page
    try:
        page.emulate_media(reduced_motion="reduce")
        open_page(page, paced.base + "/")
        start(page, "Ein Hund spielt im Garten")
        assert page.wait_for_function(FIRST_SEEN).json_value() == 1
        animation = page.evaluate(
            f"getComputedStyle(document.querySelector('{ITERATIONS}')).animationName"
        )
        assert animation == "none"
        page.click("#player-all")
        wait_for_end(page)
        assert shown(page) == 8
        assert watched.errors == [] and watched.dialogs == []
    finally:
        watched.close()
