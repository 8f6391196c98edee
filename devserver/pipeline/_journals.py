"""One in-flight journal folder per process, so a start-up recovers only runs of dead processes.

The core's ``Journal.recover`` turns every journal file it finds into an
``incomplete`` record. With ``devserver serve`` and ``devserver run`` sharing
a data dir, a starting process must not do that to a living process's runs.
So each process journals into ``<data_dir>/journal/<random>/`` and holds an
exclusive ``flock`` on a lock file there for as long as it lives; the kernel
releases the lock when the process dies, however it dies. At start-up, a
folder whose lock can be taken belongs to a dead process and is recovered.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import secrets
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO

from execution_history import (
    DamagedRunLog,
    ExecutionRecord,
    Journal,
    JournalTail,
    RecordStore,
    RunFilter,
    RunLog,
    RunStatus,
    build_record,
    is_run_id,
    journal_files,
)

logger = logging.getLogger("devserver")

_LOCK_NAME = ".lock"


class ProcessJournal:
    """This process's journal folder and its lock; a run processor for the finaliser.

    When the folder cannot be made (a read-only or full data dir), the
    process still starts, so stored runs can be read, but ``on_start``
    raises: the run service then refuses new runs instead of accepting runs
    it could lose.

    Args:
        root: ``<data_dir>/journal``.
        damaged_dir: journal files recovery could not read are moved here (outside ``root``).
        interval_s: how often the journal writes new items.
        on_written: told which runs got new lines after each write (``Journal``).
    """

    name = "journal"

    def __init__(
        self,
        root: Path,
        *,
        damaged_dir: Path,
        interval_s: float = 0.25,
        on_written: Callable[[list[tuple[str, int]]], None] | None = None,
    ) -> None:
        self.root = root
        self.damaged_dir = damaged_dir
        self.journal: Journal | None = None
        self.problem: str | None = None
        self.folder: Path | None = None
        self._lock_file: IO[bytes] | None = None
        try:
            root.mkdir(mode=0o700, parents=True, exist_ok=True)
            name = secrets.token_hex(8)
            # Locked before it gets its visible name, so no other process sees it unlocked.
            staging = root / f".new-{name}"
            staging.mkdir(mode=0o700)
            self._lock_file = (staging / _LOCK_NAME).open("wb")
            fcntl.flock(self._lock_file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            self.folder = staging.rename(root / name)
            self.journal = Journal(
                self.folder,
                damaged_dir=self.damaged_dir,
                interval_s=interval_s,
                on_written=on_written,
            )
        except OSError as exc:
            self.problem = f"the journal folder {root} cannot be written: {exc}"
            logger.error("%s; new runs are refused until it can", self.problem)

    # ------------------------------------------------------------- processor

    def on_start(self, log: RunLog) -> None:
        """Journal the run durably (raises OSError when that is impossible)."""
        if self.journal is None:
            raise OSError(self.problem)
        self.journal.on_start(log)

    def on_end(self, log: RunLog) -> None:
        """The journal's thread writes the ending."""

    def on_stored(self, log: RunLog) -> None:
        """The run is safe: its journal file goes."""
        if self.journal is not None:
            self.journal.on_stored(log)

    # ---------------------------------------------------------------- recovery

    def recover_dead(self, store: RecordStore) -> list[str]:
        """Store records for the runs of dead processes; returns their ids.

        Damaged files are moved to ``damaged_dir`` (logged); files whose record
        cannot be stored now stay for the next start.
        """
        recovered: list[str] = []
        damaged = 0
        try:
            folders = sorted(p for p in self.root.iterdir() if p.is_dir())
        except OSError:
            return recovered
        for folder in folders:
            if folder == self.folder or folder.name.startswith("."):
                continue
            lock_path = folder / _LOCK_NAME
            try:
                handle = lock_path.open("ab")
            except OSError:
                continue
            with handle:
                try:
                    fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                except OSError:
                    continue  # its process is alive
                journal = Journal(folder, damaged_dir=self.damaged_dir, interval_s=3600)
                try:
                    report = journal.recover(store)
                    recovered.extend(report.recovered)
                    damaged += len(report.damaged)
                finally:
                    journal.close()
                if not any(p.suffix == ".jsonl" for p in folder.iterdir()):
                    shutil.rmtree(folder, ignore_errors=True)
        if recovered:
            logger.warning("recovered %d run(s) left by a process that died", len(recovered))
        if damaged:
            logger.error("%d damaged journal file(s) moved to %s", damaged, self.damaged_dir)
        return recovered

    def _other_files(self, run_id: str) -> list[Path]:
        """The journal files of ``run_id`` in other processes' folders (none for a bad id)."""
        if not is_run_id(run_id):
            return []
        try:
            return [p for p in self.root.glob(f"*/{run_id}.jsonl") if p.parent != self.folder]
        except OSError:
            return []

    def read_other(self, run_id: str) -> tuple[RunLog, bool] | None:
        """The run log of ``run_id`` from another process's journal, and whether that
        process is dead; None when no other journal holds it.

        A run waits there when its process died and recovery could not store it
        yet (a full disk), or while another living process runs it. Nothing is
        changed: this only reads.
        """
        for path in self._other_files(run_id):
            try:
                with path.open(encoding="ascii", errors="replace") as handle:
                    log = RunLog.from_lines(handle)
            except (OSError, DamagedRunLog):
                continue
            return log, not process_alive(path.parent)
        return None

    def follow_other(
        self, run_id: str, load: Callable[[str], ExecutionRecord | None]
    ) -> OtherRun | None:
        """Follow ``run_id`` while another living process runs it; None when none does.

        Args:
            load: reads the run's stored record (called once its journal file is gone).
        """
        for path in self._other_files(run_id):
            if not process_alive(path.parent):
                continue
            try:
                return OtherRun(JournalTail(path), load)
            except (OSError, DamagedRunLog):
                continue
        return None

    def close(self) -> None:
        """Stop journaling; remove the folder when no run was left unfinished."""
        if self.journal is not None:
            self.journal.close()
        if self._lock_file is not None and self.folder is not None:
            with contextlib.suppress(OSError):
                leftovers = [p for p in self.folder.iterdir() if p.suffix == ".jsonl"]
                if not leftovers:
                    shutil.rmtree(self.folder, ignore_errors=True)
            self._lock_file.close()  # releases the lock
            self._lock_file = None


