"""The page shows progress inside the running step, in real Chromium: ComfyUI's step k of n
while the fake ComfyUI holds the picture, then the picture; hostile streamed text stays text."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ..fake_generators import FakeChat, FakeComfyUI
from ..live.test_feed import Served, serve_app
from .test_generators import GENERATED, KEY
from .test_ui_browser import CHROMIUM, CHROMIUM_ARGS, TABLET, Watched, _require_browser
from .test_ui_classroom import open_page, start, wait_for_end

pytestmark = pytest.mark.browser


@pytest.fixture
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


@pytest.fixture
def gated(tmp_path: Path, browser: Any) -> Iterator[tuple[Served, FakeComfyUI, FakeChat]]:
    with FakeChat(gate_after=1, pieces=4) as chat, FakeComfyUI(gate_at=3) as comfy:
        extra = {
            "OPENAI_BASE_URL": chat.url, "OPENAI_MODEL": "tiny-model", "OPENAI_API_KEY": KEY,
            "COMFYUI_URL": comfy.url, "FEED_PROGRESS_S": 0.05, "JOURNEY_STEP_MS": 0,
        }  # fmt: skip
        served = serve_app(tmp_path, extra, (GENERATED,))
        yield next(served), comfy, chat
        served.close()


def test_the_running_box_shows_streamed_text_then_sampler_steps_then_the_picture(
    gated: tuple[Served, FakeComfyUI, FakeChat], browser: Any
) -> None:
    served, comfy, chat = gated
    watched = Watched(browser, TABLET)
    page = watched.page
    try:
        open_page(page, served.base + "/", config="generated")
        start(page, "<b>Ein Hund</b> spielt im Garten", config="generated")
        # stage 1: the chat server holds after its first chunk; the box shows that text
        assert chat.reached.wait(30)
        text = page.locator("#stage-1 .step-progress .step-progress-text")
        text.wait_for(timeout=30_000)
        assert text.inner_text() == chat.answers[0][: len(text.inner_text())]
        assert text.inner_text() and page.locator("#stage-1 .step-progress b").count() == 0
        chat.gate_after = None
        chat.release.set()
        # stage 4: ComfyUI holds at step 3 of 6; the box says so, with a progress bar
        assert comfy.reached.wait(30)
        box = page.locator("#stage-4 .step-progress[data-kind='steps']")
        box.wait_for(timeout=30_000)
        assert box.locator("p").inner_text() == "Schritt 3 von 6"
        assert box.locator("progress").get_attribute("max") == "6"
        comfy.release.set()
        wait_for_end(page)
        # once the step's item is there, its progress is gone
        assert page.locator(".step-progress").count() == 0
        assert not watched.errors and not watched.dialogs
    finally:
        watched.close()
