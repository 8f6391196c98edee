"""A Server-Sent Events client for the live feed's tests: parsed events, read until ``end``."""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit


@dataclass
class Event:
    """One parsed Server-Sent Event."""

    event: str
    data: str
    id: str | None

    @property
    def json(self) -> Any:
        return json.loads(self.data)


class EventStream:
    """Reads ``/api/runs/<id>/events`` over one HTTP connection, event by event.

    Args:
        served: anything with the server's ``base`` URL.
        conn: an open connection to use (one to a chosen worker of several), else a new one.
    """

    def __init__(
        self,
        served: Any,
        run_id: str,
        *,
        since: int | None = None,
        last_id: str | None = None,
        conn: http.client.HTTPConnection | None = None,
    ) -> None:
        parts = urlsplit(served.base)
        self.conn = conn or http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
        path = f"/api/runs/{run_id}/events" + (f"?since={since}" if since is not None else "")
        headers = {"Accept": "text/event-stream"}
        if last_id is not None:
            headers["Last-Event-ID"] = last_id
        self.conn.request("GET", path, headers=headers)
        self.response = self.conn.getresponse()
        self.comments: list[str] = []
        self.raw = b""

    def __iter__(self) -> Iterator[Event]:
        fields: dict[str, str] = {}
        data: list[str] = []
        while True:
            line = self.response.readline()
            if not line:
                return
            self.raw += line
            text = line.decode("utf-8").rstrip("\r\n")
            if not text:
                if data or fields.get("event"):
                    yield Event(fields.get("event", "message"), "\n".join(data), fields.get("id"))
                fields, data = {}, []
            elif text.startswith(":"):
                self.comments.append(text)
            else:
                name, _, value = text.partition(":")
                value = value[1:] if value.startswith(" ") else value
                if name == "data":
                    data.append(value)
                else:
                    fields[name] = value

    def until_end(self) -> list[Event]:
        """Every event up to and including ``end``."""
        events = []
        for event in self:
            events.append(event)
            if event.event == "end":
                return events
        raise AssertionError("the stream closed without an end event")

    def close(self) -> None:
        self.conn.close()


def items(events: list[Event]) -> list[Event]:
    return [e for e in events if e.event != "end"]


def sequences(events: list[Event]) -> list[int]:
    return [int(e.id) for e in items(events) if e.id is not None]


def assert_matches_record(events: list[Event], record: dict[str, Any]) -> None:
    """The events are the record's items, one for one, in order, each with its own id."""
    seen = items(events)
    assert sequences(events) == [i["sequence"] for i in record["items"]]
    for event, item in zip(seen, record["items"], strict=True):
        data = event.json
        assert event.event == item["item_type"] == data["item_type"]
        assert int(event.id or 0) == data["sequence"]
        for key in ("stage", "stage_iteration", "loop_iteration", "content", "metadata", "model"):
            assert data[key] == item[key], (key, data, item)
        if item["media"] is not None:
            assert (
                data["media_url"] == f"/api/runs/{record['run_id']}/media/{item['media']['path']}"
            )
        else:
            assert data["media_url"] is None
