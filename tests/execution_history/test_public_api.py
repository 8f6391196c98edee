"""The public surface of execution_history is exactly what __all__ promises."""

from __future__ import annotations

import json
from pathlib import Path

import execution_history
from execution_history import ExecutionRecord

EXPECTED = {
    "RECORD_FORMAT_VERSION", "RUN_ID_PATTERN", "STAGE_NAMES", "TAXONOMY_VERSION",
    "ExecutionItem", "ExecutionRecord", "ExecutionTracker", "Finaliser", "Integrity",
    "ItemType", "Journal", "Limits", "LiveRunRegistry", "MediaRef", "MediaType",
    "NullTracker", "Pseudonymiser", "RawItem", "RecordStore", "RunFilter", "RunRow",
    "RunStatus", "SQLiteRecordStore", "Sink", "SinkOutcome", "Stage", "StageStatus",
    "StageSummary", "Stats", "StoreSink", "Tracker", "bind_context", "build_record",
    "current_tracker", "derive_status", "is_run_id", "journal_files", "journal_user",
    "new_run_id", "summarise_stages", "utc_from_ns", "utc_text", "write_atomically",
    # the progress model (issue 6)
    "IterationProgress", "OutputProgress", "RunProgress", "build_progress", "live_item",
    "progress_of_record",
    # the summary of a finished run
    "OutputMedia", "RunSummary", "StageFigures", "summarise_run",
    # one run log, processors, recovery and shutdown reports (issue 11)
    "DamagedRunLog", "Recovery", "RunLog", "RunProcessor", "ShutdownReport",
    "open_store",
    # media files read only from inside a run's folder, never through a link (issue 12)
    "media_file", "open_media",
    # following another process's run (scale-out, issue 15)
    "JournalTail",
    # PostgreSQL behind the same store: schema checks and migrations (issue 15)
    "SchemaError", "SchemaStatus", "StoreOpenError", "is_server_database", "store_schema",
    "database_name",
    "upgrade_store",
    # each run as an OpenTelemetry trace (issue 16)
    "OtlpFigures", "OtlpSink", "TraceOptions", "from_otlp_json", "otlp_json", "otlp_request",
    "record_spans", "span_id_of", "trace_id_of",
}  # fmt: skip


def test_all_lists_exactly_the_public_names() -> None:
    assert set(execution_history.__all__) == EXPECTED
    for name in EXPECTED:
        assert hasattr(execution_history, name), name


def test_private_modules_are_not_exported() -> None:
    assert not [name for name in execution_history.__all__ if name.startswith("_")]


def test_published_json_schema_in_docs_is_current() -> None:
    """docs/execution-record.schema.json is what ExecutionRecord.model_json_schema() says."""
    path = Path(__file__).resolve().parents[2] / "docs" / "execution-record.schema.json"
    assert json.loads(path.read_text(encoding="utf-8")) == ExecutionRecord.model_json_schema()


def test_both_trackers_implement_every_member_of_the_tracker_protocol() -> None:
    """Callers never branch on the kind of tracker: the no-op one has every member too."""
    from execution_history import ExecutionTracker, NullTracker, Tracker

    members = [
        name
        for name in dir(Tracker)
        if not name.startswith("_") or name in {"__enter__", "__exit__"}
    ]
    members += list(Tracker.__annotations__)
    null, real = NullTracker("x"), ExecutionTracker("x")
    for tracker in (null, real):
        assert isinstance(tracker, Tracker)
        missing = [name for name in members if not hasattr(tracker, name)]
        assert missing == [], type(tracker).__name__
    assert null.accept() is True and null.record() is None and null.run_log is None
    assert null.log("user_input_text", "x") is None
    assert real.accept() is True and real.log("user_input_text", "x") == 1
