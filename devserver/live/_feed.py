"""The live feed's engine: one shared, cursor-read list of encoded events per run, and its readers.

How a run's events are produced (``RunFeed``):

- While the run goes on, one poller thread (``FeedHub``) reads the live
  tracker's ``items`` list by index from where it stopped, converts each new
  raw item once into an encoded Server-Sent Event, and wakes the readers. The
  pipeline is never locked or slowed: it only appends to its list, and the
  list is never copied whole.
- Items are published in sequence order. Two threads of one run may append a
  moment out of order, so an item is held back until the ones before it are
  there (or the run has closed, after which the list is final).
- A run that is already stored is read once from the store.

Every subscriber of one run shares one ``RunFeed`` (many subscribers cost one
read of the record) and keeps nothing but an index into it. How a subscriber
reads and sends is ``_stream.Subscription``.
"""

from __future__ import annotations

import bisect
import heapq
import json
import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from execution_history import (
    ExecutionItem,
    ExecutionRecord,
    RawItem,
    RunLog,
    RunProgress,
    build_record,
    live_item,
    progress_of_record,
)

from .._settings import FeedSettings
from ..pipeline._media_names import MEDIA_NAME
from ._progress import ProgressChannel

if TYPE_CHECKING:
    from ..pipeline._configs import PipelineConfig

logger = logging.getLogger("devserver")

#: Event names are item types; anything else a newer taxonomy sends is named ``item``.
_EVENT_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789_")
#: The client's reconnection delay, sent once at the start of every stream.
RETRY_MS = 1000
#: How long the ``end`` event of an ended run waits for its record to be stored.
END_WAIT_S = 30.0


# --------------------------------------------------------------------------- encoding


def event_name(item_type: object) -> str:
    """The SSE event name of an item type.

    Args:
        item_type: an ``ItemType`` or the string of a type from a newer taxonomy.

    Returns:
        The type's name, or ``item`` when it is not a short ``[a-z0-9_]`` name.
    """
    name = str(item_type)
    if 0 < len(name) <= 64 and set(name) <= _EVENT_NAME_CHARS:
        return name
    return "item"


def item_payload(item: ExecutionItem, media_prefix: str) -> dict[str, Any]:
    """The JSON body of one item's event: the item, plus ``media_url`` for media.

    Args:
        item: the item.
        media_prefix: ``/api/runs/<run_id>/media/`` of this run; a media path
            that is not a plain file name of the run's folder gets no URL.

    Returns:
        ``item.model_dump(mode="json")`` plus ``media_url`` (None without media).
    """
    data = item.model_dump(mode="json")
    media = item.media
    url = None
    if media is not None and MEDIA_NAME.fullmatch(media.path):
        url = media_prefix + quote(media.path)
    data["media_url"] = url
    return data


def _json(data: Any) -> bytes:
    # One line: json escapes newlines inside strings, so a frame's data is one field.
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    return text.encode("utf-8", "replace")


def encode_item(item: ExecutionItem, media_prefix: str) -> bytes:
    """One item as an SSE frame: ``id`` = sequence, ``event`` = item type, ``data`` = JSON.

    Args:
        item: the item.
        media_prefix: as in ``item_payload``.

    Returns:
        The UTF-8 frame, ending in a blank line.
    """
    return b"id: %d\nevent: %s\ndata: %s\n\n" % (
        item.sequence,
        event_name(item.item_type).encode(),
        _json(item_payload(item, media_prefix)),
    )


def encode_end(progress: RunProgress) -> bytes:
    """The closing ``end`` frame.

    It has no ``id``, so a client that resumes after it still starts after the last item.

    Args:
        progress: the ended run's progress.

    Returns:
        The frame: ``event: end`` with ``run_id``, ``status``, ``last_sequence`` and ``progress``.
    """
    body = {
        "run_id": progress.run_id,
        "status": str(progress.status),
        "last_sequence": progress.last_sequence,
        "progress": progress.model_dump(mode="json"),
    }
    return b"event: end\ndata: %s\n\n" % _json(body)


# --------------------------------------------------------------------------- finding a run

#: ``planned(config_name)`` → (stage-2 iterations, outputs) the config plans, None when unknown.
Planned = Callable[[str | None], tuple[int | None, int | None]]


