"""ExecutionTracker: scopes, transitions, status, caps and the fail-safe contract."""

from __future__ import annotations

import concurrent.futures
import json

import pytest

from execution_history import (
    ExecutionTracker,
    ItemType,
    Limits,
    NullTracker,
    RunStatus,
    StageStatus,
    bind_context,
    current_tracker,
    is_run_id,
)


def types(record):
    return [str(item.item_type) for item in record.items]


def test_run_id_is_128_random_bits_in_the_one_pattern() -> None:
    ids = {ExecutionTracker("x").run_id for _ in range(100)}
    assert len(ids) == 100
    assert all(is_run_id(run_id) and len(run_id) == 32 for run_id in ids)


def test_scopes_restore_on_exit_so_iterations_never_leak() -> None:
    with ExecutionTracker("stillepost") as tracker:
        with tracker.stage(2):
            with tracker.stage_iteration(3):
                tracker.log(ItemType.INTERCEPTION_ITERATION, "inside")
            tracker.log(ItemType.INTERCEPTION_FINAL, "after")
        with tracker.loop_iteration(1), tracker.stage(3):
            tracker.log(ItemType.STAGE3_SAFETY_CHECK)
        with tracker.stage(4):
            tracker.log(ItemType.OUTPUT_FAILED, "no loop here")
    record = tracker.finalize()
    by_type = {str(item.item_type): item for item in record.items}
    assert by_type["interception_iteration"].stage_iteration == 3
    assert by_type["interception_final"].stage_iteration is None
    assert by_type["stage3_safety_check"].loop_iteration == 1
    assert by_type["output_failed"].loop_iteration is None
    assert by_type["pipeline_complete"].stage_iteration is None
    assert by_type["pipeline_complete"].loop_iteration is None
    assert by_type["pipeline_complete"].stage == 5


def test_zero_is_a_real_iteration_value() -> None:
    with ExecutionTracker("x") as tracker, tracker.stage(2), tracker.stage_iteration(0):
        tracker.log(ItemType.INTERCEPTION_ITERATION, "zero")
    item = next(
        i for i in tracker.finalize().items if i.item_type == ItemType.INTERCEPTION_ITERATION
    )
    assert item.stage_iteration == 0


def test_stage_transitions_are_recorded_exactly_at_stage_changes() -> None:
    with ExecutionTracker("x") as tracker:
        with tracker.stage(1):
            tracker.log(ItemType.USER_INPUT_TEXT, "a")
        with tracker.stage(1):  # same stage again: no transition
            tracker.log(ItemType.TRANSLATION_RESULT, "b")
        for loop in (1, 2):
            with tracker.loop_iteration(loop):
                with tracker.stage(3):
                    tracker.log(ItemType.STAGE3_SAFETY_CHECK)
                with tracker.stage(4):
                    tracker.log(ItemType.OUTPUT_IMAGE, media={"path": "a.png"})
    record = tracker.finalize()
    transitions = [
        (i.metadata["from_stage"], i.metadata["to_stage"])
        for i in record.items
        if i.item_type == ItemType.STAGE_TRANSITION
    ]
    assert transitions == [(0, 1), (1, 3), (3, 4), (4, 3), (3, 4), (4, 5)]
    # every transition item sits in the stage it enters, right before that stage's first item
    for index, item in enumerate(record.items):
        if item.item_type == ItemType.STAGE_TRANSITION:
            assert item.stage == item.metadata["to_stage"]
            assert record.items[index + 1].stage == item.stage


def test_sequence_numbers_count_from_one_in_order() -> None:
    with ExecutionTracker("x") as tracker, tracker.stage(1):
        for n in range(50):
            tracker.log(ItemType.USER_INPUT_TEXT, str(n))
    record = tracker.finalize()
    assert [i.sequence for i in record.items] == list(range(1, len(record.items) + 1))
    stamps = [i.timestamp for i in record.items]
    assert stamps == sorted(stamps)
    assert all(s.utcoffset() is not None and s.utcoffset().total_seconds() == 0 for s in stamps)


