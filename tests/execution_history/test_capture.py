"""Captures: a run stored raw and built into its record later gives the record built at once."""

from __future__ import annotations

import enum
import json
import math
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from execution_history import (
    ExecutionRecord,
    ExecutionTracker,
    Finaliser,
    ItemType,
    MediaRef,
    SQLiteRecordStore,
    StoreSink,
    build_record,
    capture_payload,
    record_from_capture,
)
from execution_history._finaliser import complete_media
from tests.records import log_stille_post

# JSON holds these exactly (NaN, infinities and lone surrogates included: the
# capture writes them so that the build sees what the tracker held).
exact_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(st.characters(codec=None, min_codepoint=0, max_codepoint=0x10FFFF), max_size=40),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4)
    ),
    max_leaves=16,
)


def _comparable(record: ExecutionRecord) -> dict[str, Any]:
    """The record as strict JSON data (NaN-free by construction), for equality."""
    data: dict[str, Any] = json.loads(record.model_dump_json())
    return data


def _user_input(record: ExecutionRecord) -> Any:
    return next(i for i in record.items if i.item_type == ItemType.USER_INPUT_TEXT)


def _closed_tracker(content: object, metadata: object, **fields: Any) -> ExecutionTracker:
    tracker = ExecutionTracker("stillepost", safety_level="kids", user_id="u-1")
    with tracker:
        with tracker.stage(1):
            tracker.log_user_input(content, metadata=metadata, **fields)
        with tracker.stage(2), tracker.stage_iteration(1):
            tracker.log(ItemType.INTERCEPTION_ITERATION, "x", model="m", duration_ms=1.5)
    return tracker


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(content=exact_json, metadata=st.dictionaries(st.text(max_size=8), exact_json, max_size=5))
def test_a_capture_builds_the_record_the_tracker_builds(content: object, metadata: object) -> None:
    tracker = _closed_tracker(content, metadata)
    payload = capture_payload(tracker)
    assert payload is not None
    from_capture, media_dir = record_from_capture(payload)
    assert media_dir is None
    assert _comparable(from_capture) == _comparable(build_record(tracker))


def test_hostile_text_survives_the_capture_exactly() -> None:
    text = "a\ud800b" + "x" * 50 + "\x00\u202e"
    metadata = {"nan": math.nan, "inf": -math.inf, "deep": [[[[[[1]]]]]], "big": 2**80}
    tracker = _closed_tracker(text, metadata, extra_keyword="kept")
    payload = capture_payload(tracker)
    assert payload is not None
    payload.decode("ascii")  # escaped: a lone surrogate cannot break the stored bytes
    built, _ = record_from_capture(payload)
    direct = build_record(tracker)
    assert _comparable(built) == _comparable(direct)
    assert built.integrity.characters_replaced == 1
    assert built.integrity.values_coerced == direct.integrity.values_coerced > 0
    assert _user_input(built).metadata["extra_keyword"] == "kept"


def test_media_references_and_counters_survive(tmp_path: Path) -> None:
    tracker = ExecutionTracker("stillepost", media_dir=tmp_path)
    log_stille_post(tracker, tmp_path)
    tracker.log("late item")  # after finalisation: counted, not kept
    payload = capture_payload(tracker)
    assert payload is not None
    built, media_dir = record_from_capture(payload)
    assert media_dir == tmp_path
    assert _comparable(built) == _comparable(build_record(tracker))
    assert built.integrity.items_after_finalize == 1
    measured = complete_media(built, media_dir)
    media = [i.media for i in measured.items if i.media is not None]
    assert media and all(m.sha256 and m.size_bytes for m in media)


class _Colour(enum.Enum):
    RED = "red"


class _Opaque:
    def __repr__(self) -> str:
        return "<opaque>"


@pytest.mark.parametrize(
    "metadata",
    [
        {"object": _Opaque()},
        {"enum": _Colour.RED},
        {"set": {1, 2}},
        {"bytes": b"\x00\x01"},
        {1: "int key"},  # json.dumps would turn the key into "1" without counting it
    ],
    ids=["object", "plain-enum", "set", "bytes", "int-key"],
)
def test_values_without_an_exact_json_form_are_not_captured(metadata: dict[Any, Any]) -> None:
    tracker = _closed_tracker("text", metadata)
    if 1 in metadata:
        # Documented limit: a non-string key is written as its JSON form (not counted).
        payload = capture_payload(tracker)
        assert payload is not None
        built, _ = record_from_capture(payload)
        assert _user_input(built).metadata["1"] == "int key"
        return
    assert capture_payload(tracker) is None