def planned_by(configs: Mapping[str, PipelineConfig]) -> Planned:
    """The ``Planned`` function of a set of pipeline configs.

    Args:
        configs: the server's pipeline configs by name.

    Returns:
        ``planned(config_name)`` → (stage-2 iterations, outputs), (None, None) when unknown.
    """

    def planned(config_name: str | None) -> tuple[int | None, int | None]:
        config = configs.get(config_name) if config_name is not None else None
        if config is None:
            return None, None
        return config.interception.iterations, len(config.outputs)

    return planned


# --------------------------------------------------------------------------- one run


class RunFeed:
    """The encoded events of one run, produced once and read by index by every subscriber.

    Build one with ``live`` (a running tracker) or ``stored`` (a stored record).
    """

    def __init__(self, run_id: str, media_prefix: str, planned: Planned) -> None:
        self.run_id = run_id
        self._media_prefix = media_prefix
        self._planned = planned
        self._frames: list[bytes] = []
        self._sequences: list[int] = []
        self._end: bytes | None = None
        self._cond = threading.Condition()
        self.subscribers = 0
        # Live-run state, touched only under _advance_lock.
        self._log: RunLog | None = None
        self._follow: Callable[[], None] | None = None
        self._advance_lock = threading.Lock()
        self._cursor = 0
        self._next_sequence = 1
        self._held: list[tuple[int, int, RawItem]] = []
        self._closed_at: float | None = None
        #: Set when the server shuts down: readers leave without waiting for the end.
        self.is_shut = False
        #: Called (from the poller's thread) whenever readers have something new.
        self._wakers: list[Callable[[], None]] = []
        #: Per event loop, the one signal its subscribers of this feed share (``_stream``).
        self.loop_signals: dict[object, Any] = {}
        #: The running step's progress (a side-channel: its frames are not items).
        self.progress: ProgressChannel | None = None

    @classmethod
    def live(
        cls,
        log: RunLog,
        media_prefix: str,
        planned: Planned,
        follow: Callable[[], None] | None = None,
    ) -> RunFeed:
        """A feed that follows a running run until it ends.

        Args:
            log: the run's log (queued, running or just ended).
            media_prefix: ``/api/runs/<run_id>/media/``.
            planned: what the run's config plans, for the ``end`` event's progress.
            follow: for a run another process runs, what reads its new items into
                ``log`` (and settles it at the end); called before each look.

        Returns:
            The feed, with what the run holds so far already published.
        """
        feed = cls(log.run_id, media_prefix, planned)
        feed._log = log
        feed._follow = follow
        feed.advance()
        return feed

    @classmethod
    def stored(cls, record: ExecutionRecord, media_prefix: str, planned: Planned) -> RunFeed:
        """A feed of a finished, stored run: every event and the end, at once.

        Args:
            record: the stored record.
            media_prefix, planned: as in ``live``.

        Returns:
            The ended feed.
        """
        feed = cls(record.run_id, media_prefix, planned)
        for item in sorted(record.items, key=lambda i: i.sequence):
            feed._frames.append(encode_item(item, media_prefix))
            feed._sequences.append(item.sequence)
        feed._end = encode_end(feed._progress(record))
        return feed

    @property
    def ended(self) -> bool:
        """Whether the last frame (``end``) is known."""
        return self._end is not None

    @property
    def follows_other(self) -> bool:
        """Whether another process runs the run (its items are read from a file)."""
        return self._follow is not None

    @property
    def awaits_store(self) -> bool:
        """Whether the run has ended and its ``end`` waits for the record to be stored.

        No notification says when another process has stored its run (its
        journal file goes), so such a feed is looked at every poll until then:
        a look is one ``open`` of a file that is about to go.
        """
        log = self._log
        return log is not None and log.closed

    def _progress(self, record: ExecutionRecord) -> RunProgress:
        iterations, outputs = self._planned(record.config_name)
        return progress_of_record(record, planned_iterations=iterations, planned_outputs=outputs)

    def advance(self) -> bool:
        """Publish the items the run appended since the last call.

        Returns:
            True when the feed has ended (nothing more will come).
        """
        log = self._log
        if log is None or self._end is not None:
            return True
        if not self._advance_lock.acquire(blocking=False):
            return False  # another thread is at it; its readers will be woken
        try:
            if self._follow is not None:
                self._follow()
            # Read ``closed`` before the length: once closed, the list is final,
            # so everything up to this length is everything the run recorded.
            closed = log.closed
            items = log.items
            count = len(items)
            held = self._held
            for index in range(self._cursor, count):
                raw = items[index]
                sequence = raw.sequence if type(raw.sequence) is int else 0
                heapq.heappush(held, (sequence, index, raw))
            self._cursor = count
            frames: list[bytes] = []
            sequences: list[int] = []
            max_chars = log.max_text_chars
            while held and (closed or held[0][0] <= self._next_sequence):
                sequence, _, raw = heapq.heappop(held)
                self._next_sequence = max(self._next_sequence, sequence + 1)
                item = live_item(raw, max_chars)
                if item is not None:
                    frames.append(encode_item(item, self._media_prefix))
                    sequences.append(sequence)
            end = None
            if closed and not held:
                # The end waits (briefly) until the record is stored, so that a
                # client may download the run as soon as it sees ``end``.
                if self._closed_at is None:
                    self._closed_at = time.monotonic()
                waited = time.monotonic() - self._closed_at
                if log.settled or waited >= END_WAIT_S:
                    record = log.record if log.record is not None else build_record(log)
                    if self._follow is not None:
                        # Another process's run: its journal file may have gone (the run
                        # was stored) before its last lines were read; the record has them.
                        for item in sorted(record.items, key=lambda i: i.sequence):
                            if item.sequence >= self._next_sequence:
                                frames.append(encode_item(item, self._media_prefix))
                                sequences.append(item.sequence)
                    end = encode_end(self._progress(record))
            # Progress after the items of this tick: a step's progress is cleared before
            # its item is recorded, so it never goes out after that item.
            progress = self.progress
            news = end is None and progress is not None and progress.poll()
            if frames or end is not None or news:
                with self._cond:
                    self._frames.extend(frames)
                    self._sequences.extend(sequences)
                    if end is not None:
                        self._end = end
                        self._log = None  # the run's record goes its own way now
                        self._follow = None
                    self._cond.notify_all()
                self._wake()
            return end is not None
        finally:
            self._advance_lock.release()

    def shut(self) -> None:
        """Wake every reader and tell it to leave (the server is shutting down)."""
        with self._cond:
            self.is_shut = True
            self._cond.notify_all()
        self._wake()

    def add_waker(self, waker: Callable[[], None]) -> None:
        """Call ``waker`` whenever new frames, the end or a shutdown arrive (a reader that
        does not wait on a thread, e.g. a coroutine, uses it to be woken)."""
        with self._cond:
            self._wakers.append(waker)

    def remove_waker(self, waker: Callable[[], None]) -> None:
        """Stop calling ``waker``."""
        with self._cond:
            if waker in self._wakers:
                self._wakers.remove(waker)

    def _wake(self) -> None:
        with self._cond:
            wakers = list(self._wakers)
        for waker in wakers:
            try:
                waker()
            except Exception:  # a reader that went away must not stop the others
                logger.debug("a feed waker failed", exc_info=True)

    def start_index(self, since: int) -> int | None:
        """The index of the first frame after sequence number ``since``; None while this
        feed has not reached ``since`` yet.

        A client may hold a later sequence number than this feed has published:
        it read further on another process, whose journal this one follows a few
        milliseconds behind. Counting frames from now would send it items again,
        so its start stays open until the feed has passed ``since`` (or ended).
        """
        with self._cond:
            if since and self._end is None and (not self._sequences or self._sequences[-1] < since):
                return None
            return bisect.bisect_right(self._sequences, since)

    def published(self) -> int:
        """How many item frames are published so far."""
        with self._cond:
            return len(self._frames)

    def read(self, index: int, timeout: float) -> tuple[list[bytes], bytes | None]:
        """Frames from ``index`` on (waiting up to ``timeout`` for some), and the end frame.

        Returns:
            ``(frames, end)``: ``end`` is set once the run's last frame is
            among ``frames`` or already read, i.e. when the reader may finish.
        """
        with self._cond:
            if index >= len(self._frames) and self._end is None and not self.is_shut:
                self._cond.wait(timeout)
            frames = self._frames[index:]
            return frames, self._end


