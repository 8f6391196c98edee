"""The journey page names the prompt's language and says why a text stays untranslated."""

from __future__ import annotations

import pytest

from ..checks import items_of
from ..live.test_feed import Served
from . import test_ui_browser as page_tests
from .test_ui_browser import Watched, iteration_texts, start_journey, wait_for_end

pytestmark = pytest.mark.browser

# The fixtures of the page's other tests: a real server and Debian's Chromium (skipped
# locally without them, a failure in CI).
served = page_tests.served
browser = page_tests.browser
watched = page_tests.watched


@pytest.mark.parametrize(
    ("prompt", "code", "german", "english"),
    [
        ("كلب يلعب في الحديقة", "ar", "Arabisch", "Arabic"),
        ("一只狗在花园里玩", "zh", "Chinesisch", "Chinese"),
    ],
)
def test_a_language_without_glossary_is_named_and_the_child_is_told_why(
    served: Served,
    watched: Watched,
    prompt: str,
    code: str,
    german: str,
    english: str,
) -> None:
    page = watched.page
    run_id = start_journey(page, served.base, prompt)
    wait_for_end(page)
    (user_input,) = items_of(served.record(run_id), "user_input_text")
    assert user_input["metadata"]["language"] == code
    # The step titles name the detected language, not "?".
    # text_content: the style sets titles in capitals, the text is as written.
    assert page.locator("#stage-1 .entry.input .entry-title").text_content() == (
        f"Deine Idee ({german})"
    )
    translation = page.locator("#stage-1 .entry.translation .entry-title")
    assert translation.text_content() == f"Nicht übersetzt ({german} → Englisch)"
    rows = iteration_texts(page)
    assert len(rows) == 8
    assert rows[0][1].startswith(f"1. {german} → Französisch: nicht übersetzt")
    assert rows[7][1].startswith(f"8. {german} → {german}: nicht übersetzt")
    # One kind message, in the page's language, says why the idea stays as it is.
    message = page.locator(".kind-message.unsupported-language")
    assert message.count() == 1
    assert message.get_attribute("role") == "status"
    assert message.inner_text() == (
        f"Unser Übersetzer kennt {german} leider noch nicht. Deshalb bleibt deine Idee, "
        "wie sie ist – die Reise geht trotzdem weiter!"
    )
    assert page.locator("#stage-4 img.output-image").count() == 1  # the journey went on
    page.click("button.lang[data-lang='en']")
    assert message.inner_text() == (
        f"Our translator doesn't know {english} yet, so your idea stays as it is. "
        "The journey goes on anyway!"
    )
    assert iteration_texts(page)[0][1].startswith(f"1. {english} → French: not translated")
    assert watched.errors == [] and watched.dialogs == []
