"""Helpers of the research tests: stored runs with known people, times and media; a live server."""

from __future__ import annotations

import http.client
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from flask import Flask

from devserver.cli._serve import make_server, run_until_stopped, server_url
from execution_history import ExecutionRecord, RunStatus, new_run_id
from tests.records import stille_post_record

#: Raw ids that must never appear in an answer or a file.
RAW_USERS = ("child-anna-7f", "child-ben-c2")
RAW_SESSIONS = ("class-3a-morning", "class-4b-afternoon")
BASE_TIME = datetime(2024, 5, 1, 8, 0, tzinfo=UTC)


@dataclass(frozen=True)
class Seeded:
    """What ``seed_runs`` stored, newest first, for assertions."""

    records: list[ExecutionRecord]

    def ids(self, **match: Any) -> list[str]:
        """Run ids (newest first) of records whose attributes equal ``match``."""
        return [
            r.run_id
            for r in self.records
            if all(getattr(r, key) == value for key, value in match.items())
        ]


def variant(
    template: ExecutionRecord,
    *,
    minutes: int,
    config: str,
    status: RunStatus,
    safety_level: str,
    user_id: str | None,
    session_id: str | None,
) -> ExecutionRecord:
    """A copy of ``template`` under a new run id, started ``minutes`` after ``BASE_TIME``."""
    started = BASE_TIME + timedelta(minutes=minutes)
    return template.model_copy(
        update={
            "run_id": new_run_id(),
            "started_at": started,
            "ended_at": started + timedelta(seconds=2),
            "config_name": config,
            "status": status,
            "safety_level": safety_level,
            "user_id": user_id,
            "session_id": session_id,
        }
    )


def seed_runs(app: Flask, count: int = 12, *, with_media: bool = True) -> Seeded:
    """Store ``count`` runs with varied configs, statuses, levels, people and times.

    Every run gets real media files (copies of the template's images) in its folder.
    """
    state = app.extensions["devserver"]
    template_media = state.settings.data_dir / "template-media"
    template = stille_post_record(template_media if with_media else None)
    configs = ("stillepost", "dada", "triptych")
    statuses = (RunStatus.SUCCESS, RunStatus.PARTIAL, RunStatus.BLOCKED, RunStatus.ERROR)
    levels = ("kids", "teens")
    records = []
    for n in range(count):
        record = variant(
            template,
            minutes=n * 90,  # spreads the runs over several days
            config=configs[n % 3],
            status=statuses[n % 4],
            safety_level=levels[n % 2],
            user_id=RAW_USERS[n % 2],
            session_id=RAW_SESSIONS[(n // 2) % 2],
        )
        if with_media:
            target = state.runs.media_dir(record.run_id)
            target.mkdir(parents=True)
            for path in template_media.iterdir():
                (target / path.name).write_bytes(path.read_bytes())
        state.store.save(record)
        records.append(record)
    records.sort(key=lambda r: (r.started_at, r.run_id), reverse=True)
    return Seeded(records)


def assert_no_raw_ids(data: bytes | str) -> None:
    """No raw user or session id of the seeded people occurs in ``data``."""
    text = data if isinstance(data, str) else data.decode("utf-8", "replace")
    for raw in (*RAW_USERS, *RAW_SESSIONS, "child-42", "class-7b"):
        assert raw not in text, f"raw id {raw!r} leaked"


@contextmanager
def live_server(app: Flask) -> Iterator[str]:
    """``app`` served by waitress on 127.0.0.1 and a free port; yields its base URL."""
    server = make_server(app, "127.0.0.1", 0)
    stop = threading.Event()
    thread = threading.Thread(
        target=run_until_stopped,
        args=(app, server, stop),
        kwargs={"echo": lambda text: None},
        daemon=True,
    )
    thread.start()
    try:
        yield server_url(server).rstrip("/")
    finally:
        stop.set()
        thread.join(30)


def raw_get(base: str, path: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    """GET ``path`` exactly as given (no normalisation by a client library)."""
    host, port = base.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        conn.putrequest("GET", path, skip_accept_encoding=True)
        for name, value in (headers or {}).items():
            conn.putheader(name, value)
        conn.endheaders()
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def bearer(app: Flask) -> dict[str, str]:
    """The research token's Authorization header."""
    return {"Authorization": f"Bearer {app.extensions['devserver'].settings.research_token}"}


def media_path(record: ExecutionRecord) -> list[str]:
    """The media paths the record refers to."""
    return [i.media.path for i in record.items if i.media is not None]


def write_file(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path``, creating folders."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