@pytest.mark.parametrize(
    ("script", "status"),
    [
        ("ok", RunStatus.SUCCESS),
        ("stage1_block", RunStatus.BLOCKED),
        # The run's one output was blocked or failed: nothing made (taxonomy 1.1).
        ("stage3_block", RunStatus.NO_OUTPUT),
        ("output_failed", RunStatus.NO_OUTPUT),
    ],
)
def test_status_is_derived_from_what_was_logged(script: str, status: RunStatus) -> None:
    with ExecutionTracker("x") as tracker:
        with tracker.stage(1):
            tracker.log(ItemType.USER_INPUT_TEXT, "hi")
            if script == "stage1_block":
                tracker.log_blocked("term")
        if script != "stage1_block":
            with tracker.loop_iteration(1):
                with tracker.stage(3):
                    if script == "stage3_block":
                        tracker.log_blocked("too scary")
                    else:
                        tracker.log_safety_check(passed=True)
                with tracker.stage(4):
                    if script == "output_failed":
                        tracker.log_output_failed("backend down")
                    elif script == "ok":
                        tracker.log_output(ItemType.OUTPUT_IMAGE, {"path": "x.png"})
    record = tracker.finalize()
    assert record.status == status
    stages = {s.stage: s for s in record.stages}
    if script == "stage1_block":
        assert stages[1].status == StageStatus.BLOCKED and stages[1].blocks == 1
        assert stages[2].status == StageStatus.SKIPPED
    if script == "stage3_block":
        assert stages[3].blocks == 1 and stages[3].status == StageStatus.BLOCKED
    if script == "output_failed":
        assert stages[4].failures == 1 and stages[4].status == StageStatus.FAILED
        assert stages[3].failures == 0  # failures are counted per stage, never lumped


def test_exception_is_recorded_as_pipeline_error_and_reraised_unchanged() -> None:
    error = KeyError("backend exploded")
    tracker = ExecutionTracker("x")
    with pytest.raises(KeyError) as raised, tracker:
        with tracker.stage(2), tracker.stage_iteration(4):
            raise error
    assert raised.value is error
    record = tracker.finalize()
    assert record.status == RunStatus.ERROR
    last = record.items[-1]
    assert last.item_type == ItemType.PIPELINE_ERROR
    assert last.stage == 2  # the stage the exception came from
    assert last.stage_iteration == 4  # and the iteration it happened in
    assert "backend exploded" in (last.content or "")
    assert last.metadata["exception_type"] == "KeyError"
    assert {s.stage: s.failures for s in record.stages}[2] == 1


def test_finalize_is_idempotent_and_later_logs_are_counted_not_kept() -> None:
    with ExecutionTracker("x") as tracker:
        tracker.log(ItemType.USER_INPUT_TEXT, "a")
    first = tracker.finalize()
    tracker.log(ItemType.USER_INPUT_TEXT, "late")
    second = tracker.finalize()
    assert first is second
    assert len(second.items) == len(first.items)
    assert tracker.counters["items_after_finalize"] == 1


def test_manual_use_without_with() -> None:
    tracker = ExecutionTracker("x").start()
    with tracker.stage(1):
        tracker.log_user_input("hello")
    try:
        raise ValueError("boom")
    except ValueError as exc:
        record = tracker.finalize(error=exc)
    assert record.status == RunStatus.ERROR
    assert types(record)[0] == "pipeline_start"
    assert types(record)[-1] == "pipeline_error"


