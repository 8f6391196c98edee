"""summarise_run: the answer to "run and wait", picked from the record the one builder made."""

from __future__ import annotations

import json
from pathlib import Path

from execution_history import ExecutionTracker, ItemType, MediaRef, summarise_run
from tests.records import log_stille_post


def test_a_stille_post_run_summary(tmp_path: Path) -> None:
    tracker = ExecutionTracker("stillepost", media_dir=tmp_path)
    log_stille_post(tracker, tmp_path)
    record = tracker.finalize()
    summary = summarise_run(record)
    assert summary.status == "partial" == record.status
    assert [s.status.value for s in summary.stages] == ["done", "done", "done", "done"]
    assert summary.interception_final == "Ein Hund spielt im Garten"
    assert [m.loop_iteration for m in summary.outputs] == [1, 3]
    assert summary.items == len(record.items)


def test_to_json_writes_times_and_stages_as_the_record_does(tmp_path: Path) -> None:
    tracker = ExecutionTracker("stillepost", media_dir=tmp_path)
    log_stille_post(tracker, tmp_path)
    record = tracker.finalize()
    answer = summarise_run(record).to_json(lambda path: f"/media/{path}")
    as_stored = json.loads(record.model_dump_json())
    assert answer["started_at"] == as_stored["started_at"]
    assert answer["ended_at"] == as_stored["ended_at"]
    assert answer["stages"] == as_stored["stages"]
    assert [o["url"] for o in answer["outputs"]] == [
        f"/media/{i['media']['path']}" for i in as_stored["items"] if i["media"] is not None
    ]


def test_outputs_the_media_url_cannot_serve_are_left_out() -> None:
    tracker = ExecutionTracker("stillepost")
    with tracker, tracker.stage(4):
        tracker.log(ItemType.OUTPUT_IMAGE, media={"path": "sub/x.png", "mime_type": "image/png"})
        tracker.log(ItemType.OUTPUT_IMAGE, media=MediaRef(path="y.png"))
    answer = summarise_run(tracker.finalize()).to_json(
        lambda path: None if "/" in path else f"/m/{path}"
    )
    assert [o["url"] for o in answer["outputs"]] == ["/m/y.png"]


def test_a_stage_entered_without_work_counts_no_items_and_no_loops() -> None:
    """Items, iterations and loops count the same things: a transition is none of them."""
    tracker = ExecutionTracker("stillepost")
    with tracker:
        with tracker.loop_iteration(1):
            with tracker.stage(3):
                tracker.log(ItemType.STAGE3_SAFETY_CHECK, "passed")
            with tracker.stage(4):
                pass  # entered (a transition is recorded), nothing made
    record = tracker.finalize()
    stage3, stage4 = record.stages[2], record.stages[3]
    assert (stage3.items, stage3.loops) == (1, 1)
    assert (stage4.items, stage4.loops, stage4.iterations) == (0, 0, 0)
    assert any(
        i.item_type == "stage_transition" and i.stage == 4 and i.loop_iteration == 1
        for i in record.items
    )
