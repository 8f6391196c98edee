"""The openai backend against a fake OpenAI-compatible server: streaming, usage, retries, errors."""

from __future__ import annotations

import logging

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from devserver.pipeline.backends import (
    BackendBadResponse,
    BackendUnavailable,
    OpenAIBackend,
    OpenAIClient,
    ProgressBoard,
)

from ..fake_generators import FakeChat, split
from ..fakes import closed_port_url

KEY = "sk-test-0123456789abcdef"


def backend(fake: FakeChat, **client: object) -> OpenAIBackend:
    options = {"api_key": KEY, "timeout_s": 30.0, "retries": 2, "backoff_s": 0.01, **client}
    return OpenAIBackend(OpenAIClient(fake.url, **options), "tiny-model", temperature=0.3)  # type: ignore[arg-type]


def test_a_streamed_translation_records_what_was_sent_and_the_servers_token_counts() -> None:
    with FakeChat(pieces=5) as fake:
        result = backend(fake).translate("Ein Hund", "de", "en", seed=7)
    sent = fake.requests[0]
    assert sent["stream"] is True and sent["stream_options"] == {"include_usage": True}
    assert sent["model"] == result.model == "tiny-model"
    assert result.params["options"] == {"seed": sent["seed"], "temperature": sent["temperature"]}
    assert (sent["seed"], sent["temperature"]) == (7, 0.3)
    assert result.text == fake.answers[0] == "«Ein Hund»"
    assert result.params["usage"] == FakeChat.usage
    assert result.params["served_model"] == "tiny-model"
    assert result.params["finish_reason"] == "stop"
    assert fake.authorizations == [f"Bearer {KEY}"]
    assert KEY not in repr(result) and KEY not in repr(backend(fake).client)


def test_token_counts_stay_out_when_the_server_reports_none() -> None:
    with FakeChat("no_usage") as fake:
        result = backend(fake).translate("Ein Hund", "de", "en", seed=1)
    assert "usage" not in result.params


def test_the_text_so_far_is_reported_while_it_streams() -> None:
    board = ProgressBoard()
    with FakeChat(pieces=3) as fake, board.step(stage=1) as step:
        result = backend(fake).translate("Ein Hund", "de", "en", seed=1)
    assert step.events == len(split(result.text, 3)) == 3
    assert board.snapshot()[1] is None


@pytest.mark.parametrize("mode", ["busy", "down"])
def test_429_and_5xx_are_retried_and_the_attempts_recorded(mode: str) -> None:
    with FakeChat(mode, failures=2) as fake:
        result = backend(fake).translate("Ein Hund", "de", "en", seed=1)
    assert len(fake.requests) == 3 and result.params["attempts"] == 3
    assert result.text == "«Ein Hund»"


def test_a_server_that_stays_busy_is_unavailable_after_the_retries() -> None:
    with FakeChat("busy", failures=10) as fake, pytest.raises(BackendUnavailable, match="HTTP 429"):
        backend(fake, retries=1).translate("Ein Hund", "de", "en", seed=1)
    assert len(fake.requests) == 2


def test_a_stream_cut_before_done_is_not_taken() -> None:
    with FakeChat("cut") as fake, pytest.raises(BackendUnavailable, match="before \\[DONE\\]"):
        backend(fake, retries=1).translate("Ein Hund", "de", "en", seed=1)
    assert len(fake.requests) == 2


def test_a_server_that_is_down_is_unavailable() -> None:
    client = OpenAIClient(closed_port_url() + "/v1", retries=1, backoff_s=0.01)
    with pytest.raises(BackendUnavailable, match="after 2 attempts"):
        OpenAIBackend(client, "m").translate("Ein Hund", "de", "en", seed=1)


@pytest.mark.parametrize(
    ("mode", "words"),
    [("garbled", "not JSON"), ("stream_error", "provider overloaded")],
)
def test_a_broken_stream_is_a_bad_response(mode: str, words: str) -> None:
    with FakeChat(mode) as fake, pytest.raises(BackendBadResponse, match=words):
        backend(fake).translate("Ein Hund", "de", "en", seed=1)


def test_a_refused_key_is_named_without_the_key_in_any_message_or_log(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    with FakeChat("unauthorized") as fake, pytest.raises(BackendBadResponse) as caught:
        backend(fake).translate("Ein Hund", "de", "en", seed=1)
    assert "HTTP 401" in str(caught.value)
    assert KEY not in str(caught.value) and KEY not in caplog.text
    assert len(fake.requests) == 1  # a refused key is not retried


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    text=st.text(
        st.characters(blacklist_categories=("Cs",), blacklist_characters="\n\r"), max_size=80
    ).filter(lambda t: t.strip(' "') == t and t),
    pieces=st.integers(1, 12),
)
def test_any_text_in_any_number_of_chunks_is_put_together_exactly(text: str, pieces: int) -> None:
    with FakeChat(pieces=pieces) as fake:
        answer = backend(fake).client.chat("m", [{"role": "user", "content": text}], {})
    assert answer.text == FakeChat.answer_for(text) == f"«{text}»"
