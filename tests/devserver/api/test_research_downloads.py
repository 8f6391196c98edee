"""Downloads of one run: every format, headers, ETag, 404/409, pseudonyms, safe file names."""

from __future__ import annotations

import io
import json
import re
import threading
import zipfile

import pytest
from flask import Flask
from flask.testing import FlaskClient

import exports
from devserver.api._downloads import FormatList
from execution_history import ExecutionTracker, ItemType, RunStatus

from ..research_support import RAW_SESSIONS, RAW_USERS, assert_no_raw_ids, seed_runs

FORMATS = [f.name for f in exports.formats() if f.available]


@pytest.fixture
def run_id(app: Flask) -> str:
    return seed_runs(app, 1).records[0].run_id


def test_formats_lists_every_registered_format(client: FlaskClient) -> None:
    response = client.get("/api/formats")
    assert response.status_code == 200
    listed = FormatList.model_validate(response.json).formats
    registered = exports.formats()
    assert [f.name for f in listed] == [f.name for f in registered]
    for entry, info in zip(listed, registered, strict=True):
        assert (entry.media_type, entry.extension) == (info.media_type, info.extension)


@pytest.mark.parametrize("fmt", FORMATS)
def test_every_format_downloads_as_a_named_attachment(
    app: Flask, client: FlaskClient, run_id: str, fmt: str
) -> None:
    info = exports.get_format(fmt)
    response = client.get(f"/api/runs/{run_id}/export/{fmt}")
    assert response.status_code == 200
    assert response.mimetype == info.media_type
    assert response.headers["Content-Disposition"] == (
        f'attachment; filename="{run_id}_stillepost.{info.extension}"'
    )
    assert int(response.headers["Content-Length"]) == len(response.data) > 0
    assert re.fullmatch(r'"[0-9a-f]{32}"', response.headers["ETag"])
    data = response.data
    if info.media_type == "application/zip" or fmt in ("docx", "xlsx"):
        # Containers: look inside every member, where the text would be.
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            for name in archive.namelist():
                assert_no_raw_ids(archive.read(name))
    elif fmt != "pdf":  # PDF text is compressed; the JSON export below covers the record
        assert_no_raw_ids(data)


def test_the_json_download_is_the_pseudonymised_record(
    app: Flask, client: FlaskClient, run_id: str
) -> None:
    document = json.loads(client.get(f"/api/runs/{run_id}/export/json").data)
    text = json.dumps(document)
    assert_no_raw_ids(text)
    pseudonymiser = app.extensions["devserver"].pseudonymiser
    assert pseudonymiser.user(RAW_USERS[0]) in text
    assert pseudonymiser.session(RAW_SESSIONS[0]) in text


