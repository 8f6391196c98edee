"""summarise_run: the summary read from raw items agrees with the record built from them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from execution_history import (
    ExecutionRecord,
    ExecutionTracker,
    ItemType,
    MediaRef,
    build_record,
    summarise_run,
)
from tests.records import log_stille_post

ITEM_TYPES = [
    ItemType.USER_INPUT_TEXT,
    ItemType.TRANSLATION_RESULT,
    ItemType.INTERCEPTION_ITERATION,
    ItemType.INTERCEPTION_FINAL,
    ItemType.STAGE3_SAFETY_CHECK,
    ItemType.STAGE3_BLOCKED,
    ItemType.STAGE1_BLOCKED,
    ItemType.OUTPUT_IMAGE,
    ItemType.OUTPUT_AUDIO,
    ItemType.OUTPUT_FAILED,
]

step = st.tuples(
    st.integers(min_value=1, max_value=4),  # stage
    st.none() | st.integers(min_value=1, max_value=8),  # stage iteration
    st.none() | st.integers(min_value=1, max_value=3),  # loop iteration
    st.sampled_from(ITEM_TYPES) | st.sampled_from(["custom_type", "output_image"]),
    st.none() | st.text(max_size=20) | st.integers(),  # content, sometimes not text
    st.none() | st.sampled_from(["a.png", "sub/b.wav", "c.png"]),
)


def _expected(record: ExecutionRecord) -> dict[str, Any]:
    final = [i.content for i in record.items if i.item_type == ItemType.INTERCEPTION_FINAL]
    return {
        "status": record.status,
        "started_at": record.started_at,
        "ended_at": record.ended_at,
        "duration_ms": record.duration_ms,
        "items": len(record.items),
        "stages": [s.model_dump(mode="json") for s in record.stages],
        "interception_final": final[-1] if final else None,
        "outputs": [
            (i.loop_iteration, str(i.item_type), i.media.path, i.media.mime_type)
            for i in record.items
            if i.media is not None
        ],
    }


def _actual(tracker: ExecutionTracker) -> dict[str, Any]:
    summary = summarise_run(tracker)
    return {
        "status": summary.status,
        "started_at": summary.started_at,
        "ended_at": summary.ended_at,
        "duration_ms": summary.duration_ms,
        "items": summary.items,
        "stages": [s.to_json() for s in summary.stages],
        "interception_final": summary.interception_final,
        "outputs": [(m.loop_iteration, m.item_type, m.path, m.mime_type) for m in summary.outputs],
    }


def _play(tracker: ExecutionTracker, steps: list[tuple[Any, ...]]) -> None:
    for stage, iteration, loop, item_type, content, media in steps:
        with tracker.stage(stage):
            if iteration is not None:
                with tracker.stage_iteration(iteration):
                    tracker.log(item_type, content)
            elif loop is not None:
                with tracker.loop_iteration(loop):
                    tracker.log(item_type, content, media=media)
            else:
                tracker.log(item_type, content, media=media)


@settings(max_examples=150, deadline=None)
@given(steps=st.lists(step, max_size=25), close=st.booleans(), fail=st.booleans())
def test_the_summary_agrees_with_the_record(
    steps: list[tuple[Any, ...]], close: bool, fail: bool
) -> None:
    tracker = ExecutionTracker("stillepost").start()
    try:
        _play(tracker, steps)
        if close:
            tracker.end(error=RuntimeError("boom") if fail else None)
        assert _actual(tracker) == _expected(build_record(tracker))
    finally:
        tracker.end()  # an open run stays the current tracker otherwise


def test_a_stille_post_run_summary(tmp_path: Path) -> None:
    tracker = ExecutionTracker("stillepost", media_dir=tmp_path)
    log_stille_post(tracker, tmp_path)
    summary = summarise_run(tracker)
    assert _actual(tracker) == _expected(build_record(tracker))
    assert summary.status == "partial"
    assert [s.status.value for s in summary.stages] == ["done", "done", "done", "done"]
    assert summary.interception_final == "Ein Hund spielt im Garten"
    assert [m.loop_iteration for m in summary.outputs] == [1, 3]


def test_hostile_raw_fields_are_converted_as_the_builder_does() -> None:
    tracker = ExecutionTracker("stillepost").start()
    tracker._add(ItemType.INTERCEPTION_FINAL, ["not", "text"], None, None, None, None, None,
                 None, None, None)  # fmt: skip
    tracker._stage = "2"  # type: ignore[assignment]  # a wrong type reaching the raw item
    tracker.log(ItemType.OUTPUT_IMAGE, media={"path": "x.png", "mime_type": "image/png"})
    tracker.log(ItemType.OUTPUT_IMAGE, media=MediaRef(path="y.png"))
    tracker.log(None, "no type")
    tracker._stage = 2
    tracker.end()
    assert _actual(tracker) == _expected(build_record(tracker))
