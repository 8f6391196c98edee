"""Assertions on recorded runs, and starting a real server, shared by the devserver tests."""

from __future__ import annotations

import itertools
import subprocess
import sys
from pathlib import Path
from typing import Any

STILLE_POST_LANGUAGES = ["fr", "en", "es", "nl", "pt", "en", "it"]  # configs/stillepost.json


def items_of(record: dict[str, Any], item_type: str) -> list[dict[str, Any]]:
    """The record's items of one type, in order."""
    return [i for i in record["items"] if i["item_type"] == item_type]


def assert_stille_post_journey(record: dict[str, Any], input_language: str = "de") -> None:
    """8 interception iterations 1..8 in order, with the chained language pairs."""
    iterations = items_of(record, "interception_iteration")
    assert [i["stage_iteration"] for i in iterations] == list(range(1, 9))
    assert all(i["stage"] == 2 and i["loop_iteration"] is None for i in iterations)
    chain = [input_language, *STILLE_POST_LANGUAGES, input_language]
    pairs = [(i["metadata"]["from_lang"], i["metadata"]["to_lang"]) for i in iterations]
    assert pairs == list(itertools.pairwise(chain))
    assert all(i["model"] == "glossary-translator" and i["backend"] == "local" for i in iterations)
    assert all(isinstance(i["duration_ms"], float) for i in iterations)
    seqs = [i["sequence"] for i in iterations]
    assert seqs == sorted(seqs)
    final = items_of(record, "interception_final")
    assert len(final) == 1 and final[0]["content"] == iterations[-1]["content"]


def assert_transitions_exactly_at_stage_changes(record: dict[str, Any]) -> None:
    """A stage_transition item sits between every change of stage, and nowhere else."""
    items = record["items"]
    assert [i["sequence"] for i in items] == list(range(1, len(items) + 1))
    previous = items[0]
    assert previous["item_type"] == "pipeline_start" and previous["stage"] == 0
    for item in items[1:]:
        if item["item_type"] == "stage_transition":
            assert item["metadata"]["from_stage"] == previous["stage"]
            assert item["metadata"]["to_stage"] == item["stage"] != previous["stage"]
        else:
            assert item["stage"] == previous["stage"], item
        previous = item


def assert_outputs_share_loop_iteration(record: dict[str, Any], outputs: int) -> None:
    """Output j's safety check, and its media or failure, all carry loop_iteration j."""
    checks = items_of(record, "stage3_safety_check")
    assert [c["loop_iteration"] for c in checks] == list(range(1, outputs + 1))
    for item in record["items"]:
        if item["stage"] in (3, 4):
            assert item["loop_iteration"] in range(1, outputs + 1)
            assert item["stage_iteration"] is None
        if item["item_type"].startswith("output_") or item["item_type"].startswith("stage3"):
            check = checks[item["loop_iteration"] - 1]
            assert item["metadata"].get("output") == check["metadata"]["output"]


def assert_complete_has_no_iteration(record: dict[str, Any]) -> None:
    """pipeline_complete is the last item, in stage 5, outside every iteration."""
    last = record["items"][-1]
    assert last["item_type"] == "pipeline_complete"
    assert last["stage"] == 5
    assert last["stage_iteration"] is None and last["loop_iteration"] is None


def start_serve(env: dict[str, str], cwd: Path | None = None) -> subprocess.Popen[str]:
    """A real ``devserver serve --port 0`` process (stdout and stderr merged, as text).

    Args:
        env: the process's environment (the caller decides which DEVSERVER_ variables).
        cwd: its working directory (the default data dir is ``<cwd>/instance``).
    """
    script = Path(sys.executable).with_name("devserver")
    return subprocess.Popen(
        [str(script), "serve", "--port", "0"],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
