"""Batch export through a real server: a streamed ZIP, every page, media, a checkable manifest."""

from __future__ import annotations

import hashlib
import http.client
import io
import json
import logging
import os
import socket
import threading
import time
import zipfile
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import pytest
from flask import Flask

import devserver.research._batch
from devserver.research._batch import PSEUDONYMISATION_NOTE

from ..research_support import (
    RAW_SESSIONS,
    assert_no_raw_ids,
    bearer,
    live_server,
    raw_get,
    seed_runs,
)


@pytest.fixture
def served(app: Flask) -> Iterator[tuple[Flask, str]]:
    with live_server(app) as base:
        yield app, base


def download(app: Flask, base: str, query: str) -> tuple[int, dict[str, str], bytes]:
    host, port = base.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=120)
    try:
        conn.request("GET", f"/api/exports?{query}", headers=bearer(app))
        response = conn.getresponse()
        return response.status, response.headers, response.read()
    finally:
        conn.close()


def check_manifest(archive: zipfile.ZipFile) -> dict[str, Any]:
    """The manifest, after checking each listed file's size and sha256 independently."""
    manifest = json.loads(archive.read("manifest.json"))
    listed = {entry["path"] for entry in manifest["files"]}
    assert listed | {"manifest.json"} == set(archive.namelist())
    for entry in manifest["files"]:
        data = archive.read(entry["path"])
        assert len(data) == entry["size"], entry["path"]
        assert hashlib.sha256(data).hexdigest() == entry["sha256"], entry["path"]
    return manifest


def test_the_zip_holds_every_run_its_media_and_a_verifiable_manifest(
    served: tuple[Flask, str],
) -> None:
    app, base = served
    seeded = seed_runs(app, 6)
    status, headers, data = download(app, base, "format=json")
    assert status == 200
    assert headers["Content-Type"] == "application/zip"
    assert headers["Content-Disposition"].startswith('attachment; filename="runs_json_')
    assert "Content-Length" not in headers  # streamed, not built first
    assert_no_raw_ids(data)
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        assert archive.testzip() is None
        manifest = check_manifest(archive)
        assert manifest["runs"] == 6
        assert manifest["format"] == {
            "name": "json",
            "media_type": "application/json",
            "extension": "json",
        }
        assert manifest["pseudonymisation"] == PSEUDONYMISATION_NOTE
        assert manifest["software_version"].startswith("devserver ")
        exported = datetime.fromisoformat(manifest["exported_at"])
        assert abs((datetime.now(UTC) - exported).total_seconds()) < 120
        assert manifest["missing_media"] == [] and manifest["failed_runs"] == []
        for record in seeded.records:
            folder = f"runs/{record.run_id}"
            document = json.loads(
                archive.read(f"{folder}/{record.run_id}_{record.config_name}.json")
            )
            assert document["run_id"] == record.run_id
            assert document["user_pseudonym"].startswith("user-")
            for name in ("output_1.png", "output_3.png"):
                image = archive.read(f"{folder}/media/{name}")
                assert image[:4] == b"\x89PNG"
        media = [e for e in manifest["files"] if e["kind"] == "media"]
        assert len(media) == 12 and all(e["matches_record"] for e in media if "matches_record" in e)


def test_filters_apply_and_the_manifest_names_them_without_raw_ids(
    served: tuple[Flask, str],
) -> None:
    app, base = served
    seeded = seed_runs(app, 8, with_media=False)
    query = f"format=xml&config=stillepost&session_id={quote(RAW_SESSIONS[0])}&since=2024-05-01"
    status, _, data = download(app, base, query)
    assert status == 200
    assert_no_raw_ids(data)
    expected = [
        r.run_id
        for r in seeded.records
        if r.config_name == "stillepost" and r.session_id == RAW_SESSIONS[0]
    ]
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        manifest = check_manifest(archive)
    assert manifest["runs"] == len(expected) > 0
    assert [e["run_id"] for e in manifest["files"] if e["kind"] == "export"] == expected
    pseudonym = app.extensions["devserver"].pseudonymiser.session(RAW_SESSIONS[0])
    assert manifest["filters"] == {
        "config": "stillepost",
        "session_pseudonym": pseudonym,
        "since": "2024-05-01T00:00:00Z",
    }