def test_a_cycle_is_not_captured() -> None:
    cycle: list[object] = []
    cycle.append(cycle)
    assert capture_payload(_closed_tracker("text", {"cycle": cycle})) is None


def test_a_wrong_capture_is_refused() -> None:
    with pytest.raises(ValueError, match="capture"):
        record_from_capture(b'{"capture": 99}')
    with pytest.raises(ValueError):
        record_from_capture(b"not json")


# ----------------------------------------------------------------------- store


def _captured_run(tmp_path: Path, user_id: str = "u-1") -> tuple[ExecutionTracker, bytes]:
    tracker = ExecutionTracker("stillepost", user_id=user_id, media_dir=tmp_path / "media")
    log_stille_post(tracker, tmp_path / "media")
    payload = capture_payload(tracker)
    assert payload is not None
    return tracker, payload


def test_the_store_builds_captures_when_read(tmp_path: Path) -> None:
    store = SQLiteRecordStore(tmp_path / "h.sqlite3")
    tracker, payload = _captured_run(tmp_path)
    store.save_captures([(tracker.run_id, payload)])
    assert store.captured() == 1
    record = store.load(tracker.run_id)
    assert record is not None
    assert store.captured() == 0
    assert record.status == "partial"
    assert [s.status for s in record.integrity.sinks] == ["ok"]
    assert all(i.media.sha256 for i in record.items if i.media is not None)
    expected = complete_media(build_record(tracker), tmp_path / "media")
    assert _comparable(record)["items"] == _comparable(expected)["items"]
    # An independent reader sees one built row and no capture left.
    with sqlite3.connect(tmp_path / "h.sqlite3") as conn:
        assert conn.execute("SELECT COUNT(*) FROM captured_runs").fetchone()[0] == 0
        row = conn.execute("SELECT status, record FROM runs").fetchone()
    assert row[0] == "partial"
    assert json.loads(row[1])["run_id"] == tracker.run_id


@pytest.mark.parametrize("read", ["list_runs", "count", "stats", "run_ids"])
def test_every_query_sees_captured_runs(tmp_path: Path, read: str) -> None:
    store = SQLiteRecordStore(tmp_path / "h.sqlite3")
    runs = [_captured_run(tmp_path / str(n)) for n in range(3)]
    store.save_captures([(t.run_id, p) for t, p in runs])
    ids = [t.run_id for t, _ in runs]
    if read == "list_runs":
        assert {row.run_id for row in store.list_runs()} == set(ids)
    elif read == "count":
        assert store.count() == 3
    elif read == "stats":
        stats = store.stats()
        assert stats.runs == 3 and stats.by_status == {"partial": 3}
        assert stats.stages[3]["blocks"] == 3
    else:
        assert store.run_ids(ids) == set(ids)
    assert store.captured() == 0


def test_erasure_and_deletion_reach_captured_runs(tmp_path: Path) -> None:
    store = SQLiteRecordStore(tmp_path / "h.sqlite3")
    first, first_payload = _captured_run(tmp_path / "a", user_id="child-a")
    second, second_payload = _captured_run(tmp_path / "b", user_id="child-b")
    store.save_captures([(first.run_id, first_payload), (second.run_id, second_payload)])
    assert store.delete_user("child-a") == [first.run_id]
    assert store.delete(second.run_id) is True
    assert store.count() == 0 and store.captured() == 0


def test_a_capture_that_cannot_be_built_is_kept_and_hides_nothing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = SQLiteRecordStore(tmp_path / "h.sqlite3")
    good, payload = _captured_run(tmp_path)
    bad_id = "f" * 32
    store.save_captures([(bad_id, b'{"capture": 1, "run_id": "truncated'), (good.run_id, payload)])
    assert store.count() == 1
    assert store.captured() == 1  # kept for a person to look at, never deleted
    assert "cannot be built" in caplog.text
    assert store.load(bad_id) is None


