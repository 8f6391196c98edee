"""A journal of runs in flight, written off the pipeline's thread, so a crash loses no run."""

from __future__ import annotations

import contextlib
import json
import logging
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._build import item_dict, utc_from_ns
from ._capture import run_header
from ._coerce import CoercionStats
from ._ids import is_run_id
from ._items import RawItem
from ._record import ExecutionItem, ExecutionRecord, Integrity
from ._store import RecordStore
from ._summary import summarise_stages
from ._taxonomy import RunStatus

if TYPE_CHECKING:
    from ._tracker import ExecutionTracker

logger = logging.getLogger("execution_history")


class Journal:
    """Appends each watched run's new items to ``<folder>/<run_id>.jsonl`` every ``interval_s``.

    The pipeline only appends to its in-memory list; this thread reads the
    list by index (safe under CPython) and writes JSON lines. A finished run's
    file is removed once its record is safe; files left behind by a process
    that died are turned into ``incomplete`` records by ``recover``.
    """

    def __init__(self, folder: str | Path, *, interval_s: float = 0.25) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.interval_s = interval_s
        self._watched: dict[str, tuple[ExecutionTracker, int]] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._loop, name="execution-history-journal", daemon=True
        )
        self._thread.start()

    def watch(self, tracker: ExecutionTracker) -> None:
        """Start journaling ``tracker``'s run."""
        with self._lock:
            self._watched[tracker.run_id] = (tracker, 0)

    def forget(self, run_id: str) -> None:
        """The run's record is safe: stop journaling it and remove its file."""
        with self._lock:
            watched = self._watched.pop(run_id, None)
            if watched is None or watched[1]:  # a file exists only once items were written
                with contextlib.suppress(OSError):
                    self._path(run_id).unlink()

    def flush(self) -> None:
        """Write every watched run's new items now."""
        with self._lock:
            for run_id, (tracker, written) in list(self._watched.items()):
                try:
                    self._watched[run_id] = (tracker, self._append(tracker, written))
                except Exception:
                    logger.exception("journal of run %s not written", run_id)

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

    def _append(self, tracker: ExecutionTracker, written: int) -> int:
        items = tracker.items
        end = len(items)
        if end == written and written:
            return written
        lines: list[str] = []
        if written == 0:
            lines.append(json.dumps(_header(tracker), ensure_ascii=False))
        for raw in items[written:end]:
            lines.append(_raw_line(raw, tracker.limits.max_text_chars))
        with self._path(tracker.run_id).open("a", encoding="utf-8") as handle:
            handle.write("\n".join(lines) + "\n")
        return end

    # ---------------------------------------------------------------- recovery

    def recover(self, store: RecordStore) -> list[str]:
        """Store an ``incomplete`` record for every run a dead process left here.

        Call at start-up, before new runs begin. Returns the recovered run ids.
        A file whose record cannot be stored is kept for the next start. A run
        the store already has (the process died after storing it, before
        removing its journal) is left as stored: its journal is only removed.
        """
        recovered: list[str] = []
        with self._lock:
            watched = set(self._watched)
        paths = [
            p
            for p in sorted(self.folder.glob("*.jsonl"))
            if is_run_id(p.stem) and p.stem not in watched
        ]
        stored = store.run_ids([p.stem for p in paths])
        for path in paths:
            if path.stem in stored:
                with contextlib.suppress(OSError):
                    path.unlink()
                continue
            try:
                record = _record_from_journal(path)
                store.save(record)
            except Exception as exc:
                logger.error("journal %s not recovered: %s", path.name, exc)
                continue
            path.unlink()
            recovered.append(record.run_id)
        return recovered


def _header(tracker: ExecutionTracker) -> dict[str, Any]:
    return {"journal": 1, **run_header(tracker)}


def _raw_line(raw: RawItem, max_chars: int) -> str:
    """One journal line: the raw item as a JSON array, converted as little as possible.

    The journal runs for every live run, so it avoids the full conversion;
    values plain JSON cannot hold are written as their ``repr``, and an item
    that still does not serialise (a cycle) takes the careful path.
    """
    try:
        return json.dumps(list(raw), default=_journal_value)
    except (ValueError, TypeError, RecursionError):
        converted = item_dict(raw, max_chars, CoercionStats())
        converted["timestamp"] = raw[1]
        return json.dumps(
            [converted[key] for key in _RAW_FIELDS[:-1]] + [None], default=_journal_value
        )


_RAW_FIELDS = (
    "sequence", "timestamp", "stage", "stage_iteration", "loop_iteration", "item_type",
    "content", "media_type", "media", "model", "backend", "duration_ms", "metadata", "config",
    "extra",
)  # fmt: skip


def _journal_value(value: object) -> object:
    dump = getattr(value, "model_dump", None)
    if callable(dump):
        return dump(mode="json")
    try:
        return repr(value)
    except Exception:
        return f"<unrepresentable {type(value).__qualname__}>"


def _record_from_journal(path: Path) -> ExecutionRecord:
    lines = path.read_text(encoding="utf-8").splitlines()
    header = json.loads(lines[0])
    items: list[ExecutionItem] = []
    unreadable = 0
    stats = CoercionStats()
    for line in lines[1:]:
        try:
            raw = RawItem(json.loads(line))
            items.append(ExecutionItem.model_validate(item_dict(raw, 1 << 62, stats)))
        except Exception:
            unreadable += 1  # a line cut short by the crash
    items.sort(key=lambda item: item.sequence)
    status = RunStatus.INCOMPLETE
    return ExecutionRecord(
        run_id=header["run_id"],
        config_name=header.get("config_name"),
        safety_level=header.get("safety_level"),
        user_id=header.get("user_id"),
        session_id=header.get("session_id"),
        started_at=utc_from_ns(int(header["started_ns"])),
        ended_at=None,
        status=status,
        stages=summarise_stages(items, status, None),
        software_version=header.get("software_version"),
        model_versions=header.get("model_versions") or {},
        items=items,
        integrity=Integrity(
            items_recorded=len(items),
            items_dropped=unreadable,
            recovered=True,
        ),
    )
