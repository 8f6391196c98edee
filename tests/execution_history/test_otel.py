"""Each record as one OTLP trace, sent by the OTLP sink to a real OTLP/HTTP receiver.

The receiver (tests/otlp_receiver.py) decodes the protobuf body with
opentelemetry-proto, so every assertion reads what a collector would read.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from execution_history import (
    ExecutionRecord,
    ExecutionTracker,
    ItemType,
    OtlpSink,
    Pseudonymiser,
    SinkOutcome,
    TraceOptions,
    otlp_request,
    span_id_of,
    trace_id_of,
)
from tests.otlp_receiver import OtlpReceiver, closed_port_endpoint, otlp_receiver
from tests.records import STILLE_POST_TEXTS, log_stille_post, stille_post_record

PSEUDONYMS = Pseudonymiser("a pseudonym key for the otel tests")
PROMPT = "Ein Hund spielt im Garten"


def _ns(moment: datetime) -> int:
    delta = moment - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 10**9 + delta.microseconds * 1000


def _attrs(span: Span) -> dict[str, Any]:
    """A span's attributes as plain values, read from the decoded protobuf."""
    values: dict[str, Any] = {}
    for kv in span.attributes:
        kind = kv.value.WhichOneof("value")
        values[kv.key] = getattr(kv.value, kind)
    return values


class Sent:
    """A sink wired to a receiver, with the outcomes it reported."""

    def __init__(self, endpoint: str, **kwargs: Any) -> None:
        self.reports: list[tuple[str, SinkOutcome]] = []
        timeout = kwargs.pop("deadline_s", 5.0)
        self.sink = OtlpSink(
            OTLPSpanExporter(endpoint=endpoint, timeout=timeout),
            kwargs.pop("options", TraceOptions()),
            pseudonymiser=PSEUDONYMS,
            deadline_s=timeout,
            report=self.reports.extend,
            **kwargs,
        )

    def close(self) -> None:
        self.sink.close()


@pytest.fixture
def receiver() -> Iterator[OtlpReceiver]:
    with otlp_receiver() as running:
        yield running


def _send(receiver: OtlpReceiver, *records: ExecutionRecord, **kwargs: Any) -> list[Span]:
    sent = Sent(receiver.endpoint, **kwargs)
    for record in records:
        assert sent.sink(record).status == "queued"
    sent.close()  # drains: every queued run is exported before close returns
    assert [o.status for _, o in sent.reports] == ["ok"] * len(records)
    return receiver.spans()


def _tree(spans: list[Span]) -> tuple[Span, dict[bytes, list[Span]]]:
    children: dict[bytes, list[Span]] = {}
    roots = [s for s in spans if not s.parent_span_id]
    for span in spans:
        if span.parent_span_id:
            children.setdefault(span.parent_span_id, []).append(span)
    assert len(roots) == 1, [s.name for s in roots]
    ids = {s.span_id for s in spans}
    assert all(s.parent_span_id in ids for s in spans if s.parent_span_id), "dangling parent"
    return roots[0], children


def _named(spans: list[Span], prefix: str) -> list[Span]:
    return sorted(
        (s for s in spans if s.name.startswith(prefix)), key=lambda s: s.start_time_unix_nano
    )


def _blocked_record() -> ExecutionRecord:
    tracker = ExecutionTracker("stillepost", safety_level="kids", user_id="child-9")
    with tracker:
        with tracker.stage(1):
            tracker.log_user_input("Hakenkreuz malen")
            tracker.log_safety_check(
                passed=False, duration_ms=0.2, metadata={"matched_terms": ["Hakenkreuz"]}
            )
            tracker.log_blocked("terms not allowed", metadata={"matched_terms": ["Hakenkreuz"]})
    return tracker.finalize()


