"""Every caller's fault is a 4xx JSON error that says what to fix; nothing leaks a stack trace."""

from __future__ import annotations

from typing import Any

import pytest

from ..fakes import closed_port_url, fake_ollama

GOOD = {"config": "dada", "input": "Ein Hund"}


@pytest.mark.parametrize(
    ("body", "code", "hint"),
    [
        ([1, 2], "invalid_body", "JSON object"),
        ({**GOOD, "config": "nope"}, "unknown_config", "stillepost"),
        ({**GOOD, "config": None}, "unknown_config", "dada"),
        ({**GOOD, "input": "   "}, "invalid_input", "non-empty"),
        ({**GOOD, "input": 42}, "invalid_input", "non-empty"),
        ({**GOOD, "input": "x" * 2001}, "invalid_input", "at most 2000"),
        ({**GOOD, "input": "a\x00b"}, "invalid_input", "NUL"),
        (
            {**GOOD, "safety_level": "toddlers"},
            "invalid_safety_level",
            "kids, teens, adults, research",
        ),
        ({**GOOD, "user_id": ""}, "invalid_user_id", "user_id"),
        ({**GOOD, "session_id": "s" * 129}, "invalid_session_id", "128"),
        ({**GOOD, "language": "xx"}, "invalid_language", "de"),
        ({**GOOD, "seed": -1}, "invalid_seed", "0 to"),
        ({**GOOD, "seed": True}, "invalid_seed", "0 to"),
        ({**GOOD, "colour": "blue"}, "unknown_field", "colour"),
    ],
)
def test_bad_body_is_400_with_a_clear_message(client: Any, body: Any, code: str, hint: str) -> None:
    response = client.post("/api/runs", json=body)
    assert response.status_code == 400
    assert response.json["error"]["code"] == code
    assert hint in response.json["error"]["message"]


def test_body_that_is_not_json_is_400(client: Any) -> None:
    response = client.post("/api/runs", data="config=dada", content_type="text/plain")
    assert response.status_code == 400 and response.json["error"]["code"] == "invalid_body"


def test_unknown_route_is_json_404(client: Any) -> None:
    response = client.get("/api/nothing-here")
    assert response.status_code == 404
    assert response.json["error"]["code"] == "not_found"


@pytest.mark.parametrize("run_id", ["abc", "../../etc", "A" * 32, "0" * 31, "0" * 33])
def test_malformed_run_id_is_404_before_any_lookup(client: Any, run_id: str) -> None:
    response = client.get(f"/api/runs/{run_id}")
    assert response.status_code == 404 and "error" in response.json


def test_unknown_run_is_404(client: Any) -> None:
    response = client.get("/api/runs/" + "0" * 32)
    assert response.status_code == 404
    assert response.json["error"] == {
        "code": "not_found",
        "message": "There is no run with this id.",
    }


def test_wrong_method_is_json_405_with_allow(client: Any) -> None:
    response = client.delete("/api/configs")
    assert response.status_code == 405
    assert response.json["error"]["code"] == "method_not_allowed"
    assert "GET" in response.headers["Allow"]


def test_unexpected_error_is_a_generic_500(app: Any, client: Any) -> None:
    @app.get("/api/test-explode")
    def explode() -> None:
        raise RuntimeError("secret detail /etc/passwd")

    response = client.get("/api/test-explode")
    assert response.status_code == 500
    assert response.json == {
        "error": {"code": "internal_server_error", "message": "Something went wrong on the server."}
    }
    assert "secret" not in response.get_data(as_text=True)


# ----------------------------------------------------------------- Ollama backend


def ollama_run(make_app: Any, host: str, **config: Any) -> dict[str, Any]:
    app = make_app(BACKEND="ollama", OLLAMA_HOST=host, OLLAMA_MODEL="tiny", **config)
    client = app.test_client()
    answer = client.post("/api/runs?wait=true", json={"config": "dada", "input": "Ein Hund"})
    assert answer.status_code == 200
    return dict(client.get(f"/api/runs/{answer.json['run_id']}").json)


def test_ollama_backend_runs_the_pipeline(make_app: Any) -> None:
    with fake_ollama("ok") as server:
        record = ollama_run(make_app, server.url)
    assert record["status"] == "success"
    translation = next(i for i in record["items"] if i["item_type"] == "translation_result")
    assert (translation["model"], translation["backend"]) == ("tiny", "ollama")
    assert translation["metadata"]["options"]["temperature"] == 0.7
    image = next(i for i in record["items"] if i["item_type"] == "output_image")
    assert image["backend"] == "local"  # Ollama makes no images, and the record says so
    assert record["model_versions"]["tiny"] is None


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        ("slow", "BackendTimeout"),
        ("malformed", "BackendBadResponse"),
        ("wrong_shape", "BackendBadResponse"),
    ],
)
def test_bad_ollama_is_a_clean_stage_failure(make_app: Any, mode: str, expected: str) -> None:
    with fake_ollama(mode, delay_s=1.0) as server:
        record = ollama_run(make_app, server.url, OLLAMA_TIMEOUT_S=0.2)
    assert record["status"] == "error"
    (error,) = [i for i in record["items"] if i["item_type"] == "pipeline_error"]
    assert error["stage"] == 1 and error["metadata"]["exception_type"] == expected
    assert record["stages"][0]["status"] == "failed" and record["stages"][0]["failures"] == 1
    assert [s["status"] for s in record["stages"][1:]] == ["skipped"] * 3


def test_ollama_down_is_a_clean_stage_failure(make_app: Any) -> None:
    record = ollama_run(make_app, closed_port_url(), OLLAMA_RETRIES=1)
    (error,) = [i for i in record["items"] if i["item_type"] == "pipeline_error"]
    assert error["metadata"]["exception_type"] == "BackendUnavailable"
    assert "after 2 attempts" in error["content"]
    assert record["stages"][0]["status"] == "failed"