class OtherRun:
    """A run another process is running, followed through its journal file.

    ``log`` grows as ``refresh`` reads the file. The run settles (``log.record``
    is set) when the file is gone, with the record the store then holds, or
    when the other process died, with the ``incomplete`` record recovery makes
    of what the file held.

    Args:
        tail: the run's journal file, opened.
        load: reads the run's stored record.
    """

    #: How often, at most, the other process's lock is checked (a system call).
    ALIVE_CHECK_S = 0.5

    def __init__(self, tail: JournalTail, load: Callable[[str], ExecutionRecord | None]) -> None:
        self.tail = tail
        self.log = tail.log
        self._load = load
        self._checked_alive = time.monotonic()

    def refresh(self) -> None:
        """Read what the other process appended; settle the log when the run is over."""
        log = self.log
        if log.settled:
            return
        tail = self.tail
        if tail.refresh():
            return
        if tail.gone:
            record = self._load(log.run_id)
            if record is None:  # removed without a stored record: recovery will say
                record = build_record(log, recovered=not log.closed)
            self._settle(record)
            return
        now = time.monotonic()
        if now - self._checked_alive < self.ALIVE_CHECK_S:
            return
        self._checked_alive = now
        if not process_alive(tail.path.parent):
            tail.refresh()  # its last whole lines
            self._settle(build_record(log, recovered=True))

    def _settle(self, record: ExecutionRecord) -> None:
        log = self.log
        if not log.closed:  # only the feed reads it now: the record is what counts
            log.end(RunStatus(str(record.status)))
        log.settle(record)


def _process_folders(root: Path) -> list[Path]:
    try:
        return [p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")]
    except OSError:
        return []


def journal_census(root: Path) -> tuple[int, int]:
    """Runs journaled under ``root`` by living processes (in flight) and by dead ones
    (to be recovered at the next start). Changes nothing."""
    alive = dead = 0
    for folder in _process_folders(root):
        runs = len(journal_files(folder))
        if process_alive(folder):
            alive += runs
        else:
            dead += runs
    return alive, dead


def erase_user_journals(root: Path, user_id: str) -> tuple[int, int]:
    """Delete the journals dead processes left of ``user_id``'s runs (right to erasure).

    Returns:
        as ``erase_people_journals``.
    """
    return erase_people_journals(root, RunFilter(user_id=user_id))


def erase_people_journals(root: Path, filters: RunFilter) -> tuple[int, int]:
    """Delete the journals dead processes left of the runs of a person, device or workshop.

    Only the user, session and device ids of ``filters`` select.

    Returns:
        (journals erased, runs of this user still in flight in a living process,
        which are left alone: their process would write them again).
    """
    erased = in_flight = 0
    for folder in _process_folders(root):
        alive = process_alive(folder)
        for path in journal_files(folder):
            try:
                header = _journal_header(path)
                if not filters.matches_people(header.user_id, header.session_id, header.device_id):
                    continue
            except (OSError, DamagedRunLog):
                continue
            if alive:
                in_flight += 1
            else:
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
                    erased += 1
    return erased, in_flight


def _journal_header(path: Path) -> RunLog:
    """The header (ids, config) of the journal file ``path``, without its items.

    Raises:
        OSError: the file cannot be read.
        DamagedRunLog: its first line is not a run-log header.
    """
    with path.open(encoding="ascii", errors="replace") as handle:
        first = handle.readline()
    return RunLog.from_lines([first])


def process_alive(folder: Path) -> bool:
    """Whether the process that journals into ``folder`` holds its lock (is alive)."""
    try:
        handle = (folder / _LOCK_NAME).open("rb")
    except OSError:
        return False
    with handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:
            return True
        fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
        return False
