"""Batch exports run on a few dedicated threads, so their garbage stays in a few malloc arenas.

Why: glibc gives threads their own malloc arenas (up to eight per core) and
an arena keeps the high-water mark of what was freed in it. Exporting a
batch (PDF, DOCX, a QDA project) allocates and frees hundreds of MiB; run on
whichever of the server's 100-odd request threads took the request, every
batch filled another arena, and the server's resident memory grew with each
batch and never came back (docs/performance.md, "Soak"). Here the export
runs on one of ``threads`` export threads, started when first needed, and
the request thread only relays the ZIP's chunks to its client.

A bounded hand-off keeps memory flat when the client reads slowly: the
export waits for the client. When the client goes away (the response is
closed) or the pool closes, the export stops at its next chunk and its
generator is closed, as it would be on the request thread.
"""

from __future__ import annotations

import gc
import logging
import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import cast

from ._malloc import release_free_memory

logger = logging.getLogger("devserver")

#: Chunks (about 64 KiB each) waiting for the client at most.
DEPTH = 8
#: How often a waiting side looks whether the other side has gone.
POLL_S = 0.5
THREAD_NAME = "devserver-export"


class ExportPoolClosed(RuntimeError):
    """The server is shutting down: the export was stopped."""


@dataclass(frozen=True, slots=True)
class _Failed:
    error: BaseException


_END = object()


class _Job:
    """One export: its chunks, the hand-off to the request thread, and a stop flag."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self.chunks = chunks
        self.handoff: queue.Queue[object] = queue.Queue(maxsize=DEPTH)
        self.stopped = threading.Event()

    def run(self) -> None:
        """On an export thread: produce every chunk, then the end (or the failure)."""
        try:
            if self.stopped.is_set():
                return  # the client left while the export waited for a thread
            for chunk in self.chunks:
                if not self._put(chunk):
                    return
            self._put(_END)
        except Exception as exc:  # handed to the request thread, which raises it
            self._put(_Failed(exc))
        finally:
            close = getattr(self.chunks, "close", None)
            if close is not None:
                close()  # a generator stopped early runs its cleanup here

    def _put(self, item: object) -> bool:
        while not self.stopped.is_set():
            try:
                self.handoff.put(item, timeout=POLL_S)
                return True
            except queue.Full:
                continue  # the client reads slowly: wait, unless it went away
        return False


class ExportPool:
    """Up to ``threads`` export threads; ``threads=0`` exports on the caller's thread.

    Args:
        threads: most exports produced at once (more wait for a free thread).
        release: hand the export's freed memory back to the system after
            each export (glibc ``malloc_trim``); see ``_malloc``.
    """

    def __init__(self, threads: int, *, release: bool = True) -> None:
        self.threads = threads
        self.release = release
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._workers: list[threading.Thread] = []
        self._idle = 0
        self._open: set[_Job] = set()  # submitted and not finished: stopped by close()
        self._closed = False

    def stream(self, chunks: Iterator[bytes]) -> Iterator[bytes]:
        """``chunks``, produced on an export thread and yielded on the caller's.

        Nothing starts until the result is first iterated; closing it stops the
        export. An exception of the export is raised here, on the caller's thread.

        Raises:
            ExportPoolClosed: the pool closed before or during the export.
        """
        if self.threads <= 0:
            return chunks
        return self._relay(_Job(chunks))

    def _relay(self, job: _Job) -> Iterator[bytes]:
        self._submit(job)
        try:
            while True:
                try:
                    item = job.handoff.get(timeout=POLL_S)
                except queue.Empty:
                    if self._closed:
                        raise ExportPoolClosed("the server is shutting down") from None
                    continue  # waiting for a free export thread, or a slow export
                if item is _END:
                    return
                if isinstance(item, _Failed):
                    raise item.error
                yield cast(bytes, item)
        finally:
            job.stopped.set()

    def _submit(self, job: _Job) -> None:
        with self._lock:
            if self._closed:
                raise ExportPoolClosed("the server is shutting down")
            self._open.add(job)
            self._jobs.put(job)
            if self._idle > 0:
                self._idle -= 1  # an idle thread takes it
            elif len(self._workers) < self.threads:
                # Started on demand: a server that never exports keeps no export thread.
                worker = threading.Thread(
                    target=self._work, name=f"{THREAD_NAME}-{len(self._workers) + 1}", daemon=True
                )
                self._workers.append(worker)
                worker.start()
            # else it waits in the queue for the first thread that is done

    def _work(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            try:
                job.run()
            except Exception:  # run() hands the export's own errors on; this is the rest
                logger.exception("export thread: an export failed outside its generator")
            finally:
                with self._lock:
                    self._open.discard(job)
                del job  # drop the export's last references before memory is released
                if self.release:
                    # Collect first: python-docx and lxml trees sit in reference cycles,
                    # and their C memory is freed only when the collector runs.
                    gc.collect()
                    release_free_memory()
                with self._lock:
                    self._idle += 1

    def close(self, timeout_s: float = 5.0) -> None:
        """Stop exports at their next chunk (waiting ones before their first), end the threads.

        Idempotent.
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
            for job in self._open:
                job.stopped.set()
            workers = list(self._workers)
        for _ in workers:
            self._jobs.put(None)
        for worker in workers:
            worker.join(timeout_s)
