"""Record every step of every pipeline run: a fast in-memory tracker, a frozen record, a store.

The public surface is listed in ``__all__``; everything in ``_modules`` is private.
"""

from __future__ import annotations

from ._build import build_record, utc_from_ns
from ._finaliser import Finaliser, RunProcessor, ShutdownReport, Sink
from ._ids import RUN_ID_PATTERN, is_run_id, new_run_id
from ._journal import Journal, JournalTail, Recovery, journal_files, journal_user
from ._live import LiveRunRegistry
from ._media import media_file, open_media
from ._otel import (
    TraceOptions,
    from_otlp_json,
    otlp_json,
    otlp_request,
    record_spans,
    span_id_of,
    trace_id_of,
)
from ._otel_sink import OtlpFigures, OtlpSink
from ._pg_store import SchemaError, SchemaStatus, StoreOpenError
from ._privacy import Pseudonymiser
from ._progress import (
    IterationProgress,
    OutputProgress,
    RunProgress,
    build_progress,
    live_item,
    progress_of_record,
)
from ._record import (
    RECORD_FORMAT_VERSION,
    ExecutionItem,
    ExecutionRecord,
    Integrity,
    MediaRef,
    SinkOutcome,
    StageSummary,
)
from ._run_summary import OutputMedia, RunSummary, summarise_run
from ._runlog import DamagedRunLog, RawItem, RunLog
from ._sinks import StoreSink, write_atomically
from ._store import (
    RecordStore,
    RunFilter,
    RunRow,
    SQLiteRecordStore,
    Stats,
    utc_text,
)
from ._stores import (
    database_name,
    is_server_database,
    open_store,
    store_schema,
    upgrade_store,
)
from ._summary import StageFigures, derive_status, summarise_stages
from ._taxonomy import (
    STAGE_NAMES,
    TAXONOMY_VERSION,
    ItemType,
    MediaType,
    RunStatus,
    Stage,
    StageStatus,
)
from ._tracker import (
    ExecutionTracker,
    Limits,
    NullTracker,
    Tracker,
    bind_context,
    current_tracker,
)

__all__ = [
    "RECORD_FORMAT_VERSION",
    "RUN_ID_PATTERN",
    "STAGE_NAMES",
    "TAXONOMY_VERSION",
    "DamagedRunLog",
    "ExecutionItem",
    "ExecutionRecord",
    "ExecutionTracker",
    "Finaliser",
    "Integrity",
    "ItemType",
    "IterationProgress",
    "Journal",
    "JournalTail",
    "Limits",
    "LiveRunRegistry",
    "MediaRef",
    "MediaType",
    "NullTracker",
    "OtlpFigures",
    "OtlpSink",
    "OutputMedia",
    "OutputProgress",
    "Pseudonymiser",
    "RawItem",
    "RecordStore",
    "Recovery",
    "RunFilter",
    "RunLog",
    "RunProcessor",
    "RunProgress",
    "RunRow",
    "RunStatus",
    "RunSummary",
    "SQLiteRecordStore",
    "SchemaError",
    "SchemaStatus",
    "ShutdownReport",
    "Sink",
    "SinkOutcome",
    "Stage",
    "StageFigures",
    "StageStatus",
    "StageSummary",
    "Stats",
    "StoreOpenError",
    "StoreSink",
    "TraceOptions",
    "Tracker",
    "bind_context",
    "build_progress",
    "build_record",
    "current_tracker",
    "database_name",
    "derive_status",
    "from_otlp_json",
    "is_run_id",
    "is_server_database",
    "journal_files",
    "journal_user",
    "live_item",
    "media_file",
    "new_run_id",
    "open_media",
    "open_store",
    "otlp_json",
    "otlp_request",
    "progress_of_record",
    "record_spans",
    "span_id_of",
    "store_schema",
    "summarise_run",
    "summarise_stages",
    "trace_id_of",
    "upgrade_store",
    "utc_from_ns",
    "utc_text",
    "write_atomically",
]
