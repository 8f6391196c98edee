"""The run's status from its items: success, partial, no_output, blocked, error, running."""

from __future__ import annotations

import pytest

from execution_history import ItemType, RunStatus, derive_status

I = ItemType  # noqa: E741 - short for the table below
MADE, BLOCKED, FAILED = I.OUTPUT_IMAGE, I.STAGE3_BLOCKED, I.OUTPUT_FAILED


@pytest.mark.parametrize(
    ("types", "status"),
    [
        ([MADE, MADE], RunStatus.SUCCESS),
        ([], RunStatus.SUCCESS),  # a config with no outputs made all it planned
        ([MADE, BLOCKED], RunStatus.PARTIAL),
        ([MADE, FAILED], RunStatus.PARTIAL),
        ([I.OUTPUT_AUDIO, BLOCKED, FAILED], RunStatus.PARTIAL),
        ([BLOCKED, BLOCKED], RunStatus.NO_OUTPUT),
        ([FAILED, FAILED], RunStatus.NO_OUTPUT),
        ([BLOCKED, FAILED], RunStatus.NO_OUTPUT),
        ([I.STAGE1_BLOCKED], RunStatus.BLOCKED),
        ([BLOCKED, I.PIPELINE_ERROR], RunStatus.ERROR),
    ],
)
def test_status_of_a_finished_run(types: list[ItemType], status: RunStatus) -> None:
    assert derive_status([I.PIPELINE_START, *types, I.PIPELINE_COMPLETE], True) == status


def test_strings_from_a_stored_record_count_like_members() -> None:
    assert derive_status(["stage3_blocked", "output_failed"], True) == RunStatus.NO_OUTPUT
    assert derive_status(["stage3_blocked", "output_image"], True) == RunStatus.PARTIAL


def test_a_run_that_has_not_ended_is_running_until_it_ends() -> None:
    assert derive_status([BLOCKED, BLOCKED], False) == RunStatus.RUNNING
