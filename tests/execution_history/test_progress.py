"""RunProgress: one model for live progress, the feed's end event and the record's stage summary."""

from __future__ import annotations

from execution_history import (
    ExecutionRecord,
    ExecutionTracker,
    ItemType,
    RunProgress,
    RunStatus,
    build_progress,
    live_item,
    progress_of_record,
    summarise_stages,
)


def _stage_statuses(progress: RunProgress) -> list[str]:
    return [str(s.status) for s in progress.stages]


def test_progress_of_a_finished_record_agrees_with_its_stage_summary(
    finished_record: ExecutionRecord,
) -> None:
    progress = progress_of_record(finished_record, planned_iterations=8, planned_outputs=3)
    assert progress.stages == finished_record.stages
    # Recomputed from the items, the summary is the same: one computation, not two.
    recomputed = build_progress(
        finished_record.items,
        finished_record.status,
        run_id=finished_record.run_id,
        ended_at=finished_record.ended_at,
        planned_iterations=8,
        planned_outputs=3,
    )
    assert recomputed.stages == finished_record.stages
    assert progress.finished and progress.current_stage is None
    assert progress.status == finished_record.status == RunStatus.PARTIAL
    assert progress.iterations.done == 8 and progress.iterations.planned == 8
    assert (progress.outputs.done, progress.outputs.blocked, progress.outputs.failed) == (2, 1, 0)
    assert progress.outputs.remaining == 0
    assert progress.items == len(finished_record.items)
    assert progress.last_sequence == finished_record.items[-1].sequence


def test_progress_while_running_counts_what_is_done_of_what_is_planned() -> None:
    tracker = ExecutionTracker("stillepost", safety_level="kids").start()
    with tracker.stage(1):
        tracker.log_user_input("Ein Hund")
        tracker.log_safety_check(passed=True)
    with tracker.stage(2):
        for i in (1, 2, 3):
            with tracker.stage_iteration(i):
                tracker.log_interception_iteration(f"step {i}", from_lang="de", to_lang="fr")
        progress = progress_of_record(tracker.record(), planned_iterations=8, planned_outputs=2)
    assert progress.status == RunStatus.RUNNING and not progress.finished
    assert progress.current_stage == 2
    assert _stage_statuses(progress) == ["done", "running", "pending", "pending"]
    assert progress.iterations.done == 3 and progress.iterations.planned == 8
    assert progress.outputs.planned == 2 and progress.outputs.remaining == 2
    assert progress.outputs.done == progress.outputs.blocked == progress.outputs.failed == 0
    tracker.finalize()


def test_blocked_run_skips_later_stages_and_leaves_outputs_unmade() -> None:
    tracker = ExecutionTracker("stillepost", safety_level="kids")
    with tracker, tracker.stage(1):
        tracker.log_user_input("verboten")
        tracker.log_safety_check(passed=False)
        tracker.log_blocked("§86a term")
    record = tracker.finalize()
    progress = progress_of_record(record, planned_iterations=8, planned_outputs=1)
    assert progress.status == RunStatus.BLOCKED
    assert _stage_statuses(progress) == ["blocked", "skipped", "skipped", "skipped"]
    assert progress.outputs.remaining == 1 and progress.outputs.done == 0
    assert progress.stages == record.stages


def test_outputs_are_counted_per_loop_iteration_and_failures_per_output() -> None:
    tracker = ExecutionTracker("triptych", safety_level="kids")
    with tracker:
        for j, fate in enumerate(("made", "blocked", "failed"), start=1):
            with tracker.loop_iteration(j):
                with tracker.stage(3):
                    tracker.log_safety_check(passed=fate != "blocked")
                    if fate == "blocked":
                        tracker.log_blocked("not for kids")
                        continue
                with tracker.stage(4):
                    if fate == "made":
                        tracker.log_output(ItemType.OUTPUT_IMAGE, {"path": "a.png"})
                    else:
                        tracker.log_output_failed("no model")
    record = tracker.finalize()
    progress = progress_of_record(record, planned_outputs=4)
    assert (progress.outputs.done, progress.outputs.blocked, progress.outputs.failed) == (1, 1, 1)
    assert progress.outputs.remaining == 1  # the fourth was planned and never made
    assert progress.iterations.planned is None and progress.iterations.done == 0
    assert progress.status == RunStatus.PARTIAL


def test_unknown_plan_stays_none_not_invented() -> None:
    tracker = ExecutionTracker(None)
    with tracker:
        pass
    progress = progress_of_record(tracker.finalize())
    assert progress.outputs.planned is None and progress.outputs.remaining is None
    assert progress.iterations.planned is None
    assert progress.config_name is None


def test_live_item_is_what_the_record_holds() -> None:
    tracker = ExecutionTracker("dada").start()
    with tracker.stage(2), tracker.stage_iteration(0):
        tracker.log(
            ItemType.INTERCEPTION_ITERATION, content="cut up", metadata={"seed": 3}, model="dada"
        )
    live = [live_item(raw, tracker.limits.max_text_chars) for raw in tracker.items]
    record = tracker.finalize()
    assert live == record.items[: len(live)]
    assert live[-1] is not None and live[-1].stage_iteration == 0


def test_summaries_given_are_reused_as_they_are(finished_record: ExecutionRecord) -> None:
    summaries = summarise_stages(finished_record.items, RunStatus.RUNNING, None)
    progress = build_progress(
        finished_record.items, finished_record.status, run_id="r", stages=summaries
    )
    assert progress.stages == summaries
