"""A language the local backend cannot translate: every step says so, and the run goes on."""

from __future__ import annotations

from pathlib import Path

import pytest

from devserver import Pipeline, RunRequest, load_configs, run_pipeline
from devserver.pipeline import PipelineConfig
from devserver.pipeline.backends import LocalBackend
from devserver.pipeline.safety import AgeFilter, Stage1Filter
from execution_history import ExecutionItem, ExecutionRecord, ExecutionTracker

CONFIGS = load_configs()
ARABIC = "كلب يلعب في الحديقة"
CHINESE = "一只狗在花园里玩"
TEXT_STEPS = ("translation_result", "interception_iteration")


@pytest.fixture(scope="module")
def pipeline() -> Pipeline:
    return Pipeline(LocalBackend(), Stage1Filter(), AgeFilter())


def run(pipeline: Pipeline, tmp_path: Path, config: PipelineConfig, text: str) -> ExecutionRecord:
    tracker = ExecutionTracker(config.name, safety_level="kids")
    run_pipeline(tracker, RunRequest(config, text, "kids", seed=5), pipeline, tmp_path)
    return tracker.finalize()


def of_type(record: ExecutionRecord, item_type: str) -> list[ExecutionItem]:
    return [i for i in record.items if i.item_type == item_type]


def assert_no_silent_identical_step(record: ExecutionRecord) -> None:
    """A text step whose text equals the text it was given carries the marker that says why."""
    by_sequence = {i.sequence: i for i in record.items}
    for item in record.items:
        if item.item_type in TEXT_STEPS:
            given = by_sequence[item.input_sequence or 0].content
            if item.content == given:
                assert item.metadata.get("translated") is False, item
                assert item.metadata.get("unsupported_language"), item


@pytest.mark.parametrize(("text", "language"), [(ARABIC, "ar"), (CHINESE, "zh")])
def test_stille_post_in_a_language_without_glossary_records_each_step_as_not_translated(
    pipeline: Pipeline, tmp_path: Path, text: str, language: str
) -> None:
    record = run(pipeline, tmp_path, CONFIGS["stillepost"], text)
    assert record.status == "success"  # the journey goes on: the picture is still made
    (prompt,) = of_type(record, "user_input_text")
    assert prompt.metadata["language"] == language
    assert prompt.metadata["language_source"] == "detected"
    steps = of_type(record, "translation_result") + of_type(record, "interception_iteration")
    assert len(steps) == 1 + 8
    for step in steps:
        assert step.content == text
        assert step.metadata["translated"] is False
        assert step.metadata["unsupported_language"] == language
        assert step.metadata["error_code"] == "unsupported_language"
        # The text is still in its own language, so that is where each step starts from.
        assert step.metadata["from_lang"] == language
        assert step.model is None and step.backend == "local"
    targets = [s.metadata["to_lang"] for s in steps[1:]]
    assert targets == ["fr", "en", "es", "nl", "pt", "en", "it", language]
    (final,) = of_type(record, "interception_final")
    assert final.content == text and final.metadata["language"] == language
    assert len(of_type(record, "output_image")) == 1
    assert_no_silent_identical_step(record)


def test_dada_cuts_up_a_chinese_prompt_after_an_untranslated_first_stage(
    pipeline: Pipeline, tmp_path: Path
) -> None:
    text = "狗 在 花园 里 玩 🐶"
    record = run(pipeline, tmp_path, CONFIGS["dada"], "一只狗在花园里玩。" + text)
    (translation,) = of_type(record, "translation_result")
    assert translation.metadata["unsupported_language"] == "zh"
    (cut,) = of_type(record, "interception_iteration")
    assert "unsupported_language" not in cut.metadata  # a cut-up needs no glossary
    assert "🐶" in cut.content.split()
    assert_no_silent_identical_step(record)


def test_an_unsupported_language_in_the_middle_of_the_chain_is_skipped_honestly(
    pipeline: Pipeline, tmp_path: Path
) -> None:
    """fr → ja cannot be made; the next step starts from the French text it really has."""
    config = CONFIGS["stillepost"].model_copy(
        update={
            "name": "via_japanese",
            "interception": CONFIGS["stillepost"].interception.model_copy(
                update={"languages": ["fr", "ja", "es"]}
            ),
        }
    )
    record = run(pipeline, tmp_path, config, "Ein Hund spielt im Garten")
    steps = of_type(record, "interception_iteration")
    pairs = [(s.metadata["from_lang"], s.metadata["to_lang"]) for s in steps]
    assert pairs == [("de", "fr"), ("fr", "ja"), ("fr", "es"), ("es", "de")]
    assert steps[1].metadata["unsupported_language"] == "ja"
    assert steps[1].content == steps[0].content
    for n in (0, 2, 3):
        assert "translated" not in steps[n].metadata and steps[n].model == "glossary-translator"
    assert steps[3].content != steps[2].content
    assert_no_silent_identical_step(record)


def test_a_language_the_glossary_knows_has_no_marker(pipeline: Pipeline, tmp_path: Path) -> None:
    record = run(pipeline, tmp_path, CONFIGS["stillepost"], "Ein Hund spielt im Garten")
    for item in record.items:
        assert "unsupported_language" not in item.metadata
    assert_no_silent_identical_step(record)
