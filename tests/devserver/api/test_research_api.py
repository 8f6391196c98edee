"""Research queries: the token, filters, keyset pagination, cursors, stats, pseudonyms only."""

from __future__ import annotations

import base64
import logging
from collections import Counter
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from devserver.api._research import RunList, StatsAnswer

from ..research_support import (
    RAW_SESSIONS,
    RAW_USERS,
    Seeded,
    assert_no_raw_ids,
    bearer,
    seed_runs,
)


@pytest.fixture
def seeded(app: Flask) -> Seeded:
    return seed_runs(app, 12, with_media=False)


def get(client: FlaskClient, app: Flask, url: str, **kwargs: Any) -> Any:
    response = client.get(url, headers=bearer(app), **kwargs)
    assert_no_raw_ids(response.data)
    return response


# ------------------------------------------------------------------------- token


@pytest.mark.parametrize("path", ["/api/runs", "/api/stats", "/api/exports?format=json"])
def test_research_endpoints_answer_401_without_a_token(client: FlaskClient, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert response.json["error"]["code"] == "unauthorized"


@pytest.mark.parametrize(
    "header",
    ["Bearer wrong-token-wrong-token-wrong-token", "Bearer é-not-ascii", "bearer  x"],
)
def test_a_wrong_token_is_403(client: FlaskClient, header: str) -> None:
    response = client.get("/api/runs", headers={"Authorization": header})
    assert response.status_code == 403
    assert response.json["error"]["code"] == "forbidden"


@pytest.mark.parametrize("header", ["Basic dXNlcjpwYXNz", "Token abc", "Bearer", "Bearer    "])
def test_other_schemes_or_an_empty_bearer_are_401(client: FlaskClient, header: str) -> None:
    assert client.get("/api/runs", headers={"Authorization": header}).status_code == 401


def test_the_token_in_the_query_string_is_refused(app: Flask, client: FlaskClient) -> None:
    token = app.extensions["devserver"].settings.research_token
    for name in ("token", "access_token", "research_token"):
        response = client.get(f"/api/runs?{name}={token}")
        assert response.status_code == 400
        assert "Authorization header" in response.json["error"]["message"]
        # Not even together with a valid header: the URL already leaked it into logs.
        response = client.get(f"/api/stats?{name}={token}", headers=bearer(app))
        assert response.status_code == 400
        assert token not in response.get_data(as_text=True)


def test_the_right_token_opens_the_list(app: Flask, client: FlaskClient, seeded: Seeded) -> None:
    response = get(client, app, "/api/runs")
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    RunList.model_validate(response.json)


# ----------------------------------------------------------------- list, filters


def test_the_list_is_newest_first_with_pseudonyms(
    app: Flask, client: FlaskClient, seeded: Seeded
) -> None:
    body = get(client, app, "/api/runs?limit=500").json
    assert [r["run_id"] for r in body["runs"]] == seeded.ids()
    pseudonymiser = app.extensions["devserver"].pseudonymiser
    by_id = {r.run_id: r for r in seeded.records}
    for row in body["runs"]:
        record = by_id[row["run_id"]]
        assert row["user_pseudonym"] == pseudonymiser.user(record.user_id)
        assert row["session_pseudonym"] == pseudonymiser.session(record.session_id)
        assert "user_id" not in row and "session_id" not in row
        assert row["links"]["record"] == f"/api/runs/{row['run_id']}"
    assert body["next"] is None and body["cursor"] is None


@pytest.mark.parametrize(
    ("query", "match"),
    [
        ("config=dada", {"config_name": "dada"}),
        ("status=partial", {"status": "partial"}),
        ("safety_level=teens", {"safety_level": "teens"}),
        (f"session_id={RAW_SESSIONS[1]}", {"session_id": RAW_SESSIONS[1]}),
        ("config=stillepost&status=success", {"config_name": "stillepost", "status": "success"}),
    ],
)
def test_each_filter_selects_exactly_its_runs(
    app: Flask, client: FlaskClient, seeded: Seeded, query: str, match: dict[str, str]
) -> None:
    body = get(client, app, f"/api/runs?limit=500&{query}").json
    assert [r["run_id"] for r in body["runs"]] == seeded.ids(**match)
    assert body["runs"], "the seed must cover every filter"


def test_session_filter_takes_the_raw_id_and_shows_only_the_pseudonym(
    app: Flask, client: FlaskClient, seeded: Seeded
) -> None:
    body = get(client, app, f"/api/runs?session_id={RAW_SESSIONS[0]}&limit=2").json
    expected = app.extensions["devserver"].pseudonymiser.session(RAW_SESSIONS[0])
    assert body["filters"] == {"session_pseudonym": expected}
    assert {r["session_pseudonym"] for r in body["runs"]} == {expected}
    # The next link carries the filter inside the opaque cursor, never the raw id.
    assert body["next"] is not None and RAW_SESSIONS[0] not in body["next"]
    rest = get(client, app, body["next"]).json
    assert {r["session_pseudonym"] for r in rest["runs"]} == {expected}


def test_since_and_until_select_a_time_window_in_utc(
    app: Flask, client: FlaskClient, seeded: Seeded
) -> None:
    # 2024-05-01T08:00Z + n·90 min: n = 2..5 start at 11:00, 12:30, 14:00, 15:30 UTC.
    url = "/api/runs?since=2024-05-01T13:00:00%2B02:00&until=2024-05-01T15:30:00Z"
    body = get(client, app, url).json
    assert [r["started_at"][11:16] for r in body["runs"]] == ["14:00", "12:30", "11:00"]
    assert body["filters"] == {"since": "2024-05-01T11:00:00Z", "until": "2024-05-01T15:30:00Z"}
    # A date alone is midnight UTC.
    body = get(client, app, "/api/runs?since=2024-05-02").json
    assert all(r["started_at"] >= "2024-05-02" for r in body["runs"]) and body["runs"]


def test_keyset_pages_cover_every_run_once_in_order(
    app: Flask, client: FlaskClient, seeded: Seeded
) -> None:
    seen: list[str] = []
    url: str | None = "/api/runs?limit=5"
    pages = 0
    while url is not None:
        response = get(client, app, url)
        assert response.status_code == 200
        body = response.json
        seen.extend(r["run_id"] for r in body["runs"])
        url = body["next"]
        if url is not None:
            assert response.headers["Link"] == f'<{url}>; rel="next"'
        pages += 1
    assert pages == 3
    assert seen == seeded.ids()


def test_a_page_stays_stable_when_newer_runs_arrive(
    app: Flask, client: FlaskClient, seeded: Seeded
) -> None:
    first = get(client, app, "/api/runs?limit=4").json
    seed_runs(app, 2, with_media=False)  # same times as the oldest two: land in the middle
    rest: list[str] = []
    url = first["next"]
    while url is not None:
        body = get(client, app, url).json
        rest.extend(r["run_id"] for r in body["runs"])
        url = body["next"]
    assert not set(rest) & {r["run_id"] for r in first["runs"]}
    assert set(seeded.ids()) <= set(rest) | {r["run_id"] for r in first["runs"]}


# ----------------------------------------------------------------- bad parameters


@pytest.mark.parametrize(
    "query",
    [
        "limit=0",
        "limit=-1",
        "limit=501",
        "limit=99999999999999999999",
        "limit=abc",
        "limit=1.5",
        "limit=%EF%BC%93",  # a full-width digit three
        "since=yesterday",
        "since=2024-13-01",
        "until=2024-05-01T25:00:00Z",
        "since=0001-01-01",
        "until=9999-12-31T23:59:59-05:00",
        "since=2024-05-02&until=2024-05-01",
        "status=finished",
        "safety_level=toddlers",
        "config=",
        "config=" + "x" * 300,
        "session_id=a%00b",
        "stauts=success",
        "status=success&status=error",
        "cursor=not-a-cursor",
        "cursor=" + "A" * 3000,
        "cursor=%FF%FE",
    ],
)
def test_bad_parameters_are_400_with_a_clear_message(
    app: Flask, client: FlaskClient, seeded: Seeded, query: str
) -> None:
    response = get(client, app, f"/api/runs?{query}")
    assert response.status_code == 400, response.json
    error = response.json["error"]
    assert error["code"] in ("bad_request", "bad_cursor")
    assert error["message"].endswith(".") and len(error["message"]) < 300


def test_a_tampered_or_replayed_cursor_is_refused(
    app: Flask, client: FlaskClient, seeded: Seeded
) -> None:
    body = get(client, app, "/api/runs?limit=2&status=success").json
    cursor = body["cursor"]
    raw = bytearray(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    for position in (0, 14, len(raw) // 2, len(raw) - 1):
        forged = raw.copy()
        forged[position] ^= 0x01
        text = base64.urlsafe_b64encode(bytes(forged)).rstrip(b"=").decode()
        response = get(client, app, f"/api/runs?cursor={text}")
        assert response.status_code == 400 and response.json["error"]["code"] == "bad_cursor"
    # The same cursor with other filters beside it: refused, not silently mixed.
    response = get(client, app, f"/api/runs?cursor={cursor}&status=error")
    assert response.status_code == 400
    assert "other filters" in response.json["error"]["message"]
    # With the same filters beside it, or none, it continues the same query.
    same = get(client, app, f"/api/runs?cursor={cursor}&status=success").json
    alone = get(client, app, f"/api/runs?cursor={cursor}").json
    assert [r["run_id"] for r in same["runs"]] == [r["run_id"] for r in alone["runs"]]
    assert {r["status"] for r in alone["runs"]} == {"success"}


def test_a_cursor_from_another_server_is_refused(
    app: Flask, client: FlaskClient, seeded: Seeded, make_app: Any
) -> None:
    other = make_app()
    seed_runs(other, 4, with_media=False)
    foreign = other.test_client().get("/api/runs?limit=1", headers=bearer(other)).json["cursor"]
    response = get(client, app, f"/api/runs?cursor={foreign}")
    assert response.status_code == 400


# ------------------------------------------------------------------------- stats


def test_stats_count_what_the_store_holds(app: Flask, client: FlaskClient, seeded: Seeded) -> None:
    response = get(client, app, "/api/stats")
    assert response.status_code == 200
    body = StatsAnswer.model_validate(response.json)
    records = seeded.records
    assert body.runs == len(records)
    assert body.by_status == dict(Counter(str(r.status) for r in records))
    assert body.by_config == dict(Counter(r.config_name for r in records))
    assert body.by_safety_level == dict(Counter(r.safety_level for r in records))
    assert body.by_day == dict(Counter(r.started_at.strftime("%Y-%m-%d") for r in records))
    for stage in ("1", "2", "3", "4"):
        number = int(stage)
        summaries = [s for r in records for s in r.stages if s.stage == number]
        assert body.stages[stage].items == sum(s.items for s in summaries)
        assert body.stages[stage].failures == sum(s.failures for s in summaries)
        assert body.stages[stage].blocks == sum(s.blocks for s in summaries)
    assert body.stages["3"].runs_with_blocks == len(records)  # the template blocks output 2
    assert body.integrity["items"] == sum(len(r.items) for r in records)
    assert set(body.integrity) >= {"items_dropped", "fields_truncated", "tracker_errors"}


def test_stats_take_the_same_filters(app: Flask, client: FlaskClient, seeded: Seeded) -> None:
    body = get(client, app, f"/api/stats?config=dada&session_id={RAW_SESSIONS[0]}").json
    expected = [r for r in seeded.records if r.config_name == "dada"]
    expected = [r for r in expected if r.session_id == RAW_SESSIONS[0]]
    assert body["runs"] == len(expected) > 0
    assert list(body["by_config"]) == ["dada"]
    assert "session_id" not in body["filters"]
    assert get(client, app, "/api/stats?limit=3").status_code == 400  # not a stats parameter
    # status is also a column of the per-stage table the stats join (found by schemathesis).
    body = get(client, app, "/api/stats?status=partial&safety_level=teens").json
    partial = [r for r in seeded.records if r.status == "partial" and r.safety_level == "teens"]
    assert body["runs"] == len(partial) > 0
    assert body["stages"]["3"]["runs_with_blocks"] == len(partial)


def test_no_answer_carries_a_raw_id(app: Flask, client: FlaskClient, seeded: Seeded) -> None:
    urls = [
        "/api/runs?limit=500",
        f"/api/runs?session_id={RAW_SESSIONS[1]}",
        "/api/stats",
        f"/api/stats?session_id={RAW_SESSIONS[0]}",
        f"/api/runs/{seeded.records[0].run_id}",
    ]
    for url in urls:
        response = get(client, app, url)  # asserts no raw id
        assert response.status_code == 200
    for raw in RAW_USERS:
        assert app.extensions["devserver"].store.count() == len(seeded.records)
        assert raw not in get(client, app, "/api/runs?limit=500").get_data(as_text=True)


def test_no_log_line_carries_a_raw_id(
    app: Flask, client: FlaskClient, seeded: Seeded, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    for url in (
        f"/api/runs?session_id={RAW_SESSIONS[0]}&limit=1",
        f"/api/stats?session_id={RAW_SESSIONS[1]}",
        f"/api/exports?format=json&session_id={RAW_SESSIONS[0]}",
        f"/api/runs?session_id={RAW_SESSIONS[0]}&since=nonsense",
        f"/api/runs/{seeded.records[0].run_id}/export/pdf",
    ):
        response = client.get(url, headers=bearer(app))
        response.get_data()  # runs a streamed answer to its end
    text = "\n".join(record.getMessage() for record in caplog.records)
    assert_no_raw_ids(text)
