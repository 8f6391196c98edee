"""Research access shared by the HTTP API and the command line: filters, cursors, batch export."""

from __future__ import annotations

from ._batch import BatchRequest, BatchSummary, safe_file_name, stream_batch
from ._cursor import CursorCodec, CursorError
from ._queries import QueryError, fetch_page, parse_filters, parse_limit, run_filter

__all__ = [
    "BatchRequest",
    "BatchSummary",
    "CursorCodec",
    "CursorError",
    "QueryError",
    "fetch_page",
    "parse_filters",
    "parse_limit",
    "run_filter",
    "safe_file_name",
    "stream_batch",
]