def test_every_page_is_exported_not_just_the_first(served: tuple[Flask, str]) -> None:
    app, base = served
    seeded = seed_runs(app, 230, with_media=False)  # the store pages by 200
    status, _, data = download(app, base, "format=json")
    assert status == 200
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        manifest = json.loads(archive.read("manifest.json"))
        exported = {e["run_id"] for e in manifest["files"] if e["kind"] == "export"}
    assert manifest["runs"] == 230 and exported == set(seeded.ids())


def test_a_vanished_media_file_is_a_placeholder_and_named_in_the_manifest(
    served: tuple[Flask, str],
) -> None:
    app, base = served
    seeded = seed_runs(app, 2)
    victim = seeded.records[0]
    (app.extensions["devserver"].runs.media_dir(victim.run_id) / "output_3.png").unlink()
    status, _, data = download(app, base, "format=pdf")
    assert status == 200
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        manifest = check_manifest(archive)
        assert manifest["missing_media"] == [
            {"run_id": victim.run_id, "path": "output_3.png", "reason": "file not found"}
        ]
        placeholder = f"runs/{victim.run_id}/media/output_3.png.missing.txt"
        assert b"was missing" in archive.read(placeholder)
        pdf = archive.read(f"runs/{victim.run_id}/{victim.run_id}_{victim.config_name}.pdf")
    assert pdf.startswith(b"%PDF")
    from pypdf import PdfReader

    assert len(PdfReader(io.BytesIO(pdf), strict=True).pages) >= 1
    assert manifest["runs"] == 2


def test_a_media_path_leaving_the_folder_is_never_read(served: tuple[Flask, str]) -> None:
    app, base = served
    state = app.extensions["devserver"]
    secret = state.settings.data_dir / "outside.txt"
    secret.write_text("must not be exported")
    record = seed_runs(app, 1, with_media=False).records[0]
    items = list(record.items)
    hostile = ["../outside.txt", "../../outside.txt", str(secret), "a\\..\\..\\outside.txt"]
    for n, path in enumerate(hostile):
        item = next(i for i in items if i.media is not None)
        media = item.media.model_copy(update={"path": path})  # type: ignore[union-attr]
        items.append(item.model_copy(update={"media": media, "sequence": 1000 + n}))
    state.store.save(record.model_copy(update={"items": items}))
    status, _, data = download(app, base, "format=json")
    assert status == 200
    assert b"must not be exported" not in data
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        manifest = check_manifest(archive)
        assert all(".." not in name and not name.startswith("/") for name in archive.namelist())
    unsafe = [m["path"] for m in manifest["missing_media"] if m["reason"] == "unsafe path"]
    assert sorted(unsafe) == sorted(hostile)


def test_bad_batch_requests(served: tuple[Flask, str]) -> None:
    app, base = served
    seed_runs(app, 1, with_media=False)
    status, _, body = download(app, base, "")
    assert status == 400 and b"'format' is required" in body
    status, _, body = download(app, base, "format=nope")
    assert status == 404 and json.loads(body)["error"]["formats"]
    status, _, _ = download(app, base, "format=json&since=soon")
    assert status == 400
    status, _ = raw_get(base, "/api/exports?format=json")
    assert status == 401


