"""Reaching one chosen worker of ``devserver serve --workers N`` (for the scale-out tests).

The workers share one listening socket and the kernel hands each new
connection to one of them. A keep-alive connection stays with the worker that
accepted it, and ``/api/health`` says which worker that is, so a test opens
connections until it holds one to the worker it wants.
"""

from __future__ import annotations

import http.client
import json
from typing import Any
from urllib.parse import urlsplit

#: Connections opened at most while looking for one worker.
TRIES = 200


def worker_of(conn: http.client.HTTPConnection) -> tuple[int, int]:
    """The (worker index, pid) behind ``conn`` (asked on ``conn`` itself)."""
    conn.request("GET", "/api/health")
    response = conn.getresponse()
    data = json.loads(response.read())
    assert response.status == 200, data
    process = data["process"]
    return int(process["worker"]), int(process["pid"])


def connection_to(
    base: str, worker: int, tries: int = TRIES
) -> tuple[http.client.HTTPConnection, int]:
    """A keep-alive connection to ``worker`` (its index) and that worker's pid.

    Raises:
        AssertionError: ``tries`` connections all reached other workers.
    """
    parts = urlsplit(base)
    for _ in range(tries):
        conn = http.client.HTTPConnection(str(parts.hostname), parts.port, timeout=60)
        index, pid = worker_of(conn)
        if index == worker:
            return conn, pid
        conn.close()
    raise AssertionError(f"no connection reached worker {worker} in {tries} tries")


def call_on(
    conn: http.client.HTTPConnection,
    method: str,
    path: str,
    body: Any = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, Any]:
    """One request on ``conn`` (kept open): status and the JSON answer."""
    sent = dict(headers or {})
    payload = None
    if body is not None:
        payload = json.dumps(body).encode()
        sent["Content-Type"] = "application/json"
    conn.request(method, path, body=payload, headers=sent)
    response = conn.getresponse()
    data = response.read()
    return response.status, json.loads(data) if data else None
