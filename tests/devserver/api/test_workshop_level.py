"""The age level is the workshop's, set on the server: a run cannot loosen it without the token."""

from __future__ import annotations

from typing import Any

import pytest

from ..research_support import bearer

VIOLENT = "Ein Mörder tötet mit einer Waffe, überall Blut"


def _post(client: Any, headers: dict[str, str] | None = None, **body: Any) -> Any:
    return client.post(
        "/api/runs?wait=true",
        json={"config": "stillepost", "input": VIOLENT, **body},
        headers=headers or {},
    )


def _record(client: Any, answer: Any) -> dict[str, Any]:
    assert answer.status_code == 200, answer.json
    record: dict[str, Any] = client.get(f"/api/runs/{answer.json['run_id']}").json
    return record


@pytest.mark.parametrize("looser", ["teens", "adults", "research"])
def test_a_less_protective_level_than_the_workshops_is_refused_without_the_token(
    client: Any, looser: str
) -> None:
    answer = _post(client, safety_level=looser)
    assert answer.status_code == 403
    assert answer.json["error"]["code"] == "safety_level_not_allowed"
    assert "'kids'" in answer.json["error"]["message"]
    wrong = _post(client, {"Authorization": "Bearer not-the-token"}, safety_level=looser)
    assert wrong.status_code == 403 and wrong.json["error"]["code"] == "forbidden"


def test_the_workshops_level_applies_when_a_run_names_none_and_blocks_violence(
    client: Any,
) -> None:
    record = _record(client, _post(client))
    assert (record["safety_level"], record["safety_level_set_by"]) == ("kids", "workshop")
    assert record["status"] in ("blocked", "partial", "no_output")
    assert any(i["item_type"] == "stage3_blocked" for i in record["items"])


def test_a_researcher_may_loosen_the_level_and_the_record_says_so(app: Any, client: Any) -> None:
    record = _record(client, _post(client, bearer(app), safety_level="research"))
    assert (record["safety_level"], record["safety_level_set_by"]) == ("research", "research token")
    assert not any(i["item_type"] == "stage3_blocked" for i in record["items"])


@pytest.mark.parametrize("app_config_level", ["adults"])
def test_a_stricter_level_than_the_workshops_needs_nothing(
    make_app: Any, app_config_level: str
) -> None:
    client = make_app(SAFETY_LEVEL=app_config_level).test_client()
    record = _record(client, _post(client, safety_level="kids"))
    assert (record["safety_level"], record["safety_level_set_by"]) == ("kids", "request")
    record = _record(client, _post(client))
    assert (record["safety_level"], record["safety_level_set_by"]) == ("adults", "workshop")
    assert _post(client, safety_level="research").status_code == 403


def test_the_page_offers_the_workshops_level_and_stricter_ones_only(make_app: Any) -> None:
    for workshop, offered in (("kids", ["kids"]), ("adults", ["kids", "teens", "adults"])):
        html = make_app(SAFETY_LEVEL=workshop).test_client().get("/").get_data(as_text=True)
        values = [v for v in ("kids", "teens", "adults", "research") if f'value="{v}"' in html]
        assert values == offered, workshop
        assert f'value="{workshop}" data-i18n="level_{workshop}" selected' in html


def test_a_bad_workshop_level_stops_the_start(make_app: Any) -> None:
    from devserver import SettingsError

    with pytest.raises(SettingsError, match="DEVSERVER_SAFETY_LEVEL"):
        make_app(SAFETY_LEVEL="toddlers")
