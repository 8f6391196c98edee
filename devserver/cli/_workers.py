"""``serve --workers N``: one supervisor, N server processes sharing one listening socket.

The supervisor binds the socket, checks the configuration once (the app is
built and closed, so a bad setting or a database on an unknown schema stops
everything before any worker starts), then starts N workers. Each worker is
``devserver serve --listen-fd FD``: a whole server (its own run slots, finaliser,
journal folder and live feeds) on the inherited socket, where the kernel hands
each new connection to one of them.

What the workers share is the store and the data dir (media, journals,
secrets). A run is recorded by the worker that accepted it; any other worker
finds it (``RunService.lookup``): in the store once finished, and while it runs
through its journal file, which the live feed follows (``live._feed``; with
PostgreSQL a ``NOTIFY`` says when to look, docs/deployment.md).

A worker that dies unexpectedly (``kill -9``, out of memory) is replaced at
once; the replacement's start-up recovers the dead worker's unfinished runs as
``incomplete`` records (``ProcessJournal.recover_dead``), and until then the
other workers already answer them as ``incomplete``. A worker that dies again
and again within seconds of starting stops the whole server (a broken
configuration must not loop forever).

On SIGINT or SIGTERM every worker gets SIGTERM and shuts down as one server
does (runs in flight finish or are recorded as ``error`` after
``DEVSERVER_SHUTDOWN_TIMEOUT_S``); a worker still alive ``KILL_AFTER_S`` later
is killed, and its runs are recovered at the next start.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from types import FrameType

from .._settings import Settings

logger = logging.getLogger("devserver")

#: A worker that dies within this many seconds of its start counts as a failed start.
EARLY_DEATH_S = 5.0
#: Failed starts in a row after which the supervisor gives up.
MAX_FAILED_STARTS = 5
#: Seconds past the shutdown timeout a worker gets before it is killed.
KILL_AFTER_S = 15.0
#: How often the supervisor looks at its workers.
WATCH_S = 0.2
#: prctl(2) option: the signal a process gets when its parent dies.
_PR_SET_PDEATHSIG = 1


@dataclass
class _Worker:
    index: int
    process: subprocess.Popen[bytes]
    started: float


def end_with_supervisor() -> None:
    """In a worker, first thing: get SIGTERM when the supervisor dies, even by ``kill -9``
    (Linux ``PR_SET_PDEATHSIG``), so no orphan keeps serving the port.

    Raises:
        SystemExit: the supervisor died before this worker could ask.
    """
    supervisor = os.environ.get("DEVSERVER_SUPERVISOR_PID")
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    if supervisor is not None and str(os.getppid()) != supervisor:
        raise SystemExit("devserver worker: the supervisor is gone")


def worker_command(fd: int, threads: int | None, safety_level: str | None) -> list[str]:
    """The command line of one worker serving on the inherited descriptor ``fd``."""
    command = [sys.executable, "-m", "devserver.cli", "serve", "--listen-fd", str(fd)]
    if threads is not None:
        command += ["--threads", str(threads)]
    if safety_level is not None:
        command += ["--safety-level", safety_level]
    return command


class Supervisor:
    """Starts, watches, replaces and stops the workers (see the module docstring).

    Args:
        listening: the bound, listening socket the workers share.
        workers: how many worker processes.
        settings: the checked settings (for the shutdown timeout).
        threads, safety_level: passed on to every worker's ``serve``.
    """

    def __init__(
        self,
        listening: socket.socket,
        workers: int,
        settings: Settings,
        threads: int | None = None,
        safety_level: str | None = None,
    ) -> None:
        self.listening = listening
        self.count = workers
        self.settings = settings
        self.command = worker_command(listening.fileno(), threads, safety_level)
        self.workers: list[_Worker] = []
        self.stopping = False
        self.failed_starts = 0
        self.replaced = 0

    def _start(self, index: int) -> _Worker:
        env = dict(os.environ, DEVSERVER_WORKER_INDEX=str(index))
        # Another worker's feed of a run waits for this journal's writes: 25 ms, not 250
        # (a flush with nothing new costs a lock and a loop; performance.md, "Scale-out").
        env.setdefault("DEVSERVER_JOURNAL_INTERVAL_S", "0.025")
        env["DEVSERVER_SUPERVISOR_PID"] = str(os.getpid())
        process = subprocess.Popen(self.command, pass_fds=(self.listening.fileno(),), env=env)
        return _Worker(index, process, time.monotonic())

    def run(self) -> int:
        """Run until SIGINT or SIGTERM (or too many failed starts); the exit code.

        Returns:
            0 when every worker shut down cleanly, else 1.
        """

        def on_signal(signum: int, frame: FrameType | None) -> None:
            self.stopping = True

        previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            self.workers = [self._start(index) for index in range(self.count)]
            while not self.stopping:
                time.sleep(WATCH_S)
                self._replace_dead()
            return self._stop_all()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _replace_dead(self) -> None:
        for position, worker in enumerate(self.workers):
            code = worker.process.poll()
            if code is None or self.stopping:
                continue
            lived = time.monotonic() - worker.started
            if lived < EARLY_DEATH_S:
                self.failed_starts += 1
            else:
                self.failed_starts = 0
            if self.failed_starts >= MAX_FAILED_STARTS:
                logger.error(
                    "worker %d died %d times in a row within %.0f s of starting; stopping",
                    worker.index,
                    self.failed_starts,
                    EARLY_DEATH_S,
                )
                print("devserver: workers keep dying at start; stopping", flush=True)
                self.stopping = True
                return
            logger.warning(
                "worker %d (pid %d) ended with %s after %.1f s; starting another",
                worker.index,
                worker.process.pid,
                code,
                lived,
            )
            print(
                f"devserver: worker {worker.process.pid} ended ({code}); starting another",
                flush=True,
            )
            self.workers[position] = self._start(worker.index)
            self.replaced += 1

    def _stop_all(self) -> int:
        """SIGTERM every worker, wait for them, kill the ones that overstay."""
        for worker in self.workers:
            if worker.process.poll() is None:
                worker.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self.settings.shutdown_timeout_s + KILL_AFTER_S
        clean = True
        for worker in self.workers:
            try:
                code = worker.process.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                logger.error("worker %d did not stop in time; killed", worker.process.pid)
                worker.process.kill()
                code = worker.process.wait()
            clean = clean and code == 0
        self.listening.close()
        print(f"Stopped {len(self.workers)} worker(s).", flush=True)
        return 0 if clean else 1