def test_wrong_types_and_unknown_arguments_never_raise() -> None:
    with ExecutionTracker("x") as tracker:
        tracker.log()  # no item type at all
        tracker.log(ItemType.USER_INPUT_TEXT, 12345, "extra positional", surprise=1)
        tracker.log("not_a_known_type", ["list", "content"], duration_ms="fast", model=42)
        tracker.log(ItemType.OUTPUT_IMAGE, media=object())
        tracker.log(ItemType.OUTPUT_IMAGE, metadata="not a dict")
        with tracker.stage("two"):  # type: ignore[arg-type]
            tracker.log(ItemType.USER_INPUT_TEXT, "in a strange stage")
        tracker.stage_iteration(None).__enter__()  # type: ignore[arg-type]
    record = tracker.finalize()
    json.loads(record.model_dump_json())
    contents = [i.content for i in record.items]
    assert "12345" in contents
    odd = next(i for i in record.items if i.content == "12345")
    assert odd.metadata["extra_args"] == ["extra positional"]
    assert odd.metadata["surprise"] == 1
    unknown = next(i for i in record.items if i.item_type == "not_a_known_type")
    assert unknown.model == "42" and unknown.duration_ms is None
    assert record.integrity.values_coerced >= 5


def test_item_cap_drops_are_counted_and_closing_items_still_kept() -> None:
    with ExecutionTracker("x", limits=Limits(max_items=10)) as tracker, tracker.stage(1):
        for n in range(25):
            tracker.log(ItemType.USER_INPUT_TEXT, str(n))
    record = tracker.finalize()
    assert record.integrity.items_dropped == 25 - (10 - 2)  # start + transition took two slots
    assert str(record.items[-1].item_type) == "pipeline_complete"


def test_long_text_is_truncated_and_counted_with_its_original_length() -> None:
    text = "ab" * 600_000  # 1.2 M characters
    with ExecutionTracker("x") as tracker, tracker.stage(1):
        tracker.log_user_input(text)
    record = tracker.finalize()
    item = next(i for i in record.items if i.item_type == ItemType.USER_INPUT_TEXT)
    assert item.content == text[:1_000_000]
    assert item.content_length == 1_200_000
    assert record.integrity.fields_truncated == 1


def test_current_tracker_is_scoped_to_the_run_and_carried_into_threads() -> None:
    assert isinstance(current_tracker(), NullTracker)
    with ExecutionTracker("x") as tracker:
        assert current_tracker() is tracker

        def work(n: int) -> None:
            with current_tracker().stage(4):
                current_tracker().log(ItemType.OUTPUT_IMAGE, media={"path": f"{n}.png"})

        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            list(pool.map(bind_context(work), range(8)))
            # without bind_context the pool's threads see no tracker
            assert isinstance(pool.submit(current_tracker).result(), NullTracker)
    assert isinstance(current_tracker(), NullTracker)
    paths = sorted(i.media.path for i in tracker.finalize().items if i.media)
    assert paths == sorted(f"{n}.png" for n in range(8))


def test_null_tracker_accepts_everything_and_records_nothing() -> None:
    tracker = NullTracker("x")
    with tracker, tracker.stage(1), tracker.stage_iteration(1), tracker.loop_iteration(1):
        tracker.log(ItemType.USER_INPUT_TEXT, "x", metadata={"a": 1})
        tracker.log_interception_iteration("y", from_lang="de", to_lang="en")
    assert tracker.finalize() is None


def test_fault_in_a_scope_is_counted_not_raised() -> None:
    class Exploding(ExecutionTracker):
        __slots__ = ()

        def _enter_stage(self, stage: int) -> None:
            raise RuntimeError("tracker bug")

    with Exploding("x") as tracker, tracker.stage(2):
        tracker.log(ItemType.INTERCEPTION_FINAL, "still recorded")
    record = tracker.finalize()
    assert record.integrity.tracker_errors >= 1
    assert "RuntimeError: tracker bug" in record.integrity.tracker_error_messages[0]
    assert record.status == RunStatus.SUCCESS


def test_an_error_inside_an_output_carries_that_outputs_loop_iteration() -> None:
    tracker = ExecutionTracker("x")
    with pytest.raises(UnicodeEncodeError), tracker:
        with tracker.loop_iteration(2), tracker.stage(4):
            "\ud800".encode()
    last = tracker.finalize().items[-1]
    assert last.item_type == ItemType.PIPELINE_ERROR
    assert (last.stage, last.stage_iteration, last.loop_iteration) == (4, None, 2)
