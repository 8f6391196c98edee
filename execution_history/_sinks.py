"""The store sink: retried durable writes, and a quarantine folder when the store fails."""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
import time
from pathlib import Path

from ._ids import is_run_id
from ._record import ExecutionRecord, Integrity, SinkOutcome
from ._store import RecordStore, RunFilter

logger = logging.getLogger("execution_history")


def write_atomically(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that a crash leaves the old file or the new, never half.

    Temp file in the same folder, fsync, rename, then fsync of the folder.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise
    with contextlib.suppress(OSError):
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


class StoreSink:
    """Saves each record in the store, retrying; on final failure, quarantines it.

    Args:
        store: where records go.
        quarantine_dir: folder for records the store refused (one JSON file each).
        attempts: tries before giving up on the store.
        backoff_s: wait before the second try; doubled each time.
    """

    name = "store"
    #: A run is safe only once this sink (or its fallback) kept it.
    durable = True

    def __init__(
        self,
        store: RecordStore,
        quarantine_dir: str | Path,
        *,
        attempts: int = 3,
        backoff_s: float = 0.05,
    ) -> None:
        self.store = store
        self.quarantine_dir = Path(quarantine_dir)
        self.attempts = attempts
        self.backoff_s = backoff_s

    def __call__(self, record: ExecutionRecord) -> SinkOutcome:
        """Save ``record``; returns the outcome stored with it (so the record a reader
        gets from memory is the stored one); raises the last error when every attempt failed."""
        delay = self.backoff_s
        began = time.perf_counter()
        for attempt in range(1, self.attempts + 1):
            try:
                # The write cannot time itself inside the record it writes: the duration
                # is what passed before the successful write began (failed tries, backoff).
                waited = round((time.perf_counter() - began) * 1000.0, 3)
                stored = _with_outcome(record, "ok", attempt, duration_ms=waited)
                self.store.save(stored)
                return stored.integrity.sinks[-1]
            except Exception as exc:
                if attempt == self.attempts:
                    raise
                logger.warning("store write %d of run %s failed: %s", attempt, record.run_id, exc)
                time.sleep(delay)
                delay *= 2
        raise ValueError(f"attempts must be at least 1, not {self.attempts}")

    def fallback(self, record: ExecutionRecord, reason: str) -> SinkOutcome:
        """Keep the record as a JSON file in the quarantine folder; returns the outcome
        written with it (status 'quarantined')."""
        quarantined = _with_outcome(record, "quarantined", self.attempts, reason)
        path = self.quarantine_dir / f"{record.run_id}.json"
        write_atomically(path, quarantined.model_dump_json().encode("utf-8"))
        logger.error("run %s quarantined at %s", record.run_id, path)
        return quarantined.integrity.sinks[-1]

    def reimport(self) -> list[str]:
        """Move quarantined records into the store; returns the run ids imported.

        A file that does not parse stays where it is (and is logged), so a
        person can look at it; nothing is deleted unless it is in the store.
        """
        imported: list[str] = []
        if not self.quarantine_dir.is_dir():
            return imported
        for path in sorted(self.quarantine_dir.glob("*.json")):
            if not is_run_id(path.stem):
                continue
            try:
                record = ExecutionRecord.model_validate_json(path.read_bytes())
                self.store.save(record)
            except Exception as exc:
                logger.error("quarantined record %s not imported: %s", path.name, exc)
                continue
            path.unlink()
            imported.append(record.run_id)
        return imported

    def load_quarantined(self, run_id: str) -> ExecutionRecord | None:
        """The quarantined record of ``run_id`` (a validated run id), or None."""
        path = self.quarantine_dir / f"{run_id}.json"
        try:
            return ExecutionRecord.model_validate_json(path.read_bytes())
        except (OSError, ValueError):
            return None

    def quarantined_records(self) -> list[ExecutionRecord]:
        """Every readable quarantined record (for statistics of runs not in the store)."""
        records = []
        for run_id in self.quarantined():
            record = self.load_quarantined(run_id)
            if record is not None:
                records.append(record)
        return records

    def erase_user(self, user_id: str) -> int:
        """Delete the quarantined records of ``user_id`` (the right to erasure); returns how many.

        A file that cannot be read is left alone: it cannot be told whose it is.
        """
        return self.erase_people(RunFilter(user_id=user_id))

    def erase_people(self, filters: RunFilter) -> int:
        """Delete the quarantined records of a person, device or workshop; returns how many.

        Only the user, session and device ids of ``filters`` select; a filter
        naming none of them erases nothing. An unreadable file is left alone.
        """
        erased = 0
        for run_id in self.quarantined():
            record = self.load_quarantined(run_id)
            if record is not None and filters.matches_people(
                record.user_id, record.session_id, record.device_id
            ):
                with contextlib.suppress(FileNotFoundError):
                    (self.quarantine_dir / f"{run_id}.json").unlink()
                    erased += 1
        return erased

    def quarantined(self) -> list[str]:
        """Run ids waiting in the quarantine folder."""
        if not self.quarantine_dir.is_dir():
            return []
        return sorted(p.stem for p in self.quarantine_dir.glob("*.json") if is_run_id(p.stem))


def _with_outcome(
    record: ExecutionRecord,
    status: str,
    attempts: int,
    error: str | None = None,
    duration_ms: float | None = None,
) -> ExecutionRecord:
    sinks = [s for s in record.integrity.sinks if s.name != StoreSink.name]
    sinks.append(
        SinkOutcome(
            name=StoreSink.name,
            status=status,
            attempts=attempts,
            error=error,
            duration_ms=duration_ms,
        )
    )
    integrity: Integrity = record.integrity.model_copy(update={"sinks": sinks})
    return record.model_copy(update={"integrity": integrity})
