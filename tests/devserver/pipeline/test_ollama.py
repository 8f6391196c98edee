"""The Ollama client against a fake Ollama: real requests; typed errors when slow, down, garbled."""

from __future__ import annotations

import pytest

from devserver.pipeline.backends import (
    BackendBadResponse,
    BackendTimeout,
    BackendUnavailable,
    OllamaBackend,
    OllamaClient,
)
from devserver.pipeline.backends._ollama import normalise_host

from ..fakes import closed_port_url, fake_ollama


def test_translate_posts_to_api_generate_and_records_what_was_sent() -> None:
    with fake_ollama("ok") as server:
        backend = OllamaBackend(OllamaClient(server.url, timeout_s=5), "tiny-model")
        result = backend.translate("Ein Hund", "de", "fr", seed=11)
    assert result.text == "«Ein Hund»"  # the answer, trimmed
    assert (result.model, result.backend) == ("tiny-model", "ollama")
    assert result.params["seed"] == 11 and result.params["options"]["seed"] == 11
    (request,) = server.requests
    assert request["path"] == "/api/generate" and request["model"] == "tiny-model"
    assert request["stream"] is False and request["options"]["seed"] == 11
    assert "from German into French" in request["prompt"]


def test_dada_interception_asks_the_model() -> None:
    with fake_ollama("ok") as server:
        backend = OllamaBackend(OllamaClient(server.url, timeout_s=5), "tiny-model")
        result = backend.intercept("Ein Hund", mode="dada", language="de", seed=3)
    assert result.params["mode"] == "dada" and "Dadaist" in server.requests[0]["prompt"]


def test_slow_server_is_a_timeout() -> None:
    with fake_ollama("slow", delay_s=1.5) as server:
        client = OllamaClient(server.url, timeout_s=0.2, retries=2)
        with pytest.raises(BackendTimeout, match=r"did not answer within 0\.2 s"):
            client.generate("m", "hello", {})
    assert len(server.requests) == 1  # a timeout is not retried: it would only wait longer


def test_server_that_is_down_is_retried_then_unavailable() -> None:
    client = OllamaClient(closed_port_url(), timeout_s=1, retries=2, backoff_s=0.01)
    with pytest.raises(BackendUnavailable, match="after 3 attempts"):
        client.generate("m", "hello", {})


@pytest.mark.parametrize(
    ("mode", "message"),
    [
        ("malformed", "not JSON"),
        ("wrong_shape", "no text 'response'"),
        ("http_error", "HTTP 500: model runner crashed"),
    ],
)
def test_garbage_answers_are_bad_responses(mode: str, message: str) -> None:
    with fake_ollama(mode) as server:
        client = OllamaClient(server.url, timeout_s=5)
        with pytest.raises(BackendBadResponse, match=message):
            client.generate("m", "hello", {})


def test_ollama_host_without_scheme_is_accepted() -> None:
    assert normalise_host("0.0.0.0:11434/") == "http://0.0.0.0:11434"
    assert normalise_host("https://ollama.example") == "https://ollama.example"


def test_media_stays_local_and_says_so(tmp_path) -> None:  # type: ignore[no-untyped-def]
    backend = OllamaBackend(OllamaClient(closed_port_url()), "tiny-model")
    result = backend.generate_image("x", tmp_path / "x.png", width=32, height=32, seed=1, steps=2)
    assert result.backend == "local" and (tmp_path / "x.png").stat().st_size > 0
    assert backend.model_versions()["tiny-model"] is None  # not asked, so not invented