def test_a_stille_post_run_is_one_trace_with_eight_iteration_spans_in_order(
    receiver: OtlpReceiver,
) -> None:
    record = stille_post_record()
    spans = _send(receiver, record)
    assert {s.trace_id for s in spans} == {trace_id_of(record.run_id).to_bytes(16, "big")}
    root, children = _tree(spans)
    assert root.name == "run stillepost"
    assert root.start_time_unix_nano == _ns(record.started_at)
    assert record.ended_at is not None and root.end_time_unix_nano == _ns(record.ended_at)
    stages = {_attrs(s)["execution_history.stage"]: s for s in children[root.span_id]}
    assert sorted(stages) == [1, 2, 3, 4]
    for summary in record.stages:  # every stage span has the summary's own times
        span = stages[summary.stage]
        assert summary.started_at is not None and summary.ended_at is not None
        assert (span.start_time_unix_nano, span.end_time_unix_nano) == (
            _ns(summary.started_at),
            _ns(summary.ended_at),
        )
        assert _attrs(span)["execution_history.stage.status"] == str(summary.status)
    iterations = [s for s in children[stages[2].span_id] if s.name.startswith("iteration")]
    assert [s.name for s in sorted(iterations, key=lambda s: s.start_time_unix_nano)] == [
        f"iteration {i}" for i in range(1, 9)
    ]
    by_sequence = {i.sequence: i for i in record.items}
    for number, span in enumerate(sorted(iterations, key=lambda s: s.start_time_unix_nano), 1):
        assert _attrs(span)["execution_history.stage_iteration"] == number
        (step,) = children[span.span_id]
        item = by_sequence[_attrs(step)["execution_history.item.sequence"]]
        assert item.stage_iteration == number and item.duration_ms is not None
        # Times are the record's: the item was recorded when its step ended.
        assert step.end_time_unix_nano == _ns(item.timestamp)
        assert step.start_time_unix_nano == _ns(item.timestamp) - round(item.duration_ms * 1e6)
        attrs = _attrs(step)
        assert attrs["gen_ai.operation.name"] == "text_completion"
        assert attrs["gen_ai.request.model"] == "glossary-translator"
        assert attrs["gen_ai.provider.name"] == "local"
        assert attrs["gen_ai.request.seed"] == 1234
        assert attrs["langfuse.observation.type"] == "generation"
        assert attrs["execution_history.metadata.to_lang"] == item.metadata["to_lang"]
    # interception_final has no duration: an event on the stage span, at its timestamp.
    final = next(i for i in record.items if i.item_type == ItemType.INTERCEPTION_FINAL)
    events = {e.name: e for e in stages[2].events}
    assert events["interception_final"].time_unix_nano == _ns(final.timestamp)


def test_every_output_is_one_span_under_stage_3_and_one_under_stage_4(
    receiver: OtlpReceiver,
) -> None:
    tracker = ExecutionTracker("triptych", user_id="child-1")
    log_stille_post(tracker, blocked_output=None)
    record = tracker.finalize()
    spans = _send(receiver, record)
    root, children = _tree(spans)
    stages = {_attrs(s)["execution_history.stage"]: s for s in children[root.span_id]}
    for stage in (3, 4):
        outputs = [s for s in children[stages[stage].span_id] if s.name.startswith("output")]
        assert [s.name for s in outputs] == ["output 1", "output 2", "output 3"]
        assert [_attrs(s)["execution_history.loop_iteration"] for s in outputs] == [1, 2, 3]
        assert all(s.status.code == Status.STATUS_CODE_UNSET for s in outputs)
    images = [s for s in spans if s.name.startswith("output_image")]
    assert len(images) == 3
    assert {_attrs(s)["gen_ai.operation.name"] for s in images} == {"generate_content"}
    assert {_attrs(s)["gen_ai.output.type"] for s in images} == {"image"}
    assert record.status == "success" and root.status.code == Status.STATUS_CODE_UNSET


def test_a_partial_run_marks_the_blocked_output_and_not_the_others(
    receiver: OtlpReceiver,
) -> None:
    record = stille_post_record()  # output 2 blocked at stage 3
    assert record.status == "partial"
    spans = _send(receiver, record)
    root, children = _tree(spans)
    stage3 = next(s for s in children[root.span_id] if s.name.startswith("stage 3"))
    outputs = {s.name: s for s in children[stage3.span_id]}
    assert outputs["output 2"].status.code == Status.STATUS_CODE_ERROR
    assert outputs["output 2"].status.message == "blocked"
    assert "stage3_blocked" in [e.name for e in outputs["output 2"].events]
    assert (
        outputs["output 1"].status.code
        == outputs["output 3"].status.code
        == Status.STATUS_CODE_UNSET
    )
    assert _attrs(root)["execution_history.status"] == "partial"
    stage4 = next(s for s in children[root.span_id] if s.name.startswith("stage 4"))
    assert sorted(s.name for s in children[stage4.span_id]) == ["output 1", "output 3"]


def test_a_blocked_run_has_stage_1_in_error_and_no_later_stages(receiver: OtlpReceiver) -> None:
    record = _blocked_record()
    assert record.status == "blocked"
    spans = _send(receiver, record)
    root, children = _tree(spans)
    assert root.status.code == Status.STATUS_CODE_ERROR and root.status.message == "blocked"
    (stage1,) = children[root.span_id]
    assert stage1.name == "stage 1 Translation and safety"
    assert stage1.status.code == Status.STATUS_CODE_ERROR
    assert "stage1_blocked" in [e.name for e in stage1.events]
    check = next(s for s in children[stage1.span_id])
    assert _attrs(check)["execution_history.safety.passed"] is False
    assert _attrs(check)["execution_history.safety.matched_terms_count"] == 1
    assert _attrs(check)["openinference.span.kind"] == "GUARDRAIL"


def test_no_raw_id_and_no_text_leaves_by_default(receiver: OtlpReceiver) -> None:
    records = [stille_post_record(), _blocked_record()]
    _send(receiver, *records)
    body = b"".join(r.body for r in receiver.received)
    for raw in (b"child-42", b"class-7b", b"child-9"):
        assert raw not in body
    texts = {i.content for r in records for i in r.items if i.content} | {"Hakenkreuz"}
    for text in texts:
        assert text.encode() not in body, text
    root = next(s for s in receiver.spans() if not s.parent_span_id)
    attrs = _attrs(root)
    assert attrs["user.id"] == attrs["langfuse.user.id"] == PSEUDONYMS.user("child-42")
    assert attrs["session.id"] == attrs["langfuse.session.id"] == PSEUDONYMS.session("class-7b")


