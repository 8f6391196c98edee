"""A journal of runs in flight, written off the pipeline's thread, so a crash loses no run.

Each watched run has a file ``<folder>/<run_id>.jsonl`` holding its run log's
serialisation (``RunLog.lines``): the header is written when the run is
watched (so a run is durable from the moment it is accepted), new items and
finally the ending every ``interval_s`` by the journal's thread. The file is
removed once the run's record is safe. Files a dead process left are turned
into records by ``recover`` (``incomplete`` unless the run had ended).
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ._build import build_record
from ._ids import is_run_id
from ._media import complete_media
from ._runlog import DamagedRunLog, RunLog
from ._store import RecordStore

logger = logging.getLogger("execution_history")

#: Journal write failures are logged at most once per this many seconds.
_ERROR_LOG_INTERVAL_S = 10.0


@dataclass(slots=True)
class _Watched:
    log: RunLog
    written: int = 0  # items written so far
    offset: int = 0  # bytes of the file known to be complete
    ended: bool = False  # the end line is written
    last_sequence: int = 0  # the highest sequence number written


@dataclass(slots=True)
class Recovery:
    """What ``Journal.recover`` did: runs stored, files moved aside, files kept for later."""

    recovered: list[str] = field(default_factory=list)
    damaged: list[tuple[str, str]] = field(default_factory=list)
    kept: list[tuple[str, str]] = field(default_factory=list)


class Journal:
    """Journals watched runs into ``folder``; a processor (``on_start``/``on_end``/``on_stored``).

    Args:
        folder: where run files go (created when missing).
        damaged_dir: where files recovery cannot read are moved, with the
            reason logged; default ``<folder>/damaged``.
        interval_s: how often new items are written.
        on_written: called after a write with the runs that got new lines
            (exceptions are logged, never raised).
    """

    name = "journal"

    def __init__(
        self,
        folder: str | Path,
        *,
        damaged_dir: str | Path | None = None,
        interval_s: float = 0.25,
        on_written: Callable[[list[tuple[str, int]]], None] | None = None,
    ) -> None:
        #: Told after each write, off the pipeline's thread, which runs got new lines:
        #: (run id, highest sequence written). Another process's feed of a run is woken by it.
        self.on_written = on_written
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.damaged_dir = Path(damaged_dir) if damaged_dir is not None else self.folder / "damaged"
        self.interval_s = interval_s
        self.write_failures = 0
        self._last_error_log = 0.0
        self._watched: dict[str, _Watched] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._loop, name="execution-history-journal", daemon=True
        )
        self._thread.start()

    # -------------------------------------------------------------- processor

    def on_start(self, log: RunLog) -> None:
        """Watch ``log`` and write its header now (the run is durable when this returns).

        Idempotent: a run already watched is left as it is.

        Raises:
            OSError: the header could not be written (the run is then not watched).
        """
        with self._lock:
            if log.run_id in self._watched:
                return
            path = self._path(log.run_id)
            data = (log.header_line() + "\n").encode("ascii")
            try:
                with path.open("wb") as handle:
                    handle.write(data)
            except OSError:
                with contextlib.suppress(OSError):
                    path.unlink()
                raise
            self._watched[log.run_id] = _Watched(log, 0, len(data))

    def on_end(self, log: RunLog) -> None:
        """Nothing to do at once: the thread writes the ending with the last items."""

    def on_stored(self, log: RunLog) -> None:
        """The run's record is safe: stop journaling it and remove its file."""
        with self._lock:
            if self._watched.pop(log.run_id, None) is not None:
                with contextlib.suppress(OSError):
                    self._path(log.run_id).unlink()

    # ----------------------------------------------------------------- writes

    def flush(self) -> None:
        """Write every watched run's new items (and ending) now; then tell ``on_written``."""
        written: list[tuple[str, int]] = []
        with self._lock:
            for watched in list(self._watched.values()):
                try:
                    if self._append(watched):
                        written.append((watched.log.run_id, watched.last_sequence))
                except OSError as exc:
                    self._failed(watched, exc)
        if written and self.on_written is not None:
            try:
                self.on_written(written)
            except Exception:  # a listener must never stop the journal
                logger.exception("journal listener failed")

    def close(self) -> None:
        """Flush once more and stop the thread (files of unfinished runs stay)."""
        self._stop.set()
        self._thread.join(5)
        self.flush()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.flush()

    def _path(self, run_id: str) -> Path:
        return self.folder / f"{run_id}.jsonl"

    def _append(self, watched: _Watched) -> bool:
        """Write the run's new lines; True when there were any."""
        log = watched.log
        closed = log.closed  # read before the items, so an end line never misses an item
        end = len(log.items)
        if end == watched.written and (watched.ended or not closed):
            return False
        new = log.items[watched.written : end]
        lines = [log.item_line(raw) for raw in new]
        sequences = [raw.sequence for raw in new if type(raw.sequence) is int]
        if closed:
            lines.append(log.end_line())
        data = ("\n".join(lines) + "\n").encode("ascii")
        with self._path(log.run_id).open("ab") as handle:
            handle.write(data)
        watched.written, watched.offset, watched.ended = end, watched.offset + len(data), closed
        watched.last_sequence = max([watched.last_sequence, *sequences])
        return True

    def _failed(self, watched: _Watched, exc: OSError) -> None:
        """A write failed (disk full, read-only): cut the file back to its last whole line.

        The items stay in memory and are written again at the next flush;
        the run's record does not depend on the journal unless the process dies.
        """
        self.write_failures += 1
        with contextlib.suppress(OSError):
            os.truncate(self._path(watched.log.run_id), watched.offset)
        now = time.monotonic()
        if now - self._last_error_log >= _ERROR_LOG_INTERVAL_S:
            self._last_error_log = now
            logger.error(
                "journal of run %s not written (%d failure(s) so far): %s",
                watched.log.run_id,
                self.write_failures,
                exc,
            )

    # --------------------------------------------------------------- recovery

    def recover(self, store: RecordStore) -> Recovery:
        """Store a record for every run a dead process left here.

        Call at start-up, before new runs begin. A run the store already has
        (the process died after storing it) only loses its file. A file that
        holds no readable header (empty, or cut in its first line) is moved to
        ``damaged_dir`` with the reason logged, so it never fails again. A file
        whose record cannot be stored now is kept for the next start.
        """
        report = Recovery()
        with self._lock:
            watched = set(self._watched)
        paths = [
            p
            for p in sorted(self.folder.glob("*.jsonl"))
            if is_run_id(p.stem) and p.stem not in watched
        ]
        stored = store.run_ids([p.stem for p in paths]) if paths else set()
        for path in paths:
            if path.stem in stored:
                with contextlib.suppress(OSError):
                    path.unlink()
                continue
            try:
                with path.open(encoding="ascii", errors="replace") as handle:
                    log = RunLog.from_lines(handle)
            except (DamagedRunLog, OSError) as exc:
                self._move_aside(path, str(exc), report)
                continue
            try:
                record = complete_media(build_record(log, recovered=True), log.media_dir)
                store.save(record)
            except Exception as exc:
                logger.error("journal %s not recovered now, kept for later: %s", path.name, exc)
                report.kept.append((path.name, str(exc)))
                continue
            with contextlib.suppress(OSError):
                path.unlink()
            report.recovered.append(record.run_id)
        return report

    def _move_aside(self, path: Path, reason: str, report: Recovery) -> None:
        try:
            self.damaged_dir.mkdir(parents=True, exist_ok=True)
            shutil.move(str(path), str(self.damaged_dir / path.name))
            where = str(self.damaged_dir / path.name)
        except OSError as exc:
            where = f"left in place ({exc})"
        logger.error("journal %s cannot be recovered (%s); moved to %s", path.name, reason, where)
        report.damaged.append((path.name, reason))


