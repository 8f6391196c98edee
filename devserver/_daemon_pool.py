"""A fixed pool of daemon threads, for work that must never hold the process at exit."""

from __future__ import annotations

import concurrent.futures
import queue
import threading
from collections.abc import Callable
from typing import Any

_Task = tuple[concurrent.futures.Future[Any], Callable[..., Any], tuple[Any, ...]]


class DaemonPool:
    """A fixed pool of daemon worker threads with the part of the executor API used here.

    Not a ``ThreadPoolExecutor``: its threads are joined when the interpreter
    exits, so a run stuck in a slow backend would hold the process long after
    ``close`` recorded the run as aborted and the shutdown timeout passed.
    An aborted run's worker has nothing left to write (its tracker is closed).
    """

    def __init__(self, workers: int, name: str) -> None:
        self._tasks: queue.SimpleQueue[_Task | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._shut = False
        self._threads = [
            threading.Thread(target=self._work, name=f"{name}-{n}", daemon=True)
            for n in range(workers)
        ]
        for thread in self._threads:
            thread.start()

    def submit(self, fn: Callable[..., Any], *args: Any) -> concurrent.futures.Future[Any]:
        """Queue ``fn(*args)``; raises RuntimeError after ``shutdown``."""
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        with self._lock:
            if self._shut:
                raise RuntimeError("cannot schedule new futures after shutdown")
            self._tasks.put((future, fn, args))
        return future

    def _work(self) -> None:
        while (task := self._tasks.get()) is not None:
            future, fn, args = task
            if not future.set_running_or_notify_cancel():
                continue
            try:
                result = fn(*args)
            except BaseException as exc:
                future.set_exception(exc)
            else:
                future.set_result(result)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Take no more tasks; cancel the queued ones when asked; stop the threads when idle."""
        with self._lock:
            self._shut = True
        if cancel_futures:
            while True:
                try:
                    task = self._tasks.get_nowait()
                except queue.Empty:
                    break
                if task is not None:
                    task[0].cancel()
        for _ in self._threads:
            self._tasks.put(None)
        if wait:
            for thread in self._threads:
                thread.join()
