"""The four-stage pipeline, with a tracker hook at every step (DESIGN.md §1).

``run_pipeline`` is the whole run. Tracking is structural, not sprinkled in:

- ``with tracker:`` around the run records ``pipeline_start`` and, on the way
  out, ``pipeline_complete`` or ``pipeline_error`` (the exception goes on);
- ``with tracker.stage(n):`` around each stage (transitions are recorded when
  the stage changes);
- ``with tracker.stage_iteration(i):`` around each step of stage 2;
- ``with tracker.loop_iteration(j):`` around stages 3 and 4 of output ``j``.

Every backend call is timed with ``time.perf_counter`` and recorded with the
model, the backend and every value passed to it. What is not known stays None.

Outcomes: a stage-1 block stops the run (``blocked``); a stage-3 block or a
stage-4 ``BackendError`` skips that output only (``partial``); any other
exception, and a ``BackendError`` in stages 1 and 2, ends the run (``error``).
A language the backend cannot translate is not an error: the step is recorded
as not translated (``unsupported_language``) and the text goes on unchanged.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from execution_history import ItemType, RunStatus, Tracker

from ._configs import AudioOutput, Dada, ImageOutput, PipelineConfig, StillePost
from ._language import LanguageDetector
from ._media_names import media_name
from .backends import Backend, BackendError, MediaResult, TextResult, UnsupportedLanguage
from .safety import AgeFilter, Stage1Filter

_T = TypeVar("_T")

#: Seeds are derived from the run's seed by these offsets, so each step gets its own.
STAGE1_SEED_OFFSET = 0
STAGE2_SEED_OFFSET = 0  # plus the stage iteration (1, 2, …)
OUTPUT_SEED_OFFSET = 1000  # plus the loop iteration (1, 2, …)


@dataclass(frozen=True, slots=True)
class RunRequest:
    """What one run is asked to do.

    Attributes:
        config: the pipeline config.
        text: the child's prompt.
        safety_level: ``kids``, ``teens``, ``adults`` or ``research``.
        seed: the run's random seed; every step's seed is derived from it.
        language: the prompt's language when the caller knows it; else detected.
    """

    config: PipelineConfig
    text: str
    safety_level: str
    seed: int
    language: str | None = None


@dataclass(frozen=True, slots=True)
class Pipeline:
    """The shared, thread-safe resources a run uses."""

    backend: Backend
    stage1: Stage1Filter
    age: AgeFilter
    detector: LanguageDetector = field(default_factory=LanguageDetector)

    def model_versions(self) -> dict[str, str | None]:
        """Every model a run may call, with its version: the backend's and the filters'.

        A record keeps the ones its run called (the builder picks them).
        """
        return {
            **self.backend.model_versions(),
            self.stage1.name: self.stage1.version,
            self.age.name: self.age.version,
        }


def _timed(call: Callable[[], _T]) -> tuple[_T, float]:
    began = time.perf_counter()
    result = call()
    return result, round((time.perf_counter() - began) * 1000.0, 3)


def run_pipeline(
    tracker: Tracker, request: RunRequest, pipeline: Pipeline, media_dir: Path
) -> RunStatus:
    """Run the four stages for ``request``, recording every step on ``tracker``.

    Args:
        tracker: the run's tracker (or a ``NullTracker``); not yet started.
        request: the config, prompt, safety level and seed.
        pipeline: backend and filters.
        media_dir: the run's media folder (created when the first output is made).

    Returns:
        ``RunStatus.SUCCESS``, ``PARTIAL``, ``NO_OUTPUT`` or ``BLOCKED`` (the tracker
        derives the same).

    Raises:
        BackendError: a backend failed in stage 1 or 2 (recorded as ``pipeline_error``).
        Exception: anything unexpected, unchanged (recorded as ``pipeline_error``).
    """
    with tracker:
        with tracker.stage(1):
            language, passed, prompt_item = _stage1(tracker, request, pipeline)
        if not passed:
            return RunStatus.BLOCKED
        with tracker.stage(2):
            final, final_item = _stage2(tracker, request, pipeline, language, prompt_item)
        skipped = 0
        for j, output in enumerate(request.config.outputs, start=1):
            with tracker.loop_iteration(j):
                made = _output(tracker, request, pipeline, final, final_item, j, output, media_dir)
                if not made:
                    skipped += 1
        if not skipped:
            return RunStatus.SUCCESS
        return RunStatus.PARTIAL if skipped < len(request.config.outputs) else RunStatus.NO_OUTPUT


def _stage1(
    tracker: Tracker, request: RunRequest, pipeline: Pipeline
) -> tuple[str | None, bool, int | None]:
    """Record the input, translate it, check both texts.

    Returns:
        (language, passed, the prompt item's sequence number).
    """
    text, config = request.text, request.config
    language: str | None
    about_language: dict[str, Any]
    if request.language is not None:
        language = request.language
        about_language = {
            "language": language,
            "language_source": "request",
            "language_confidence": None,
        }
    else:
        detection = pipeline.detector.detect(text)
        language = detection.language
        about_language = detection.metadata()
    prompt_item = tracker.log(ItemType.USER_INPUT_TEXT, text, metadata=about_language)
    translated: str | None = None
    if language != config.translate_to:
        seed = request.seed + STAGE1_SEED_OFFSET
        step = _translate(
            tracker, pipeline.backend, ItemType.TRANSLATION_RESULT, text, language,
            config.translate_to, seed, prompt_item,
        )  # fmt: skip
        translated = step.text if step.translated else None
    verdict, ms = _timed(lambda: pipeline.stage1.check(text, translated))
    # The filter reads the prompt (and its translation, when there is one): the prompt
    # is what it judges, so the check names the prompt as its input.
    check_item = tracker.log(
        ItemType.STAGE1_SAFETY_CHECK,
        "passed" if verdict.passed else "blocked: " + ", ".join(verdict.matched_terms),
        model=verdict.filter,
        duration_ms=ms,
        metadata=verdict.metadata(),
        input_sequence=prompt_item,
    )
    if not verdict.passed:
        tracker.log(
            ItemType.STAGE1_BLOCKED,
            "The prompt contains terms that are not allowed (§86a StGB): "
            + ", ".join(verdict.matched_terms),
            model=verdict.filter,
            metadata={"matched_terms": verdict.matched_terms, "matches": verdict.matches},
            input_sequence=check_item,
        )
    return language, verdict.passed, prompt_item


def _stage2(
    tracker: Tracker,
    request: RunRequest,
    pipeline: Pipeline,
    language: str | None,
    prompt_item: int | None,
) -> tuple[str, int | None]:
    """Transform the prompt by the config's interception.

    Stage 2 starts from the child's own words (not the stage-1 translation),
    and each step consumes the one before it; the items say so.

    Returns:
        (the final text, the final item's sequence number).
    """
    interception = request.config.interception
    backend = pipeline.backend
    text = request.text
    consumed = prompt_item
    final_language: str | None = language
    if isinstance(interception, StillePost):
        # Back to the input language; when that is unknown, to the stage-1 language.
        home = language if language is not None else request.config.translate_to
        targets = [*interception.languages, home]
        # The language the text is in now: a step that could not translate leaves the
        # text, and so its language, as it was; the next step starts from that.
        current = language
        for i, target in enumerate(targets, start=1):
            seed = request.seed + STAGE2_SEED_OFFSET + i
            with tracker.stage_iteration(i):
                step = _translate(
                    tracker, backend, ItemType.INTERCEPTION_ITERATION, text, current, target,
                    seed, consumed,
                )  # fmt: skip
            consumed, text = step.item, step.text
            if step.translated:
                current = target
        final_language = current
    elif isinstance(interception, Dada):
        seed = request.seed + STAGE2_SEED_OFFSET + 1
        with tracker.stage_iteration(1):
            result, ms = _timed(
                lambda: backend.intercept(text, mode="dada", language=language, seed=seed)
            )
            consumed = _log_text(tracker, ItemType.INTERCEPTION_ITERATION, result, ms, consumed)
        text = result.text
    else:  # pragma: no cover - the config model admits no other kind
        raise TypeError(f"unknown interception {interception!r}")
    final_item = tracker.log(
        ItemType.INTERCEPTION_FINAL,
        text,
        metadata={
            "interception": interception.kind,
            "iterations": interception.iterations,
            "language": final_language,
        },
        input_sequence=consumed,
    )
    return text, final_item


def _output(
    tracker: Tracker,
    request: RunRequest,
    pipeline: Pipeline,
    text: str,
    text_item: int | None,
    j: int,
    output: ImageOutput | AudioOutput,
    media_dir: Path,
) -> bool:
    """Stages 3 and 4 for output ``j``; returns False when it was blocked or failed."""
    prompt = output.prompt.replace("{text}", text)
    with tracker.stage(3):
        verdict, ms = _timed(lambda: pipeline.age.check(prompt, request.safety_level))
        meta = {"output": output.name, **verdict.metadata()}
        check_item = tracker.log(
            ItemType.STAGE3_SAFETY_CHECK,
            "passed" if verdict.passed else "blocked: " + ", ".join(verdict.matched_terms),
            model=verdict.filter,
            duration_ms=ms,
            metadata=meta,
            input_sequence=text_item,
        )
        if not verdict.passed:
            tracker.log(
                ItemType.STAGE3_BLOCKED,
                f"Output '{output.name}' is not shown at safety level "
                f"'{request.safety_level}': " + ", ".join(verdict.matched_terms),
                model=verdict.filter,
                metadata={"output": output.name, "matched_terms": verdict.matched_terms},
                input_sequence=check_item,
            )
            return False
    with tracker.stage(4):
        seed = request.seed + OUTPUT_SEED_OFFSET + j
        backend = pipeline.backend
        asked: dict[str, Any]
        if isinstance(output, ImageOutput):
            item_type, suffix = ItemType.OUTPUT_IMAGE, "png"
            asked = {"width": output.width, "height": output.height, "steps": output.steps}
        else:
            item_type, suffix = ItemType.OUTPUT_AUDIO, "wav"
            asked = {"duration_s": output.duration_s, "sample_rate": output.sample_rate}
        name = media_name(j, output.name, suffix)
        began = time.perf_counter()
        try:
            media_dir.mkdir(parents=True, exist_ok=True)
            path = media_dir / name
            result: MediaResult
            if isinstance(output, ImageOutput):
                result = backend.generate_image(
                    prompt,
                    path,
                    width=output.width,
                    height=output.height,
                    seed=seed,
                    steps=output.steps,
                )
            else:
                result = backend.generate_audio(
                    prompt,
                    path,
                    duration_s=output.duration_s,
                    sample_rate=output.sample_rate,
                    seed=seed,
                )
        except (BackendError, OSError) as exc:
            # One output that cannot be made costs that output only; the run goes on.
            tracker.log(
                ItemType.OUTPUT_FAILED,
                f"Output '{output.name}' could not be made: {_reason(exc)}",
                backend=backend.name,
                duration_ms=round((time.perf_counter() - began) * 1000.0, 3),
                metadata={
                    "output": output.name,
                    "kind": output.kind,
                    "error_code": getattr(exc, "code", "os_error"),
                    "seed": seed,
                    **asked,
                },
                input_sequence=text_item,
            )
            return False
        ms = round((time.perf_counter() - began) * 1000.0, 3)
        media: dict[str, Any] = {"path": name, "mime_type": result.mime_type}
        if result.width is not None:
            media["width"] = result.width
            media["height"] = result.height
        if result.duration_s is not None:
            media["duration_s"] = result.duration_s
        tracker.log(
            item_type,
            prompt,
            media=media,
            model=result.model,
            backend=result.backend,
            duration_ms=ms,
            metadata={"output": output.name, **result.params},
            input_sequence=text_item,
        )
        return True


@dataclass(frozen=True, slots=True)
class _Step:
    """One translation step as recorded: its text, its item, and whether it translated."""

    text: str
    item: int | None
    translated: bool


def _translate(
    tracker: Tracker,
    backend: Backend,
    item_type: ItemType,
    text: str,
    from_lang: str | None,
    to_lang: str,
    seed: int,
    consumed: int | None,
) -> _Step:
    """Translate ``text`` and record the step; a language the backend lacks is recorded too.

    When the backend raises ``UnsupportedLanguage``, the step is logged with the
    text unchanged (it is what the next step gets), ``translated: false`` and
    ``unsupported_language`` = the code it lacks, so the record never shows an
    identical text without saying why. Other ``BackendError``s go on up.
    """
    began = time.perf_counter()
    try:
        result = backend.translate(text, from_lang, to_lang, seed)
    except UnsupportedLanguage as exc:
        item = tracker.log(
            item_type,
            text,
            backend=backend.name,
            duration_ms=round((time.perf_counter() - began) * 1000.0, 3),
            metadata={
                "from_lang": from_lang,
                "to_lang": to_lang,
                "seed": seed,
                "translated": False,
                "unsupported_language": exc.language,
                "error_code": exc.code,
                "reason": str(exc),
            },
            input_sequence=consumed,
        )
        return _Step(text, item, translated=False)
    ms = round((time.perf_counter() - began) * 1000.0, 3)
    return _Step(result.text, _log_text(tracker, item_type, result, ms, consumed), translated=True)


def _log_text(
    tracker: Tracker,
    item_type: ItemType,
    result: TextResult,
    ms: float,
    consumed: int | None,
) -> int | None:
    """Record a text step that consumed item ``consumed``; returns its own sequence number."""
    return tracker.log(
        item_type,
        result.text,
        model=result.model,
        backend=result.backend,
        duration_ms=ms,
        metadata=dict(result.params),
        input_sequence=consumed,
    )


def _reason(exc: BaseException) -> str:
    if isinstance(exc, BackendError):
        return str(exc)
    # OSError text can carry local paths; the record keeps the kind of failure only.
    return type(exc).__name__
