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

Each backend call runs inside a step of the run's ``ProgressBoard`` (what the
live feed shows while the step runs); the step's item carries the number of
progress reports seen (``progress_events``) when there were any. Each stage
and output uses the backend its config names, else the server's default.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from execution_history import ItemType, RunStatus, Tracker

from ._configs import AudioOutput, Dada, ImageOutput, PipelineConfig, StillePost
from ._language import LanguageDetector
from ._media_names import media_name
from .backends import (
    Backend,
    BackendError,
    ComfyUIBackend,
    MediaResult,
    ProgressBoard,
    TextResult,
    UnsupportedLanguage,
    WorkflowError,
)
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
    #: Backends that configs name, by name (the default one need not be here).
    named: Mapping[str, Backend] = field(default_factory=dict)
    #: The ComfyUI backend, when some config has an output on it.
    comfyui: ComfyUIBackend | None = None

    def model_versions(self) -> dict[str, str | None]:
        """Every model a run may call, with its version: the backends' and the filters'.

        A record keeps the ones its run called (the builder picks them).
        """
        versions: dict[str, str | None] = {}
        for backend in self.named.values():
            versions.update(backend.model_versions())
        return {
            **versions,
            **self.backend.model_versions(),
            self.stage1.name: self.stage1.version,
            self.age.name: self.age.version,
        }

    def text_backend(self, name: str | None) -> Backend:
        """The backend a config names for a stage (None: the default).

        Raises:
            BackendError: a name this server has no backend for (the app's start
                checks every config, so only a hand-made ``Pipeline`` gets here).
        """
        if name is None or name == self.backend.name:
            return self.backend
        backend = self.named.get(name)
        if backend is None:
            raise BackendError(f"this server has no {name!r} backend")
        return backend


def _timed(call: Callable[[], _T]) -> tuple[_T, float]:
    began = time.perf_counter()
    result = call()
    return result, round((time.perf_counter() - began) * 1000.0, 3)


def run_pipeline(
    tracker: Tracker,
    request: RunRequest,
    pipeline: Pipeline,
    media_dir: Path,
    progress: ProgressBoard | None = None,
) -> RunStatus:
    """Run the four stages for ``request``, recording every step on ``tracker``.

    Args:
        tracker: the run's tracker (or a ``NullTracker``); not yet started.
        request: the config, prompt, safety level and seed.
        pipeline: backend and filters.
        media_dir: the run's media folder (created when the first output is made).
        progress: where the running step's progress goes (the live feed reads it);
            None: nobody watches, a board of its own takes the reports.

    Returns:
        ``RunStatus.SUCCESS``, ``PARTIAL``, ``NO_OUTPUT`` or ``BLOCKED`` (the tracker
        derives the same).

    Raises:
        BackendError: a backend failed in stage 1 or 2 (recorded as ``pipeline_error``).
        Exception: anything unexpected, unchanged (recorded as ``pipeline_error``).
    """
    board = progress if progress is not None else ProgressBoard()
    with tracker:
        with tracker.stage(1):
            language, passed, prompt_item = _stage1(tracker, request, pipeline, board)
        if not passed:
            return RunStatus.BLOCKED
        with tracker.stage(2):
            final, final_item = _stage2(tracker, request, pipeline, language, prompt_item, board)
        skipped = 0
        for j, output in enumerate(request.config.outputs, start=1):
            with tracker.loop_iteration(j):
                made = _output(
                    tracker, request, pipeline, final, final_item, j, output, media_dir, board
                )
                if not made:
                    skipped += 1
        if not skipped:
            return RunStatus.SUCCESS
        return RunStatus.PARTIAL if skipped < len(request.config.outputs) else RunStatus.NO_OUTPUT