def test_a_second_process_reads_captures_of_the_first(tmp_path: Path) -> None:
    writer = SQLiteRecordStore(tmp_path / "h.sqlite3")
    tracker, payload = _captured_run(tmp_path)
    writer.save_captures([(tracker.run_id, payload)])
    writer.close()
    reader = SQLiteRecordStore(tmp_path / "h.sqlite3")
    record = reader.load(tracker.run_id)
    assert record is not None and record.run_id == tracker.run_id


# ------------------------------------------------------------------ finaliser


def _finaliser(tmp_path: Path, store: SQLiteRecordStore, **options: Any) -> Finaliser:
    return Finaliser(
        [StoreSink(store, tmp_path / "quarantine", backoff_s=0.001)],
        capture_store=store,
        **options,
    )


def test_the_finaliser_stores_captures_and_builds_them_when_idle(tmp_path: Path) -> None:
    store = SQLiteRecordStore(tmp_path / "h.sqlite3")
    finaliser = _finaliser(tmp_path, store, idle_build_s=0.05)
    trackers = []
    for n in range(5):
        tracker = ExecutionTracker("stillepost", finaliser=finaliser, media_dir=tmp_path / str(n))
        log_stille_post(tracker, tmp_path / str(n))
        trackers.append(tracker)
    assert all(t.wait_until_stored(10) for t in trackers)
    reader = sqlite3.connect(tmp_path / "h.sqlite3")
    deadline = 200
    while reader.execute("SELECT COUNT(*) FROM captured_runs").fetchone()[0] and deadline:
        finaliser._stopping.wait(0.05)
        deadline -= 1
    assert reader.execute("SELECT COUNT(*) FROM runs").fetchone()[0] == 5
    assert finaliser.close()
    assert store.load(trackers[0].run_id) is not None


def test_a_run_without_an_exact_capture_goes_through_the_sinks(tmp_path: Path) -> None:
    store = SQLiteRecordStore(tmp_path / "h.sqlite3")
    finaliser = _finaliser(tmp_path, store, idle_build_s=3600)
    tracker = ExecutionTracker("stillepost", finaliser=finaliser)
    with tracker:
        tracker.log_user_input("text", metadata={"object": _Opaque()})
    assert tracker.wait_until_stored(10)
    assert store.captured() == 0
    record = store.load(tracker.run_id)
    assert record is not None
    assert _user_input(record).metadata["object"] == "<opaque>"
    finaliser.close()


def test_a_refused_capture_write_falls_back_to_the_quarantine(tmp_path: Path) -> None:
    store = SQLiteRecordStore(tmp_path / "h.sqlite3", pragmas={"query_only": 1})
    finaliser = _finaliser(tmp_path, store, idle_build_s=3600)
    tracker = ExecutionTracker("stillepost", finaliser=finaliser)
    with tracker:
        tracker.log_user_input("text")
    assert tracker.wait_until_stored(10)
    finaliser.close()
    quarantined = tmp_path / "quarantine" / f"{tracker.run_id}.json"
    assert quarantined.is_file()
    record = ExecutionRecord.model_validate_json(quarantined.read_bytes())
    assert record.integrity.sinks[-1].status == "quarantined"


def test_media_ref_objects_are_captured(tmp_path: Path) -> None:
    tracker = ExecutionTracker("stillepost")
    with tracker:
        with tracker.stage(4), tracker.loop_iteration(1):
            tracker.log_output(ItemType.OUTPUT_IMAGE, media=MediaRef(path="a.png", width=2))
    payload = capture_payload(tracker)
    assert payload is not None
    built, _ = record_from_capture(payload)
    assert _comparable(built) == _comparable(build_record(tracker))


def test_a_store_that_cannot_build_is_still_read(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "h.sqlite3"
    writer = SQLiteRecordStore(path)
    built, _ = _captured_run(tmp_path / "a")
    writer.save(build_record(built))
    waiting, waiting_payload = _captured_run(tmp_path / "b")
    writer.save_captures([(waiting.run_id, waiting_payload)])
    writer.close()
    reader = SQLiteRecordStore(path, pragmas={"query_only": 1})
    assert [row.run_id for row in reader.list_runs()] == [built.run_id]
    assert "not built before reading" in caplog.text
    with pytest.raises(sqlite3.Error):
        reader.delete_user("u-1")  # erasure never pretends: it must reach every run
