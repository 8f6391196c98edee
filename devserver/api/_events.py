"""Blueprint: ``GET /api/runs/<run_id>/events``, the run's live feed as Server-Sent Events."""

from __future__ import annotations

import re

from flask import Blueprint, Response, request, url_for

from .._state import get_state
from ..live._feed import (
    FeedClosed,
    RunFeed,
    SubscriberLimit,
    planned_by,
)
from ..live._progress import ProgressChannel
from ..live._stream import Subscription
from ._errors import ApiError

bp = Blueprint("events", __name__, url_prefix="/api/runs")

_SEQUENCE = re.compile(r"[0-9]{1,18}")
#: The largest sequence number taken (/api/openapi.json publishes it as the maximum).
LARGEST_SEQUENCE = 10**18 - 1


def resume_point() -> int:
    """The sequence number to resume after: ``Last-Event-ID``, else ``?since=``, else 0.

    The header wins because a browser's EventSource sends it on every
    reconnection, while the URL keeps whatever ``since`` it was opened with.

    Raises:
        ApiError: 400 when either is not a whole number ≥ 0 of at most 18 digits.
    """
    # Both are checked even when the header wins: a bad ?since= is refused, not ignored
    # (the spec says what since takes, whatever else the request carries).
    since = _sequence("since", request.args.get("since", "0"))
    header = request.headers.get("Last-Event-ID")
    # A browser sends the header only with an id to resume after: an empty one is refused.
    return _sequence("Last-Event-ID", header.strip()) if header is not None else since


def _sequence(name: str, value: str) -> int:
    if not _SEQUENCE.fullmatch(value):
        raise ApiError(
            400, "invalid_since", f"'{name}' must be a whole number from 0 to {LARGEST_SEQUENCE}."
        )
    return int(value)


@bp.get("/<run_id:run_id>/events")
def events(run_id: str) -> Response:
    """Stream the run's items as events, resumable, closed by an ``end`` event (docs/ui.md)."""
    since = resume_point()
    state = get_state()
    hub = state.feed
    # The media route's prefix for this run ("…/media/x" without its last character).
    media_prefix = url_for("runs.get_media", run_id=run_id, name="x")[:-1]
    planned = planned_by(state.configs)

    def open_feed() -> RunFeed | None:
        found = state.runs.lookup(run_id)
        if found is None:
            return None
        if found.in_flight and found.log is not None:
            feed = RunFeed.live(found.log, media_prefix, planned, follow=found.follow)
            board = state.runs.progress(run_id)
            if board is not None:  # running in this process: its steps' progress too
                feed.progress = ProgressChannel(board, run_id, hub.settings.progress_s)
            return feed
        return RunFeed.stored(found.record(), media_prefix, planned)

    try:
        feed = hub.subscribe(run_id, open_feed)
    except FeedClosed:
        raise ApiError(
            503, "unavailable", "The server is shutting down; try again shortly.",
            headers={"Retry-After": "10"},
        ) from None  # fmt: skip
    except SubscriberLimit:
        raise ApiError(
            503, "too_many_streams", "Too many live feeds are open; try again shortly.",
            headers={"Retry-After": "5"},
        ) from None  # fmt: skip
    if feed is None:
        raise ApiError(404, "not_found", "There is no run with this id.")
    # direct_passthrough: the body reaches the server as the Subscription itself, so the
    # ASGI server of ``devserver serve`` can drive it without a thread (live/_stream.py).
    response = Response(
        Subscription(hub, feed, since), mimetype="text/event-stream", direct_passthrough=True
    )
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Accel-Buffering"] = "no"  # a proxy in front must not hold events back
    return response