def test_a_client_that_disconnects_stops_the_work(
    served: tuple[Flask, str], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    app, base = served
    caplog.set_level(logging.INFO, logger="devserver")
    seed_runs(app, 120, with_media=False)
    exported: list[str] = []
    real_export = devserver.research._batch.exports.export

    def slow_export(record: Any, *args: Any, **kwargs: Any) -> None:
        exported.append(record.run_id)
        time.sleep(0.01)
        real_export(record, *args, **kwargs)
        # Pad each run so the server has to send while the client is gone.
        args[1].write(b" " * 200_000)

    monkeypatch.setattr(devserver.research._batch.exports, "export", slow_export)
    monkeypatch.setattr(
        devserver.research._batch, "DEFLATE", 0
    )  # stored: the padding is not squeezed
    host, port = base.removeprefix("http://").split(":")
    token = bearer(app)["Authorization"]
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(
            f"GET /api/exports?format=json HTTP/1.1\r\nHost: {host}\r\n"
            f"Authorization: {token}\r\n\r\n".encode()
        )
        head = sock.recv(4096)
        assert head.startswith(b"HTTP/1.1 200")
    # The socket is closed now, with most of the ZIP still to come.
    time.sleep(2.0)
    stopped_at = len(exported)
    time.sleep(1.0)
    assert len(exported) == stopped_at < 120
    # Closed, not merely blocked on a full send buffer: the generator said so as it ended.
    assert any("the client went away" in r.getMessage() for r in caplog.records)


def test_memory_stays_flat_while_streaming(
    served: tuple[Flask, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The server never holds the ZIP: what it buffers is bounded by a chunk and one export."""
    app, base = served
    seed_runs(app, 40, with_media=True)
    real_export = devserver.research._batch.exports.export

    def padded_export(record: Any, *args: Any, **kwargs: Any) -> None:
        real_export(record, *args, **kwargs)
        args[1].write(os.urandom(300_000))  # incompressible: the ZIP grows to 12 MB

    monkeypatch.setattr(devserver.research._batch.exports, "export", padded_export)
    sizes: list[int] = []
    original = devserver.research._batch._Buffer.take

    def watched(self: Any) -> bytes:
        data: bytes = original(self)
        sizes.append(len(data))
        return data

    devserver.research._batch._Buffer.take = watched  # type: ignore[method-assign]
    try:
        status, _, data = download(app, base, "format=json")
    finally:
        devserver.research._batch._Buffer.take = original  # type: ignore[method-assign]
    assert status == 200
    assert len(data) > 12_000_000
    assert len(sizes) > 150  # many pieces, not one
    assert max(sizes) < 200 * 1024  # a chunk plus what zipfile wrote around it


def test_a_large_single_download_is_streamed_from_disk(
    served: tuple[Flask, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    app, base = served
    record = seed_runs(app, 1).records[0]
    monkeypatch.setattr("devserver.api._downloads.SPOOL_BYTES", 1024)
    status, body = raw_get(base, f"/api/runs/{record.run_id}/export/pdf")
    assert status == 200 and body.startswith(b"%PDF") and len(body) > 1024


def test_concurrent_batch_exports_do_not_mix(served: tuple[Flask, str]) -> None:
    app, base = served
    seed_runs(app, 10, with_media=False)
    results: dict[str, bytes] = {}

    def one(query: str) -> None:
        results[query] = download(app, base, query)[2]

    threads = [threading.Thread(target=one, args=(q,)) for q in ("format=json&config=dada",
               "format=xml&status=success", "format=json")]  # fmt: skip
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for query, data in results.items():
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            manifest = check_manifest(archive)
            assert manifest["format"]["name"] == query.split("&")[0].split("=")[1]


def test_formats_made_for_many_runs_get_one_combined_file(served: tuple[Flask, str]) -> None:
    """qdpx: one REFI-QDA project holding every run (and media per run), not a project per run."""
    from lxml import etree

    app, base = served
    seeded = seed_runs(app, 5)
    status, _, body = download(app, base, "format=qdpx")
    assert status == 200
    archive = zipfile.ZipFile(io.BytesIO(body))
    manifest = check_manifest(archive)
    assert manifest["runs"] == 5
    exports_in_zip = [e["path"] for e in manifest["files"] if e.get("kind") == "export"]
    assert exports_in_zip == ["all_runs.qdpx"]
    project = zipfile.ZipFile(io.BytesIO(archive.read("all_runs.qdpx")))
    root = etree.fromstring(project.read("project.qde"))
    ns = {"q": "urn:QDA-XML:project:1.0"}
    transcripts = root.findall(".//q:Sources/q:TextSource", ns)
    assert len(transcripts) == 5
    names = " ".join(t.get("name", "") for t in transcripts)
    assert all(record.run_id[:8] in names for record in seeded.records)
    assert any(e.get("kind") == "media" for e in manifest["files"])
    assert_no_raw_ids(archive.read("all_runs.qdpx"))


def test_tidy_tables_of_a_batch_hold_every_run_in_one_table(served: tuple[Flask, str]) -> None:
    """csv: one items.csv with rows of every run, read back with the csv module."""
    import csv

    app, base = served
    seeded = seed_runs(app, 4, with_media=False)
    status, _, body = download(app, base, "format=csv")
    assert status == 200
    archive = zipfile.ZipFile(io.BytesIO(body))
    tables = zipfile.ZipFile(io.BytesIO(archive.read("all_runs.csv.zip")))
    rows = list(csv.DictReader(io.StringIO(tables.read("runs.csv").decode("utf-8-sig"))))
    assert sorted(row["run_id"] for row in rows) == sorted(r.run_id for r in seeded.records)
