"""The classroom settings of the page: workshop, recording notice, the journey's pace."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from lxml import html

from devserver import SettingsError, create_app


def page_of(make_app: Any, **config: Any) -> Any:
    response = make_app(**config).test_client().get("/")
    assert response.status_code == 200
    return html.fromstring(response.data)


def test_the_defaults_name_no_workshop_and_show_the_pages_own_notice(make_app: Any) -> None:
    page = page_of(make_app)
    (notice,) = page.xpath("//*[@id='recording-notice']")
    assert notice.get("data-workshop") == "" and notice.get("data-notice") == ""
    assert "Forschungsprojekt" in notice.text_content()
    (journey,) = page.xpath("//*[@id='journey']")
    assert journey.get("data-step-ms") == "900"


def test_a_teachers_workshop_notice_and_pace_reach_the_page_as_text(make_app: Any) -> None:
    hostile = '<script>alert(1)</script> "Klasse" 4b'
    page = page_of(
        make_app, WORKSHOP=hostile, RECORDING_NOTICE="Wir forschen & lernen.", JOURNEY_STEP_MS="0"
    )
    (notice,) = page.xpath("//*[@id='recording-notice']")
    assert notice.get("data-workshop") == hostile  # an attribute value, escaped
    assert notice.get("data-notice") == "Wir forschen & lernen."
    assert notice.text_content() == "Wir forschen & lernen."
    assert not page.xpath("//body//script")
    assert page.xpath("//*[@id='journey']")[0].get("data-step-ms") == "0"


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"WORKSHOP": "x" * 129}, "DEVSERVER_WORKSHOP must be at most 128"),
        ({"WORKSHOP": "4b\ud800"}, "DEVSERVER_WORKSHOP must be valid text"),
        ({"RECORDING_NOTICE": "x" * 501}, "DEVSERVER_RECORDING_NOTICE must be at most 500"),
        ({"JOURNEY_STEP_MS": "fast"}, "DEVSERVER_JOURNEY_STEP_MS must be a number"),
        ({"JOURNEY_STEP_MS": "-1"}, "DEVSERVER_JOURNEY_STEP_MS must be at least 0"),
        ({"JOURNEY_STEP_MS": "10001"}, "DEVSERVER_JOURNEY_STEP_MS must be at most 10000"),
    ],
)
def test_unusable_classroom_settings_stop_the_start_naming_the_variable(
    tmp_path: Path, config: dict[str, Any], message: str
) -> None:
    with pytest.raises(SettingsError, match=message):
        create_app({"DATA_DIR": str(tmp_path), **config})