# --------------------------------------------------------------------------- readers


class SubscriberLimit(Exception):
    """Every stream slot is taken."""


class FeedClosed(Exception):
    """The hub is closed: the server is shutting down."""


class FeedHub:
    """The app's feeds: one ``RunFeed`` per watched run, and one poller for the live ones.

    Args:
        settings: the feed's knobs.
    """

    def __init__(self, settings: FeedSettings) -> None:
        self.settings = settings
        self._feeds: dict[str, RunFeed] = {}
        self._lock = threading.Lock()
        self._poller: threading.Thread | None = None
        self._closed = False
        self.subscribers = 0
        self.dropped = 0
        #: Runs another process said it wrote items of since the poller last looked.
        self._notified: set[str] = set()

    def subscribe(self, run_id: str, open_feed: Callable[[], RunFeed | None]) -> RunFeed | None:
        """Join the feed of ``run_id``, opening it with ``open_feed`` when nobody watches it.

        Returns:
            The feed, or None when ``open_feed`` found no such run.

        Raises:
            SubscriberLimit: ``max_subscribers`` streams are open already.
            FeedClosed: the hub is closed.
        """
        with self._lock:
            if self._closed:
                raise FeedClosed
            if self.subscribers >= self.settings.max_subscribers:
                raise SubscriberLimit
            self.subscribers += 1  # the slot is held while the run is looked up
            feed = self._feeds.get(run_id)
            if feed is not None:
                feed.subscribers += 1
                return feed
        try:
            opened = open_feed()  # reads the store: not under the hub's lock
        except BaseException:
            self._release_slot()
            raise
        if opened is None:
            self._release_slot()
            return None
        with self._lock:
            feed = self._feeds.setdefault(run_id, opened)
            feed.subscribers += 1
            if not feed.ended and self._poller is None:
                self._poller = threading.Thread(
                    target=self._poll, name="devserver-feed-poller", daemon=True
                )
                self._poller.start()
        return feed

    def _release_slot(self) -> None:
        with self._lock:
            self.subscribers -= 1

    def unsubscribe(self, feed: RunFeed) -> None:
        """Leave ``feed``; it is forgotten when its last subscriber left."""
        with self._lock:
            self.subscribers -= 1
            feed.subscribers -= 1
            if feed.subscribers <= 0 and self._feeds.get(feed.run_id) is feed:
                del self._feeds[feed.run_id]

    def close(self) -> None:
        """End every open stream now (without ``end``: a client reconnects to a new server)
        and refuse new ones. Idempotent."""
        with self._lock:
            self._closed = True
            feeds = list(self._feeds.values())
        for feed in feeds:
            feed.shut()

    def count_drop(self) -> None:
        """Count a subscriber dropped for not reading."""
        with self._lock:
            self.dropped += 1

    def watched(self) -> int:
        """Runs with at least one subscriber."""
        return len(self._feeds)

    def notify(self, run_id: str) -> None:
        """Another process wrote items of ``run_id`` to its journal: look at once.

        Called by the listener of database notifications (``_notify``); a run
        nobody here watches is ignored.
        """
        with self._lock:
            if run_id in self._feeds:
                self._notified.add(run_id)

    def notify_all(self) -> None:
        """Look at every feed of another process's run at once (notifications were lost)."""
        with self._lock:
            self._notified.update(self._feeds)

    def _poll(self) -> None:
        """Advance every live feed; exits when no live feed is left.

        Feeds of this process's runs are looked at every ``poll_s`` (a look
        reads a list in memory). Feeds of runs another process runs read a
        file: they are looked at when ``notify`` says it grew, and at least
        every ``other_poll_s`` (all there is without notifications).
        """
        last_other = 0.0
        while True:
            now = time.monotonic()
            every_other = now - last_other >= self.settings.other_poll_s
            with self._lock:
                live = [feed for feed in self._feeds.values() if not feed.ended]
                if not live or self._closed:
                    self._poller = None
                    return
                notified, self._notified = self._notified, set()
            if every_other:
                last_other = now
            for feed in live:
                if (
                    feed.follows_other
                    and not every_other
                    and feed.run_id not in notified
                    and not feed.awaits_store
                ):
                    continue
                try:
                    feed.advance()
                except Exception:  # one broken run must not stop the others' feeds
                    logger.exception("live feed of run %s failed", feed.run_id)
            time.sleep(self.settings.poll_s)