class JournalTail:
    """Follows the journal file of one run that another process is writing.

    ``refresh`` reads the lines appended since the last call into ``log``,
    whole lines only (a line being written is read at the next call), and
    never takes an item twice: after a failed write the writer cuts its file
    back and writes the same items again. ``gone`` turns True once the file
    is removed, which the writer does only after the run's record is safe.

    Args:
        path: the run's journal file.

    Raises:
        OSError: the file cannot be read (e.g. it was removed already).
        DamagedRunLog: its first line is not a whole run-log header.
    """

    def __init__(self, path: Path) -> None:
        with path.open("rb") as handle:
            first = handle.readline()
        if not first.endswith(b"\n"):
            raise DamagedRunLog("the header line is not written whole yet")
        self.path = path
        self.log = RunLog.from_lines([first.decode("ascii", errors="replace")])
        self.gone = False
        self._offset = len(first)
        self._seen: set[object] = set()
        self.refresh()

    def refresh(self) -> bool:
        """Read what was appended; True when a new line was read."""
        if self.gone:
            return False
        try:
            with self.path.open("rb") as handle:
                handle.seek(self._offset)
                data = handle.read()
        except FileNotFoundError:
            self.gone = True
            return False
        except OSError:
            return False  # read again at the next call
        cut = data.rfind(b"\n") + 1
        if cut == 0:
            return False
        self._offset += cut
        log = self.log
        for line in data[:cut].decode("ascii", errors="replace").splitlines():
            before = len(log.items)
            log.read_line(line)
            if len(log.items) > before:
                sequence = log.items[-1].sequence
                if sequence in self._seen:
                    log.items.pop()  # written again after a failed write
                else:
                    self._seen.add(sequence)
        return True


def journal_files(folder: Path) -> list[Path]:
    """The journal files of runs in ``folder`` (one per run, named by its run id)."""
    try:
        return sorted(p for p in folder.glob("*.jsonl") if is_run_id(p.stem))
    except OSError:
        return []


def journal_user(path: Path) -> str | None:
    """The raw user id in the header of the journal file ``path``; None when it has none.

    Raises:
        OSError: the file cannot be read.
        DamagedRunLog: its first line is not a run-log header.
    """
    with path.open(encoding="ascii", errors="replace") as handle:
        first = handle.readline()
    user: str | None = RunLog.from_lines([first]).user_id
    return user


__all__ = ["Journal", "JournalTail", "Recovery", "journal_files", "journal_user"]