def test_texts_leave_only_when_capture_is_on(receiver: OtlpReceiver) -> None:
    record = stille_post_record()
    spans = _send(receiver, record, options=TraceOptions(capture_content=True))
    root = next(s for s in spans if not s.parent_span_id)
    assert _attrs(root)["input.value"] == _attrs(root)["langfuse.trace.input"] == PROMPT
    assert _attrs(root)["output.value"] == STILLE_POST_TEXTS[-1]
    first = next(s for s in spans if _attrs(s).get("execution_history.stage_iteration") == 1
                 and s.name.startswith("interception_iteration"))  # fmt: skip
    attrs = _attrs(first)
    # Input is the text the step consumed (its input_sequence); output is what it made.
    assert attrs["output.value"] == attrs["langfuse.observation.output"] == STILLE_POST_TEXTS[0]
    body = b"".join(r.body for r in receiver.received)
    assert b"child-42" not in body  # ids stay pseudonyms even then


def test_the_sink_and_the_pure_builder_give_the_same_ids(receiver: OtlpReceiver) -> None:
    record = stille_post_record()
    spans = _send(receiver, record)
    built = otlp_request([record.pseudonymised(PSEUDONYMS)], TraceOptions())
    again = [s for r in built.resource_spans for ss in r.scope_spans for s in ss.spans]
    assert sorted((s.span_id, s.parent_span_id, s.name) for s in spans) == sorted(
        (s.span_id, s.parent_span_id, s.name) for s in again
    )
    root = next(s for s in spans if not s.parent_span_id)
    assert root.span_id == span_id_of(record.run_id, "run").to_bytes(8, "big")


@pytest.mark.parametrize("mode", ["down", "error"])
def test_a_collector_down_or_answering_500_is_counted_not_raised(mode: str) -> None:
    record = stille_post_record()
    with otlp_receiver("error") as failing:
        endpoint = closed_port_endpoint() if mode == "down" else failing.endpoint
        sent = Sent(endpoint, deadline_s=2.0)
        assert sent.sink(record).status == "queued"
        sent.close()
        if mode == "error":
            assert len(failing.received) == 1  # it did arrive, and was refused
    ((run_id, outcome),) = sent.reports
    assert run_id == record.run_id and outcome.status in ("failed", "timeout")
    health = sent.sink.health()
    assert health["failed"] == 1 and health["sent"] == 0 and health["last_error"]


def test_a_slow_collector_runs_into_the_deadline_and_the_queue_drops_what_does_not_fit() -> None:
    with otlp_receiver("slow") as slow:
        sent = Sent(slow.endpoint, deadline_s=0.5, queue_size=1, batch_runs=1)
        outcomes = [sent.sink(stille_post_record()).status]
        slow.wait_for(1)  # the first export is held by the collector now
        outcomes += [sent.sink(stille_post_record()).status for _ in range(3)]
        sent.close()
        # close() returned within its deadline; the thread finishes the export it had
        # begun (cut short by the exporter's shutdown) before the collector answers.
        sent.sink._thread.join()
    # One in flight, one waiting (queue of 1), two dropped at hand-over.
    assert outcomes == ["queued", "queued", "dropped", "dropped"]
    statuses = sorted(o.status for _, o in sent.reports)
    assert len(statuses) == 4 and statuses.count("dropped") == 2
    assert "timeout" in statuses and "ok" not in statuses
    health = sent.sink.health()
    assert health["dropped"] == 2 and health["timed_out"] >= 1 and health["sent"] == 0


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    text=st.text(max_size=200),
    meta=st.dictionaries(st.text(max_size=20), st.text(max_size=50), max_size=5),
)
def test_hostile_texts_never_break_the_trace_nor_leave_without_capture(
    receiver: OtlpReceiver, text: str, meta: dict[str, str]
) -> None:
    marker = "QZXMARK"  # in every text: if a text leaked, the marker would be in the body
    tracker = ExecutionTracker("dada", user_id="child-" + text[:20])
    with tracker:
        with tracker.stage(1):
            tracker.log_user_input(marker + text, metadata={k: marker + v for k, v in meta.items()})
        with tracker.stage(2), tracker.stage_iteration(1):
            tracker.log_interception_iteration(
                marker + text[::-1], model="m" + marker, duration_ms=1.0
            )
    record = tracker.finalize()
    before = len(receiver.received)
    sent = Sent(receiver.endpoint)
    sent.sink(record)
    sent.close()
    assert [o.status for _, o in sent.reports] == ["ok"]
    (arrived,) = receiver.received[before:]
    # The model name is structure, not a text: it is the only place the marker may be.
    assert arrived.body.count(marker.encode()) == arrived.body.count(("m" + marker).encode())
