"""The orchestrator on its own: the same outcome with the real tracker and the no-op tracker."""

from __future__ import annotations

from pathlib import Path

import pytest

from devserver import Outcome, Pipeline, RunRequest, load_configs, run_pipeline
from devserver.backends import LocalBackend
from devserver.safety import AgeFilter, Stage1Filter
from execution_history import ExecutionTracker, NullTracker

from .fakes import BrokenBackend

CONFIGS = load_configs()


def files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.glob("*"))


def pipeline(backend: LocalBackend | None = None) -> Pipeline:
    return Pipeline(backend or LocalBackend(), Stage1Filter(), AgeFilter())


@pytest.mark.parametrize(
    ("config", "text", "outcome"),
    [
        ("stillepost", "Ein Hund spielt im Garten", Outcome.SUCCESS),
        ("dada", "Ein Hakenkreuz", Outcome.BLOCKED),
        ("image_and_sound", "Ein Hund", Outcome.SUCCESS),
    ],
)
def test_outcome_is_the_same_with_and_without_tracking(
    tmp_path: Path, config: str, text: str, outcome: str
) -> None:
    request = RunRequest(CONFIGS[config], text, "kids", seed=1)
    tracker = ExecutionTracker(config, safety_level="kids")
    assert run_pipeline(tracker, request, pipeline(), tmp_path / "a") == outcome
    assert str(tracker.finalize().status) == outcome
    assert run_pipeline(NullTracker(config), request, pipeline(), tmp_path / "b") == outcome
    assert files(tmp_path / "a") == files(tmp_path / "b")  # the same media, tracked or not


def test_unexpected_exception_goes_on_unchanged_and_is_recorded(tmp_path: Path) -> None:
    request = RunRequest(CONFIGS["stillepost"], "Ein Hund", "kids", seed=0)
    tracker = ExecutionTracker("stillepost")
    with pytest.raises(RuntimeError, match="the translation model crashed"):
        run_pipeline(tracker, request, pipeline(BrokenBackend(fail_at=2)), tmp_path)
    record = tracker.finalize()
    assert record.status == "error"
    assert record.items[-1].item_type == "pipeline_error" and record.items[-1].stage == 2


def test_nothing_is_invented_for_unknown_values(tmp_path: Path) -> None:
    request = RunRequest(CONFIGS["dada"], "Qwx zyv", "research", seed=8)
    tracker = ExecutionTracker("dada")
    run_pipeline(tracker, request, pipeline(), tmp_path)
    record = tracker.finalize()
    for item in record.items:
        if item.item_type in ("pipeline_start", "stage_transition", "pipeline_complete"):
            assert item.model is None and item.backend is None and item.duration_ms is None
        if item.item_type == "user_input_text":
            assert item.metadata == {"language": None, "language_source": None}
    (translation,) = [i for i in record.items if i.item_type == "translation_result"]
    assert translation.metadata["from_lang"] is None