def _stage1(
    tracker: Tracker, request: RunRequest, pipeline: Pipeline, board: ProgressBoard
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
            tracker, pipeline.text_backend(config.backends.translation),
            ItemType.TRANSLATION_RESULT, text, language, config.translate_to, seed,
            prompt_item, _Scope(board, stage=1),
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
    board: ProgressBoard,
) -> tuple[str, int | None]:
    """Transform the prompt by the config's interception.

    Stage 2 starts from the child's own words (not the stage-1 translation),
    and each step consumes the one before it; the items say so.

    Returns:
        (the final text, the final item's sequence number).
    """
    interception = request.config.interception
    backend = pipeline.text_backend(request.config.backends.interception)
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
                    seed, consumed, _Scope(board, stage=2, stage_iteration=i),
                )  # fmt: skip
            consumed, text = step.item, step.text
            if step.translated:
                current = target
        final_language = current
    elif isinstance(interception, Dada):
        seed = request.seed + STAGE2_SEED_OFFSET + 1
        with tracker.stage_iteration(1):
            scope = _Scope(board, stage=2, stage_iteration=1)
            with scope.step(backend) as running:
                result, ms = _timed(
                    lambda: backend.intercept(text, mode="dada", language=language, seed=seed)
                )
            consumed = _log_text(
                tracker, ItemType.INTERCEPTION_ITERATION, result, ms, consumed, running.events
            )
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
    board: ProgressBoard,
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
        backend_name = output.backend or pipeline.backend.name
        asked: dict[str, Any]
        if isinstance(output, ImageOutput):
            item_type, suffix = ItemType.OUTPUT_IMAGE, "png"
            asked = {"width": output.width, "height": output.height, "steps": output.steps}
        else:
            item_type, suffix = ItemType.OUTPUT_AUDIO, "wav"
            asked = {"duration_s": output.duration_s, "sample_rate": output.sample_rate}
        name = media_name(j, output.name, suffix)
        began = time.perf_counter()
        scope = _Scope(board, stage=4, loop_iteration=j, output=output.name)
        running = None
        try:
            if isinstance(output, ImageOutput) and output.backend == "comfyui":
                # Filled before anything is sent, so even a failure records what was asked.
                filled = _fill_workflow(output, prompt, seed, asked)
            media_dir.mkdir(parents=True, exist_ok=True)
            path = media_dir / name
            result: MediaResult
            if isinstance(output, ImageOutput) and output.backend == "comfyui":
                comfyui = pipeline.comfyui
                if comfyui is None:
                    raise BackendError("this server has no 'comfyui' backend")
                with scope.step(comfyui) as running:
                    result = comfyui.run_workflow(filled, path)
            elif isinstance(output, ImageOutput):
                backend = pipeline.text_backend(output.backend)
                with scope.step(backend) as running:
                    result = backend.generate_image(
                        prompt,
                        path,
                        width=output.width,
                        height=output.height,
                        seed=seed,
                        steps=output.steps,
                    )
            else:
                backend = pipeline.text_backend(output.backend)
                with scope.step(backend) as running:
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
                backend=backend_name,
                duration_ms=round((time.perf_counter() - began) * 1000.0, 3),
                metadata={
                    "output": output.name,
                    "kind": output.kind,
                    "error_code": getattr(exc, "code", "os_error"),
                    "seed": seed,
                    **asked,
                    **_events(running),
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
            metadata={"output": output.name, **asked, **result.params, **_events(running)},
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
    scope: _Scope,
) -> _Step:
    """Translate ``text`` and record the step; a language the backend lacks is recorded too.

    When the backend raises ``UnsupportedLanguage``, the step is logged with the
    text unchanged (it is what the next step gets), ``translated: false`` and
    ``unsupported_language`` = the code it lacks, so the record never shows an
    identical text without saying why. Other ``BackendError``s go on up.
    """
    began = time.perf_counter()
    try:
        with scope.step(backend) as running:
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
    item = _log_text(tracker, item_type, result, ms, consumed, running.events)
    return _Step(result.text, item, translated=True)


def _log_text(
    tracker: Tracker,
    item_type: ItemType,
    result: TextResult,
    ms: float,
    consumed: int | None,
    progress_events: int = 0,
) -> int | None:
    """Record a text step that consumed item ``consumed``; returns its own sequence number."""
    metadata = dict(result.params)
    if progress_events:
        metadata["progress_events"] = progress_events
    return tracker.log(
        item_type,
        result.text,
        model=result.model,
        backend=result.backend,
        duration_ms=ms,
        metadata=metadata,
        input_sequence=consumed,
    )


@dataclass(frozen=True, slots=True)
class _Scope:
    """Where a backend call sits in the run, as its progress reports name it."""

    board: ProgressBoard
    stage: int
    stage_iteration: int | None = None
    loop_iteration: int | None = None
    output: str | None = None

    def step(self, backend: Backend | ComfyUIBackend) -> Any:
        """The board's step for a call to ``backend`` (a context manager)."""
        return self.board.step(
            stage=self.stage,
            stage_iteration=self.stage_iteration,
            loop_iteration=self.loop_iteration,
            output=self.output,
            backend=backend.name,
        )


def _events(running: Any) -> dict[str, int]:
    """``{"progress_events": n}`` when the step had reports; nothing otherwise."""
    events = getattr(running, "events", 0)
    return {"progress_events": events} if events else {}


def _fill_workflow(output: ImageOutput, prompt: str, seed: int, asked: dict[str, Any]) -> Any:
    """Fill the output's template; adds what is sent (values, name, hash, checkpoint) to
    ``asked``, so success and failure record the same parameters.

    Raises:
        BackendError: the template cannot be filled (checked at load, so unexpected).
    """
    template = output.template
    if template is None:
        raise BackendError(f"output {output.name!r} has no loaded workflow")
    values = output.workflow_values(prompt, seed)
    try:
        filled = template.fill(values)
    except WorkflowError as exc:
        raise BackendError(f"the workflow {template.name!r} cannot be filled: {exc}") from None
    for name in sorted(template.placeholders - {"prompt"}):
        asked[name] = values[name]  # the prompt is the item's content
    asked.update(
        workflow=template.name, workflow_sha256=filled.sha256, checkpoint=filled.checkpoint
    )
    return filled


def _reason(exc: BaseException) -> str:
    if isinstance(exc, BackendError):
        return str(exc)
    # OSError text can carry local paths; the record keeps the kind of failure only.
    return type(exc).__name__