def test_the_etag_answers_304_and_changes_with_the_format(client: FlaskClient, run_id: str) -> None:
    first = client.get(f"/api/runs/{run_id}/export/json")
    etag = first.headers["ETag"]
    assert first.headers["Cache-Control"] == "private, no-cache"
    again = client.get(f"/api/runs/{run_id}/export/json", headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.data == b""
    assert again.headers["ETag"] == etag
    listed = client.get(
        f"/api/runs/{run_id}/export/json", headers={"If-None-Match": f'"nope", {etag}'}
    )
    assert listed.status_code == 304
    stale = client.get(f"/api/runs/{run_id}/export/json", headers={"If-None-Match": '"stale"'})
    assert stale.status_code == 200 and stale.data == first.data
    other = client.get(f"/api/runs/{run_id}/export/xml")
    assert other.headers["ETag"] != etag


def test_an_unknown_run_is_404(client: FlaskClient) -> None:
    response = client.get(f"/api/runs/{'0' * 32}/export/json")
    assert response.status_code == 404
    assert response.json["error"]["code"] == "not_found"


def test_an_unknown_format_is_404_listing_the_formats(client: FlaskClient, run_id: str) -> None:
    response = client.get(f"/api/runs/{run_id}/export/gif")
    assert response.status_code == 404
    error = response.json["error"]
    assert error["code"] == "unknown_format"
    assert error["formats"] == sorted(f.name for f in exports.formats())
    assert "json" in error["message"] and "gif" not in error["message"]


def test_format_names_are_case_insensitive(client: FlaskClient, run_id: str) -> None:
    assert client.get(f"/api/runs/{run_id}/export/JSON").status_code == 200


def test_a_running_run_is_409(app: Flask, client: FlaskClient) -> None:
    state = app.extensions["devserver"]
    tracker = ExecutionTracker("dada", safety_level="kids", finaliser=state.finaliser)
    tracker.start()
    state.registry.on_start(tracker.run_log)
    try:
        response = client.get(f"/api/runs/{tracker.run_id}/export/pdf")
        assert response.status_code == 409
        assert response.json["error"]["code"] == "run_in_progress"
        assert "still running" in response.json["error"]["message"]
    finally:
        tracker.finalize(wait=True)
    assert client.get(f"/api/runs/{tracker.run_id}/export/json").status_code == 200


def test_a_hostile_config_name_gives_a_safe_file_name(app: Flask, client: FlaskClient) -> None:
    state = app.extensions["devserver"]
    record = seed_runs(app, 1, with_media=False).records[0]
    hostile = record.model_copy(update={"config_name": '../../etc/"pass wd"\r\nX: ü' + "z" * 80})
    state.store.save(hostile)
    response = client.get(f"/api/runs/{record.run_id}/export/json")
    disposition = response.headers["Content-Disposition"]
    name = re.fullmatch(r'attachment; filename="([^"]+)"', disposition)
    assert name is not None
    assert re.fullmatch(r"[0-9a-f]{32}_[A-Za-z0-9_-]{1,40}\.json", name.group(1))
    empty = record.model_copy(update={"config_name": None})
    state.store.save(empty)
    response = client.get(f"/api/runs/{record.run_id}/export/json")
    assert response.headers["Content-Disposition"].endswith(f'{record.run_id}_run.json"')


def test_a_vanished_media_file_still_exports(app: Flask, client: FlaskClient) -> None:
    record = seed_runs(app, 1).records[0]
    media = app.extensions["devserver"].runs.media_dir(record.run_id)
    for path in media.iterdir():
        path.unlink()
    for fmt in ("pdf", "docx", "json"):
        assert client.get(f"/api/runs/{record.run_id}/export/{fmt}").status_code == 200


def test_a_stored_run_in_any_status_downloads(app: Flask, client: FlaskClient) -> None:
    state = app.extensions["devserver"]
    record = seed_runs(app, 1, with_media=False).records[0]
    for status in (RunStatus.INCOMPLETE, RunStatus.ERROR, RunStatus.BLOCKED):
        state.store.save(record.model_copy(update={"status": status}))
        assert client.get(f"/api/runs/{record.run_id}/export/xml").status_code == 200


def test_downloads_while_a_run_finishes_concurrently(app: Flask, client: FlaskClient) -> None:
    """Readers racing the finaliser see 409 then 200, never a 5xx."""
    state = app.extensions["devserver"]
    tracker = ExecutionTracker("dada", safety_level="kids", finaliser=state.finaliser)
    tracker.start()
    state.registry.on_start(tracker.run_log)
    statuses: list[int] = []

    def read() -> None:
        for _ in range(30):
            statuses.append(client.get(f"/api/runs/{tracker.run_id}/export/json").status_code)

    reader = threading.Thread(target=read)
    reader.start()
    tracker.log(ItemType.USER_INPUT_TEXT, content="Ein Hund")
    tracker.finalize(wait=True)
    reader.join()
    assert set(statuses) <= {409, 200}
    assert client.get(f"/api/runs/{tracker.run_id}/export/json").status_code == 200
