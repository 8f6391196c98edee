"""The orchestrator on its own: the same outcome with the real tracker and the no-op tracker."""

from __future__ import annotations

from pathlib import Path

import pytest

from devserver import Pipeline, RunRequest, load_configs, run_pipeline
from devserver.pipeline.backends import LocalBackend
from devserver.pipeline.safety import AgeFilter, Stage1Filter
from execution_history import ExecutionTracker, NullTracker, RunStatus

from ..fakes import BrokenBackend

CONFIGS = load_configs()


def files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.glob("*"))


def pipeline(backend: LocalBackend | None = None) -> Pipeline:
    return Pipeline(backend or LocalBackend(), Stage1Filter(), AgeFilter())


@pytest.mark.parametrize(
    ("config", "text", "outcome"),
    [
        ("stillepost", "Ein Hund spielt im Garten", RunStatus.SUCCESS),
        ("dada", "Ein Hakenkreuz", RunStatus.BLOCKED),
        ("image_and_sound", "Ein Hund", RunStatus.SUCCESS),
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
            # Detection was tried and was not sure: the language stays None; the
            # model's best guess and its probability are kept under their own names.
            assert item.metadata["language"] is None
            assert item.metadata["language_source"] == "detected"
            assert item.metadata["language_confidence"] < item.metadata["language_threshold"]
    (translation,) = [i for i in record.items if i.item_type == "translation_result"]
    assert translation.metadata["from_lang"] is None


class RecordingBackend:
    """The local backend, noting the text each call was given, in call order."""

    def __init__(self) -> None:
        self._inner = LocalBackend()
        self.name = self._inner.name
        self.calls: list[tuple[str, str]] = []  # (kind of call, the text it was given)

    def __getattr__(self, name: str) -> object:
        return getattr(self._inner, name)

    def translate(self, text: str, *args: object, **kwargs: object) -> object:
        self.calls.append(("text", text))
        return self._inner.translate(text, *args, **kwargs)  # type: ignore[arg-type]

    def intercept(self, text: str, **kwargs: object) -> object:
        self.calls.append(("text", text))
        return self._inner.intercept(text, **kwargs)  # type: ignore[arg-type]

    def generate_image(self, prompt: str, *args: object, **kwargs: object) -> object:
        self.calls.append(("media", prompt))
        return self._inner.generate_image(prompt, *args, **kwargs)  # type: ignore[arg-type]

    def generate_audio(self, prompt: str, *args: object, **kwargs: object) -> object:
        self.calls.append(("media", prompt))
        return self._inner.generate_audio(prompt, *args, **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("config", sorted(CONFIGS))
def test_each_step_names_the_item_whose_text_the_backend_was_given(
    tmp_path: Path, config: str
) -> None:
    """Provenance is told, not guessed: every backend call's input is the text of the item
    the step names as its input (Stille Post starts from the prompt, not the translation)."""
    backend = RecordingBackend()
    request = RunRequest(CONFIGS[config], "Ein Hund spielt im Garten", "kids", seed=3)
    tracker = ExecutionTracker(config, safety_level="kids")
    run_pipeline(tracker, request, pipeline(backend), tmp_path)  # type: ignore[arg-type]
    record = tracker.finalize()
    by_sequence = {item.sequence: item for item in record.items}
    made = [
        item
        for item in record.items
        if item.item_type
        in {"translation_result", "interception_iteration", "output_image", "output_audio"}
    ]
    assert len(made) == len(backend.calls) > 0
    for item, (kind, given) in zip(made, backend.calls, strict=True):
        assert item.input_sequence is not None, item.item_type
        source = by_sequence[item.input_sequence]
        if kind == "text":
            assert source.content == given
        else:  # an output prompt is its config's template around the text it consumed
            assert source.item_type == "interception_final"
            assert source.content is not None and source.content in given
    first_step = next(i for i in record.items if i.item_type == "interception_iteration")
    assert by_sequence[first_step.input_sequence or 0].item_type == "user_input_text"
    final = next(i for i in record.items if i.item_type == "interception_final")
    assert by_sequence[final.input_sequence or 0].item_type == "interception_iteration"
    for check in (i for i in record.items if i.item_type.endswith("safety_check")):
        expected = "user_input_text" if check.stage == 1 else "interception_final"
        assert by_sequence[check.input_sequence or 0].item_type == expected
