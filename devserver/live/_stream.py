"""One subscriber's stream of a run's feed: what to send next, and two ways to wait for it.

``Subscription`` is the body of an ``/events`` response. Its ``step`` decides
what goes out next (a chunk of frames, the ``end`` frame, a heartbeat) without
ever waiting. Two drivers wait between steps:

- iterating it (``__iter__``), as any WSGI server does, waits on the feed's
  condition in the request's thread: for the test client and other servers;
- ``stream`` is a coroutine for the ASGI server ``devserver serve`` runs: it
  waits on an event the feed's poller sets, so an open stream holds no thread
  however long its run lasts, and a client that stops reading is dropped
  after ``write_deadline_s`` (the transport's own buffer bounds the memory).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Generator, Iterator

from ._feed import RETRY_MS, FeedHub, RunFeed

logger = logging.getLogger("devserver")

#: A reader joins at most this many bytes of frames into one write.
_MAX_WRITE_BYTES = 256 * 1024
_HEARTBEAT = b": keep-alive\n\n"


class Subscription:
    """The body of one ``/events`` response: frames after ``since``, heartbeats, the end.

    Leaves the hub exactly once (``close``), when it finishes, when the
    client goes, or when it is dropped; every WSGI server calls ``close`` on a
    body, so the slot is given back even when the body is never iterated.

    Args:
        hub: the app's feed hub (the subscription already holds a slot in it).
        feed: the run's feed.
        since: the last sequence number the client has (0: from the start).
    """

    def __init__(self, hub: FeedHub, feed: RunFeed, since: int) -> None:
        self._hub = hub
        self.feed = feed
        self._since = since
        #: The next frame to send; None until the feed has passed ``since`` (start_index).
        self._index = feed.start_index(since)
        self._progress_seen = 0  # a new reader gets the latest progress, not its history
        self._quiet_since = time.monotonic()
        self._left = False
        self._body: Generator[bytes, None, None] | None = None

    # ------------------------------------------------------------------ the core

    def step(self) -> tuple[bytes | None, bool]:
        """What to send now, without waiting.

        Returns:
            ``(data, finished)``: ``data`` is a chunk of frames, the ``end``
            frame or a heartbeat (None when there is nothing to send yet);
            ``finished`` is True once nothing more will be sent (the ``end``
            went out, or the server is shutting down).
        """
        if self._index is None:
            self._index = self.feed.start_index(self._since)
        index = self._index
        frames, end = self.feed.read(index, 0) if index is not None else ([], None)
        if frames and index is not None:
            chunk: list[bytes] = []
            size = 0
            for frame in frames:
                chunk.append(frame)
                size += len(frame)
                index += 1
                if size >= _MAX_WRITE_BYTES:
                    break
            self._index = index
            self._quiet_since = time.monotonic()
            return b"".join(chunk), False
        if end is not None:
            return end, True
        if self.feed.progress is not None:
            self._progress_seen, latest = self.feed.progress.latest(self._progress_seen)
            if latest is not None:
                self._quiet_since = time.monotonic()
                return latest, False
        if self.feed.is_shut:
            return None, True
        if time.monotonic() - self._quiet_since >= self._hub.settings.heartbeat_s:
            self._quiet_since = time.monotonic()
            return _HEARTBEAT, False
        return None, False

    def _wait_s(self) -> float:
        """How long to wait for news before the next heartbeat is due."""
        due = self._quiet_since + self._hub.settings.heartbeat_s - time.monotonic()
        return max(0.0, min(due, self._hub.settings.heartbeat_s))

    def close(self) -> None:
        """Stop and leave the hub (idempotent)."""
        if self._body is not None:
            self._body.close()
        if not self._left:
            self._left = True
            self._hub.unsubscribe(self.feed)

    # ----------------------------------------------------- a WSGI server's thread

    def __iter__(self) -> Iterator[bytes]:
        if self._body is None:
            self._body = self._frames()
        return self._body

    def _frames(self) -> Generator[bytes, None, None]:
        # A first chunk at once: a server sends the headers with the first bytes.
        yield b"retry: %d\n\n" % RETRY_MS
        while True:
            data, finished = self.step()
            if data is not None:
                yield data
            if finished:
                return
            if data is None:  # waits for news
                index = self._index if self._index is not None else self.feed.published()
                self.feed.read(index, min(self._wait_s(), 1.0))

    # ----------------------------------------------------------- an ASGI server

    async def stream(
        self,
        send: Callable[[bytes], Awaitable[None]],
        client_gone: asyncio.Event,
    ) -> None:
        """Send the whole stream with ``send``, waiting on the event loop between steps.

        Args:
            send: sends one chunk of the body; waits while the client is slow.
            client_gone: set when the client disconnects.

        The subscription is closed on the way out, however it ends.
        """
        signal = _LoopSignal.join(self.feed)
        deadline = self._hub.settings.write_deadline_s
        try:
            await asyncio.wait_for(send(b"retry: %d\n\n" % RETRY_MS), deadline)
            while not client_gone.is_set():
                news = signal.event  # taken before the step: no wake-up is missed
                data, finished = self.step()
                if data is not None:
                    await asyncio.wait_for(send(data), deadline)
                if finished:
                    return
                if data is None:
                    await _first_of(news, client_gone, timeout=self._wait_s())
        except TimeoutError:
            self._hub.count_drop()
            logger.info("dropped a feed subscriber of run %s: not reading", self.feed.run_id)
            raise
        finally:
            signal.leave(self.feed)
            self.close()


class _LoopSignal:
    """What wakes the subscribers of one feed on one event loop: one wake-up from the
    poller's thread per feed and loop, however many subscribers wait (each would
    otherwise cost a write to the loop's self-pipe per event)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.event = asyncio.Event()
        self.users = 0

    @classmethod
    def join(cls, feed: RunFeed) -> _LoopSignal:
        """The signal of ``feed`` on the running loop (made and registered on first use)."""
        loop = asyncio.get_running_loop()
        signal: _LoopSignal | None = feed.loop_signals.get(loop)
        if signal is None:
            signal = feed.loop_signals[loop] = cls(loop)
            feed.add_waker(signal.wake)
        signal.users += 1
        return signal

    def leave(self, feed: RunFeed) -> None:
        """One subscriber less; the last one unregisters the signal."""
        self.users -= 1
        if self.users <= 0:
            feed.remove_waker(self.wake)
            feed.loop_signals.pop(self.loop, None)

    def wake(self) -> None:
        """Called from the poller's thread."""
        self.loop.call_soon_threadsafe(self._fire)

    def _fire(self) -> None:
        event, self.event = self.event, asyncio.Event()
        event.set()


async def _first_of(*events: asyncio.Event, timeout: float) -> None:
    """Return when one of ``events`` is set or ``timeout`` seconds have passed."""
    waiters = [asyncio.ensure_future(event.wait()) for event in events]
    try:
        await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
