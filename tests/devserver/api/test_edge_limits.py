"""Limits at the edge of a real ``devserver serve``: body size, JSON depth, any text in a prompt."""

from __future__ import annotations

import http.client
import json
import socket
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from ..faults import Served, call, server_env


def _error(body: bytes) -> dict[str, str]:
    answer = json.loads(body)
    assert set(answer) == {"error"}, answer
    return dict(answer["error"])


def _declared_only(base: str, length: int) -> bytes:
    """Send headers declaring a body of ``length`` bytes, send none of it, read the answer."""
    parts = urlsplit(base)
    with socket.create_connection((str(parts.hostname), int(parts.port or 80)), timeout=10) as sock:
        sock.sendall(
            b"POST /api/runs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            + f"Content-Length: {length}\r\n\r\n".encode()
        )
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    return answer


@pytest.mark.timeout(120)
def test_bodies_too_large_or_too_deep_never_reach_a_handler(tmp_path: Path) -> None:
    env = server_env(tmp_path / "data", tmp_path / "tmp", DEVSERVER_MAX_BODY_BYTES="300000")
    with Served(env) as server:
        # 200 MB declared: refused from the headers alone, without waiting for the body.
        answer = _declared_only(server.base, 200 * 1024 * 1024)
        assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
        # Over the cap but within what waitress reads: the app's JSON 413.
        big = json.dumps({"config": "dada", "input": "x" * 310_000}).encode()
        status, body = call(server.base, "POST", "/api/runs", raw=big)
        assert status == 413 and _error(body)["code"] == "body_too_large"
        # The same without a declared length (chunked): still stopped at the cap.
        parts = urlsplit(server.base)
        conn = http.client.HTTPConnection(str(parts.hostname), parts.port, timeout=30)
        try:
            conn.request(
                "POST",
                "/api/runs",
                body=iter([big[i : i + 8192] for i in range(0, len(big), 8192)]),
                headers={"Content-Type": "application/json"},
                encode_chunked=True,
            )
            response = conn.getresponse()
            assert response.status == 413
            assert _error(response.read())["code"] == "body_too_large"
        finally:
            conn.close()
        for depth in (33, 1_000, 100_000):  # 100,000 deep is 200 kB: within the cap
            nested = ("[" * depth + "]" * depth).encode()
            status, body = call(server.base, "POST", "/api/runs", raw=nested)
            assert status == 400 and _error(body)["code"] == "body_too_deep", depth
        # Nothing was started by any of them; a normal run still works.
        status, listing = server.call("GET", "/api/runs", headers={"Authorization": env_token(env)})
        assert status == 200 and listing["runs"] == []
        status, ok = server.post_run({"config": "dada", "input": "Ein Hund"}, wait=True)
        assert status == 200 and ok["status"] == "success"
        assert server.stop() == 0


def env_token(env: dict[str, str]) -> str:
    return f"Bearer {env['DEVSERVER_RESEARCH_TOKEN']}"


@pytest.mark.timeout(120)
def test_every_config_takes_every_text_the_api_takes(tmp_path: Path) -> None:
    """A lone surrogate in the prompt is the child's text: no backend fails on it."""
    with Served(server_env(tmp_path / "data", tmp_path / "tmp")) as server:
        status, configs = server.call("GET", "/api/configs")
        assert status == 200
        for config in [c["name"] for c in configs["configs"]]:
            text = "Ein Hund \\ud800 spielt \\udfff"  # JSON escapes: lone surrogates
            raw = f'{{"config": "{config}", "input": "{text}"}}'.encode()
            status, answer = server.post_run(raw=raw, wait=True)
            assert status == 200, (config, answer)
            assert answer["status"] != "error", (config, answer)
            status, record = server.record(answer["run_id"])
            assert status == 200
            assert record["integrity"]["characters_replaced"] >= 2
            assert not [i for i in record["items"] if i["item_type"] == "pipeline_error"]
        assert server.stop() == 0
